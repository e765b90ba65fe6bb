"""Every registered block on 1-D, 2-D and 3-D toy maps: builds, trains two steps, saves and loads identically."""

import keras
import numpy as np
import pytest

from ml4ge.arrays import center_crop_or_pad
from ml4ge.models.artifacts import load_model, save_model
from ml4ge.models.blocks import ACTIVATIONS, DECODERS, ENCODERS, MERGES, NORMALIZATIONS, REGULARIZATIONS, Namer
from ml4ge.models.config import ConvConfig, DenseConfig, ModelConfig, PairConfig
from ml4ge.models.conv import CentralCropPad
from ml4ge.models.factory import build_model, compile_model
from ml4ge.registry import UnknownNameError
from ml4ge.tensormap import Interpretation, TensorMap

TINY = ModelConfig(
    conv=ConvConfig(layers=(4,), stages=(4, 8), block_size=1, kernel_1d=(5,), activation="leaky_relu",
                    normalize="batch_norm"),
    dense=DenseConfig(widths=(8, 6), activation="relu"),
)
LEARNING_RATE = 1e-3


def random_batch(tmaps, n=4, seed=0):
    """Inputs and targets for ``tmaps`` (masked maps get a random brain mask packed into the target)."""
    rng = np.random.default_rng(seed)
    x, y = {}, {}
    for tm in tmaps:
        if tm.interpretation == Interpretation.CATEGORICAL:
            value = np.eye(tm.shape[-1], dtype="float32")[rng.integers(tm.shape[-1], size=n)]
        else:
            value = rng.normal(size=(n, *tm.shape)).astype("float32")
        mask = (rng.random(value.shape) > 0.3).astype("float32") if tm.mask is not None else None
        x[tm.input_name] = value
        y[tm.output_name] = tm.target(value, mask)
    return x, y


def train_save_load(tmp_path, inputs, outputs, encoders, merges, decoders, config=TINY, eager=False):
    """Build, train two steps, save, load; return (parts, loaded parts, inputs, history).

    ``eager`` skips graph tracing, which costs more than the steps of these tiny dense models.
    """
    parts = build_model(inputs, outputs, encoders, merges, decoders, config)
    compile_model(parts, outputs, LEARNING_RATE, run_eagerly=eager)
    x, y = random_batch(set(inputs) | set(outputs))
    history = parts.fit(x, y, batch_size=2, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    paths = save_model(parts, tmp_path, "run")
    loaded = load_model(paths["full"])
    expected = parts.predict(x, verbose=0)
    for name, value in loaded.predict(x, verbose=0).items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-6)
    for tm in inputs:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.encoders[tm.name](x[tm.input_name])),
                                   keras.ops.convert_to_numpy(parts.encoders[tm.name](x[tm.input_name])),
                                   rtol=1e-5, atol=1e-6)
    return parts, loaded, x, history


@pytest.mark.parametrize("shape, upsample", [
    ((13, 2), "transpose"),            # 1-D signal with channels
    ((11, 9, 3), "upsampling"),        # 2-D image
    ((11, 13, 9, 1), "transpose"),     # 3-D volume, odd sizes (graph-mode predict: see CentralCropPad)
])
def test_conv_blocks_train_save_load_and_keep_shapes(tmp_path, shape, upsample):
    tm = TensorMap("toy", shape, mask="nonzero" if len(shape) == 4 else None)
    config = TINY.with_changes(conv=ConvConfig(**{**vars(TINY.conv), "upsample": upsample}))
    parts, loaded, x, _ = train_save_load(tmp_path, [tm], [tm], ["conv_encode"], ["concat"], ["conv_decode"], config,
                                          eager=len(shape) < 4)
    assert tuple(parts.output[tm.output_name].shape[1:]) == shape
    assert loaded.decoders[tm.name].output_shape[1:] == shape
    assert parts.encoders[tm.name].output_shape == (None, 6)


def test_dense_blocks_on_vectors_and_conv_passes_over_them(tmp_path):
    score = TensorMap("score", (3,))
    label = TensorMap("label", (4,), interpretation=Interpretation.CATEGORICAL)
    parts, loaded, x, _ = train_save_load(tmp_path, [score, label], [score, label],
                                          ["conv_encode", "dense_encode"], ["concat"], ["conv_decode", "dense_decode"],
                                          eager=True)
    assert parts.latent_size == 12  # concat of two 6-wide embeddings
    probabilities = loaded.predict(x, verbose=0)[label.output_name]
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("merge, pair", [
    ("concat", None), ("average", None), ("dropout", None),
    ("pair", PairConfig(loss="contrastive", merge="dropout")),
    ("pair", PairConfig(loss="cosine", merge="average", weight=0.5)),
    ("pair", PairConfig(loss="euclid", merge="concat")),
])
def test_merges_train_save_load(tmp_path, merge, pair):
    a, b = TensorMap("a", (6,)), TensorMap("b", (5,))
    config = TINY.with_changes(pair=pair) if pair else TINY
    parts, _, _, history = train_save_load(tmp_path, [a, b], [a, b], ["dense_encode"], [merge], ["dense_decode"],
                                           config, eager=True)
    assert parts.latent_size == (12 if merge == "concat" or (pair and pair.merge == "concat") else 6)
    if pair:
        # The pair loss is its own metric of the full model and part of its loss.
        pair_value = history[f"{pair.loss}_pair_loss"][0]
        assert pair_value > 0
        assert "pair_loss" in [layer.name for layer in parts.layers]


def test_pair_loss_is_added_to_the_full_models_loss():
    a, b = TensorMap("a", (6,)), TensorMap("b", (6,))
    config = TINY.with_changes(pair=PairConfig(loss="euclid", merge="average", weight=2.0))
    parts = build_model([a, b], [a, b], ["dense_encode"], ["pair"], ["dense_decode"], config)
    compile_model(parts, [a, b])
    x, y = random_batch([a, b])
    logs = parts.evaluate(x, y, batch_size=4, return_dict=True, verbose=0)
    expected = logs["output_a_loss"] + logs["output_b_loss"] + 2.0 * logs["euclid_pair_loss"]
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)


def test_dropfuse_merge_is_random_in_training_and_the_mean_at_inference():
    a, b = TensorMap("a", (6,)), TensorMap("b", (6,))
    parts = build_model([a, b], [a, b], ["dense_encode"], ["dropout"], ["dense_decode"], TINY)
    za, zb = np.random.default_rng(1).normal(size=(2, 64, 6)).astype("float32")
    inference = keras.ops.convert_to_numpy(parts.merger_model()([za, zb], training=False))
    np.testing.assert_allclose(inference, (za + zb) / 2, rtol=1e-6)
    training = keras.ops.convert_to_numpy(parts.merger_model()([za, zb], training=True))
    assert np.all((training == za) | (training == zb))
    assert 0.2 < np.mean(training == za) < 0.8


@pytest.mark.parametrize("shape, target", [((11, 13, 9), (12, 16, 12)), ((12, 16, 12), (11, 13, 9)), ((7, 5), (4, 8))])
def test_central_crop_pad_matches_the_array_helper_and_round_trips(shape, target):
    x = np.random.default_rng(0).normal(size=(2, *shape, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(CentralCropPad(target)(x))
    for sample in range(2):
        np.testing.assert_array_equal(out[sample], center_crop_or_pad(x[sample], (*target, 3)))
    if all(t >= s for s, t in zip(shape, target)):
        back = keras.ops.convert_to_numpy(CentralCropPad(shape)(out))
        np.testing.assert_array_equal(back, x)


def test_registries_hold_the_ml4h_block_names():
    assert {"conv_encode", "dense_encode"} <= set(ENCODERS)
    assert {"conv_decode", "dense_decode"} <= set(DECODERS)
    assert {"concat", "average", "pair", "dropout"} <= set(MERGES)
    with pytest.raises(ValueError, match="already registered"):
        ENCODERS.register("conv_encode", object)


def test_layer_lookups_use_pytorch_defaults_and_new_instances():
    namer = Namer("x")
    leaky = ACTIVATIONS.get("leaky_relu")(namer("act"), 3)
    assert leaky.negative_slope == pytest.approx(0.01)
    norm = NORMALIZATIONS.get("batch_norm")(namer("norm"), 3)
    assert (norm.momentum, norm.epsilon) == (pytest.approx(0.9), pytest.approx(1e-5))
    first, second = (ACTIVATIONS.get("prelu")(namer("act"), 2) for _ in range(2))
    assert first is not second and first.name != second.name
    assert isinstance(REGULARIZATIONS.get("spatial_dropout")(namer("reg"), 3, 0.1), keras.layers.SpatialDropout3D)


def test_unknown_names_fail_with_closest_matches():
    tm = TensorMap("a", (6,))
    with pytest.raises(UnknownNameError, match="dense_encode"):
        build_model([tm], [tm], ["dense_encod"], ["concat"], ["dense_decode"], TINY)
    with pytest.raises(UnknownNameError, match="leaky_relu"):
        build_model([tm], [tm], ["dense_encode"], ["concat"], ["dense_decode"],
                    TINY.with_changes(dense=DenseConfig(widths=(4,), activation="leakyrelu")))
    with pytest.raises(UnknownNameError, match="'pair'"):
        build_model([tm], [tm], ["dense_encode"], ["pairs"], ["dense_decode"], TINY)


def test_no_applicable_block_is_an_error():
    volume = TensorMap("v", (8, 8, 8, 1))
    with pytest.raises(ValueError, match="No encoder block"):
        build_model([volume], [volume], ["dense_encode"], [], ["conv_decode"], TINY)


@pytest.mark.parametrize("shape, layers, pool", [
    ((9, 7, 2), (), (2, 2, 2)),             # no stem: the last decoder stage returns to the input channels
    ((15, 6, 5, 1), (3,), (2, 2, 1)),       # ml4h's default pool_z 1 leaves z alone
    ((31, 4), (3, 3), (3, 2, 2)),           # 1-D signal pooled by 3 over two stages: 31 -> 36
])
def test_output_shapes_equal_tensormap_shapes(shape, layers, pool):
    tm = TensorMap("odd", shape)
    conv = ConvConfig(layers=layers, stages=(4, 4), block_size=1, pool=pool, kernel_1d=(3,))
    parts = build_model([tm], [tm], ["conv_encode"], [], ["conv_decode"], TINY.with_changes(conv=conv))
    assert tuple(parts.output[tm.output_name].shape[1:]) == shape
    assert parts.count_params() > 0
