"""Typed settings of the SFCN encoder (``sfcn_encode``) and of the soft-label head (``soft_label``).

SFCN (Peng et al., MedIA 2021; REFERENCE_SEEDS.md section C.1): five stages of conv 3 -> BatchNorm -> max-pool 2 ->
ReLU (32, 64, 128, 256, 256 channels), conv 1 (64) -> BatchNorm -> ReLU, global average pooling, dropout 0.5. Its
head projects to one bin per year of age and is trained against Gaussian soft labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SFCNConfig:
    """The ``sfcn_encode`` block.

    Args:
        channels: widths of the conv 3 -> BN -> max-pool -> ReLU stages (``--sfcn_channels``; the seed's five).
        bottleneck: width of the final conv 1 -> BN -> ReLU (the embedding size; the seed's 64).
        dropout: dropout rate after global average pooling (``--sfcn_dropout``; the seed's 0.5).
    """

    channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    bottleneck: int = 64
    dropout: float = 0.5

    def __post_init__(self):
        if not self.channels or min(self.channels) < 1 or self.bottleneck < 1:
            raise ValueError(f"SFCN widths must be positive, got channels {list(self.channels)} and bottleneck "
                             f"{self.bottleneck}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SFCN dropout must be in [0, 1), got {self.dropout}.")


@dataclass(frozen=True)
class SoftLabelConfig:
    """Bins of the ``soft_label`` head: ``[start, stop)`` cut into bins of ``width``, labels ``N(age, sigma)``.

    The seed's: 40 one-year bins on [42, 82) (centres 42.5 ... 81.5), sigma 1 (``--soft_label_range``,
    ``--soft_label_width``, ``--soft_label_sigma``). Ages outside the range put their mass in the edge bins' tails
    only; pick a range that covers the cohort (with a margin of a few sigma).

    Example:
        >>> SoftLabelConfig(42, 82, 1, 1).centres()[:2]
        array([42.5, 43.5])
    """

    start: float = 42.0
    stop: float = 82.0
    width: float = 1.0
    sigma: float = 1.0

    def __post_init__(self):
        if not (math.isfinite(self.start) and math.isfinite(self.stop) and self.stop > self.start):
            raise ValueError(f"soft-label range must be finite with stop > start, got [{self.start}, {self.stop}).")
        if not self.width > 0 or not self.sigma > 0:
            raise ValueError(f"soft-label bin width and sigma must be positive, got {self.width} and {self.sigma}.")
        bins = (self.stop - self.start) / self.width
        if abs(bins - round(bins)) > 1e-6 or round(bins) < 2:
            raise ValueError(f"soft-label range [{self.start}, {self.stop}) must hold a whole number (>= 2) of "
                             f"bins of width {self.width}; got {bins:g}.")

    @property
    def bins(self) -> int:
        return int(round((self.stop - self.start) / self.width))

    def edges(self) -> np.ndarray:
        """The ``bins + 1`` bin edges (float64)."""
        return self.start + self.width * np.arange(self.bins + 1, dtype=np.float64)

    def centres(self) -> np.ndarray:
        """The ``bins`` bin centres (float64), the values the expectation readout averages."""
        edges = self.edges()
        return (edges[:-1] + edges[1:]) / 2.0
