"""``report.md`` of the end-to-end demo: what was planted, what each latent space recovered, and what it cost.

Pictures are the PNGs the recipes already wrote (learning curves, reconstructions, comparison bars), linked
relative to the demo folder so the report reads in any markdown viewer. Each stage contributes its own section
through ``Stage.report``; this module adds the headline table, the timings and the list of outputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ml4ge.atomic import write_text

if TYPE_CHECKING:
    from ml4ge.demo.context import DemoRun, Stage

REPORT_NAME = "report.md"
OVERVIEW_NAME = "report_overview.png"
HEADLINE = (("age", "r2"), ("sex", "roc_auc"))
TIMING_COLUMNS = ["stage", "kind", "wall_s", "cpu_s", "peak_rss_mb", "load_average"]


def markdown_table(frame: pd.DataFrame, decimals: int = 3) -> str:
    """A pipe table of ``frame`` (its index is dropped; floats with ``decimals`` decimals)."""
    def cell(value) -> str:
        return f"{value:.{decimals}f}" if isinstance(value, float) else str(value)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * frame.shape[1]
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _relative(run: DemoRun, path: Path) -> str:
    return path.relative_to(run.folder).as_posix()


def image(run: DemoRun, path: Path, caption: str) -> str:
    return f"![{caption}]({_relative(run, path)})" if path.is_file() else f"*({caption}: not written)*"


def summary_table(path: Path, metrics: tuple[str, ...] = ("r2", "roc_auc")) -> pd.DataFrame:
    """``compare_summary.tsv`` as one row per phenotype, one ``mean ± sd`` column per space."""
    summary = pd.read_csv(path, sep="\t")
    summary = summary[summary.metric.isin(metrics)]
    values = summary.assign(value=[f"{m:.3f} ± {s:.3f}" for m, s in zip(summary["mean"], summary.sd.fillna(0))])
    wide = values.pivot_table(index=["phenotype", "metric"], columns="space", values="value", aggfunc="first",
                              sort=False)
    return wide.reset_index()


# Stage sections ----------------------------------------------------------------------------------------------
def cohort_section(run: DemoRun) -> str:
    """Cohort size and grid, and the planted genetic effects from ``truth.json``."""
    truth = json.loads((run.cohort / "truth.json").read_text())
    phenotypes = pd.read_csv(run.cohort / "phenotypes.csv")
    lines = ["## Cohort", "",
             f"{len(phenotypes)} subjects from `{run.cohort}` at {truth.get('voxel_mm', run.settings.voxel_mm)} mm "
             f"(seed {truth.get('seed', run.seed)}); age {phenotypes.age.min():.0f}-{phenotypes.age.max():.0f}, "
             f"{int((phenotypes.sex == 1).sum())} male / {int((phenotypes.sex == 0).sum())} female. "
             f"TensorMaps `{run.settings.t1}` and `{run.settings.t2}`."]
    snps = pd.DataFrame(truth.get("snps", []))
    if not snps.empty:
        columns = [c for c in ("id", "chrom", "trait", "region", "kind", "effect_sd_per_allele") if c in snps]
        snps = snps.assign(region=[", ".join(r) if isinstance(r, list) else r for r in snps.get("region", "")])
        lines += ["", f"Planted SNP effects ({len(snps)} causal, {truth.get('null_snps', '?')} null):", "",
                  markdown_table(snps[columns])]
    for key in ("age_effects", "sex_effects"):
        if truth.get(key):
            effects = ", ".join(f"{name}: {value}" for name, value in truth[key].items())
            lines += ["", f"{key.replace('_', ' ').capitalize()}: {effects}."]
    return "\n".join(lines)


def model_section(model: str) -> Callable[[DemoRun], str]:
    """The section of one trained model: learning curves, test metrics, one reconstruction per output."""
    def section(run: DemoRun) -> str:
        folder = run.folder / model
        lines = [f"## Model `{model}`", "", image(run, folder / f"learning_curves_{model}.png",
                                                   f"learning curves of {model}")]
        metrics = folder / "test_metrics.tsv"
        if metrics.is_file():
            lines += ["", "Test split: " + ", ".join(f"{row.metric} {row.value:.4g}" for row in
                                                      pd.read_csv(metrics, sep="\t").itertuples())]
        for picture in sorted((folder / "reconstructions").glob("*.png"))[:2]:
            lines += ["", image(run, picture, f"{model}: input and reconstruction, {picture.stem}")]
        for decoding in sorted(folder.glob("decoding_*"))[:2]:
            pictures = sorted(decoding.glob("*.png"))[:1]
            lines += ["", *(image(run, p, f"{model}: {decoding.name}") for p in pictures)]
        return "\n".join(lines)

    return section


def compare_section(run: DemoRun) -> str:
    folder = run.folder / "compare"
    lines = ["## Comparison of the latent spaces", "",
             "Linear probes with cross-validation (`--mode compare`): ridge R^2 for continuous targets, "
             "logistic ROC-AUC for sex. `brain_volume_only` is the phenotype-only baseline: the measured brain "
             "volume as a one-column space.", "", markdown_table(summary_table(folder / "compare_summary.tsv")),
             "", image(run, folder / "compare_bars.png", "comparison bars"),
             "", f"Paired differences with corrected intervals: `{_relative(run, folder / 'compare_pairs.tsv')}`."]
    genetics = folder / "compare_genetics.tsv"
    if genetics.is_file():
        columns = ["space", "dimensions", "samples", "significant_pairs", "significant_snps", "loci"]
        table = pd.read_csv(genetics, sep="\t")
        lines += ["", "Genetic signal (from the associate stage): significant SNP-dimension pairs and loci per space.",
                  "", markdown_table(table[[c for c in columns if c in table]])]
    return "\n".join(lines)


def adjusted_section(run: DemoRun) -> str:
    folder = run.folder / "compare_adjusted"
    if not (folder / "compare_summary.tsv").is_file():
        return ""
    lines = ["## Planted-region traits beyond age and sex", "",
             "Each latent space plus age and sex as covariates, against the covariates alone (`covariates`): what "
             "the latents add is the part of each trait that age and sex do not explain, where the planted SNP "
             "effects live.", "", markdown_table(summary_table(folder / "compare_summary.tsv")),
             "", image(run, folder / "compare_bars.png", "comparison bars, adjusted for age and sex")]
    return "\n".join(lines)


# The whole report --------------------------------------------------------------------------------------------
def headline(run: DemoRun) -> str:
    """Age R^2 and sex AUC of every space and the baseline: the numbers a reader looks for first."""
    path = run.folder / "compare" / "compare_summary.tsv"
    if not path.is_file():
        return ""
    summary = pd.read_csv(path, sep="\t")
    rows = []
    for phenotype, metric in HEADLINE:
        part = summary[(summary.phenotype == phenotype) & (summary.metric == metric)]
        rows.append({"target": f"{phenotype} ({'R^2' if metric == 'r2' else 'AUC'})",
                     **{row.space: f"{row.mean:.3f} ± {row.sd:.3f}" for row in part.itertuples()}})
    return "\n".join(["## Headline", "", "Mean ± SD over cross-validation folds.", "",
                      markdown_table(pd.DataFrame(rows))])


def timing_section(run: DemoRun) -> str:
    """Wall time and peak memory (this process and its workers) per stage and per kind of stage."""
    records = pd.DataFrame(list(run.timings.values()))
    if records.empty:
        return ""
    records = records.reindex(columns=[*TIMING_COLUMNS, "finished"])
    by_kind = records.groupby("kind", sort=False).agg(wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
                                                       peak_rss_mb=("peak_rss_mb", "max"))
    total = (f"Total {records.wall_s.sum() / 60:.1f} min wall, {records.cpu_s.sum() / 60:.1f} min CPU; peak memory "
             f"{records.peak_rss_mb.max() / 1024:.2f} GiB (this process and its workers). `load_average` is the "
             "machine's 1-minute load when the stage ended: on a shared machine wall time grows with it.")
    return "\n".join(["## Cost", "", total, "", markdown_table(by_kind.reset_index(), 1), "",
                      markdown_table(records, 1)])


def _model_run(path: Path) -> bool:
    return (path / f"{path.name}.keras").is_file()


def _named(*names: str) -> Callable[[Path], bool]:
    return lambda path: path.name in names


def _prefixed(prefix: str) -> Callable[[Path], bool]:
    return lambda path: path.name.startswith(prefix)


LATENTS_KIND = "latent tables (`hidden_<tmap>_<model>.tsv`: sample_id, latent_0..)"
# What each top-level entry of a demo folder is, first match wins; the file list names only what exists.
OUTPUT_KINDS: tuple[tuple[Callable[[Path], bool], str], ...] = (
    (_named("data"), "the generated cohort (NIfTI, manifest, phenotypes, covariates, PLINK genotypes, atlas, "
                     "truth.json)"),
    (_named("tensors"), "one HD5 file per subject"),
    (_named("tensorize"), "`tensorize_report.tsv` lists every input"),
    (_model_run, "trained models (`<id>.keras`, `encoder_*.keras`, `decoder_*.keras`), learning curves, "
                 "reconstructions, test metrics, the split"),
    (_named("associate"), "the GWAS of every latent dimension (sumstats, hits, loci, counts, Manhattan plots) and "
                          "`truth_snps.tsv` (the planted SNPs found or not)"),
    (_prefixed("compare"), "scores per fold, summaries, paired differences, bar charts"),
    (_prefixed("interpret"), "PerDI maps of the dimensions chosen by trait and by SNP, and the ranks of the "
                             "planted regions"),
    (_named("evaluate_groups"), "how well each latent space separates the planted disease subtypes (silhouette, "
                                "GMM NMI, PCA plots)"),
    (_named("stages", "demo_timings.tsv"), "wall time and peak memory per stage; a rerun skips finished stages"),
    (_named("demo.json"), "the demo's settings (a rerun in this folder must match them)"),
    (_named("study_table.tsv"), "the study's models side by side"),
    (_named(OVERVIEW_NAME), "the overview figure"),
)


def outputs_section(run: DemoRun) -> str:
    """``## Files``: the demo folder's entries as they are, each with what it holds (:data:`OUTPUT_KINDS`; an entry
    of no known kind is listed by its name alone), and the latent tables of the models that wrote them."""
    groups: dict[str, list[str]] = {}
    for path in sorted(run.folder.iterdir()):
        if path.name == REPORT_NAME or path.name.startswith("."):
            continue
        name = f"`{path.name}/`" if path.is_dir() else f"`{path.name}`"
        if path.name == "latents" and path.is_dir():
            models = sorted(p.name for p in path.iterdir() if p.is_dir())
            groups[LATENTS_KIND] = [f"`latents/{model}/`" for model in models] or [name]
            continue
        kind = next((text for matches, text in OUTPUT_KINDS if matches(path)), None)
        groups.setdefault(kind or name, []).append(name)
    lines = [f"- {', '.join(names)}: {kind}" if names != [kind] else f"- {kind}" for kind, names in groups.items()]
    return "\n".join(["## Files", "", *lines])


def overview_figure(run: DemoRun, path: Path) -> Path | None:
    """One PNG for a first look: a T1 reconstruction beside the R^2 and AUC of every space (None before compare)."""
    from ml4ge.atomic import atomic_path

    summary_path = run.folder / "compare" / "compare_summary.tsv"
    if not summary_path.is_file():
        return None
    reconstructions = sorted((run.folder / "ae_t1" / "reconstructions").glob("*.png"))[:1]
    figure = draw_overview(pd.read_csv(summary_path, sep="\t"), reconstructions[0] if reconstructions else None,
                           f"ml4ge demo {run.folder.name}: {run.settings.subjects} subjects, what each latent space "
                           "predicts (cross-validated linear probes, mean ± SD over folds)")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=80)
    return path


def draw_overview(summary: pd.DataFrame, reconstruction: Path | None, title: str):
    """The overview Figure: the reconstruction PNG (if any) left, the comparison's bars (legend outside) right."""
    import matplotlib.image
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ml4ge.plots_compare import bar_figure

    figure = Figure(figsize=(16, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subfigures(1, 2, width_ratios=[1.0, 1.9])
    axis = left.subplots()
    axis.axis("off")
    if reconstruction is not None:
        axis.imshow(matplotlib.image.imread(reconstruction))
        axis.set_title("T1 autoencoder: test subject and reconstruction")
    bar_figure(summary, right)
    figure.suptitle(title)
    return figure


def side_by_side_section(run: DemoRun) -> str:
    """The study's models side by side (:func:`ml4ge.demo.study_table.study_table`); also written to
    ``<demo>/study_table.tsv``."""
    from ml4ge.atomic import write_table
    from ml4ge.demo.pair_agreement import batch_note
    from ml4ge.demo.study_table import TABLE_NAME, WINDOW_KB, study_table

    table = study_table(run)
    write_table(table, run.folder / TABLE_NAME)
    legend = ("Training: epochs run, wall and CPU time of the train stage. GWAS hits: latent dimensions of the "
              "space with a hit (P below 5e-8 over the number of latent dimensions of all spaces) within "
              f"{WINDOW_KB:g} kb of the planted SNP, and the SNP's best -log10 P. R^2 with age + sex: "
              "cross-validated ridge R^2 of the latents plus age and sex (`covariates`: age and sex alone). "
              "Cross-modal rows (pair models): on the test split, for how many subjects the nearest latent of the "
              "other modality is their own, and the mean cosine of a subject's two latents against that of two "
              "different subjects. PerDI rank: the planted region's rank (left and right merged) among the atlas "
              "regions for the dimension most correlated with the trait and the one most associated with the SNP.")
    notes = [note for note in (run.plan.table_note, batch_note(run)) if note]
    return "\n".join([f"## The models side by side (study `{run.study}`)", "", " ".join([legend, *notes]), "",
                      markdown_table(table)])


def preset_line(run: DemoRun) -> str:
    """The preset, study, cohort size and grid, epochs (and the models that train for other epochs), batch, seed."""
    from ml4ge.demo.studies import DEFAULT_STUDY, MODELS

    settings = run.settings
    others = ", ".join(f"{MODELS[m].epochs(settings)} for `{m}`" for m in run.plan.models
                       if MODELS[m].epochs(settings) != settings.epochs)
    batches = {m: MODELS[m].train_flags(settings).get("batch_size", settings.batch_size) for m in run.plan.models}
    own_batch = ", ".join(f"{batch} for `{m}`" for m, batch in batches.items() if batch != settings.batch_size)
    study = "" if run.study == DEFAULT_STUDY else f", study `{run.study}` ({', '.join(run.plan.models)})"
    return (f"Preset `{settings.preset}`{study}: {settings.subjects} subjects at {settings.voxel_mm} mm, "
            f"{settings.epochs} epochs per model{f' ({others})' if others else ''}, batch {settings.batch_size}"
            f"{f' ({own_batch})' if own_batch else ''}, seed {run.seed}.")


def write_report(run: DemoRun, stages: list[tuple[str, Stage]]) -> Path:
    """Write ``<demo folder>/report.md`` from the finished stages; returns its path."""
    lines = [f"# ml4ge demo: {run.folder.name}", "", preset_line(run), "", headline(run)]
    if run.plan.side_by_side:
        lines += ["", side_by_side_section(run)]
    overview = overview_figure(run, run.folder / OVERVIEW_NAME)
    if overview is not None:
        lines += ["", image(run, overview, "overview: a reconstruction and the comparison")]
    for _, stage in stages:
        section = stage.report(run) if stage.report is not None else ""
        if section:
            lines += ["", section]
    lines += ["", timing_section(run), "", outputs_section(run)]
    return write_text(run.folder / REPORT_NAME, "\n".join(lines) + "\n")
