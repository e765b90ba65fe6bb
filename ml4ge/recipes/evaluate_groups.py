"""``--mode evaluate_groups``: how well latent spaces separate known groups (method: :mod:`ml4ge.group_metrics`).

Meant for the contrastive VAE's salient and background means (``hidden_<tm>_<id>.tsv`` and
``hidden_<tm>_background_<id>.tsv`` of infer_encoders), but scores any latent tables.

Inputs:
    --latent_tables name=path ...   latent TSVs (``sample_id`` or ``FID IID`` first); a bare path is named after
                                    its file stem. Every table is scored on the labelled samples all of them hold.
    --phenotypes labels.csv         group labels keyed by sample id, in ``--group_column`` (default ``group``).
    --groups A B ...                score only these groups (e.g. the patients' subtypes; default: every group).
    --gmm_components K              Gaussian-mixture clusters (default 0: one per group).
    --gmm_fits N --random_seed S    NMI averaged over N fits seeded S, S + 1, ... (default 100, the seed's).

Outputs in ``<output_folder>/<id>/``: ``evaluate_groups.tsv`` (one row per table: silhouette, NMI mean/SD, its
chance level, ...), ``evaluate_groups_<name>.png`` per table (PCA, and UMAP when umap-learn is installed) and
``evaluate_groups_skipped.tsv`` (labelled samples left out, with the reason), each written atomically.
"""

from __future__ import annotations

import logging
import re

import pandas as pd

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.explore import write_tsv
from ml4ge.group_metrics import (
    METRIC_COLUMNS,
    GroupScores,
    available_embeddings,
    common_samples,
    group_labels,
    plot_groups,
    score_tables,
)
from ml4ge.latents import latent_tables, load_latents
from ml4ge.readers import read_table
from ml4ge.recipes.settings import RunSettings

log = logging.getLogger(__name__)
TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # a table's name goes into its PNG's file name


@flag_settings
class EvaluateGroupsSettings(RunSettings):
    """The flags of ``--mode evaluate_groups``: latent tables, the labels and the mixture fits."""

    mode = "evaluate_groups"
    latent_tables: tuple[str, ...]
    phenotypes: str | None
    group_column: str
    groups: tuple[str, ...]
    gmm_components: int
    gmm_fits: int


Settings = EvaluateGroupsSettings


def validate(args: EvaluateGroupsSettings) -> None:
    """Raises ValueError/FileNotFoundError/KeyError before any work when the flags cannot work."""
    tables = latent_tables(args.latent_tables)
    if not tables:
        raise ValueError("--mode evaluate_groups needs --latent_tables name=path ... (TSVs written by "
                         "infer_encoders).")
    bad = [name for name in tables if not TABLE_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"--latent_tables name {bad[0]!r} must be letters, digits, '_', '.' or '-' (it names a "
                         "PNG file); write name=path.")
    if not args.phenotypes:
        raise ValueError("--mode evaluate_groups needs --phenotypes labels.csv with a --group_column of group "
                         "labels.")
    labels = group_labels(read_table(args.phenotypes), args.group_column, args.groups)
    if args.gmm_components and args.gmm_components >= len(labels):
        raise ValueError(f"--gmm_components {args.gmm_components} needs more samples than the {len(labels)} "
                         "labelled ones.")


def skipped_samples(tables: dict[str, pd.DataFrame], labels: pd.Series) -> pd.DataFrame:
    """Each labelled sample a table lacks, with the reason (it is scored in no table: all share their samples)."""
    rows = [(sample_id, name, f"not in latent table {name}") for name, frame in tables.items()
            for sample_id in labels.index[~labels.index.isin(frame.index)]]
    return pd.DataFrame(rows, columns=["sample_id", "table", "reason"])


def run(args: EvaluateGroupsSettings) -> int:
    """Score every table against the labels, draw its embedding and write the outputs; returns 0."""
    folder = run_folder(args)
    tables = {name: load_latents(path) for name, path in latent_tables(args.latent_tables).items()}
    labels = group_labels(read_table(args.phenotypes), args.group_column, args.groups)
    skipped = skipped_samples(tables, labels)
    write_tsv(skipped, folder / "evaluate_groups_skipped.tsv")
    if not skipped.empty:
        log.warning("%d labelled samples are missing from some latent table and are not scored; see "
                    "evaluate_groups_skipped.tsv", skipped.sample_id.nunique())
    scores = score_tables(tables, labels, args.gmm_components, args.gmm_fits, args.random_seed)
    write_tsv(scores, folder / "evaluate_groups.tsv")
    ids = common_samples(tables, labels)  # the samples score_tables scored
    for row in scores.itertuples(index=False):
        plot_groups(row.table, tables[row.table].loc[ids].to_numpy(float), labels[ids].to_numpy(),
                    GroupScores(*row), folder / f"evaluate_groups_{row.table}.png", args.random_seed)
    log.info("embeddings drawn: %s (UMAP needs umap-learn)", ", ".join(available_embeddings()))
    print(scores[METRIC_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0
