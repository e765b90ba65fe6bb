"""The omnibus and min-P tests of a scan (:mod:`ml4ge.genetics.omnibus`): their permuted-genotype null, one
summary table per latent space, hits and the per-SNP best P for the Manhattan plot.

The null is fitted before the scan on ``permuted_snps`` SNPs in blocks spread evenly over the genotype file, each
block's samples reordered by one fixed permutation (per space, seeded), through the same filters and OLS as the
scan. The scan then adds, per chunk, the omnibus statistics of the SNPs it tested, from the per-dimension statistics
it computed anyway (the SNPs' correlations with the dimensions, mean-imputed where calls are missing: a sparse
product over the missing calls, and a small matrix product).

The table ``sumstats/<space>.glm.omnibus.gz`` has PLINK2 ``--glm``'s variant columns (TEST ``OMNIBUS``) and
``CHISQ`` (the omnibus chi-square, ``z' R^-1 z`` computed exactly: :mod:`ml4ge.genetics.omnibus`), ``DF`` (the
rank of ``R`` kept), ``P_CHISQ`` (the chi-square reference), ``P`` (the
permutation-calibrated omnibus P), ``MINP_DIM`` (the dimension with the smallest P), ``MINP_P`` (that P
calibrated for the number of dimensions) and ``ERRCODE``; ``LOG10_`` columns instead of P with ``log10``. Untestable
SNPs get NA statistics, as in the per-dimension tables.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ml4ge.genetics.glm import associate_chunk
from ml4ge.genetics.omnibus import OmnibusNull, OmnibusStatistics, combine, fit_null, whitening
from ml4ge.genetics.sumstats import VARIANT_COLUMNS, format_log10_p, format_p

OMNIBUS_TEST = "OMNIBUS"
BLOCK = 1_000  # permuted SNPs read at once (blocks spread over the genome)
HIT_COLUMNS = ["space", "dimension", "CHROM", "POS", "ID", "A1", "A2", "A1_FREQ", "N", "CHISQ", "LOG10P",
               "MINP_DIM"]  # dimension: "omnibus" or "minp" (the test)


def omnibus_file_name(space: str, compressed: bool = True) -> str:
    return f"{space}.glm.omnibus" + (".gz" if compressed else "")


def omnibus_columns(log10: bool = False) -> list[str]:
    p = ("LOG10_P_CHISQ", "LOG10_P", "LOG10_MINP_P") if log10 else ("P_CHISQ", "P", "MINP_P")
    return [*VARIANT_COLUMNS, "CHISQ", "DF", p[0], p[1], "MINP_DIM", p[2], "ERRCODE"]


def permuted_nulls(genotypes, rows: Mapping[str, np.ndarray], needed: np.ndarray, prepared: Mapping, settings,
                   snps: int, seed: int = 0) -> dict[str, OmnibusNull]:
    """name -> the :class:`OmnibusNull` of each space, fitted on ``snps`` permuted SNPs (see the module docstring).

    Args:
        rows: name -> the space's rows within the ``needed`` samples' dosages; prepared: name -> its
            :class:`PreparedPhenotypes`; settings: the scan's filters (:class:`ScanSettings`).
    """
    rng = np.random.default_rng(seed)
    order = {name: rows[name][rng.permutation(len(rows[name]))] for name in rows}
    whitenings = {name: whitening(prepared[name], settings.eigen_floor) for name in rows}  # first: refused early
    collected: dict[str, list] = {name: [] for name in rows}
    for start in _block_starts(genotypes.snp_count, snps):
        dosages = genotypes.read(needed, start, min(start + BLOCK, genotypes.snp_count))
        for name, permuted in order.items():
            statistics = associate_chunk(prepared[name], dosages[permuted], impute=settings.impute,
                                         imputed_correlations=True)
            collected[name].append(_passing(statistics, settings))
    return {name: fit_null(whitenings[name], prepared[name].samples - prepared[name].predictors, parts)
            for name, parts in collected.items()}


def _block_starts(total: int, snps: int) -> list[int]:
    """Starts of ``ceil(snps / BLOCK)`` blocks spread evenly over ``total`` SNPs (all SNPs when fewer)."""
    blocks = -(-min(snps, total) // BLOCK)
    return sorted({int(s) for s in np.linspace(0, max(total - BLOCK, 0), blocks)})


def _passing(statistics, settings):
    """``statistics`` with SNPs failing the scan's MAF or missingness filter set to NaN (left out of the fit)."""
    frequency = np.nan_to_num(statistics.a1_freq, nan=0.0)
    fails = (statistics.missing_rate > settings.geno) | (np.minimum(frequency, 1 - frequency) < settings.maf)
    log10_p = np.where(fails[:, None], np.nan, statistics.log10_p)
    return type(statistics)(**{**statistics.__dict__, "log10_p": log10_p})


def chunk_results(space, statistics, null: OmnibusNull, kept: pd.DataFrame, tested: np.ndarray,
                  threshold_log10: float) -> tuple[OmnibusStatistics, pd.DataFrame, pd.DataFrame]:
    """``(omnibus statistics of every SNP, best rows of the tested SNPs, hit rows)`` of one chunk.

    Args:
        statistics: with ``imputed_r`` (:func:`ml4ge.genetics.glm.associate_chunk`).
        kept: the variant rows (``scan._rows``) of the ``tested`` SNPs.
    """
    combined = combine(statistics, null)
    log10_p, min_p = combined.log10_p[tested], combined.min_p_log10_p[tested]
    best = kept[["CHROM", "POS", "ID"]].assign(LOG10P=log10_p)
    dimension = np.asarray(space.dimensions, dtype=object)[combined.min_p_dimension[tested]]
    rows = kept[["CHROM", "POS", "ID", "A1", "A2", "A1_FREQ", "N"]].assign(CHISQ=combined.chisq[tested],
                                                                             MINP_DIM=dimension)
    hits = pd.concat([rows[log10_p >= threshold_log10].assign(dimension="omnibus", LOG10P=log10_p[
        log10_p >= threshold_log10]), rows[min_p >= threshold_log10].assign(dimension="minp", LOG10P=min_p[
            min_p >= threshold_log10])], ignore_index=True).assign(space=space.name)
    return combined, best, hits[HIT_COLUMNS]


def omnibus_text(prefix: list[str], combined: OmnibusStatistics, written: np.ndarray, rank: int, dimensions,
               errcode: np.ndarray, log10: bool) -> str:
    """The omnibus table's rows of the ``written`` SNPs; ``prefix`` holds their formatted variant columns."""
    text = format_log10_p if log10 else format_p
    chisq = ["NA" if not np.isfinite(v) else f"{v:.6g}" for v in combined.chisq[written].tolist()]
    valid = np.isfinite(combined.chisq[written])
    names = np.where(valid, np.asarray(dimensions, dtype=object)[combined.min_p_dimension[written]], "NA")
    columns = zip(prefix, chisq, np.where(valid, str(rank), "NA"), text(combined.log10_p_chisq[written]),
                  text(combined.log10_p[written]), names, text(combined.min_p_log10_p[written]), errcode)
    return "".join("\t".join(row) + "\n" for row in columns)
