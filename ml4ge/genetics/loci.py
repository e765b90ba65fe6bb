"""Hits, independent loci by distance clumping, replication, and the headline counts of a scan.

- Loci: the hit SNPs of a space (any dimension) are ranked by their best -log10 P; the best unassigned SNP leads a
  locus that takes every unassigned hit SNP on its chromosome within ``window_kb`` of it; repeat. This is PLINK's
  ``--clump`` without the LD criterion (``--clump-r2 0``), done across dimensions as UDIP's non-maximal suppression.
- Replication: a hit ``(SNP, dimension)`` replicates when the same SNP and dimension in the replication cohort has
  ``P < alpha / number of hits`` and a beta of the same sign (betas are flipped when the replication genotypes count
  the other allele; SNPs with other alleles do not replicate).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LOCUS_COLUMNS = ["space", "locus", "CHROM", "ID", "POS", "dimension", "LOG10P", "start", "end", "snps", "pairs",
                 "dimensions"]
REPLICATION_COLUMNS = ["space", "dimension", "ID", "CHROM", "POS", "A1", "BETA", "LOG10P", "locus",
                       "replication_A1", "replication_BETA", "replication_LOG10P", "replication_N", "same_sign",
                       "replicated"]


def clump(hits: pd.DataFrame, window_kb: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Distance-clump the hits of each space (see the module docstring).

    Args:
        hits: rows with space, dimension, CHROM, POS, ID, LOG10P (one per significant SNP-dimension pair).
        window_kb: half-width of a locus around its lead SNP, in kilobases.

    Returns:
        ``(hits with a locus column, loci)``; loci are numbered from 1 within each space, strongest first.
    """
    if hits.empty:
        return hits.assign(locus=pd.Series(dtype=np.int64)), pd.DataFrame(columns=LOCUS_COLUMNS)
    window = window_kb * 1000
    labelled, loci = [], []
    for space, group in hits.groupby("space", sort=False):
        best = group.sort_values("LOG10P", ascending=False).drop_duplicates("ID")
        assignment: dict[str, int] = {}
        for row in best.itertuples(index=False):
            if row.ID in assignment:
                continue
            near = best[(best.CHROM == row.CHROM) & ((best.POS - row.POS).abs() <= window) & ~best.ID.isin(assignment)]
            number = len(loci_of(loci, space)) + 1
            assignment.update(dict.fromkeys(near.ID, number))
            members = group[group.ID.isin(near.ID)]
            loci.append((space, number, row.CHROM, row.ID, row.POS, row.dimension, row.LOG10P, int(near.POS.min()),
                         int(near.POS.max()), len(near), len(members),
                         ",".join(sorted(members.dimension.unique(), key=_natural))))
        labelled.append(group.assign(locus=group.ID.map(assignment).astype(np.int64)))
    return pd.concat(labelled, ignore_index=True), pd.DataFrame(loci, columns=LOCUS_COLUMNS)


def loci_of(loci: list[tuple], space: str) -> list[tuple]:
    return [locus for locus in loci if locus[0] == space]


def _natural(name: str):
    """``latent_2`` before ``latent_10``."""
    head, _, tail = str(name).rpartition("_")
    return (head, int(tail)) if tail.isdigit() else (str(name), -1)


def replicate(hits: pd.DataFrame, replication: pd.DataFrame, alpha: float = 0.05) -> tuple[pd.DataFrame, float]:
    """Look the hits up in the replication scan's rows (same columns as hits).

    Returns:
        ``(table, threshold_p)`` with one row per hit (replication columns NaN where the SNP was not tested).
    """
    threshold = alpha / max(len(hits), 1)
    columns = ["space", "dimension", "ID", "A1", "A2", "BETA", "LOG10P", "N"]
    other = replication[columns].rename(columns={c: f"replication_{c}" for c in columns[3:]})
    table = hits.merge(other, on=["space", "dimension", "ID"], how="left")
    same = table.A1.eq(table.replication_A1) & table.A2.eq(table.replication_A2)
    swapped = table.A1.eq(table.replication_A2) & table.A2.eq(table.replication_A1)
    table["replication_BETA"] = np.where(same, table.replication_BETA, np.where(swapped, -table.replication_BETA,
                                                                                np.nan))
    table["replication_A1"] = np.where(swapped, table.replication_A2, table.replication_A1)
    table["same_sign"] = np.sign(table.BETA) == np.sign(table.replication_BETA)
    table["replicated"] = table.same_sign & (table.replication_LOG10P >= -np.log10(threshold))
    if "locus" not in table:
        table["locus"] = np.nan
    return table[REPLICATION_COLUMNS], threshold


def headline_counts(spaces: dict[str, dict], hits: pd.DataFrame, loci: pd.DataFrame,
                    replication: pd.DataFrame | None) -> pd.DataFrame:
    """One row per space: the significant SNP-dimension pairs, SNPs and loci, and what replicated.

    Args:
        spaces: name -> facts already known (dimensions, samples, snps_tested, threshold_p, ...).
    """
    rows = []
    for name, facts in spaces.items():
        own = hits[hits.space == name]
        row = {"space": name, **facts, "significant_pairs": len(own), "significant_snps": own.ID.nunique(),
               "loci": int((loci.space == name).sum())}
        if replication is not None:
            mine = replication[replication.space == name]
            row["replicated_pairs"] = int(mine.replicated.sum())
            row["replicated_loci"] = int(mine.loc[mine.replicated, "locus"].nunique())
        rows.append(row)
    return pd.DataFrame(rows)
