"""Intensity normalizers with a scikit-learn-like interface that never modifies its input.

Statistics are data: a normalizer with fixed statistics is built from numbers given by the user or learnt by
``fit`` on training arrays, never from literals in code. Per-sample normalizers compute their statistics
from the array they transform and keep the last ones so that ``inverse_transform`` can undo the latest call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPSILON = 1e-7


class DegenerateSampleError(ValueError):
    """A sample whose values cannot be normalised (no spread, or a spread that is not finite).

    A ValueError, so that the readers skip the sample with this reason (ml4ge.workers) and tensorize reports it.
    """


# A spread below this fraction of the largest magnitude is float32 rounding, not signal: dividing by it would
# blow the sample up by 1e5 or more (a binary mask given as T1 became latents of 1e7 and a loss of 3.9e8).
RELATIVE_SPREAD = 1e-6


def spread(values) -> tuple[float, float]:
    """Mean and standard deviation of ``values``, computed in float64 (a float32 std of a voxel of 3e38 overflows).

    Raises:
        DegenerateSampleError: for no values, values or a spread that are not finite, or (near-)zero spread.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise DegenerateSampleError("cannot normalise: the array has no nonzero (brain) voxels")
    finite = bool(np.all(np.isfinite(values)))
    mean, std = (float(values.mean()), float(values.std())) if finite else (np.nan, np.nan)
    if not (np.isfinite(mean) and np.isfinite(std)):
        raise DegenerateSampleError("cannot normalise: the intensities or their spread are not finite "
                                    "(NaN, Inf or values beyond the float range); check the image's scaling")
    if std <= RELATIVE_SPREAD * float(np.abs(values).max()):
        raise DegenerateSampleError("cannot normalise: the intensities have no spread (all brain voxels equal); "
                                    "a binary mask or a constant image is not an intensity image")
    return mean, std


def _as_float(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


@dataclass
class ZScore:
    """``(x - mean) / std`` with statistics fixed by the constructor or by :meth:`fit`.

    Example:
        >>> ZScore(mean=10.0, std=2.0).transform(np.array([12.0]))
        array([1.], dtype=float32)
    """

    mean: float | None = None
    std: float | None = None

    def fit(self, arrays) -> ZScore:
        """Learn mean and standard deviation over all values of ``arrays`` (one array or a list)."""
        values = np.concatenate([np.ravel(_as_float(a)) for a in _as_list(arrays)])
        self.mean, self.std = float(values.mean()), float(values.std())
        return self

    def _stats(self) -> tuple[float, float]:
        if self.mean is None or self.std is None:
            raise ValueError("ZScore has no statistics: pass mean= and std= or call fit() on training data.")
        return self.mean, self.std

    def transform(self, x, mask=None) -> np.ndarray:
        mean, std = self._stats()
        return (_as_float(x) - mean) / (std + EPSILON)

    def inverse_transform(self, x) -> np.ndarray:
        mean, std = self._stats()
        return _as_float(x) * (std + EPSILON) + mean


@dataclass
class MinMax:
    """Scale to [0, 1] with fixed ``minimum`` and ``maximum`` (given or learnt by :meth:`fit`)."""

    minimum: float | None = None
    maximum: float | None = None

    def fit(self, arrays) -> MinMax:
        values = [_as_float(a) for a in _as_list(arrays)]
        self.minimum = float(min(v.min() for v in values))
        self.maximum = float(max(v.max() for v in values))
        return self

    def _range(self) -> tuple[float, float]:
        if self.minimum is None or self.maximum is None:
            raise ValueError("MinMax has no range: pass minimum= and maximum= or call fit() on training data.")
        return self.minimum, self.maximum - self.minimum

    def transform(self, x, mask=None) -> np.ndarray:
        low, span = self._range()
        return (_as_float(x) - low) / (span + EPSILON)

    def inverse_transform(self, x) -> np.ndarray:
        low, span = self._range()
        return _as_float(x) * (span + EPSILON) + low


@dataclass
class PerSampleZScore:
    """Z-score each array by its own mean and standard deviation.

    With ``nonzero_only=True`` the statistics come from the nonzero (brain) voxels only and are applied to all
    voxels, as UDIP normalises skull-stripped MRI: the background ends at ``-mean/std``, which the masked
    loss ignores. An explicit ``mask`` passed to :meth:`transform` takes precedence over ``nonzero_only``.
    """

    nonzero_only: bool = False
    last_stats: tuple[float, float] | None = field(default=None, repr=False, compare=False)

    def fit(self, arrays) -> PerSampleZScore:
        return self  # statistics are per sample; nothing to learn.

    def transform(self, x, mask=None) -> np.ndarray:
        x = _as_float(x)
        if mask is None and self.nonzero_only:
            mask = x != 0
        values = x[np.asarray(mask).astype(bool)] if mask is not None else x
        mean, std = spread(values)
        self.last_stats = (mean, std)
        # float64, so that a value near the float32 limit neither overflows (x - mean) nor ends as inf.
        return ((x.astype(np.float64) - mean) / (std + EPSILON)).astype(np.float32)

    def inverse_transform(self, x, stats: tuple[float, float] | None = None) -> np.ndarray:
        """Undo a transform with ``stats`` (mean, std), by default those of the latest :meth:`transform`."""
        stats = stats or self.last_stats
        if stats is None:
            raise ValueError("PerSampleZScore.inverse_transform needs stats=(mean, std) or a transform() first.")
        return _as_float(x) * (stats[1] + EPSILON) + stats[0]


def brain_zscore() -> PerSampleZScore:
    """UDIP's normalisation: per-sample z-score over the nonzero (brain) voxels."""
    return PerSampleZScore(nonzero_only=True)


def _as_list(arrays) -> list:
    return list(arrays) if isinstance(arrays, (list, tuple)) else [arrays]
