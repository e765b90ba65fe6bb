"""ml4h-exact pair switches: ``--pair_loss contrastive_ml4h`` and ``--pair_merge dropout_ml4h``, each against the
corrected default it differs from in the documented way."""

import keras
import numpy as np
import pytest

from ml4ge.models.config import ConvConfig, DenseConfig, ModelConfig, PairConfig
from ml4ge.models.factory import build_model, compile_model
from ml4ge.models.layers import DropFuse, DropFuseMl4h, PairLoss
from ml4ge.models.losses import contrastive_ml4h, info_nce
from ml4ge.tensormap import TensorMap

RNG = np.random.default_rng(7)
MINUS_LOG_EPSILON = -np.log(1e-7)  # 16.118


def value(tensor):
    return float(keras.ops.convert_to_numpy(tensor))


def ml4h_reference(a, b, log_scale=0.0):
    """ml4h's contrastive_difference with Keras' own categorical_crossentropy, arguments swapped as ml4h has them."""
    def normed(x):
        return x / np.sqrt(np.maximum((x ** 2).sum(-1, keepdims=True), 1e-7))

    logits = normed(a) @ normed(b).T * np.exp(log_scale)
    identity = np.eye(len(a), dtype="float32")
    softmaxes = (keras.ops.softmax(z, axis=-1) for z in (logits, logits.T))
    losses = [keras.losses.categorical_crossentropy(p, identity) for p in softmaxes]  # y_true=P, y_pred=I
    return float(np.mean([keras.ops.convert_to_numpy(loss) for loss in losses]))


def test_contrastive_ml4h_is_keras_crossentropy_with_swapped_arguments():
    a, b = RNG.normal(size=(4, 8)).astype("float32"), RNG.normal(size=(4, 8)).astype("float32")
    for log_scale in (0.0, 1.5):
        assert value(contrastive_ml4h(a, b, log_scale)) == pytest.approx(ml4h_reference(a, b, log_scale), rel=1e-5)


def test_contrastive_ml4h_is_a_bounded_linear_penalty_unlike_info_nce():
    """ml4h's value is 16.12 x mean(1 - P_ii) (at most 16.12); InfoNCE's -log P_ii grows without bound."""
    a = RNG.normal(size=(4, 8)).astype("float32")
    b = -a  # every pair anti-aligned: P_ii -> 0 at a large scale
    ml4h, corrected = value(contrastive_ml4h(a, b, log_scale=5.0)), value(info_nce(a, b, temperature=np.exp(-5.0)))
    assert ml4h == pytest.approx(MINUS_LOG_EPSILON, rel=1e-3)
    assert corrected > 10 * ml4h
    logits = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert value(contrastive_ml4h(a, b)) == pytest.approx(MINUS_LOG_EPSILON * np.mean(1 - np.diag(p)), rel=1e-4)


def test_contrastive_ml4h_gradient_vanishes_where_info_nce_grows():
    import tensorflow as tf

    a = tf.constant(RNG.normal(size=(4, 8)).astype("float32"))
    gradients = {}
    for name, loss in (("ml4h", lambda x: contrastive_ml4h(x, -a, 5.0)), ("info_nce", lambda x: info_nce(x, -a))):
        with tf.GradientTape() as tape:
            tape.watch(a)
            result = loss(a)
        gradients[name] = float(tf.norm(tape.gradient(result, a)))
    assert gradients["ml4h"] < 1e-3 * gradients["info_nce"]


@pytest.mark.parametrize("batch", [2, 4, 8])
def test_contrastive_ml4h_depends_on_batch_size(batch):
    """At chance (every P_ij = 1/B) the value is 16.12 (1 - 1/B): runs compare only at one --batch_size."""
    same = np.ones((batch, 8), "float32")
    assert value(contrastive_ml4h(same, same)) == pytest.approx(MINUS_LOG_EPSILON * (1 - 1 / batch), rel=1e-4)
    assert value(info_nce(same, same, 0.07)) == pytest.approx(np.log(batch), rel=1e-4)


def test_pair_loss_layer_learns_ml4h_log_scale():
    layer = PairLoss("contrastive_ml4h", weight=0.1)
    a, b = RNG.normal(size=(3, 8)).astype("float32"), RNG.normal(size=(3, 8)).astype("float32")
    layer([a, b])  # a batch of 3 where ml4h's fixed eye(--batch_size) would fail
    assert value(layer.log_scale) == 0.0 and layer.log_scale.trainable
    assert value(layer.losses[0]) == pytest.approx(0.1 * ml4h_reference(a, b), rel=1e-5)


def modality_inputs(batch=4, width=64):
    return [np.full((batch, width), m, "float32") for m in (0.0, 1.0)]


def test_dropout_ml4h_draws_one_modality_per_coordinate_for_the_batch():
    fused = keras.ops.convert_to_numpy(DropFuseMl4h(seed=1)(modality_inputs(), training=True))
    assert set(np.unique(fused)) == {0.0, 1.0}  # both modalities drawn over the 64 coordinates
    assert (fused == fused[0]).all()  # the same draw for every sample
    ours = keras.ops.convert_to_numpy(DropFuse(seed=1)(modality_inputs(), training=True))
    assert not (ours == ours[0]).all()  # ml4ge draws per sample and coordinate


def test_dropout_ml4h_is_random_at_inference_unlike_dropfuse():
    layer = DropFuseMl4h(seed=2)
    first, second = (keras.ops.convert_to_numpy(layer(modality_inputs(), training=False)) for _ in range(2))
    assert not np.array_equal(first, second)
    mean = keras.ops.convert_to_numpy(DropFuse()(modality_inputs(), training=False))
    np.testing.assert_array_equal(mean, np.full((4, 64), 0.5, "float32"))


def test_ml4h_exact_pair_model_trains_saves_and_loads(tmp_path):
    from ml4ge.models.artifacts import load_model, save_model

    t1, t2 = TensorMap("t1", shape=(8, 8, 1)), TensorMap("t2", shape=(8, 8, 1))
    config = ModelConfig(conv=ConvConfig(layers=(4,), stages=(4,), block_size=2), dense=DenseConfig(widths=(16,)),
                         pair=PairConfig(loss="contrastive_ml4h", weight=0.1, merge="dropout_ml4h"))
    parts = build_model([t1, t2], [t1, t2], ["conv_encode"], ["pair"], ["conv_decode"], config)
    compile_model(parts, [t1, t2], 1e-3)
    x = {tm.input_name: RNG.normal(size=(4, 8, 8, 1)).astype("float32") for tm in (t1, t2)}
    y = {tm.output_name: x[tm.input_name] for tm in (t1, t2)}
    history = parts.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    assert "contrastive_ml4h_pair_loss" in history and np.isfinite(history["loss"]).all()
    loaded = load_model(save_model(parts, tmp_path, "run")["full"])
    first, second = (loaded.predict(x, verbose=0)[t1.output_name] for _ in range(2))
    assert not np.allclose(first, second)  # ml4h's fusion stays random at inference
