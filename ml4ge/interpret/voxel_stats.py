"""Voxel-wise paired t-test computed streaming over subjects, and the |t| maps PerDI reports.

:class:`PairedDifferenceStats` keeps three running sums of the differences ``perturbed - original`` (count, sum,
sum of squares, about a shift taken from the first batch so that nearly constant differences keep their
precision), so memory is two float64 volumes whatever the number of subjects. The t statistic equals scipy's
``ttest_rel(perturbed, original)`` at every voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


class PairedDifferenceStats:
    """Running sums of paired differences at every voxel.

    Args:
        shape: shape of one subject's volume (any rank).

    Example:
        >>> stats = PairedDifferenceStats((2,))
        >>> stats.update(np.array([[1.0, 0.0], [2.0, 0.0], [4.0, 0.0]]))
        >>> np.round(stats.t(), 3).tolist()
        [2.646, 0.0]
    """

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)
        self.count = 0
        self._shift: np.ndarray | None = None
        self._sum = np.zeros(self.shape, dtype=np.float64)
        self._sum_squares = np.zeros(self.shape, dtype=np.float64)

    def update(self, differences: np.ndarray) -> None:
        """Add a batch of differences ``[B, *shape]`` (perturbed minus original reconstruction).

        Raises:
            ValueError: if the batch's volumes do not have :attr:`shape`.
        """
        differences = np.asarray(differences)
        if differences.shape[1:] != self.shape:
            raise ValueError(f"differences of shape {differences.shape[1:]} per subject do not match the statistics' "
                             f"shape {self.shape}; decode every batch to the same shape.")
        if len(differences) == 0:
            return
        if self._shift is None:
            self._shift = differences.mean(axis=0, dtype=np.float64)
        centred = differences.astype(np.float64) - self._shift
        self._sum += centred.sum(axis=0)
        self._sum_squares += np.einsum("i...,i...->...", centred, centred)
        self.count += len(differences)

    def mean(self) -> np.ndarray:
        """Mean difference per voxel."""
        self._require(1)
        return self._shift + self._sum / self.count

    def variance(self) -> np.ndarray:
        """Sample variance (ddof 1) of the differences per voxel, never negative."""
        self._require(2)
        centred_mean = self._sum / self.count
        return np.maximum((self._sum_squares - self.count * centred_mean**2) / (self.count - 1), 0.0)

    def t(self) -> np.ndarray:
        """Paired t per voxel: ``mean / sqrt(variance / n)``.

        Zero-variance voxels get 0 when the mean difference is 0 and ``±inf`` otherwise (as scipy, without NaN).
        """
        mean, variance = self.mean(), self.variance()
        with np.errstate(divide="ignore", invalid="ignore"):
            t = mean / np.sqrt(variance / self.count)
        t[(variance == 0) & (mean == 0)] = 0.0
        return t

    def _require(self, minimum: int) -> None:
        if self.count < minimum:
            raise ValueError(f"paired statistics need at least {minimum} subjects, have {self.count}; "
                             "interpret more subjects (--interpret_samples).")


@dataclass(frozen=True)
class AbsTMap:
    """A finished |t| map and what was done to get it.

    Attributes:
        values: float32 |t|, masked, smoothed, masked again (zero outside the mask).
        unsmoothed_max: largest |t| in the mask before smoothing.
        capped_voxels: voxels whose |t| was infinite (zero variance, nonzero mean) and were set to the largest
            finite |t| of the map before smoothing.
    """

    values: np.ndarray
    unsmoothed_max: float
    capped_voxels: int


def abs_t_map(t: np.ndarray, mask: np.ndarray | None, sigma: float) -> AbsTMap:
    """|t| inside ``mask``, Gaussian-smoothed with ``sigma`` voxels, and zero outside ``mask``.

    PerDI multiplies by the brain mask then smooths; smoothing spreads values past the mask, so the result is
    masked once more to keep every map inside the brain.

    Args:
        t: paired t per voxel.
        mask: boolean (or 0/1) brain mask of ``t``'s shape; None keeps every voxel.
        sigma: Gaussian sigma in voxels (0: no smoothing).

    Raises:
        ValueError: if the mask's shape differs from ``t``'s.
    """
    inside = np.ones(t.shape, dtype=bool) if mask is None else np.asarray(mask) != 0
    if inside.shape != t.shape:
        raise ValueError(f"mask of shape {inside.shape} does not match the map's shape {t.shape}.")
    values = np.where(inside, np.abs(t), 0.0)
    infinite = np.isinf(values)
    finite_values = values[np.isfinite(values)]
    ceiling = float(finite_values.max()) if finite_values.size else 0.0
    values[infinite] = ceiling
    values = np.nan_to_num(values, nan=0.0)
    unsmoothed_max = float(values.max()) if values.size else 0.0
    if sigma > 0:
        values = ndimage.gaussian_filter(values, sigma=sigma, mode="constant", cval=0.0)
    values = np.where(inside, values, 0.0).astype(np.float32)
    return AbsTMap(values=values, unsmoothed_max=unsmoothed_max, capped_voxels=int(infinite.sum()))
