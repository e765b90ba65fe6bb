"""PairLoss and DropFuse: behaviour in training and inference, metrics in fit, and .keras round trips."""

import math

import keras
import numpy as np
import pytest

from ml4ge.models.layers import DropFuse, PairLoss
from ml4ge.models.losses import PAIR_LOSSES, info_nce
from ml4ge.registry import UnknownNameError


def _embeddings(batch=6, width=16, modalities=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, width)).astype("float32") for _ in range(modalities)]


# ---------------------------------------------------------------------------------------------------- DropFuse


def test_dropfuse_is_random_in_training_and_takes_each_coordinate_from_one_modality():
    embeddings = _embeddings(modalities=3)
    fuse = DropFuse(seed=3)
    first = keras.ops.convert_to_numpy(fuse(embeddings, training=True))
    second = keras.ops.convert_to_numpy(fuse(embeddings, training=True))
    assert not np.array_equal(first, second)
    stacked = np.stack(embeddings, axis=-1)  # [B, D, M]
    for output in (first, second):
        matches = output[..., None] == stacked
        assert matches.any(axis=-1).all()  # every coordinate is exactly one modality's value
    # draws are per sample and per coordinate: several modalities appear in each row and in each column
    chosen = np.argmax(first[..., None] == stacked, axis=-1)
    assert all(len(set(row)) > 1 for row in chosen)
    assert sum(len(set(column)) > 1 for column in chosen.T) > chosen.shape[1] // 2


def test_dropfuse_draws_each_modality_about_equally_often():
    embeddings = _embeddings(batch=50, width=40, modalities=2, seed=1)
    output = keras.ops.convert_to_numpy(DropFuse(seed=0)(embeddings, training=True))
    share_first = np.mean(output == embeddings[0])
    assert 0.45 < share_first < 0.55  # 2000 fair draws: 5 standard deviations is about 0.056


def test_dropfuse_is_the_deterministic_mean_at_inference():
    embeddings = _embeddings(modalities=3, seed=2)
    fuse = DropFuse()
    expected = np.mean(embeddings, axis=0)
    for training in (False, None):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(fuse(embeddings, training=training)), expected,
                                   rtol=1e-6)
    model = keras.Model(inputs := [keras.Input((16,)) for _ in range(3)], DropFuse()(inputs))
    np.testing.assert_array_equal(model.predict(embeddings, verbose=0), model.predict(embeddings, verbose=0))
    np.testing.assert_allclose(model.predict(embeddings, verbose=0), expected, rtol=1e-6)


def test_dropfuse_rejects_embeddings_of_different_widths():
    with pytest.raises(ValueError, match="equal width"):
        DropFuse()([keras.Input((8,)), keras.Input((4,))])


# ---------------------------------------------------------------------------------------------------- PairLoss


def _pair_model(loss="contrastive", weight=0.5):
    """Two dense encoders tied by a PairLoss, fused by DropFuse, and two decoders."""
    inputs = [keras.Input((10,), name="left"), keras.Input((10,), name="right")]
    embeds = [keras.layers.Dense(4, name=f"embed_{x.name}")(x) for x in inputs]
    embeds = PairLoss(loss, weight=weight, name="pair")(embeds)
    fused = DropFuse(seed=1, name="fuse")(embeds)
    outputs = [keras.layers.Dense(10, name=f"out_{x.name}")(fused) for x in inputs]
    return keras.Model(inputs, outputs)


def _pair_data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, 10)).astype("float32")
    return [shared, (shared + 0.1 * rng.normal(size=(n, 10))).astype("float32")]


@pytest.mark.parametrize("loss", ["contrastive", "cosine", "euclid"])
def test_pair_loss_adds_its_weighted_value_and_returns_the_inputs(loss):
    a, b = _embeddings(batch=4, width=8, seed=4)
    layer = PairLoss(loss, weight=0.25)
    out_a, out_b = layer([a, b])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out_a), a)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out_b), b)
    assert len(layer.losses) == 1
    expected = info_nce(a, b, 0.07) if loss == "contrastive" else PAIR_LOSSES.get(loss)(a, b)
    assert float(layer.losses[0]) == pytest.approx(0.25 * float(expected), rel=1e-5)
    assert float(layer.tracker.result()) == pytest.approx(float(expected), rel=1e-5)


def test_pair_loss_temperature_starts_at_the_given_value_and_is_clamped():
    layer = PairLoss("contrastive", initial_temperature=0.2)
    layer(_embeddings(batch=2, width=4))
    assert float(layer.temperature) == pytest.approx(0.2, rel=1e-6)
    layer.log_temperature.assign(math.log(1e-5))
    assert float(layer.temperature) == pytest.approx(0.01, rel=1e-5)
    assert PairLoss("cosine").temperature is None


def test_pair_loss_rejects_bad_arguments():
    with pytest.raises(UnknownNameError, match="contrastive"):
        PairLoss("contrastiv")
    with pytest.raises(ValueError, match="initial_temperature"):
        PairLoss(initial_temperature=0.0)
    with pytest.raises(ValueError, match="equal width"):
        PairLoss()([keras.Input((8,)), keras.Input((4,))])


def test_pair_model_reports_the_pair_loss_in_fit_history_and_learns_the_temperature():
    model = _pair_model()
    data = _pair_data()
    model(data)
    assert len(model.losses) == 1
    model.compile(keras.optimizers.Adam(0.05), loss=["mse", "mse"])
    history = model.fit(data, data, batch_size=5, epochs=3, verbose=0)  # 12 samples: a partial batch of 2
    values = history.history["contrastive_pair_loss"]
    assert len(values) == 3 and all(np.isfinite(values))
    assert values[-1] < values[0]
    assert float(model.get_layer("pair").temperature) != pytest.approx(0.07, rel=1e-4)


@pytest.mark.parametrize("loss", ["contrastive", "euclid"])
def test_pair_model_saves_and_loads_in_safe_mode_without_custom_objects(tmp_path, loss):
    model = _pair_model(loss)
    data = _pair_data()
    model.compile("adam", loss=["mse", "mse"])
    model.fit(data, data, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "pair.keras"
    model.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    assert isinstance(restored.get_layer("pair"), PairLoss) and isinstance(restored.get_layer("fuse"), DropFuse)
    assert restored.get_layer("pair").get_config()["loss"] == loss
    for expected, actual in zip(model.predict(data, verbose=0), restored.predict(data, verbose=0)):
        np.testing.assert_array_equal(expected, actual)
    if loss == "contrastive":
        assert float(restored.get_layer("pair").temperature) == float(model.get_layer("pair").temperature)
    restored.fit(data, data, batch_size=4, epochs=1, verbose=0)  # still trainable after loading
