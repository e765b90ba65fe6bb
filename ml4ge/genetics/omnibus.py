"""Multivariate association of one SNP with a whole latent space: the MOSTest omnibus test and the min-P test
(van der Meer et al. 2020).

- **omnibus**: the joint test of the SNP on every dimension, MOSTest's ``z' R^-1 z`` (``R`` the correlation of the
  dimensions' z-scores under the null, which is the correlation of the phenotypes' residuals after the covariates).
  It is computed exactly: with ``r`` the SNP's correlations with the dimensions after the covariates, missing calls
  replaced by its mean so that every sample enters every dimension's model, ``R^2 = r' R^-1 r`` is the SNP's
  multivariate R^2 on the space, and the statistic is Bartlett's chi-square for Wilks' lambda,
  ``X = -(n - p - (k + 2) / 2) log(1 - R^2)`` (``p`` the intercept and covariates, ``k`` the rank of ``R`` kept),
  which follows ``chi2(k)`` closely even where ``k`` is a sizeable fraction of ``n`` (the exact law is an F of
  ``R^2``). Multiplying each dimension's z-score (from its t statistic, on the SNP's observed samples) by ``R^-1``
  instead, as MOSTest does, is the same test for large ``n`` and few missing calls, but ``R^-1`` amplifies their
  small inconsistencies with ``R`` (the t to z conversion, each SNP's own samples) by one over its eigenvalues: with
  near-collinear dimensions it gave -log10 P of 100-2,000 where the exact test gave 5-15. ``R`` is regularised by
  dropping its eigen-directions with eigenvalue below ``EIGEN_FLOOR`` of the largest (keeping at most
  ``n - p - 2``); each direction kept costs a degree of freedom.
- **min-P**: the smallest per-dimension P. Its null distribution depends on the dimensions' correlation and on
  the level: ``P(min P < u) = D_eff(u) u`` with ``D_eff`` between 1 and D, growing towards D as ``u`` falls.

Calibration, as MOSTest: a fixed permutation of the samples is applied to the genotypes of a subset of SNPs spread
over the genome (the permuted-genotype null), and (a) a gamma distribution is fitted to the permuted omnibus
statistics by maximum likelihood (it is ``chi2(k)``, shape ``k/2`` and scale 2, when the reference holds), giving
the omnibus P; (b) the min-P is calibrated on the permuted min-P values: their empirical distribution where it has
``TAIL_SNPS`` or more values below, and beyond that ``D_eff u`` with ``D_eff`` measured at that last resolved level
(``D_eff`` still grows further into the tail, so a genome-wide figure is slightly optimistic; Bonferroni, ``D u``,
bounds it). The chi-square P is kept beside the calibrated one, and the permuted null's genomic inflation against
it is reported (1.0 when the reference holds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from ml4ge.genetics.glm import ChunkStatistics, PreparedPhenotypes
from ml4ge.genetics.student_t import LOG10

EIGEN_FLOOR = 1e-4  # eigenvalues of R below this fraction of the largest are dropped (regularisation)
MIN_PERMUTED_SNPS = 200  # fewer permuted statistics cannot fit the null's tail
TAIL_SNPS = 50  # the permuted min-P values below the level where the empirical null gives way to D_eff u


@dataclass(frozen=True)
class OmnibusNull:
    """The null of one space's omnibus and min-P tests.

    Attributes:
        whitening: (k, D) with ``|whitening r|^2 = r' R_k^+ r`` (``R`` regularised to rank ``k``).
        residual_df: ``n - p``, the samples less the intercept and covariates (Bartlett's factor).
        shape, scale: the gamma distribution fitted to the permuted omnibus statistics.
        effective_dimensions: ``D_eff`` at the smallest level the permuted min-P values resolve.
        permuted_snps: how many permuted SNPs the fits used.
        lambda_gc: the permuted statistics' median over the chi-square reference's median (1 when it holds).
        permuted_min_log10_p: the permuted min-P values (-log10), ascending.
    """

    whitening: np.ndarray
    residual_df: int
    shape: float = np.nan
    scale: float = np.nan
    effective_dimensions: float = np.nan
    permuted_snps: int = 0
    lambda_gc: float = np.nan
    permuted_min_log10_p: np.ndarray | None = None

    @property
    def rank(self) -> int:
        return self.whitening.shape[0]

    def facts(self) -> dict[str, float]:
        """The null's figures for ``associate_counts``."""
        return {"omnibus_df": self.rank, "omnibus_null_shape": self.shape, "omnibus_null_scale": self.scale,
                "omnibus_lambda_permuted": self.lambda_gc, "minp_effective_dimensions": self.effective_dimensions,
                "permuted_snps": self.permuted_snps}


@dataclass(frozen=True)
class OmnibusStatistics:
    """Per SNP of a chunk: omnibus statistic and -log10 P (chi-square reference and calibrated), min-P and its
    dimension (index) and calibrated -log10 P; NaN where the SNP has no statistics."""

    chisq: np.ndarray
    log10_p_chisq: np.ndarray
    log10_p: np.ndarray
    min_p_dimension: np.ndarray
    min_log10_p: np.ndarray
    min_p_log10_p: np.ndarray


def null_correlation(prepared: PreparedPhenotypes) -> np.ndarray:
    """(D, D) correlation of the residualised phenotypes: the null correlation of the dimensions' statistics."""
    scale = np.sqrt(prepared.residual_ss)
    return (prepared.residuals.T @ prepared.residuals) / np.outer(scale, scale)


def whitening(prepared: PreparedPhenotypes, floor: float = EIGEN_FLOOR) -> np.ndarray:
    """(k, D) ``W`` with ``W'W = R_k^+`` for the phenotypes' null correlation ``R``: its eigen-directions with
    eigenvalue >= ``floor`` x the largest (at most ``n - p - 2``, so that the test keeps degrees of freedom for the
    residuals), each scaled by 1/sqrt(eigenvalue)."""
    values, vectors = np.linalg.eigh(null_correlation(prepared))
    order = np.argsort(values)[::-1]
    kept = min(int(np.count_nonzero(values >= floor * values.max())), prepared.samples - prepared.predictors - 2)
    if kept < 1:
        raise ValueError(f"{prepared.samples} samples leave no degrees of freedom for an omnibus test after "
                         f"{prepared.predictors - 1} covariates and the intercept.")
    keep = order[:kept]
    return (vectors[:, keep] / np.sqrt(values[keep])).T


def log10_gamma_sf(x: np.ndarray, shape: float, scale: float) -> np.ndarray:
    """-log10 of the upper tail of a gamma distribution at ``x``, finite where the tail underflows (there from the
    asymptotic series ``Q(a, y) ~ y^(a-1) e^-y / Gamma(a) (1 + (a-1)/y + (a-1)(a-2)/y^2)``).

    Example:
        >>> float(np.round(log10_gamma_sf(np.array([3.841459]), 0.5, 2.0)[0], 4))  # chi2(1) at P = 0.05
        1.301
    """
    y = np.asarray(x, dtype=np.float64) / scale
    with np.errstate(invalid="ignore", divide="ignore"):
        tail = special.gammaincc(shape, y)
        out = -np.log10(tail)
        tiny = np.isfinite(y) & (tail < 1e-280)
        a, t = shape, y[tiny]
        series = 1 + (a - 1) / t + (a - 1) * (a - 2) / t ** 2
        out[tiny] = -((a - 1) * np.log(t) - t - special.gammaln(a) + np.log(series)) / LOG10
    return np.where(np.isfinite(y), out, np.nan)


def calibrated_min_p(min_log10_p: np.ndarray, permuted: np.ndarray, effective_dimensions: float) -> np.ndarray:
    """-log10 of the min-P's null P: the fraction of ``permuted`` (ascending -log10 min-P) at least as extreme, and
    ``D_eff p`` beyond the ``TAIL_SNPS``-th most extreme permuted value (see the module docstring)."""
    q = np.asarray(min_log10_p, dtype=np.float64)
    edge = permuted[-TAIL_SNPS]
    extreme = len(permuted) - np.searchsorted(permuted, np.nan_to_num(q, nan=0.0), side="left")
    with np.errstate(divide="ignore"):
        empirical = -np.log10(np.maximum(extreme, 1) / len(permuted))
    out = np.where(q > edge, q - np.log10(effective_dimensions), empirical)
    return np.where(np.isfinite(q), out, np.nan)


def combine(statistics: ChunkStatistics, null: OmnibusNull) -> OmnibusStatistics:
    """The omnibus and min-P statistics of every SNP of a chunk (``statistics`` with ``imputed_r``:
    :func:`ml4ge.genetics.glm.associate_chunk` with ``imputed_correlations``)."""
    r2 = np.sum((statistics.imputed_r @ null.whitening.T) ** 2, axis=1)
    valid = np.isfinite(statistics.log10_p).all(axis=1) & np.isfinite(r2)
    factor = null.residual_df - (null.rank + 2) / 2  # Bartlett's
    with np.errstate(invalid="ignore"):
        chisq = np.where(valid, -factor * np.log1p(-np.minimum(r2, 1 - 1e-16)), np.nan)
    best = np.argmax(np.where(np.isfinite(statistics.log10_p), statistics.log10_p, -np.inf), axis=1)
    min_log10_p = np.where(valid, statistics.log10_p[np.arange(len(best)), best], np.nan)
    calibrated = (np.full(len(chisq), np.nan) if null.permuted_min_log10_p is None else
                  calibrated_min_p(min_log10_p, null.permuted_min_log10_p, null.effective_dimensions))
    return OmnibusStatistics(chisq, log10_gamma_sf(chisq, null.rank / 2, 2.0),
                             log10_gamma_sf(chisq, null.shape, null.scale), best, min_log10_p, calibrated)


def fit_null(whitening_matrix: np.ndarray, residual_df: int, permuted: list[ChunkStatistics]) -> OmnibusNull:
    """Fit the gamma null of the omnibus statistic and ``D_eff`` of the min-P to permuted-genotype statistics
    (with ``imputed_r``).

    Raises:
        ValueError: with fewer than ``MIN_PERMUTED_SNPS`` permuted SNPs with statistics.
    """
    unfitted = OmnibusNull(whitening_matrix, residual_df)
    combined = [combine(part, unfitted) for part in permuted]
    chisq = np.concatenate([c.chisq for c in combined]) if combined else np.empty(0)
    min_log10_p = np.concatenate([c.min_log10_p for c in combined]) if combined else np.empty(0)
    kept = np.isfinite(chisq)
    if kept.sum() < MIN_PERMUTED_SNPS:
        raise ValueError(f"only {int(kept.sum())} permuted SNPs have statistics; the omnibus null needs at least "
                         f"{MIN_PERMUTED_SNPS}: raise --permuted_snps or relax --maf/--geno.")
    chisq, min_log10_p = chisq[kept], min_log10_p[kept]
    shape, scale = fit_gamma(np.maximum(chisq, 1e-12))
    permuted = np.sort(min_log10_p)
    effective = TAIL_SNPS / len(permuted) * 10.0 ** permuted[-TAIL_SNPS]
    effective = float(np.clip(effective, 1.0, whitening_matrix.shape[1]))
    lambda_gc = float(np.median(chisq) / (2 * special.gammaincinv(unfitted.rank / 2, 0.5)))  # chi2(k)'s median
    return OmnibusNull(whitening_matrix, residual_df, float(shape), float(scale), effective, int(len(chisq)),
                       lambda_gc, permuted)


def fit_gamma(values: np.ndarray, tolerance: float = 1e-12) -> tuple[float, float]:
    """``(shape, scale)``: the maximum-likelihood gamma distribution of positive ``values`` (location 0), as
    ``scipy.stats.gamma.fit(values, floc=0)`` gives, without importing scipy.stats (about 0.5 s).

    The shape ``k`` solves ``log k - digamma(k) = log mean - mean log`` (Newton's method from Minka's closed-form
    start, which is within 1.5 % of it); the scale is ``mean / k``.

    Example:
        >>> shape, scale = fit_gamma(np.random.default_rng(0).gamma(3.0, 2.0, 200_000))
        >>> round(shape, 1), round(scale, 1)
        (3.0, 2.0)
    """
    mean = float(np.mean(values))
    spread = np.log(mean) - float(np.mean(np.log(values)))  # > 0 unless every value is the same
    if not (np.ptp(values) > 0 and spread > 0):
        raise ValueError("the permuted omnibus statistics are all equal: no gamma distribution fits them.")
    shape = (3 - spread + np.sqrt((spread - 3) ** 2 + 24 * spread)) / (12 * spread)
    for _ in range(50):
        step = (np.log(shape) - special.digamma(shape) - spread) / (1 / shape - special.polygamma(1, shape))
        shape = max(shape - step, shape / 10)  # never to zero or below
        if abs(step) <= tolerance * shape:
            break
    return float(shape), mean / float(shape)
