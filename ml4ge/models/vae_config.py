"""Typed options of the variational families (``vae``, ``rae``, ``cvae``), apart from Keras.

They are what these families read of the flags (``--alpha``, ``--beta``, ``--beta_schedule``, ...); a model keeps
them in its spec (``spec["vae"]``), so a saved model says how it was weighted and a resumed or fine-tuned run
trains with the same loss. The flag table (:mod:`ml4ge.arguments`) takes its defaults from here.

Example:
    >>> VAEConfig(beta=4.0, schedule="cyclical", cycles=2).to_dict()["cycles"]
    2
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields

BETA_SCHEDULE_FLAGS = {"schedule": "beta_schedule", "warmup_epochs": "beta_warmup_epochs", "cycles": "beta_cycles",
                       "ratio": "beta_ratio", "cycle_epochs": "beta_cycle_epochs",
                       "explode_epochs": "beta_explode_epochs"}
FLAG_NAMES = {"alpha": "alpha", "beta": "beta", "gamma": "gamma", "salient_size": "salient_size",
              "background_size": "background_size", **BETA_SCHEDULE_FLAGS}


@dataclass(frozen=True)
class VAEConfig:
    """How a variational family weighs its loss and sizes its codes.

    Args:
        alpha: weight of the reconstruction loss (the outputs' compiled losses, means over their elements).
            None: the number of elements of the largest output, i.e. the reconstruction error summed over
            voxels as in the Gaussian ELBO (the seed's alpha of 250,000 over 160x192x160 voxels is 0.05 of that).
        beta: weight of the KL term (RAE: of 0.5 ||z||^2); the schedule multiplies it by a factor in [0, 1].
        gamma: cvae only: weight of the total-correlation term on the encoders.
        salient_size, background_size: cvae only: sizes of the salient (s) and background (z) codes.
        schedule: a name in :data:`ml4ge.models.beta_schedules.BETA_SCHEDULES` (``--beta_schedule``).
        warmup_epochs: ``warmup``: epochs of the linear ramp from 0 to beta.
        cycles, ratio: ``cyclical`` (Fu et al. 2019): M cycles over the run, each ramping over its first R.
        cycle_epochs, explode_epochs: ``explode_cycle`` (the seed's form): beta for the first ``explode_epochs``
            epochs, then cycles of ``cycle_epochs`` epochs ramping over their first half.
    """

    alpha: float | None = None
    beta: float = 1.0
    gamma: float = 1.0
    salient_size: int = 32
    background_size: int = 32
    schedule: str = "constant"
    warmup_epochs: int = 10
    cycles: int = 4
    ratio: float = 0.5
    cycle_epochs: int = 20
    explode_epochs: int = 4

    def __post_init__(self):
        checks = {"beta": self.beta >= 0, "gamma": self.gamma >= 0, "salient_size": self.salient_size >= 1,
                  "background_size": self.background_size >= 1, "warmup_epochs": self.warmup_epochs >= 1,
                  "cycles": self.cycles >= 1, "ratio": 0 < self.ratio <= 1, "cycle_epochs": self.cycle_epochs >= 2,
                  "explode_epochs": self.explode_epochs >= 0, "alpha": self.alpha is None or self.alpha > 0}
        for name, good in checks.items():
            if not good:
                raise ValueError(f"--{FLAG_NAMES[name]} {getattr(self, name)!r} is out of range (see its --help).")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VAEConfig:
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> VAEConfig:
        """The options of the flags a namespace (or settings object) has; the defaults for those it lacks."""
        given = {name: getattr(args, flag) for name, flag in FLAG_NAMES.items() if hasattr(args, flag)}
        return cls(**given)
