"""Learning-rate schedules, registered by name (``--lr_schedule``), each a small typed config that makes its
Keras callback.

* ``plateau``: multiply the rate by ``factor`` after ``patience`` epochs without a lower validation loss, not
  below ``min_lr`` (Keras' ReduceLROnPlateau; UDIP's schedule).
* ``step``: multiply the rate by ``factor`` every ``every`` epochs, not below ``min_lr`` (UDIP-ViT's).
* ``cosine``: linear warm-up from ``learning_rate / warmup_epochs`` over ``warmup_epochs`` epochs, then a cosine
  decay to ``min_lr`` at the last epoch.
* ``constant``: the initial rate throughout.

Importing this module does not import Keras (the argument parser reads its defaults). Epoch-based schedules are
functions of the epoch number alone, so a resumed run continues them exactly; the
plateau's counters are kept by :class:`ml4ge.checkpoints.RunBackup`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ml4ge.registry import Registry

SCHEDULES: Registry[type] = Registry("learning-rate schedule")
MONITOR = "val_loss"


@SCHEDULES.register("plateau")
@dataclass(frozen=True)
class PlateauSchedule:
    """ReduceLROnPlateau(factor, patience, min_lr) on the validation loss."""

    factor: float = 0.5
    patience: int = 4
    min_lr: float = 0.0

    def __post_init__(self):
        _check_factor(self.factor)
        if self.patience < 1:
            raise ValueError(f"the plateau schedule's patience must be >= 1 epoch, got {self.patience}.")

    @classmethod
    def from_flags(cls, args) -> PlateauSchedule:
        """Without ``--lr_patience``, half the early-stopping patience: the rate is lowered before training stops."""
        patience = args.lr_patience or max(1, int(args.patience) // 2)
        return cls(factor=float(args.lr_factor), patience=int(patience), min_lr=float(args.lr_min))

    def callback(self, learning_rate: float, epochs: int):
        import keras

        return keras.callbacks.ReduceLROnPlateau(monitor=MONITOR, factor=self.factor, patience=self.patience,
                                                 min_lr=self.min_lr, verbose=1)


@SCHEDULES.register("step")
@dataclass(frozen=True)
class StepSchedule:
    """``learning_rate * factor ** (epoch // every)``, floored at ``min_lr``."""

    factor: float = 0.5
    every: int = 10
    min_lr: float = 0.0

    def __post_init__(self):
        _check_factor(self.factor)
        if self.every < 1:
            raise ValueError(f"the step schedule's step must be >= 1 epoch, got {self.every}.")

    @classmethod
    def from_flags(cls, args) -> StepSchedule:
        return cls(factor=float(args.lr_factor), every=int(args.lr_step_epochs), min_lr=float(args.lr_min))

    def rate(self, epoch: int, learning_rate: float, epochs: int) -> float:
        return max(self.min_lr, learning_rate * self.factor ** (epoch // self.every))

    def callback(self, learning_rate: float, epochs: int):
        from ml4ge.training import EpochRate

        return EpochRate(self, learning_rate, epochs)


@SCHEDULES.register("cosine")
@dataclass(frozen=True)
class CosineSchedule:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to ``min_lr`` at the last epoch."""

    warmup_epochs: int = 0
    min_lr: float = 0.0

    def __post_init__(self):
        if self.warmup_epochs < 0:
            raise ValueError(f"warm-up epochs must be >= 0, got {self.warmup_epochs}.")

    @classmethod
    def from_flags(cls, args) -> CosineSchedule:
        return cls(warmup_epochs=int(args.lr_warmup_epochs), min_lr=float(args.lr_min))

    def rate(self, epoch: int, learning_rate: float, epochs: int) -> float:
        if epoch < self.warmup_epochs:
            return learning_rate * (epoch + 1) / self.warmup_epochs
        decay_epochs = max(1, epochs - self.warmup_epochs - 1)
        progress = min(1.0, (epoch - self.warmup_epochs) / decay_epochs)
        return self.min_lr + 0.5 * (learning_rate - self.min_lr) * (1 + math.cos(math.pi * progress))

    def callback(self, learning_rate: float, epochs: int):
        from ml4ge.training import EpochRate

        return EpochRate(self, learning_rate, epochs)


@SCHEDULES.register("constant")
@dataclass(frozen=True)
class ConstantSchedule:
    """The initial learning rate throughout (the rate is still logged every epoch)."""

    @classmethod
    def from_flags(cls, args) -> ConstantSchedule:
        return cls()

    def rate(self, epoch: int, learning_rate: float, epochs: int) -> float:
        return learning_rate

    def callback(self, learning_rate: float, epochs: int):
        from ml4ge.training import EpochRate

        return EpochRate(self, learning_rate, epochs)


def _check_factor(factor: float) -> None:
    if not 0 < factor < 1:
        raise ValueError(f"a learning-rate factor must be in (0, 1), got {factor}.")
