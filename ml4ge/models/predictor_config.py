"""Typed options of the ``predictor`` family and the target scaling it learns from the training split.

:class:`PredictorConfig` is what the family reads of the flags (kept in the model's spec, so a saved model says how
it was built and trained); the defaults are the seed's network at 64^3 (REFERENCE_SEEDS.md D.2).
:class:`TargetScale` is the seed's regression target transform: clamp at the training split's 0.5/99.5
percentiles, z-score with the clamped values' mean and SD, then min-max the z-scores to [-1, 1].
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields

import numpy as np

BALANCES = ("undersample", "class_weights", "none")
FLAG_NAMES = {"stages": "predictor_stages", "width": "predictor_width", "l2": "predictor_l2",
              "presence_inputs": "presence_inputs", "balance": "balance"}
CLAMP_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class PredictorConfig:
    """How a predictor is built and trained.

    Args:
        stages: filters of the residual 3-D CNN's stages (each halves the grid), the seed's (32, 64, 128, 256, 256).
        width: the CNN's dense output (the seed's 128 at 64^3).
        vector_widths, vector_dropout: dense branch of a plain vector (a connectivity upper triangle), the seed's
            128 -> 128 with dropout 0.5; its first layer takes 10x the L2 (the seed's 1e-3 there).
        tabular_widths, tabular_dropout: dense branch of a tabular domain (a map with named columns), the seed's
            128 -> 64 -> 32 with dropout 0.1.
        head_widths, head_dropout: the MLP head, the seed's 256 -> 256 with dropout 0.1.
        cnn_dropout: dropout after each CNN stage (0.1).
        l2: scale of the mean(W^2) penalty on every weight matrix (0: none; the seed's 1e-4).
        presence_inputs: the presence flags of optional inputs also go into the head (the absence is then a feature).
        balance: classification: ``undersample`` the majority classes to the minority's size every epoch (the
            seed's), ``class_weights`` (inverse class frequency in the loss) or ``none``.
    """

    stages: tuple[int, ...] = (32, 64, 128, 256, 256)
    width: int = 128
    vector_widths: tuple[int, ...] = (128, 128)
    vector_dropout: float = 0.5
    tabular_widths: tuple[int, ...] = (128, 64, 32)
    tabular_dropout: float = 0.1
    head_widths: tuple[int, ...] = (256, 256)
    head_dropout: float = 0.1
    cnn_dropout: float = 0.1
    l2: float = 1e-4
    presence_inputs: bool = False
    balance: str = "undersample"

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(int(s) for s in self.stages))
        for name in ("vector_widths", "tabular_widths", "head_widths"):
            object.__setattr__(self, name, tuple(int(w) for w in getattr(self, name)))
        if self.balance not in BALANCES:
            raise ValueError(f"--balance {self.balance!r}: choose one of {', '.join(BALANCES)}.")
        if self.l2 < 0 or self.width < 1 or not self.stages or min(self.stages) < 1:
            raise ValueError(f"predictor options out of range: l2 {self.l2} (>= 0), width {self.width} (>= 1), "
                             f"stages {self.stages} (at least one, each >= 1).")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PredictorConfig:
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PredictorConfig:
        """The options of the flags a namespace (or settings object) has; the defaults for those it lacks."""
        return cls(**{name: getattr(args, flag) for name, flag in FLAG_NAMES.items() if hasattr(args, flag)})


@dataclass(frozen=True)
class TargetScale:
    """The seed's transform of a regression target, fitted on the training split's values."""

    clamp_low: float
    clamp_high: float
    mean: float
    sd: float
    low: float
    high: float

    @classmethod
    def fit(cls, values, name: str = "target") -> TargetScale:
        """Fit on the training values.

        Raises:
            ValueError: for fewer than two finite values or a target without spread (the scaling would divide by
                zero and every prediction would look perfect).
        """
        values = np.asarray(values, np.float64).reshape(-1)
        values = values[np.isfinite(values)]
        if values.size < 2:
            raise ValueError(f"target {name!r}: {values.size} training values; need at least 2 to scale it.")
        clamp_low, clamp_high = np.percentile(values, CLAMP_PERCENTILES)
        clamped = np.clip(values, clamp_low, clamp_high)
        sd = float(clamped.std())
        if not sd > 0:
            raise ValueError(f"target {name!r} is constant ({clamped[0]:g}) in the training split: nothing to "
                             "predict; pick another target or split.")
        z = (clamped - clamped.mean()) / sd
        return cls(float(clamp_low), float(clamp_high), float(clamped.mean()), sd, float(z.min()), float(z.max()))

    def scale(self, values) -> np.ndarray:
        """Original units -> [-1, 1] (clamped)."""
        z = (np.clip(np.asarray(values, np.float64), self.clamp_low, self.clamp_high) - self.mean) / self.sd
        return 2.0 * (z - self.low) / (self.high - self.low) - 1.0

    @property
    def factor(self) -> float:
        """Slope of :meth:`scale`: scaled units per original unit."""
        return 2.0 / ((self.high - self.low) * self.sd)

    def to_dict(self) -> dict:
        return asdict(self)
