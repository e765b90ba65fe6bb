"""Training settings, apart from the architecture: optimizer, learning rate and its schedule, early stopping,
epochs and batch size. A model preset fills them (UDIP's rates and plateau); flags given on the command line win.
Importing this module does not import Keras.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace

from ml4ge.schedules import SCHEDULES, PlateauSchedule

DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_SCHEDULE = "plateau"


@dataclass(frozen=True)
class TrainingSettings:
    """How a model is trained.

    Args:
        optimizer: a Keras optimizer name (``adam``, ``adamw``, ``sgd``, ...).
        learning_rate: the initial learning rate.
        schedule: a schedule config from :data:`ml4ge.schedules.SCHEDULES`.
        patience: epochs without a lower validation loss before training stops.
        epochs: the maximum number of epochs.
        batch_size: the global batch size.
        weight_decay: the optimizer's weight decay (a preset's; None: the Keras optimizer's own default).
        precise_bn: training batches that recompute the BatchNorm statistics before each validation
            (:mod:`ml4ge.precise_bn`); 0 off, None the model family's choice.
        recompute_encoders: the encoders recompute their activations in the backward pass instead of keeping them
            (:mod:`ml4ge.models.recompute`).

    Example:
        >>> TrainingSettings(learning_rate=1e-3).make_optimizer().learning_rate
    """

    optimizer: str = "adam"
    learning_rate: float = DEFAULT_LEARNING_RATE
    schedule: object = field(default_factory=PlateauSchedule)
    patience: int = 8
    epochs: int = 10
    batch_size: int = 8
    weight_decay: float | None = None
    precise_bn: int | None = None
    recompute_encoders: bool = False

    def __post_init__(self):
        if self.learning_rate <= 0:
            raise ValueError(f"--learning_rate must be positive, got {self.learning_rate}.")

    def make_optimizer(self):
        """A new optimizer of this kind at the initial learning rate.

        Raises:
            ValueError: for a name Keras does not know.
        """
        return make_optimizer(self.optimizer, self.learning_rate, self.weight_decay)

    def schedule_callback(self):
        return self.schedule.callback(self.learning_rate, self.epochs)

    def with_changes(self, **changes) -> TrainingSettings:
        return replace(self, **changes)


def make_optimizer(name: str, learning_rate: float, weight_decay: float | None = None):
    """A Keras optimizer by name with ``learning_rate`` (and ``weight_decay`` when given).

    Raises:
        ValueError: for a name Keras does not know.
    """
    import keras

    try:
        config = {"learning_rate": learning_rate}
        if weight_decay is not None:
            config["weight_decay"] = weight_decay
        return keras.optimizers.get({"class_name": name, "config": config})
    except (ValueError, TypeError) as error:
        raise ValueError(f"Unknown optimizer {name!r} (--optimizer): {error}") from error


def schedule_from_args(args: argparse.Namespace):
    """The schedule ``--lr_schedule`` names, with ``--lr_factor``, ``--lr_patience``, ``--lr_min``,
    ``--lr_step_epochs`` and ``--lr_warmup_epochs``.

    ``plateau`` without ``--lr_patience`` waits half the early-stopping patience, so the rate is lowered at least
    once before training stops.

    Raises:
        UnknownNameError: for an unknown schedule, with the closest names.
        ValueError: for out-of-range values.
    """
    return SCHEDULES.get(args.lr_schedule).from_flags(args)


def training_settings_from_args(args: argparse.Namespace) -> TrainingSettings:
    """The settings the training flags describe (no preset; see :func:`ml4ge.models.presets.preset_from_args`).

    Raises:
        ValueError, UnknownNameError: for bad values.
    """
    learning_rate = float(args.learning_rate)
    patience, schedule = patience_semantics(args)
    return TrainingSettings(optimizer=args.optimizer, learning_rate=learning_rate,
                            schedule=schedule, patience=patience,
                            epochs=int(args.epochs), batch_size=int(args.batch_size))


# ml4h's train_model_from_generators: EarlyStopping(patience = 3 x --patience), ReduceLROnPlateau(factor 0.5,
# patience = --patience).
ML4H_STOP_FACTOR = 3
ML4H_PLATEAU_FACTOR = 0.5


def patience_semantics(args: argparse.Namespace):
    """``(early-stopping patience, schedule)`` of ``--patience`` under ``--patience_style``.

    ``ml4h`` (the flag's default): training stops after 3 x ``--patience`` epochs without a lower validation loss
    and, unless a ``--lr_*`` schedule flag is given, the rate is halved after ``--patience`` such epochs (at least
    1: ml4ge's plateau needs one epoch), floored at ``--lr_min``. ``ml4ge``: stops after ``--patience``, and the
    schedule of the ``--lr_*`` flags (plateau after half the patience). A namespace without the flag (a caller
    building its own) gets ``ml4ge``. Presets do not come here: they keep their own schedules.
    """
    patience = int(args.patience)
    if getattr(args, "patience_style", "ml4ge") != "ml4h":
        return patience, schedule_from_args(args)
    if explicit_flags(args) & SCHEDULE_FLAGS:
        schedule = schedule_from_args(args)
    else:
        schedule = PlateauSchedule(factor=ML4H_PLATEAU_FACTOR, patience=max(1, patience), min_lr=float(args.lr_min))
    return ML4H_STOP_FACTOR * patience, schedule


def explicit_flags(args: argparse.Namespace) -> set[str]:
    """The schedule and optimizer flags whose value differs from its default: given on the command line, so they
    win over a preset's."""
    return {name for name, default in FLAG_DEFAULTS.items() if getattr(args, name, default) != default}


# Defaults of the optimizer and schedule flags (the argument parser uses these).
FLAG_DEFAULTS = {"optimizer": "adam", "learning_rate": DEFAULT_LEARNING_RATE, "lr_schedule": DEFAULT_SCHEDULE,
                 "lr_factor": 0.5, "lr_patience": None, "lr_min": 0.0, "lr_step_epochs": 10, "lr_warmup_epochs": 0}
SCHEDULE_FLAGS = frozenset({"lr_schedule", "lr_factor", "lr_patience", "lr_min", "lr_step_epochs",
                            "lr_warmup_epochs"})
