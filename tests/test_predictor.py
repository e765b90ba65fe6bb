"""The predictor family: absent inputs, leak guard, target scaling, balanced epochs, save and load."""

import logging

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from ml4ge.models.factory import Architecture, build_family
from ml4ge.models.predictor import PreparedPredictor
from ml4ge.models.predictor_config import PredictorConfig, TargetScale
from ml4ge.models.predictor_layers import ScaledTargetMSE
from ml4ge.predictor_data import BalancedSampler, prepare_predictor
from ml4ge.tensormap import TensorMap

T1 = TensorMap("t1", (8, 8, 8, 1))
T2 = TensorMap("t2", (8, 8, 8, 1))
VOLUMES = TensorMap("volumes", (2,), group="phenotypes", channel_map={"brain_volume": 0, "gm_volume": 1})
CONSTITUTIONAL = TensorMap("constitutional", (2,), group="phenotypes", channel_map={"age": 0, "weight": 1})
AGE = TensorMap("age", (1,), group="phenotypes")
SEX = TensorMap("sex", (2,), interpretation="categorical", group="phenotypes", channel_map={"f": 0, "m": 1})
# No dropout, so that two calls in training mode compute the same thing.
TINY = PredictorConfig(stages=(4, 8), width=8, tabular_widths=(8, 4), vector_widths=(8,), head_widths=(8,),
                       head_dropout=0.0, tabular_dropout=0.0, vector_dropout=0.0, cnn_dropout=0.0, balance="none")


def predictor(inputs, outputs, optional=(), config=TINY, **prepared):
    keras.utils.set_random_seed(3)
    return build_family(Architecture("predictor", optional=tuple(optional),
                                     family_options=PreparedPredictor(config, **prepared)), inputs, outputs)


def batch(rows=4, seed=0, t2_present=(1, 0, 1, 1), volumes_present=(1, 1, 0, 1)):
    rng = np.random.default_rng(seed)
    t2 = rng.normal(size=(rows, 8, 8, 8, 1)).astype("float32") * np.reshape(t2_present, (-1, 1, 1, 1, 1))
    volumes = rng.normal(size=(rows, 2)).astype("float32") * np.reshape(volumes_present, (-1, 1))
    return {"input_t1": rng.normal(size=(rows, 8, 8, 8, 1)).astype("float32"), "input_t2": t2.astype("float32"),
            "input_volumes": volumes.astype("float32"),
            "present_t2": np.float32(t2_present).reshape(-1, 1),
            "present_volumes": np.float32(volumes_present).reshape(-1, 1)}


def test_an_absent_input_changes_nothing_but_its_zeros():
    model = predictor([T1, T2, VOLUMES], [AGE, SEX], optional=("t2", "volumes"))
    x = batch()
    noisy = dict(x, input_volumes=x["input_volumes"] + np.float32([[0, 0], [0, 0], [5, -7], [0, 0]]))
    for training in (False, True):  # in training the branch's batch statistics leave the absent sample out
        clean, other = model(x, training=training), model(noisy, training=training)
        for name in clean:
            np.testing.assert_allclose(clean[name], other[name], rtol=1e-5, atol=1e-6)
    branches = model.encode(noisy)
    np.testing.assert_array_equal(branches["volumes"][2], np.zeros(4))  # zeros of the branch's width
    assert np.all(np.abs(branches["volumes"].numpy()[[0, 1, 3]]).sum(axis=1) > 0)


def test_an_absent_input_equals_zeros_with_its_branch_output_zeroed():
    model = predictor([T1, T2, VOLUMES], [AGE], optional=("t2", "volumes"))
    x = batch()
    # The same network by hand: the head on [CNN(t1, t2 zeroed), 0 for the absent domain].
    branches = model.encode(x)
    fused = np.concatenate([branches["imaging"], np.zeros((4, 4), np.float32)], axis=1)
    tail = keras.Model(model.get_layer("head_dense0").input, model.output["output_age"])
    absent = dict(x, present_volumes=np.zeros((4, 1), np.float32))
    np.testing.assert_allclose(model(absent)["output_age"], tail(fused), rtol=1e-5, atol=1e-6)


def test_gradients_of_an_absent_branch_are_zero_for_that_sample():
    model = predictor([T1, VOLUMES], [AGE], optional=("volumes",))
    branch = [v for v in model.trainable_variables if "branch_volumes" in v.path]
    x = batch(volumes_present=(0, 0, 0, 0))
    x.pop("input_t2"), x.pop("present_t2")
    with tf.GradientTape() as tape:  # training mode, a batch of samples without the domain
        loss = tf.reduce_sum(model(x, training=True)["output_age"] ** 2)
    assert all(float(tf.reduce_max(tf.abs(g))) == 0.0 for g in tape.gradient(loss, branch) if g is not None)
    x["present_volumes"] = np.float32([[0], [1], [1], [1]])
    for row, zero in ((0, True), (1, False)):  # inference: per sample
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x, training=False)["output_age"][row] ** 2)
        largest = max(float(tf.reduce_max(tf.abs(g))) for g in tape.gradient(loss, branch) if g is not None)
        assert (largest == 0.0) == zero


def test_the_leak_guard_zeroes_the_domain_holding_the_target(caplog):
    with caplog.at_level(logging.WARNING):
        model = predictor([T1, CONSTITUTIONAL], [AGE])
    assert model.spec["zeroed"] == ["constitutional"]
    assert "leak guard" in caplog.text and "constitutional" in caplog.text
    assert not [v for v in model.trainable_variables if "branch_constitutional" in v.path]
    x = {"input_t1": np.ones((2, 8, 8, 8, 1), np.float32), "input_constitutional": np.float32([[50, 70], [80, 90]])}
    changed = dict(x, input_constitutional=np.float32([[20, 70], [30, 90]]))
    np.testing.assert_array_equal(model(x)["output_age"], model(changed)["output_age"])
    assert predictor([T1, VOLUMES], [AGE]).spec["zeroed"] == []  # a domain without the target is kept


def test_an_input_nobody_has_is_not_built(tmp_path):
    paths = []
    for index in range(6):
        path = tmp_path / f"s{index}.hd5"
        with h5py.File(path, "w") as hd5:
            hd5.create_dataset("phenotypes/age/instance_0", data=[40.0 + index])
        paths.append(path)
    prepared = prepare_predictor(PreparedPredictor(TINY), paths, [T1, VOLUMES], [AGE], ("volumes",))
    assert prepared.unbuilt == ("volumes",)
    model = predictor([T1, VOLUMES], [AGE], optional=("volumes",), scales=prepared.scales, unbuilt=prepared.unbuilt)
    assert not [v for v in model.trainable_variables if "branch_volumes" in v.path]
    assert "input_volumes" in model.input  # still taken (the pipeline reads zeros), unused


def test_target_scaling_clamps_z_scores_and_maps_to_minus_one_one():
    values = np.concatenate([np.linspace(40, 80, 198), [0.0, 500.0]])
    scale = TargetScale.fit(values)
    low, high = np.percentile(values, [0.5, 99.5])
    assert (scale.clamp_low, scale.clamp_high) == (pytest.approx(low), pytest.approx(high))
    scaled = scale.scale(values)
    assert scaled.min() == pytest.approx(-1) and scaled.max() == pytest.approx(1)
    loss = ScaledTargetMSE(scale.factor, scale.clamp_low, scale.clamp_high)
    y, p = np.float32([[45.0], [500.0]]), np.float32([[50.0], [60.0]])
    expected = np.mean((scale.scale(y[:, 0]) - (scale.scale(p[:, 0]))) ** 2)
    assert float(loss(y, p)) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="constant"):
        TargetScale.fit(np.full(10, 3.0))


def test_a_regression_output_is_in_the_targets_units():
    scale = TargetScale.fit(np.linspace(40, 80, 50))
    model = predictor([VOLUMES], [AGE], scales={"age": scale.to_dict()})
    predicted = model(np.zeros((3, 2), np.float32))["output_age"].numpy()
    layer = model.get_layer("scaled_age")
    scaled = keras.Model(model.input, layer.output)(np.zeros((3, 2), np.float32)).numpy()
    expected = ((scaled + 1) / 2 * (scale.high - scale.low) + scale.low) * scale.sd + scale.mean
    np.testing.assert_allclose(predicted, expected, rtol=1e-5)


def test_undersampling_gives_balanced_epochs():
    labels = np.array([0] * 30 + [1] * 10 + [-1] * 2)  # -1: a sample whose class cannot be read
    sampler = BalancedSampler(labels, seed=5)
    first, second = sampler(0), sampler(1)
    for order in (first, second):
        assert np.bincount(labels[order]).tolist() == [10, 10]
        assert set(np.flatnonzero(labels == 1)) <= set(order.tolist()) and len(set(order.tolist())) == 20
    assert set(first.tolist()) != set(second.tolist())  # the majority is drawn anew every epoch
    np.testing.assert_array_equal(first, BalancedSampler(labels, seed=5)(0))


def test_class_weights_are_inverse_frequencies(tmp_path):
    paths = []
    for index, sex in enumerate([0, 0, 0, 1]):
        path = tmp_path / f"s{index}.hd5"
        with h5py.File(path, "w") as hd5:
            hd5.create_dataset("phenotypes/sex/instance_0", data=[sex])
        paths.append(path)
    config = PredictorConfig(**{**TINY.to_dict(), "balance": "class_weights"})
    prepared = prepare_predictor(PreparedPredictor(config), paths, [VOLUMES], [SEX], ())
    assert prepared.class_weights == {"sex": [pytest.approx(4 / 6), pytest.approx(2.0)]}


def test_a_saved_predictor_loads_with_the_same_outputs(tmp_path):
    model = predictor([T1, T2, VOLUMES], [AGE, SEX], optional=("t2", "volumes"),
                      scales={"age": TargetScale.fit(np.linspace(40, 80, 50)).to_dict()})
    model.save(tmp_path / "p.keras")
    loaded = keras.saving.load_model(tmp_path / "p.keras", compile=False)
    assert loaded.family == "predictor" and loaded.optional == ("t2", "volumes")
    x = batch()
    for name, value in model(x).items():
        np.testing.assert_allclose(loaded(x)[name], value, rtol=1e-5, atol=1e-6)


def test_bad_architectures_are_refused():
    with pytest.raises(ValueError, match="share a grid"):
        predictor([T1, TensorMap("t1_big", (16, 16, 16, 1))], [AGE])
    with pytest.raises(ValueError, match="too small"):
        predictor([T1], [AGE], config=PredictorConfig(stages=(4, 4, 4, 4), balance="none"))
    with pytest.raises(ValueError, match="--balance"):
        PredictorConfig(balance="oversample")
