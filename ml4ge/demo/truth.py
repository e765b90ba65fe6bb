"""Truth checks of the demo: do the GWAS of the latents find the planted SNPs, and do PerDI maps of the latent
dimensions that carry a planted effect point at the region it was planted in?

The interpret recipe chooses what to map (:mod:`ml4ge.interpret.choose`: by trait, the dimension most correlated
with a planted trait once age, sex and brain volume are removed from both, and the trait's direction; by SNP, the
seed studies' SNP -> endophenotype -> region route, the dimension with the smallest association P of a planted
SNP). Each chosen map ranks the atlas regions (:func:`planted_ranks`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ml4ge.interpret.choose import dimension_index

WINDOW_KB = 250.0  # a planted SNP counts as found when a hit lies within this distance (associate's --clump_kb)
SNP_TRUTH_COLUMNS = ["id", "chrom", "pos", "trait", "hit", "hit_snp", "best_log10p", "best_space", "best_dimension"]


def load_truth(cohort: Path) -> dict:
    """``<cohort>/truth.json`` as a dict."""
    return json.loads((Path(cohort) / "truth.json").read_text())


def planted_sumstats(sumstats: Path, snp_ids) -> pd.DataFrame:
    """Rows of every ``<space>.<dimension>.glm.linear.gz`` (PLINK2's format) in ``sumstats`` for the SNPs ``snp_ids``.

    Returns:
        ``space, dimension (int), ID, LOG10P, BETA`` for each table and SNP (LOG10P: -log10 of the table's P).

    Raises:
        FileNotFoundError: if ``sumstats`` holds no summary statistics.
    """
    from ml4ge.genetics.sumstats import read_sumstats

    wanted, frames = set(snp_ids), []
    paths = sorted(Path(sumstats).glob("*.glm.linear.gz"))
    if not paths:
        raise FileNotFoundError(f"{sumstats} holds no *.glm.linear.gz; run --mode associate first.")
    for path in paths:
        space, dimension = path.name.removesuffix(".glm.linear.gz").rsplit(".", 1)
        if not dimension.startswith("latent_"):  # a trait direction's GWAS (<space>-<trait>.direction)
            continue
        table = read_sumstats(path, usecols=["ID", "LOG10P", "BETA"])
        frames.append(table[table.ID.isin(wanted)].assign(space=space, dimension=dimension_index(dimension)))
    columns = ["space", "dimension", "ID", "LOG10P", "BETA"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def snp_truth(truth: dict, stats: pd.DataFrame, hits: pd.DataFrame, window_kb: float) -> pd.DataFrame:
    """One row per planted SNP: is it, or a SNP within ``window_kb`` of it, a hit; its best -log10 P and where.

    Args:
        truth: ``truth.json``; ``stats``: :func:`planted_sumstats`; ``hits``: ``associate_hits.tsv``.
    """
    rows = []
    for snp in truth["snps"]:
        near = hits[(hits.CHROM.astype(str) == str(snp["chrom"])) & ((hits.POS - snp["pos"]).abs() <= window_kb * 1e3)]
        own = stats[stats.ID == snp["id"]]
        best = own.loc[own.LOG10P.idxmax()] if not own.empty else None
        rows.append({"id": snp["id"], "chrom": snp["chrom"], "pos": snp["pos"], "trait": snp["trait"],
                     "hit": not near.empty, "hit_snp": ", ".join(sorted(set(near.ID))[:3]),
                     "best_log10p": np.nan if best is None else round(float(best.LOG10P), 2),
                     "best_space": "" if best is None else best.space,
                     "best_dimension": -1 if best is None else int(best.dimension)})
    return pd.DataFrame(rows, columns=SNP_TRUTH_COLUMNS)


def planted_ranks(maps: Path, atlas: Path, labels: Path, chosen: pd.DataFrame, regions: dict) -> pd.DataFrame:
    """Rank of each planted region of each chosen dimension's PerDI map, per hemisphere and left/right merged.

    Args:
        maps: ``perdi_<tmap>/`` folder holding ``dim_<d>.nii.gz``.
        atlas, labels: the cohort's ``atlas.nii.gz`` and ``atlas_labels.tsv``.
        chosen: rows with ``trait`` and ``dimension`` (an index, or a direction's name; other columns are carried
            over).
        regions: ``{trait: [atlas region names]}`` of ``truth.json``.

    Returns:
        the ``chosen`` columns plus ``merged, region, ks_rank, mean_rank, regions, top_region``.
    """
    import nibabel as nib

    from ml4ge.interpret.regions import rank_regions, without_side
    from ml4ge.interpret.study import load_atlas

    rows = []
    for row in chosen.to_dict(orient="records"):
        stem = f"dim_{row['dimension']}" if str(row["dimension"]).isdigit() else f"direction_{row['dimension']}"
        image = nib.load(str(Path(maps) / f"{stem}.nii.gz"))
        values = image.get_fdata()
        for merge in (False, True):
            ranking = rank_regions(values, load_atlas(atlas, labels, values.shape, image.affine, merge))
            ranking = ranking.set_index("region")
            names = sorted({without_side(n) for n in regions[row["trait"]]}) if merge else regions[row["trait"]]
            rows += [{**row, "merged": merge, "region": name, "ks_rank": int(ranking.loc[name, "ks_rank"]),
                      "mean_rank": int(ranking.loc[name, "mean_rank"]), "regions": len(ranking),
                      "top_region": ranking.index[0]} for name in names]
    return pd.DataFrame(rows)
