"""Masked MSE, pair losses and loss lookup, checked against numpy hand computations."""

import keras
import numpy as np
import pytest

from ml4ge.models.losses import (
    LOSSES,
    PAIR_LOSSES,
    MaskedMeanSquaredError,
    cosine_pair_loss,
    euclid_pair_loss,
    get_loss,
    info_nce,
)
from ml4ge.registry import UnknownNameError


def _masked_batch(rng, sizes=(5, 20, 0, 40), shape=(4, 5, 3, 1)):
    """A batch of volumes whose masks hold ``sizes[i]`` voxels in sample i."""
    values = rng.normal(size=(len(sizes), *shape)).astype("float32")
    prediction = rng.normal(size=values.shape).astype("float32")
    mask = np.zeros_like(values)
    for i, size in enumerate(sizes):
        mask[i].reshape(-1)[rng.choice(mask[i].size, size, replace=False)] = 1.0
    return values, mask, prediction


def _numpy_masked_mse(values, mask, prediction):
    return float(np.sum(mask * (values - prediction) ** 2) / np.sum(mask))


def test_masked_mse_is_the_global_mean_over_mask_voxels():
    values, mask, prediction = _masked_batch(np.random.default_rng(0))
    loss = MaskedMeanSquaredError()(np.concatenate([values, mask], -1), prediction)
    expected = _numpy_masked_mse(values, mask, prediction)
    per_sample_mean = np.mean([_numpy_masked_mse(v, m, p) for v, m, p in zip(values, mask, prediction) if m.sum()])
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert abs(expected - per_sample_mean) > 1e-3  # the two definitions differ on this batch


def test_masked_mse_ignores_background_voxels_exactly():
    values, mask, prediction = _masked_batch(np.random.default_rng(1))
    target = np.concatenate([values, mask], -1)
    changed = np.where(mask > 0, prediction, prediction + 1000.0).astype("float32")
    loss = MaskedMeanSquaredError()
    assert float(loss(target, changed)) == float(loss(target, prediction))
    inside_changed = np.where(mask > 0, prediction + 1.0, prediction).astype("float32")
    assert float(loss(target, inside_changed)) != float(loss(target, prediction))


def test_masked_mse_is_exact_for_a_partial_last_batch_and_multiple_channels():
    rng = np.random.default_rng(2)
    values, mask, prediction = _masked_batch(rng, sizes=(3, 17, 30), shape=(6, 5, 2))
    target = np.concatenate([values, mask], -1)
    loss = MaskedMeanSquaredError()
    for batch in (slice(0, 3), slice(2, 3), slice(0, 2)):
        expected = _numpy_masked_mse(values[batch], mask[batch], prediction[batch])
        assert float(loss(target[batch], prediction[batch])) == pytest.approx(expected, rel=1e-5)


def test_masked_mse_inside_evaluate_is_exact_for_a_partial_last_batch():
    values, mask, prediction = _masked_batch(np.random.default_rng(3), sizes=(4, 9, 12, 2, 11, 1, 6), shape=(3, 4, 1))
    model = keras.Sequential([keras.Input((3, 4, 1)), keras.layers.Identity()])
    model.compile(loss=get_loss("masked_mse"))
    # batches of 4 and 3 samples; Keras averages batch losses weighted by batch size
    result = model.evaluate(prediction, np.concatenate([values, mask], -1), batch_size=4, verbose=0)
    first, last = slice(0, 4), slice(4, 7)
    expected = (4 * _numpy_masked_mse(values[first], mask[first], prediction[first])
                + 3 * _numpy_masked_mse(values[last], mask[last], prediction[last])) / 7
    assert result == pytest.approx(expected, rel=1e-5)


def test_masked_mse_of_an_all_zero_mask_is_zero_not_nan():
    values, mask, prediction = _masked_batch(np.random.default_rng(4), sizes=(0, 0))
    loss = float(MaskedMeanSquaredError()(np.concatenate([values, mask], -1), prediction))
    assert loss == 0.0


def test_masked_mse_rejects_targets_without_a_packed_mask():
    with pytest.raises(ValueError, match="mask packed after the values"):
        MaskedMeanSquaredError()(np.zeros((2, 3, 1), "float32"), np.zeros((2, 3, 1), "float32"))


def test_masked_mse_round_trips_through_keras_serialization():
    loss = MaskedMeanSquaredError()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss), safe_mode=True)
    assert isinstance(restored, MaskedMeanSquaredError) and restored.name == "masked_mse"


# ---------------------------------------------------------------------------------------------------- pair losses


def _l2n(x):
    return x / np.sqrt(np.maximum(np.sum(x**2, axis=-1, keepdims=True), 1e-7))


def _log_softmax(x, axis):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _numpy_info_nce(a, b, temperature):
    logits = _l2n(a) @ _l2n(b).T / temperature
    rows = np.diag(_log_softmax(logits, axis=1))
    columns = np.diag(_log_softmax(logits, axis=0))
    return -0.5 * (rows.mean() + columns.mean())


@pytest.mark.parametrize("batch, temperature", [(4, 0.07), (3, 0.5), (4, 1.0)])
def test_info_nce_equals_a_numpy_hand_computation(batch, temperature):
    rng = np.random.default_rng(batch)
    a, b = rng.normal(size=(2, batch, 8)).astype("float32")
    assert float(info_nce(a, b, temperature)) == pytest.approx(_numpy_info_nce(a, b, temperature), rel=1e-4)


def test_info_nce_is_symmetric_and_not_a_per_row_only_loss():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(2, 5, 8)).astype("float32")
    assert float(info_nce(a, b)) == pytest.approx(float(info_nce(b, a)), rel=1e-5)
    logits = _l2n(a) @ _l2n(b).T / 0.07
    rows_only = -np.diag(_log_softmax(logits, axis=1)).mean()
    assert abs(float(info_nce(a, b)) - rows_only) > 1e-3


def test_info_nce_falls_when_matched_pairs_move_together():
    a, b = np.random.default_rng(8).normal(size=(2, 4, 8)).astype("float32")
    losses = [float(info_nce(a, (1 - t) * b + t * a, 0.1)) for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(earlier > later for earlier, later in zip(losses, losses[1:]))
    assert losses[0] > 1.0 and losses[-1] < 0.01  # unrelated pairs cost more than log(B); identical pairs ~ 0


def test_pair_losses_work_with_a_single_sample():
    a, b = np.array([[1.0, 0.0, 0.0]], "float32"), np.array([[0.0, 2.0, 0.0]], "float32")
    assert float(info_nce(a, b, 0.07)) == pytest.approx(0.0, abs=1e-6)  # the only candidate is the match
    assert float(cosine_pair_loss(a, b)) == pytest.approx(np.pi / 2, rel=1e-6)
    assert float(euclid_pair_loss(a, b)) == pytest.approx(np.sqrt(5.0), rel=1e-6)


def test_cosine_pair_loss_is_the_mean_angle():
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(2, 6, 8)).astype("float32")
    expected = np.mean(np.arccos(np.clip(np.sum(_l2n(a) * _l2n(b), -1), -1, 1)))
    assert float(cosine_pair_loss(a, b)) == pytest.approx(expected, rel=1e-5)
    assert float(cosine_pair_loss(a, -a)) == pytest.approx(np.pi, rel=1e-3)


def test_euclid_pair_loss_is_the_mean_per_sample_distance_not_the_batch_norm():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(2, 6, 8)).astype("float32")
    expected = np.mean(np.linalg.norm(a - b, axis=-1))
    assert float(euclid_pair_loss(a, b)) == pytest.approx(expected, rel=1e-5)
    assert abs(float(euclid_pair_loss(a, b)) - np.linalg.norm(a - b)) > 1.0  # ml4h's Frobenius norm differs


@pytest.mark.parametrize("name", ["cosine", "euclid", "contrastive"])
def test_pair_loss_gradients_are_finite_for_identical_embeddings(name):
    import tensorflow as tf

    a = tf.Variable(np.random.default_rng(11).normal(size=(3, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = PAIR_LOSSES.get(name)(a, tf.identity(a))
    assert np.all(np.isfinite(tape.gradient(loss, a).numpy()))


# ---------------------------------------------------------------------------------------------------- lookup


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_name_resolves_to_a_keras_loss(name):
    assert isinstance(get_loss(name), keras.losses.Loss)


def test_get_loss_names_closest_matches_and_passes_loss_objects_through():
    with pytest.raises(UnknownNameError, match="masked_mse"):
        get_loss("maskd_mse")
    loss = keras.losses.Huber()
    assert get_loss(loss) is loss
    with pytest.raises(TypeError, match="received int"):
        get_loss(3)
    assert set(PAIR_LOSSES.names()) == {"contrastive", "cosine", "euclid", "contrastive_ml4h"}
