"""Ordinary least squares of many phenotypes on every SNP of a chunk at once, as PLINK2 ``--glm`` for
quantitative traits (additive dosage, intercept, covariates; one model per SNP and phenotype).

Method (Frisch-Waugh-Lovell): the covariates with an intercept are orthonormalised once (``Q``, thin QR) and the
phenotypes residualised on them once (``R = Y - Q Q'Y``). For SNP ``g`` observed on all samples,
``beta = g'R / g*'g*`` with ``g*'g* = g'g - |Q'g|^2``, ``RSS = R'R - beta g'R``, ``df = n - k - 1``, and
``SE = sqrt(RSS / df / g*'g*)``. A sample missing the SNP is dropped from that SNP's model, as PLINK does: the
covariate Gram matrix, the phenotype sums of squares and ``Q'R`` are down-dated by the missing samples' terms
(``I - Q_S'Q_S``, ``R'R - R_S'R_S``, ``-Q_S'R_S``), which is exact and costs only the missing entries (sparse
products). With ``impute=True`` missing dosages are replaced by the SNP's mean dosage instead. ``-log10 P`` comes from
the two-sided t test with ``df`` degrees of freedom (:mod:`ml4ge.genetics.student_t`) and stays finite far below the
double-precision range.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from scipy import sparse

from ml4ge.genetics.genotypes import MISSING_CALL
from ml4ge.genetics.student_t import chunk_neg_log10_p

RANK_TOLERANCE = 1e-10
CONSTANT_TOLERANCE = 1e-9  # a SNP's dosage sum of squares after the covariates, per sample (dosages are 0..2)
UNTESTABLE_TOLERANCE = 1e-9  # a phenotype's residual RMS relative to its magnitude max |y|
CONSTANT = "constant (every sample has the same value)"
# PLINK2 --glm's ERRCODE for a SNP it writes without statistics, and "." for one with them.
OK, TOO_FEW_SAMPLES = ".", "SAMPLE_CT<=PREDICTOR_CT"
CONSTANT_DOSAGE, COLLINEAR = "CONST_OMITTED_ALLELE", "CORR_TOO_HIGH"
EXPLAINED_BY_COVARIATES = "constant after the covariates (an exact linear function of them)"


@dataclass(frozen=True)
class PreparedPhenotypes:
    """Phenotypes residualised on the covariates of one sample set (see the module docstring).

    Attributes:
        q: (n, k) orthonormal basis of the intercept and the covariates.
        residuals: (n, P) phenotypes minus their projection on ``q``.
        residual_ss: (P,) sums of squares of ``residuals``.
    """

    q: np.ndarray
    residuals: np.ndarray
    residual_ss: np.ndarray

    @property
    def samples(self) -> int:
        return self.residuals.shape[0]

    @cached_property
    def basis_and_residuals(self) -> np.ndarray:
        """``[q, residuals]`` (n, k + P): one matrix product with the dosages gives both (a thin one for ``q``
        alone uses BLAS poorly)."""
        return np.hstack([self.q, self.residuals])

    @property
    def predictors(self) -> int:
        """k: the intercept plus the covariates."""
        return self.q.shape[1]


@dataclass(frozen=True)
class ChunkStatistics:
    """Per SNP (rows) and phenotype (columns) statistics of one chunk; NaN where a SNP cannot be tested."""

    beta: np.ndarray
    se: np.ndarray
    t_stat: np.ndarray
    log10_p: np.ndarray
    n: np.ndarray  # (m,) samples in each SNP's model
    a1_freq: np.ndarray  # (m,) counted-allele frequency among those samples
    missing_rate: np.ndarray  # (m,) fraction of the samples missing the SNP
    errcode: np.ndarray  # (m,) PLINK2's ERRCODE: "." when tested, else why not (too few samples, constant, collinear)
    imputed_r: np.ndarray | None = None  # (m, P) with imputed_correlations: see associate_chunk


class Workspace:
    """Arrays that one chunk's OLS lends the next (for one sample set): a fresh (samples x SNPs) float64 array per
    chunk costs several times its copy in page faults, as the allocator hands such large blocks back to the system
    when they are freed. Not for use by two threads at once."""

    def __init__(self):
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised column-major array, the one of the previous call when its shape and type match."""
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._arrays[name] = np.empty(shape, dtype=dtype, order="F")
        return array


def prepare_phenotypes(phenotypes: np.ndarray, covariates: np.ndarray | None = None,
                       covariate_names: tuple[str, ...] = ()) -> PreparedPhenotypes:
    """Residualise ``phenotypes`` (n, P) on an intercept and ``covariates`` (n, c).

    Raises:
        ValueError: for non-finite values, covariates that are collinear (with each other or the intercept), too
            few samples for the model, or a phenotype that is constant or that the covariates explain completely
            (see :func:`untestable_phenotypes`).
    """
    y, q = _phenotypes_and_basis(phenotypes, covariates, covariate_names)
    residuals = y - q @ (q.T @ y)
    flat = _untestable(y, residuals)
    if flat:
        raise ValueError(f"phenotype columns {sorted(flat)} are {'; '.join(sorted(set(flat.values())))}; "
                         "drop them.")
    return PreparedPhenotypes(q, residuals, np.einsum("np,np->p", residuals, residuals))


def untestable_phenotypes(phenotypes: np.ndarray, covariates: np.ndarray | None = None,
                          covariate_names: tuple[str, ...] = ()) -> dict[int, str]:
    """Columns of ``phenotypes`` that no SNP can be tested against, with the reason: constant, or constant after
    the covariates (an exact linear function of them and the intercept).

    The test is relative to each column's own magnitude ``max |y|``, so it holds for any value of a constant,
    0 included: the residual root mean square must exceed ``UNTESTABLE_TOLERANCE * max |y|`` (round-off leaves
    about 1e-16 of it; a float32 latent table resolves about 1e-7).

    Example:
        >>> untestable_phenotypes(np.column_stack([np.arange(12.0), np.ones(12)]))
        {1: 'constant (every sample has the same value)'}
    """
    y, q = _phenotypes_and_basis(phenotypes, covariates, covariate_names)
    return _untestable(y, y - q @ (q.T @ y))


def _untestable(y: np.ndarray, residuals: np.ndarray) -> dict[int, str]:
    magnitude = np.abs(y).max(axis=0)
    spread = y.max(axis=0) - y.min(axis=0)
    residual_rms = np.sqrt(np.mean(residuals * residuals, axis=0))
    reasons = {}
    for column in np.flatnonzero(residual_rms <= UNTESTABLE_TOLERANCE * magnitude):
        reasons[int(column)] = (CONSTANT if spread[column] <= UNTESTABLE_TOLERANCE * magnitude[column]
                                else EXPLAINED_BY_COVARIATES)
    return reasons


def _phenotypes_and_basis(phenotypes, covariates, covariate_names) -> tuple[np.ndarray, np.ndarray]:
    """``(y, Q)``: the phenotypes as (n, P) floats and an orthonormal basis of the intercept and covariates.

    Raises:
        ValueError: for non-finite values, collinear covariates or too few samples.
    """
    y = np.asarray(phenotypes, dtype=np.float64)
    y = y.reshape(len(y), -1)
    n = len(y)
    design = np.ones((n, 1))
    if covariates is not None and np.size(covariates):
        design = np.hstack([design, np.asarray(covariates, dtype=np.float64).reshape(n, -1)])
    for what, values in (("phenotypes", y), ("covariates", design)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{what} hold {np.count_nonzero(~np.isfinite(values))} missing or infinite values; "
                             "drop those samples first.")
    if n <= design.shape[1] + 1:
        raise ValueError(f"{n} samples cannot fit {design.shape[1]} covariates (with the intercept) and a SNP.")
    q, r = np.linalg.qr(design / np.maximum(np.abs(design).max(axis=0), 1e-300))
    collinear = np.abs(np.diag(r)) < RANK_TOLERANCE * max(1.0, np.abs(np.diag(r)).max())
    if collinear.any():
        names = ("intercept", *covariate_names) if covariate_names else tuple(f"column {i}" for i in
                                                                               range(design.shape[1]))
        bad = [names[i] if i < len(names) else f"column {i}" for i in np.flatnonzero(collinear)]
        raise ValueError(f"covariates {bad} are constant or collinear with the others on these {n} samples; "
                         "drop them from --covariates.")
    return y, q


def associate_chunk(prepared: PreparedPhenotypes, dosages: np.ndarray, impute: bool = False,
                    workspace: Workspace | None = None, threads: int = 1,
                    imputed_correlations: bool = False) -> ChunkStatistics:
    """OLS statistics of every phenotype on every SNP of ``dosages`` (n samples, m SNPs; NaN = missing).

    Args:
        prepared: from :func:`prepare_phenotypes` on the same samples in the same order.
        dosages: counted-allele dosages 0..2 with NaN for missing calls, or counts as int8 with
            :data:`~ml4ge.genetics.genotypes.MISSING_CALL` for them (:meth:`GenotypeFile.read`).
        impute: replace missing dosages by the SNP's mean instead of dropping the samples.
        workspace: where the chunk's working copies live (reused by the next call given it); None: fresh arrays.
        threads: threads for the P values (the incomplete beta function costs more than the OLS for many
            phenotypes).
        imputed_correlations: also the correlation of each SNP, missing calls replaced by its mean, with each
            phenotype after the covariates (``ChunkStatistics.imputed_r``): every sample in every SNP's model, so
            that they combine exactly across phenotypes (:mod:`ml4ge.genetics.omnibus`).

    Returns:
        :class:`ChunkStatistics`; SNPs that are constant or missing everywhere get NaN statistics.
    """
    if np.shape(dosages)[0] != prepared.samples:
        raise ValueError(f"dosages have {np.shape(dosages)[0]} samples, the phenotypes {prepared.samples}.")
    workspace = workspace or Workspace()
    g = workspace.array("dosages", np.shape(dosages), np.float64)  # one copy, filled in place below
    np.copyto(g, dosages)
    missing = workspace.array("missing", g.shape, np.bool_)
    if np.asarray(dosages).dtype == np.int8:
        np.equal(dosages, MISSING_CALL, out=missing)
    else:
        np.isnan(g, out=missing)
    observed = prepared.samples - missing.sum(axis=0)
    if (observed < prepared.samples).any():  # imputed hard calls have none: no pass over the mask
        g[missing] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        a1_freq = g.sum(axis=0) / (2 * observed)
    n = observed
    if impute:
        g += missing * np.nan_to_num(2 * a1_freq)
        n = np.where(observed > 0, prepared.samples, 0)
        missing = np.zeros_like(missing)
    products = g.T @ prepared.basis_and_residuals
    gq, gr = products[:, :prepared.predictors], products[:, prepared.predictors:]  # (m, k), (m, P)
    sum_squares = np.einsum("nm,nm->m", g, g)
    gg = sum_squares - np.einsum("mk,mk->m", gq, gq)
    dropped = np.flatnonzero(missing.any(axis=0) & (observed > 0))  # SNPs with missing calls
    indicator = _indicator(missing[:, dropped]) if len(dropped) else None  # (m', n) sparse: their missing calls
    imputed_r = (_imputed_correlations(prepared, dropped, indicator, observed, 2 * a1_freq, sum_squares, gq, gr)
                 if imputed_correlations else None)  # before the down-dates change gr
    rr = np.broadcast_to(prepared.residual_ss, gr.shape).copy()
    if len(dropped):
        gg[dropped], gr[dropped], rr[dropped] = _downdate(prepared, indicator, sum_squares[dropped], gq[dropped],
                                                          gr[dropped])
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = sum_squares / observed - (2 * a1_freq) ** 2  # the observed dosages' variance
    statistics = _statistics(gg, gr, rr, n, prepared.predictors, a1_freq, 1 - observed / prepared.samples, spread,
                             threads)
    return statistics if imputed_r is None else replace(statistics, imputed_r=imputed_r)


def _imputed_correlations(prepared: PreparedPhenotypes, some: np.ndarray, indicator, observed: np.ndarray,
                          mean: np.ndarray, sum_squares: np.ndarray, gq: np.ndarray, gr: np.ndarray) -> np.ndarray:
    """(m, P) ``g*'r / sqrt(g*'g* r'r)`` for each SNP's dosage with missing calls set to its ``mean``, from the
    products of the dosage with them set to 0 (``sum_squares``, ``gq``, ``gr``) plus the mean times the missing
    samples' rows of ``[Q, R]`` (``indicator`` of the SNPs ``some``); NaN for SNPs without variance after the
    covariates."""
    if len(some):
        filled = np.asarray(indicator @ prepared.basis_and_residuals) * mean[some, None]
        gq, gr, sum_squares = gq.copy(), gr.copy(), sum_squares.copy()
        gq[some] += filled[:, :prepared.predictors]
        gr[some] += filled[:, prepared.predictors:]
        sum_squares[some] += (prepared.samples - observed[some]) * mean[some] ** 2
    gg = sum_squares - np.einsum("mk,mk->m", gq, gq)
    testable = (gg > CONSTANT_TOLERANCE * prepared.samples) & (observed > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(testable[:, None], gr / np.sqrt(np.outer(gg, prepared.residual_ss)), np.nan)


def _indicator(missing: np.ndarray) -> sparse.csr_matrix:
    """(m, n) sparse indicator of the missing calls of an (n, m) mask, built from their flat positions in SNP
    order: the same matrix as scipy builds from the dense mask, which takes several times longer."""
    by_snp = np.ascontiguousarray(missing.T)
    positions = np.flatnonzero(by_snp)
    indptr = np.concatenate([[0], np.cumsum(by_snp.sum(axis=1))])
    return sparse.csr_matrix((np.ones(len(positions)), positions % by_snp.shape[1], indptr), shape=by_snp.shape)


def _downdate(prepared: PreparedPhenotypes, indicator: sparse.csr_matrix, sum_squares: np.ndarray, gq: np.ndarray,
              gr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(g*'g*, g*'r*, r*'r*)`` on the observed samples of SNPs with missing calls (see the module docstring).

    ``sum_squares``, ``gq`` and ``gr`` were computed with missing dosages set to 0, so they hold the observed
    samples only; the covariate Gram matrix and the phenotype sums are down-dated by the missing samples
    (``indicator``: :func:`_indicator` of the SNPs' missing calls).
    """
    q, r = prepared.q, prepared.residuals
    k = q.shape[1]
    outer = np.einsum("nk,nl->nkl", q, q).reshape(len(q), k * k)
    gram = np.eye(k) - np.asarray(indicator @ outer).reshape(-1, k, k)  # Q_O'Q_O
    cross = -np.stack([np.asarray(indicator @ (q[:, [c]] * r)) for c in range(k)], axis=1)  # Q_O'R_O (m', k, P)
    rr = prepared.residual_ss - np.asarray(indicator @ (r * r))
    solved = np.linalg.solve(gram, np.concatenate([gq[:, :, None], cross], axis=2))  # (m', k, 1 + P)
    gg = sum_squares - np.einsum("mk,mk->m", gq, solved[:, :, 0])
    gr = gr - np.einsum("mk,mkp->mp", gq, solved[:, :, 1:])
    rr = rr - np.einsum("mkp,mkp->mp", cross, solved[:, :, 1:])
    return gg, gr, rr


def _statistics(gg, gr, rr, n, predictors, a1_freq, missing_rate, spread, threads: int = 1) -> ChunkStatistics:
    """Beta, SE, t and -log10 P from the residual sums; NaN for SNPs without variance after the covariates, with
    PLINK2's ERRCODE saying why (too few samples for the model, a constant dosage, or one the covariates explain)."""
    df = (n - predictors - 1).astype(np.float64)[:, None]
    testable = (gg > CONSTANT_TOLERANCE * np.maximum(n, 1)) & (df[:, 0] > 0)
    errcode = np.where(testable, OK, np.where(df[:, 0] <= 0, TOO_FEW_SAMPLES,
                                              np.where(~(spread > CONSTANT_TOLERANCE), CONSTANT_DOSAGE, COLLINEAR)))
    gg = np.where(testable, gg, np.nan)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = gr / gg
        rss = np.maximum(rr - beta * gr, 0.0)
        se = np.sqrt(rss / df / gg)
        t_stat = beta / se
    log10_p = chunk_neg_log10_p(t_stat, df, threads)  # df (m, 1) broadcasts over the phenotypes
    return ChunkStatistics(beta, se, t_stat, log10_p, n.astype(np.int64), a1_freq, missing_rate, errcode)
