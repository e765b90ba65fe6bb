"""``--patience`` under ``--patience_style ml4h`` (the default): early stop at 3 x patience, rate halved at patience."""

import csv

import numpy as np
import pytest

from ml4ge import training
from ml4ge.arguments import build_parser
from ml4ge.models.presets import settings_from_args
from ml4ge.schedules import PlateauSchedule, StepSchedule


def parsed(*flags):
    return build_parser().parse_args(["--mode", "train", *flags])


def test_ml4h_patience_by_default():
    _, settings = settings_from_args(parsed("--patience", "36"))
    assert settings.patience == 108
    assert settings.schedule == PlateauSchedule(factor=0.5, patience=36, min_lr=0.0)


def test_ml4ge_patience_style_keeps_ml4ge_semantics():
    _, settings = settings_from_args(parsed("--patience", "36", "--patience_style", "ml4ge"))
    assert settings.patience == 36
    assert settings.schedule == PlateauSchedule(factor=0.5, patience=18, min_lr=0.0)


def test_explicit_schedule_flags_win_over_ml4h_plateau():
    _, settings = settings_from_args(parsed("--patience", "6", "--lr_schedule", "step", "--lr_step_epochs", "2"))
    assert settings.patience == 18 and isinstance(settings.schedule, StepSchedule)


def test_presets_keep_their_schedules():
    _, settings = settings_from_args(parsed("--patience", "36", "--model_preset", "udip"))
    assert settings.patience == 36
    assert settings.schedule.patience == 4  # UDIP's ReduceLROnPlateau(0.5, 4, lr / 1000)


def flat_model(learning_rate):
    """A model whose loss cannot improve: its trainable layer's output is multiplied by zero."""
    import keras

    inputs = keras.Input((3,))
    output = keras.layers.Lambda(lambda t: t * 0.0)(keras.layers.Dense(1)(inputs))
    model = keras.Model(inputs, output)
    model.compile(keras.optimizers.Adam(learning_rate), "mse")
    return model


def data():
    import tensorflow as tf

    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, x.sum(axis=1, keepdims=True))).batch(4)


@pytest.mark.parametrize("style, stopped_after, rates", [
    # ml4h: no improvement after epoch 1; the rate halves after 2 such epochs, training stops after 6.
    ("ml4h", 7, [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4]),
    # ml4ge: stops after 2 epochs without improvement, the plateau (half the patience) halves every epoch.
    ("ml4ge", 3, [1e-3, 1e-3, 5e-4]),
])
def test_real_callbacks_follow_patience_style(tmp_path, style, stopped_after, rates):
    _, settings = settings_from_args(parsed("--patience", "2", "--epochs", "20", "--learning_rate", "1e-3",
                                            "--patience_style", style))
    training.fit(flat_model(settings.learning_rate), data(), data(), tmp_path, settings)
    with open(tmp_path / training.TRAINING_LOG) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == stopped_after
    np.testing.assert_allclose([float(row["learning_rate"]) for row in rows], rates, rtol=1e-6)
