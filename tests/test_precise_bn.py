"""Precise BatchNorm (ml4ge.precise_bn): the moving statistics recomputed at the current weights, dropout off, before
each validation; which runs use it."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from ml4ge.precise_bn import (
    PreciseBatchNorm,
    batchnorm_layers,
    calibration_subset,
    precise_bn_batches,
    recalibrate_batchnorm,
)
from ml4ge.training_settings import TrainingSettings


def dense_bn_model(dropout: float = 0.0):
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="dense")(inputs)
    x = keras.layers.Dropout(dropout, name="dropout")(x) if dropout else x
    x = keras.layers.BatchNormalization(momentum=0.9, name="norm")(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(x))


def batches_of(x, y, size: int):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(size)


def expected_statistics(model, x, size: int):
    """The BatchNorm input at the model's weights, per batch: the mean of the batch means and of the (biased)
    batch variances."""
    dense = model.get_layer("dense")
    features = x @ dense.kernel.numpy() + dense.bias.numpy()
    chunks = [features[i:i + size] for i in range(0, len(x), size)]
    return np.mean([c.mean(0) for c in chunks], 0), np.mean([c.var(0) for c in chunks], 0)


def test_recalibration_sets_the_mean_of_the_batch_statistics_at_the_current_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (24, 3)).astype("float32")
    model = dense_bn_model(dropout=0.5)
    assert recalibrate_batchnorm(model, batches_of(x, x[:, :1], 8)) == 3
    norm = model.get_layer("norm")
    mean, variance = expected_statistics(model, x, 8)
    np.testing.assert_allclose(norm.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(norm.moving_variance.numpy(), variance, rtol=1e-4)  # dropout was off
    assert norm.momentum == 0.9 and model.get_layer("dropout").rate == 0.5  # both restored


def test_a_model_without_batchnorm_is_left_alone():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    assert batchnorm_layers(model) == [] and recalibrate_batchnorm(model, [(np.ones((2, 3)),)]) == 0
    assert precise_bn_batches(model, TrainingSettings(precise_bn=16)) == 0


def test_the_callback_validates_with_the_recalibrated_statistics():
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 3.0, (32, 3)).astype("float32")
    y = x.sum(1, keepdims=True)
    model = dense_bn_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    calibration, valid = batches_of(x[:16], y[:16], 8), batches_of(x[16:], y[16:], 8)
    history = model.fit(batches_of(x, y, 8), epochs=2, verbose=0, shuffle=False,
                        callbacks=[PreciseBatchNorm(calibration, valid)])
    mean, _ = expected_statistics(model, x[:16], 8)
    np.testing.assert_allclose(model.get_layer("norm").moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
    assert len(history.history["val_loss"]) == 2
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(valid, verbose=0), rel=1e-5)


class Family(keras.Model):
    precise_bn_batches = 16


def family_model():
    inputs = keras.Input((3,))
    return Family(inputs, keras.layers.BatchNormalization()(inputs))


def test_the_flag_wins_over_the_familys_default_and_several_replicas_are_refused(caplog):
    model = family_model()
    assert precise_bn_batches(model, TrainingSettings()) == 16
    assert precise_bn_batches(model, TrainingSettings(precise_bn=0)) == 0
    assert precise_bn_batches(model, TrainingSettings(precise_bn=3)) == 3
    with caplog.at_level(logging.WARNING):
        assert precise_bn_batches(model, TrainingSettings(), replicas=2) == 0
    assert "precise BatchNorm is off" in caplog.text
    with pytest.raises(ValueError, match="--precise_bn 0 or --strategy default"):
        precise_bn_batches(model, TrainingSettings(precise_bn=4), replicas=2)


def test_the_calibration_samples_are_a_seeded_draw_of_the_training_split():
    paths = [f"s{i:03d}.hd5" for i in range(100)]
    chosen = calibration_subset(family_model(), TrainingSettings(precise_bn=2), paths, 8, seed=7)
    assert len(chosen) == 16 and len(set(chosen)) == 16 and chosen == sorted(chosen) and set(chosen) <= set(paths)
    assert chosen == calibration_subset(family_model(), TrainingSettings(precise_bn=2), paths, 8, seed=7)
    assert chosen != calibration_subset(family_model(), TrainingSettings(precise_bn=2), paths, 8, seed=8)
    assert calibration_subset(family_model(), TrainingSettings(precise_bn=50), paths, 8, seed=7) == paths
    assert calibration_subset(family_model(), TrainingSettings(precise_bn=0), paths, 8, seed=7) == []
