"""Intensity normalizers with a scikit-learn-like interface that never modifies its input.

Statistics are data: a normalizer with fixed statistics is built from numbers given by the user or learnt by
``fit`` on training arrays, never from literals in code. Per-sample normalizers compute their statistics
from the array they transform and keep the last ones so that ``inverse_transform`` can undo the latest call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPSILON = 1e-7


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
        values = x[mask.astype(bool)] if mask is not None else x
        if values.size == 0:
            raise ValueError("cannot normalise: the array has no nonzero (brain) voxels")
        mean, std = float(values.mean()), float(values.std())
        self.last_stats = (mean, std)
        return (x - mean) / (std + EPSILON)

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
