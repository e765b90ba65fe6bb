"""One table that sets a study's models side by side (``--study vit``: the CNN and the ViT autoencoder of T1;
``--study ml4h``: autoencoders and DropFuse models with ml4h's blocks, the corrected and the exact pair loss).

Rows: training (epochs run, wall and CPU time of the train stage); per planted SNP, the latent dimensions of each
space with a GWAS hit within the locus window and the SNP's best -log10 P; per planted trait, R^2 beyond age and
sex (compare_adjusted, the age + sex baseline beside it); for each pair model, cross-modal retrieval and cosines
on the test split (:mod:`ml4ge.demo.pair_agreement`); per planted trait, the PerDI rank of its region (left and
right merged) for the dimension chosen by trait and the one chosen by the SNP. Columns: the study's latent spaces
(a model's name; ``<model>_<input>`` for each of a pair model's two). It reads the stages' outputs only; the report
writes it to ``<demo>/study_table.tsv``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ml4ge.demo.context import space_models
from ml4ge.demo.pair_agreement import agreement_rows
from ml4ge.demo.truth import WINDOW_KB, load_truth

if TYPE_CHECKING:
    from ml4ge.demo.context import DemoRun

TABLE_NAME = "study_table.tsv"
COVARIATES = "covariates"  # compare_adjusted's age + sex space


def _read(path: Path, **kwargs) -> pd.DataFrame | None:
    return pd.read_csv(path, sep="\t", **kwargs) if path.is_file() else None


def training_row(run: DemoRun, model: str) -> str:
    """``10 epochs, 151 s wall, 290 s CPU`` from the train stage's record and the training log."""
    record = run.stage_record(f"train_{model}")
    log = run.folder / model / "training_log.csv"
    if not record.is_file():
        return "not trained"
    stage = json.loads(record.read_text())
    epochs = len(pd.read_csv(log)) if log.is_file() else "?"
    return f"{epochs} epochs, {stage['wall_s']:.0f} s wall, {stage['cpu_s']:.0f} s CPU"


def gwas_cell(snp: dict, space: str, stats: pd.DataFrame, hits: pd.DataFrame) -> str:
    """``2 dims, -log10 P 12.3`` (dimensions with a hit within the window) or ``none, best 4.1``."""
    near = hits[(hits.space == space) & (hits.CHROM.astype(str) == str(snp["chrom"]))
                & ((hits.POS - snp["pos"]).abs() <= WINDOW_KB * 1e3)]
    own = stats[(stats.space == space) & (stats.ID == snp["id"])]
    best = f"{own.LOG10P.max():.1f}" if not own.empty else "n/a"
    dimensions = near.dimension.nunique()
    return f"{dimensions} dims, -log10 P {best}" if dimensions else f"none, best -log10 P {best}"


def gwas_rows(run: DemoRun, spaces: list[str]) -> list[dict]:
    folder = run.folder / "associate"
    stats = _read(folder / "planted_sumstats.tsv", dtype={"ID": str})
    hits = _read(folder / "associate_hits.tsv", dtype={"ID": str, "CHROM": str})
    if stats is None or hits is None:
        return []
    return [{"measure": f"GWAS hits, {snp['trait']} SNP {snp['id']}",
             **{space: gwas_cell(snp, space, stats, hits) for space in spaces}}
            for snp in load_truth(run.cohort)["snps"]]


def r2_rows(run: DemoRun, spaces: list[str]) -> list[dict]:
    summary = _read(run.folder / "compare_adjusted" / "compare_summary.tsv")
    if summary is None:
        return []
    r2 = summary[summary.metric == "r2"].set_index(["phenotype", "space"])["mean"]
    rows = []
    for trait in dict.fromkeys(r2.index.get_level_values("phenotype")):
        cells = {space: f"{r2[(trait, space)]:.2f}" for space in [*spaces, COVARIATES] if (trait, space) in r2.index}
        rows.append({"measure": f"R^2 {trait}, with age + sex", **cells})
    return rows


def perdi_rows(run: DemoRun, models: tuple[str, ...]) -> list[dict]:
    ranks = _read(run.folder / "interpret_truth.tsv")
    if ranks is None:
        return []
    merged = ranks[ranks.merged.astype(str) == "True"]
    rows = []
    for (trait, region), part in merged.groupby(["trait", "region"], sort=False):
        cells = {}
        for model in models:
            own = part[part.model == model].set_index("route")
            routes = [f"{int(own.loc[r, 'ks_rank'])}" if r in own.index else "-" for r in ("trait", "snp")]
            if not own.empty:
                cells[model] = f"{routes[0]} / {routes[1]} of {int(own.regions.iloc[0])}"
        rows.append({"measure": f"PerDI rank of {region} ({trait}), trait / SNP route", **cells})
    return rows


def training_cells(run: DemoRun, spaces: dict[str, str]) -> dict[str, str]:
    """:func:`training_row` under each model's first space; its other space (a pair model's) says it is the same."""
    cells, seen = {}, set()
    for space, model in spaces.items():
        cells[space] = "same model" if model in seen else training_row(run, model)
        seen.add(model)
    return cells


def study_table(run: DemoRun) -> pd.DataFrame:
    """The study's latent spaces side by side (see the module docstring); ``measure`` plus one column per space."""
    spaces = space_models(run)
    rows = [{"measure": "training", **training_cells(run, spaces)}, *gwas_rows(run, list(spaces)),
            *r2_rows(run, list(spaces)), *agreement_rows(run), *perdi_rows(run, run.plan.interpret)]
    return pd.DataFrame(rows).reindex(columns=["measure", *spaces, COVARIATES]).dropna(axis=1, how="all").fillna("")
