"""The demo's genetics stages: ``associate`` (a GWAS of every latent space) and ``interpret`` (PerDI maps of the
latent dimensions the planted traits and SNPs select), each with a truth table against ``truth.json``.

associate -> ``<demo>/associate/`` (the recipe's outputs) plus ``truth_snps.tsv`` (per planted SNP: hit or not,
best -log10 P, where) and ``planted_sumstats.tsv`` (every dimension's statistics of the planted SNPs).
interpret -> ``<demo>/interpret_<model>/`` per autoencoder the study interprets plus ``<demo>/interpret_truth.tsv``
(rank of each planted region among the atlas regions, per hemisphere and left/right merged, for the dimensions most
correlated with each planted trait, the traits' directions and the dimensions most associated with each planted
SNP: the interpret recipe's ``--interpret_traits`` and ``--interpret_snps`` choose them).
"""

from __future__ import annotations

import pandas as pd

from ml4ge.atomic import write_table
from ml4ge.demo import truth as truth_checks
from ml4ge.demo.context import MODELS, DemoRun, latent_spaces, latent_table
from ml4ge.demo.recipe_runner import run_recipe

WINDOW_KB = truth_checks.WINDOW_KB
MAX_INTERPRET_SAMPLES = 500
# PerDI smooths with a 3 mm kernel at 1 mm; the demo's grid is 3 mm (5 mm quick), so that is one voxel. The
# recipe's default of 3 voxels would be 9 mm here, wider than the thalamus and putamen are thick.
SMOOTH_SIGMA_VOXELS = 1.0
TRAIT_ADJUST = ("age", "sex", "brain_volume")
RANK_COLUMNS = ["model", "route", "trait", "dimension", "abs_r", "log10p", "merged", "region", "ks_rank", "mean_rank",
                "regions", "top_region"]


def associate_folder(run: DemoRun):
    return run.folder / "associate"


def associate(run: DemoRun) -> None:
    """GWAS of every latent dimension of the demo, adjusted for age, sex and 4 genetic PCs, with the omnibus and
    min-P tests of each space and the GWAS of each planted trait's direction in each space; then the SNP truth."""
    from ml4ge.recipes.associate import AssociateSettings

    truth = truth_checks.load_truth(run.cohort)
    folder = run_recipe(AssociateSettings(
        genotypes=str(run.cohort / "genotypes"), covariates_file=str(run.cohort / "covariates.tsv"),
        clump_kb=WINDOW_KB, latent_tables=tuple(f"{name}={path}" for name, path in latent_spaces(run).items()),
        multivariate=True, phenotypes=str(run.cohort / "phenotypes.csv"), direction_traits=tuple(truth["regions"]),
        id="associate", **run.common_settings()))
    stats = truth_checks.planted_sumstats(folder / "sumstats", [snp["id"] for snp in truth["snps"]])
    write_table(stats, folder / "planted_sumstats.tsv")
    hits = pd.read_csv(folder / "associate_hits.tsv", sep="\t", dtype={"ID": str, "CHROM": str})
    write_table(truth_checks.snp_truth(truth, stats, hits, WINDOW_KB), folder / "truth_snps.tsv")


def chosen_rows(folder, truth: dict) -> pd.DataFrame:
    """The interpret run's ``interpret_choices.tsv`` as ``route, trait, dimension, abs_r, log10p`` (a SNP's row
    names the trait it was planted for); ``dimension`` is an index or a direction's name.

    Routes: ``trait``, the dimension most correlated with each planted trait, both residualised on age, sex and
    brain volume (the demo ages and scales every region); ``trait_direction``, the trait's direction in the space;
    ``snp``, the dimension with the smallest association P of each planted SNP (the seed studies' SNP ->
    endophenotype -> region route).
    """
    chosen = pd.read_csv(folder / "interpret_choices.tsv", sep="\t", dtype={"dimension": str, "target": str})
    trait_of = {snp["id"]: snp["trait"] for snp in truth["snps"]}
    return chosen.assign(trait=[trait_of.get(t, t) for t in chosen.target]).drop(columns="target")


def interpret(run: DemoRun) -> None:
    """PerDI of each autoencoder's dimensions and directions that the planted traits and SNPs select (the
    interpret recipe's --interpret_traits and --interpret_snps); ranks of the planted regions."""
    from ml4ge.recipes.interpret import InterpretSettings

    truth = truth_checks.load_truth(run.cohort)
    atlas, labels = run.cohort / "atlas.nii.gz", run.cohort / "atlas_labels.tsv"
    ranks = []
    for model in run.plan.interpret:
        given = getattr(run.settings, MODELS[model].inputs[0])
        folder = run_recipe(InterpretSettings(
            latent_tables=(str(latent_table(run, model, given)),), output_tensors=(given,), tensors=str(run.tensors),
            model_file=str(run.folder / model / f"{model}.keras"), phenotypes=str(run.cohort / "phenotypes.csv"),
            covariates=TRAIT_ADJUST, interpret_traits=tuple(truth["regions"]),
            interpret_snps=tuple(snp["id"] for snp in truth["snps"]),
            interpret_sumstats=str(associate_folder(run) / "sumstats" / model),
            interpret_samples=min(MAX_INTERPRET_SAMPLES, run.settings.subjects), smooth_sigma=SMOOTH_SIGMA_VOXELS,
            batch_size=run.settings.batch_size, atlas=str(atlas), atlas_labels=str(labels), id=f"interpret_{model}",
            **run.common_settings()))
        chosen = chosen_rows(folder, truth)
        maps = next(folder.glob("perdi_*/"))
        ranks.append(truth_checks.planted_ranks(maps, atlas, labels, chosen.assign(model=model), truth["regions"]))
    write_table(pd.concat(ranks, ignore_index=True), run.folder / "interpret_truth.tsv")


# Report sections ---------------------------------------------------------------------------------------------
def associate_section(run: DemoRun) -> str:
    from ml4ge.demo.report import image, markdown_table

    folder = associate_folder(run)
    if not (folder / "associate_counts.tsv").is_file():
        return ""
    counts = pd.read_csv(folder / "associate_counts.tsv", sep="\t")
    columns = ["space", "dimensions", "samples", "snps_tested", "threshold_p", "significant_pairs",
               "significant_snps", "loci", "omnibus_df", "omnibus_loci", "minp_loci"]
    counts = counts[[c for c in columns if c in counts]]
    counts = counts.assign(threshold_p=counts.threshold_p.map("{:.2g}".format))
    for column in ("omnibus_df", "omnibus_loci", "minp_loci"):  # blank for a direction's one-dimension space
        if column in counts:
            counts[column] = counts[column].map(lambda value: "" if pd.isna(value) else str(int(value)))
    snps = pd.read_csv(folder / "truth_snps.tsv", sep="\t").fillna({"hit_snp": ""})
    lines = ["## Genetic association of the latents", "",
             "`--mode associate`: a linear GWAS of every latent dimension, adjusted for age, sex and 4 genetic PCs "
             "(`data/covariates.tsv`); a hit is P below 5e-8 over the number of latent dimensions (a planted "
             "trait's direction, `<space>-<trait>`, counts as one). `omnibus_loci` and `minp_loci`: loci of the "
             "omnibus (MOSTest) and min-P tests of each whole space, at P below 5e-8 over the number of spaces.", "",
             markdown_table(counts), "",
             f"Planted SNPs: `hit` when the SNP or a SNP within {WINDOW_KB:g} kb of it is a hit in any space; "
             "best -log10 P of the SNP itself over every dimension of every space.", "",
             markdown_table(snps, 2)]
    for picture in sorted(folder.glob("manhattan_*.png")):
        lines += ["", image(run, picture, f"Manhattan plot, {picture.stem.removeprefix('manhattan_')}")]
    return "\n".join(lines)


def interpret_section(run: DemoRun) -> str:
    from ml4ge.demo.report import image, markdown_table

    path = run.folder / "interpret_truth.tsv"
    if not path.is_file():
        return ""
    ranks = pd.read_csv(path, sep="\t")
    lines = ["## Which regions the trait- and SNP-selected dimensions change (PerDI)", "",
             "Each autoencoder's dimensions are interpreted with `--mode interpret` (up to "
             f"{MAX_INTERPRET_SAMPLES} subjects, +1 SD shifts, |t| smoothed with sigma {SMOOTH_SIGMA_VOXELS:g} "
             "voxel: PerDI's 3 mm kernel on this grid). `route` says how a dimension was chosen: `trait`, the "
             "dimension most correlated with the planted trait (|r| after removing age, sex and brain volume); "
             "`trait_direction`, the trait's ridge direction in the whole space (shifted by 1 SD of its projection); "
             "`snp`, the dimension with the smallest association P of the planted SNP. Rank 1 is the region the "
             "map is most enriched in (KS statistic) among all atlas regions; `merged` joins left and right.", "",
             markdown_table(ranks[[c for c in RANK_COLUMNS if c in ranks]], 2)]
    for model in run.plan.interpret:
        for picture in sorted((run.folder / f"interpret_{model}").glob("perdi_*/dim_*.png")):
            lines += ["", image(run, picture, f"PerDI {model} {picture.stem}")]
    return "\n".join(lines)
