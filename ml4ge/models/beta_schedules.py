"""Schedules of the KL weight beta, by name (``--beta_schedule``), and the callback that applies one per epoch.

A schedule maps ``(epoch, epochs, options)`` to a factor in [0, 1]; the weight of epoch ``t`` (0-based) is
``beta * factor``. ``options`` is the model's :class:`~ml4ge.models.vae_config.VAEConfig`.

* ``constant``: 1.
* ``warmup``: ``min(1, t / warmup_epochs)``, a linear ramp from 0.
* ``cyclical``: Fu et al. (2019), NAACL, "Cyclical annealing schedule": M cycles over the T epochs of the run,
  ``tau = (t mod ceil(T / M)) / (T / M)``, factor ``min(1, tau / R)``: a ramp over the first R of each cycle, then
  a hold (their ``t - 1`` with 1-based t is our 0-based t).
* ``explode_cycle``: the seed's per-epoch form (REFERENCE_SEEDS.md C.4): 1 for ``t < explode``; then with
  ``m = (t - explode) mod cycle``, ``2 m / cycle`` while ``m < cycle / 2``, else 1.

Example:
    >>> [cyclical(t, 8, VAEConfig(cycles=2)) for t in range(8)]
    [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras

from ml4ge.models.vae_config import VAEConfig
from ml4ge.registry import Registry

BETA_SCHEDULES: Registry[Callable[[int, int, VAEConfig], float]] = Registry("beta schedule")


@BETA_SCHEDULES.register("constant")
def constant(epoch: int, epochs: int, options: VAEConfig) -> float:
    return 1.0


@BETA_SCHEDULES.register("warmup")
def warmup(epoch: int, epochs: int, options: VAEConfig) -> float:
    return min(1.0, epoch / options.warmup_epochs)


@BETA_SCHEDULES.register("cyclical")
def cyclical(epoch: int, epochs: int, options: VAEConfig) -> float:
    per_cycle = epochs / options.cycles
    tau = (epoch % math.ceil(per_cycle)) / per_cycle
    return min(1.0, tau / options.ratio)


@BETA_SCHEDULES.register("explode_cycle")
def explode_cycle(epoch: int, epochs: int, options: VAEConfig) -> float:
    if epoch < options.explode_epochs:
        return 1.0
    step = (epoch - options.explode_epochs) % options.cycle_epochs
    return 2 * step / options.cycle_epochs if step < options.cycle_epochs / 2 else 1.0


def beta_values(options: VAEConfig, epochs: int) -> list[float]:
    """The weight of every epoch of a run of ``epochs`` epochs.

    Raises:
        UnknownNameError: for an unknown schedule name, with the closest names.
    """
    schedule = BETA_SCHEDULES.get(options.schedule)
    return [options.beta * schedule(epoch, epochs, options) for epoch in range(epochs)]


class BetaSchedule(keras.callbacks.Callback):
    """Sets the model's ``beta`` variable at the start of every epoch and logs it (``beta`` in the training log).

    Set from the epoch index, so a resumed run (Keras' ``initial_epoch``) continues the schedule where it stopped.
    """

    def __init__(self, options: VAEConfig, epochs: int):
        super().__init__()
        self.values = beta_values(options, epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.beta.assign(self.values[min(epoch, len(self.values) - 1)])

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["beta"] = float(keras.ops.convert_to_numpy(self.model.beta))
