"""``--mode compare``: which latent space carries more signal about the phenotypes (method: :mod:`ml4ge.compare`).

Inputs:
    --latent_tables name=path ...   latent TSVs from infer_encoders (``sample_id`` or ``FID IID`` first); a bare
                                    path is named after its file stem.
    --phenotypes table.csv          phenotypes keyed by sample id; targets are ``--output_tensors`` (default:
                                    every column that is not a covariate); or
    --tensors hd5/ --output_tensors age sex   scalar TensorMaps read from the HD5 files (covariates too).
    --covariates c1 c2              added to every latent space; a covariates-only baseline is scored as well.
    --folds K --random_seed S       seeded K-fold CV, the same folds for every space.
    --pairs A B                     fold-by-fold differences A - B (default: every pair of latent tables).
    --num_workers N                 folds fitted at once (threads); the numbers do not depend on it.
    --association_counts c.tsv ...  associate_counts.tsv of associate runs: significant SNP-dimension pairs and
                                    loci per latent space join the report (``compare_genetics.tsv``).

Outputs in ``<output_folder>/<id>/``: ``compare_scores.tsv``, ``compare_summary.tsv``, ``compare_pairs.tsv``,
``compare_report.md`` and ``compare_bars.png`` (and ``compare_genetics.tsv``), each written atomically.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.atomic import write_text
from ml4ge.compare import (
    COVARIATES_SPACE,
    ComparisonResult,
    all_pairs,
    compare_latent_spaces,
    genetic_signal,
    load_latents,
    plot_comparison,
)
from ml4ge.explore import SAMPLE_ERRORS, map_files, write_tsv
from ml4ge.hd5 import hd5_paths, open_sample, sample_id_from_path
from ml4ge.latents import latent_tables
from ml4ge.lookup import resolve_all
from ml4ge.readers import read_table
from ml4ge.recipes.settings import RunSettings

log = logging.getLogger(__name__)


@flag_settings
class CompareSettings(RunSettings):
    """The flags of ``--mode compare``: latent tables, phenotypes and the cross-validation."""

    mode = "compare"
    latent_tables: tuple[str, ...]
    phenotypes: str | None
    tensors: str | None
    output_tensors: tuple[str, ...]
    tensormap_prefix: str | None
    covariates: tuple[str, ...]
    folds: int
    pairs: tuple[tuple[str, str], ...]
    association_counts: tuple[str, ...]


Settings = CompareSettings


def validate(args: CompareSettings) -> None:
    """Raises ValueError/FileNotFoundError/KeyError before any work when the flags cannot work."""
    tables = latent_tables(args.latent_tables)
    if not tables:
        raise ValueError("--mode compare needs --latent_tables name=path ... (TSVs written by infer_encoders).")
    if not args.phenotypes and not args.tensors:
        raise ValueError("--mode compare needs --phenotypes table.csv, or --tensors with --output_tensors age ...")
    if args.phenotypes:
        columns = read_table(args.phenotypes).columns
        missing = [name for name in [*args.output_tensors, *args.covariates] if name not in columns]
        if missing:
            raise ValueError(f"--phenotypes {args.phenotypes} has no column {', '.join(missing)}; it has "
                             f"{', '.join(map(str, columns))}.")
    else:
        if not Path(args.tensors).is_dir():
            raise FileNotFoundError(f"--tensors {args.tensors!r} is not a folder of .hd5 files.")
        if not args.output_tensors:
            raise ValueError("--tensors without --phenotypes needs --output_tensors naming scalar TensorMaps.")
        for tm in resolve_all([*args.output_tensors, *args.covariates], args.tensormap_prefix):
            if len(tm.shape) != 1 or (tm.channel_map is None and tm.shape != (1,)):
                raise ValueError(f"compare reads scalar TensorMaps; {tm.name!r} has shape {tm.shape}.")
    for path in args.association_counts:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--association_counts {path!r} does not exist (associate_counts.tsv of an "
                                    "associate run).")
    names = set(tables) | ({COVARIATES_SPACE} if args.covariates else set())
    unknown = sorted({name for pair in args.pairs for name in pair} - names)
    if unknown:
        raise ValueError(f"--pairs names {unknown} are not latent tables; choose from {', '.join(sorted(names))}.")


def phenotype_row(path, tmaps) -> tuple[dict, dict]:
    """Scalar values of one sample (categorical maps: class index, or 0/1 per class beyond two) and errors."""
    sample_id = sample_id_from_path(path)
    values, errors = {"sample_id": sample_id}, {}
    try:
        hd5 = open_sample(path)
    except OSError as error:
        return values, {tm.name: f"{type(error).__name__}: {error}" for tm in tmaps}
    with hd5:
        for tm in tmaps:
            try:
                raw = tm.read_raw(hd5, sample_id)
                tm.validate(raw)
                fitted = tm.fit_shape(raw).reshape(-1)
            except SAMPLE_ERRORS as error:
                errors[tm.name] = f"{type(error).__name__}: {error}"
                continue
            if tm.channel_map is None:
                values[tm.name] = float(fitted[0])
            elif len(tm.channel_map) == 2:
                values[tm.name] = float(np.argmax(fitted))
            else:
                values.update({f"{tm.name}_{label}": float(fitted[i]) for label, i in tm.channel_map.items()})
    return values, errors


def phenotypes_from_hd5(args: CompareSettings, folder: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Read ``--output_tensors`` and ``--covariates`` TensorMaps from ``--tensors``; failures go to a TSV."""
    targets = resolve_all(args.output_tensors, args.tensormap_prefix)
    covariates = resolve_all(args.covariates, args.tensormap_prefix)
    tmaps = list(dict.fromkeys([*targets, *covariates]))
    rows = map_files(partial(phenotype_row, tmaps=tuple(tmaps)), [str(p) for p in hd5_paths(args.tensors)],
                     args.num_workers, "read phenotypes")
    frame = pd.DataFrame([values for values, _ in rows]).set_index("sample_id")
    skipped = [(values["sample_id"], name, reason) for values, errors in rows for name, reason in errors.items()]
    if skipped:
        write_tsv(pd.DataFrame(skipped, columns=["sample_id", "tensor_map", "reason"]), folder / "compare_skipped.tsv")
        log.warning("%d phenotype values could not be read; see compare_skipped.tsv", len(skipped))

    def columns(tm):
        wide = tm.channel_map is not None and len(tm.channel_map) > 2
        return [f"{tm.name}_{label}" for label in tm.channel_map] if wide else [tm.name]

    frame = frame.reindex(columns=[c for tm in tmaps for c in columns(tm)])
    return frame, [c for tm in targets for c in columns(tm)], [c for tm in covariates for c in columns(tm)]


def load_phenotypes(args: CompareSettings, folder: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The phenotype frame, the target columns and the covariate columns."""
    if not args.phenotypes:
        return phenotypes_from_hd5(args, folder)
    frame = read_table(args.phenotypes)
    targets = list(args.output_tensors) or [c for c in frame.columns if c not in args.covariates]
    return frame, targets, list(args.covariates)


def report(result: ComparisonResult, args: CompareSettings, n_samples: int,
           genetics: pd.DataFrame | None = None) -> str:
    """A markdown summary: method, one table of mean ± SD per phenotype and space, the paired differences."""
    table = result.summary.assign(value=[f"{m:.3f} ± {s:.3f}" for m, s in zip(result.summary["mean"],
                                                                               result.summary.sd.fillna(0))])
    wide = table.pivot_table(index=["phenotype", "metric"], columns="space", values="value", aggfunc="first",
                             sort=False)
    lines = [f"# Latent space comparison: {args.id}", "",
             f"{n_samples} samples in every latent table; {args.folds}-fold CV (seed {args.random_seed}), the same "
             "folds for every space. Continuous targets: standardized ridge (alpha by efficient LOO), R^2. "
             "Binary targets: standardized logistic regression (C by inner 3-fold CV), ROC-AUC of probabilities.",
             "", "## Mean ± SD over folds", "", _markdown(wide.reset_index())]
    if args.covariates:
        lines += ["", f"Covariates ({', '.join(args.covariates)}) are added to every space; "
                  f"`{COVARIATES_SPACE}` is the covariates-only baseline."]
    if not result.pair_differences.empty:
        pairs = result.pair_differences.round({"difference": 4, "ci_low": 4, "ci_high": 4})
        pairs = pairs.assign(p_value=[f"{p:.2g}" for p in pairs.p_value])
        lines += ["", "## Paired differences A - B (95% t-interval, Nadeau-Bengio corrected variance)", "",
                  _markdown(pairs[["a", "b", "phenotype", "metric", "difference", "ci_low", "ci_high", "p_value"]])]
    if genetics is not None and not genetics.empty:
        shown = genetics.dropna(axis=1, how="all").assign(threshold_p=[f"{p:.2g}" for p in genetics.threshold_p])
        lines += ["", "## Genetic signal (associate runs)", "",
                  "Significant SNP-dimension pairs at P < threshold_p, independent loci (distance clumping) and, "
                  "with a replication cohort, what replicated.", "", _markdown(shown)]
    return "\n".join(lines) + "\n"


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * frame.shape[1]
    body = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def run(args: CompareSettings) -> int:
    """Compare the latent tables and write the outputs; returns 0."""
    folder = run_folder(args)
    latents = {name: load_latents(path) for name, path in latent_tables(args.latent_tables).items()}
    phenotypes, targets, covariates = load_phenotypes(args, folder)
    pairs = [tuple(pair) for pair in args.pairs] or all_pairs(list(latents))
    result = compare_latent_spaces(latents, phenotypes, targets, covariates, folds=args.folds,
                                   seed=args.random_seed, pairs=pairs, n_jobs=max(1, args.num_workers))
    n_samples = len(set.intersection(*(set(frame.index) for frame in latents.values())))
    write_tsv(result.scores, folder / "compare_scores.tsv")
    write_tsv(result.summary, folder / "compare_summary.tsv")
    write_tsv(result.pair_differences, folder / "compare_pairs.tsv")
    genetics = genetic_signal(args.association_counts, list(latents)) if args.association_counts else None
    if genetics is not None:
        write_tsv(genetics, folder / "compare_genetics.tsv")
    markdown = folder / "compare_report.md"
    write_text(markdown, report(result, args, n_samples, genetics))
    plot_comparison(result, folder / "compare_bars.png", covariates)
    print(markdown.read_text())
    return 0
