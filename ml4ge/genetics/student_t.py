"""P values of Student's t test, two-sided, as ``-log10 P``: exact for any value (:func:`neg_log10_p`) and, for the
millions of a scan's chunk, from a table per degrees of freedom (:func:`chunk_neg_log10_p`).

The table holds ``y(t) = -log10 P(|t|)`` and its exact derivative ``y' = 2 f(t) / (P ln 10)`` (``f`` the t density)
every :data:`TABLE_STEP` of ``|t|`` up to where P reaches :data:`TABLE_SMALLEST_P`; cubic Hermite interpolation
between the nodes is within about 1e-13 of P (relative) of the exact value, which is as close as the incomplete beta
function itself gets (closer near ``t = 0``, where ``df / (df + t^2)`` rounds), at a quarter of its cost. Values
beyond the table, non-finite ones and rows of other degrees of freedom (SNPs with missing calls) are computed
exactly.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special

LOG10 = np.log(10.0)
SMALLEST_DIRECT_P = 1e-280  # below this -log10 P comes from the series of the incomplete beta function
SERIES_TERMS = 200
TABLE_STEP = 0.002  # of |t| between the table's nodes: interpolation error about 1e-14 of -log10 P
TABLE_SMALLEST_P = 1e-40  # the table ends here; smaller P (hits, a few) are computed exactly
TABLE_LARGEST_T = 100.0  # or here, whichever comes first (few degrees of freedom reach 1e-40 only far beyond)
TABLE_FROM = 20_000  # values in a chunk from which the table is used (it costs about 5 ms per degrees of freedom)


@dataclass(frozen=True)
class _Table:
    values: np.ndarray  # -log10 P at |t| = i * TABLE_STEP
    slopes: np.ndarray  # its derivative there, times TABLE_STEP
    limit: float  # the largest |t| the table covers


def chunk_neg_log10_p(t_stat: np.ndarray, df: np.ndarray, threads: int = 1) -> np.ndarray:
    """:func:`neg_log10_p` of a chunk's (m, P) t statistics with (m, 1) degrees of freedom, in row blocks on
    ``threads`` threads (numpy and scipy release the GIL); rows of the chunk's commonest degrees of freedom come
    from its table (see the module docstring)."""
    function = _tabulated if np.size(t_stat) >= TABLE_FROM else neg_log10_p
    if threads <= 1 or len(t_stat) < 2 * threads:
        return function(t_stat, df)
    bounds = np.linspace(0, len(t_stat), threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        blocks = pool.map(lambda i: function(t_stat[bounds[i]:bounds[i + 1]], df[bounds[i]:bounds[i + 1]]),
                          range(threads))
        return np.concatenate(list(blocks))


def _tabulated(t_stat: np.ndarray, df: np.ndarray) -> np.ndarray:
    """-log10 P of (m, P) ``t_stat`` and (m, 1) ``df``, from the table of the commonest ``df``."""
    values, counts = np.unique(df[:, 0], return_counts=True)
    common = values[np.argmax(counts)]
    if not common > 0:
        return neg_log10_p(t_stat, df)
    table = _table(float(common))
    rows = df[:, 0] == common
    result = np.empty(np.shape(t_stat))
    if not rows.all():
        result[~rows] = neg_log10_p(t_stat[~rows], df[~rows])
    statistics = t_stat[rows]
    magnitude = np.abs(statistics)
    outside = ~(magnitude <= table.limit)  # beyond the table, or not finite
    magnitude[outside] = 0.0
    values = _interpolate(table, magnitude)
    if outside.any():
        values[outside] = neg_log10_p(statistics[outside], common)
    result[rows] = values
    return result


def _interpolate(table: _Table, magnitude: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation of the table at ``magnitude`` (|t|, within the table)."""
    position = magnitude / TABLE_STEP
    node = np.minimum(position.astype(np.int64), len(table.values) - 2)
    s = position - node
    s2 = s * s
    s3 = s2 * s
    return ((2 * s3 - 3 * s2 + 1) * table.values[node] + (s3 - 2 * s2 + s) * table.slopes[node]
            + (3 * s2 - 2 * s3) * table.values[node + 1] + (s3 - s2) * table.slopes[node + 1])


@lru_cache(maxsize=32)
def _table(df: float) -> _Table:
    """The table of ``df`` degrees of freedom: nodes every TABLE_STEP until P < TABLE_SMALLEST_P or |t| reaches
    TABLE_LARGEST_T."""
    top = -np.log10(TABLE_SMALLEST_P)
    stop = 1.0
    while stop < TABLE_LARGEST_T and neg_log10_p(np.array([stop]), np.array([df]))[0] < top:  # P's end, roughly
        stop *= 2
    t = np.arange(0.0, min(stop, TABLE_LARGEST_T) + 2 * TABLE_STEP, TABLE_STEP)
    values = neg_log10_p(t, np.full(len(t), df))
    last = int(np.searchsorted(values, top)) + 1
    t, values = t[:last + 1], values[:last + 1]
    log_density = (special.gammaln((df + 1) / 2) - special.gammaln(df / 2) - 0.5 * np.log(df * np.pi)
                   - (df + 1) / 2 * np.log1p(t * t / df))
    slopes = np.exp(np.log(2.0) + log_density + values * LOG10) / LOG10 * TABLE_STEP
    return _Table(values, slopes, float(t[-2]))


def neg_log10_p(t_stat: np.ndarray, df: np.ndarray) -> np.ndarray:
    """``-log10`` of the two-sided P of Student's t, finite even where P underflows (P < 1e-308).

    ``P = I_x(df/2, 1/2)`` with ``x = df / (df + t^2)`` (regularised incomplete beta). Where that underflows,
    ``log I_x(a, b) = a log x + b log(1 - x) - log a - log B(a, b) + log sum_j c_j`` with ``c_0 = 1`` and
    ``c_{j+1} = c_j x (a + b + j) / (a + 1 + j)`` (the hypergeometric series, fast for the tiny ``x`` involved).

    Example:
        >>> float(np.round(neg_log10_p(np.array([1.959964]), np.array([1e9]))[0], 4))  # P = 0.05
        1.301
    """
    t_stat, df = np.asarray(t_stat, dtype=np.float64), np.asarray(df, dtype=np.float64)
    valid = np.isfinite(t_stat) & (df > 0)
    # Every entry at once, NaN where invalid: selecting the valid ones first costs more than the NaNs.
    with np.errstate(invalid="ignore", divide="ignore"):
        t2 = t_stat ** 2
        p = special.betainc(df / 2, 0.5, df / (df + t2))
        result = np.asarray(-np.log10(np.where(p > 0, p, 1.0)))
    tiny = valid & (p < SMALLEST_DIRECT_P)
    if tiny.any():
        d = np.broadcast_to(df, tiny.shape)[tiny]
        result[tiny] = -_log_betainc_small_x(d / 2, 0.5, np.broadcast_to(t2, tiny.shape)[tiny], d) / LOG10
    result[~valid] = np.nan
    return result


def _log_betainc_small_x(a: np.ndarray, b: float, t2: np.ndarray, df: np.ndarray) -> np.ndarray:
    """``log I_x(a, b)`` for ``x = df / (df + t2)`` small, computed in logs (no underflow)."""
    log_x = np.log(df) - np.log(t2) - np.log1p(df / t2)
    log_one_minus_x = -np.log1p(df / t2)
    x = np.exp(log_x)
    term, total = np.ones_like(a), np.ones_like(a)
    for j in range(SERIES_TERMS):
        term = term * x * (a + b + j) / (a + 1 + j)
        total = total + term
        if np.all(term < 1e-17 * total):
            break
    return a * log_x + b * log_one_minus_x - np.log(a) - special.betaln(a, b) + np.log(total)
