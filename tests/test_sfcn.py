"""SFCN as blocks: the soft labels, the KL loss, the expectation readout, the encoder, the preset, the input map."""

import h5py
import keras
import numpy as np
import pytest
from scipy.stats import norm

from ml4ge.models.artifacts import load_model, save_model
from ml4ge.models.config import ModelConfig
from ml4ge.models.factory import Architecture, build_family, compile_model
from ml4ge.models.presets import PRESETS, sfcn_preset
from ml4ge.models.sfcn_config import SFCNConfig, SoftLabelConfig
from ml4ge.models.soft_label import BinExpectation, SoftLabelKL, SoftLabelMAE, expected_value, soft_labels
from ml4ge.normalizers import DegenerateSampleError
from ml4ge.recipes.train import block_losses
from ml4ge.tensormap import TensorMap

SEED_BINS = SoftLabelConfig(42.0, 82.0, 1.0, 1.0)
TINY_BINS = SoftLabelConfig(40.0, 60.0, 2.0, 1.5)
TINY = ModelConfig(sfcn=SFCNConfig(channels=(4, 8), bottleneck=6, dropout=0.5), soft_label=TINY_BINS)
VOLUME = TensorMap("vol", (12, 14, 10, 1))
AGE = TensorMap("age", (1,))


def tiny_model(config=TINY, volume=VOLUME):
    return build_family(Architecture("autoencoder", ("sfcn_encode",), ("concat",), ("soft_label",), config),
                        [volume], [AGE])


# --------------------------------------------------------------------------------------------- soft labels
def test_seed_bins_are_forty_one_year_bins_with_centres_42_5_to_81_5():
    centres = SEED_BINS.centres()
    assert SEED_BINS.bins == 40 and centres[0] == 42.5 and centres[-1] == 81.5


@pytest.mark.parametrize("age", [42.0, 55.3, 63.71, 79.0])
def test_soft_labels_sum_to_one_and_are_gaussian_cdf_differences(age):
    labels = soft_labels([age], SEED_BINS)[0]
    edges = np.arange(42, 83, dtype=np.float64)
    expected = norm.cdf(edges[1:], loc=age, scale=1.0) - norm.cdf(edges[:-1], loc=age, scale=1.0)
    np.testing.assert_allclose(labels, expected, rtol=0, atol=1e-15)
    # 3 sigma inside the range the mass outside the bins is below 2e-3; an age on the edge loses half of it
    assert labels.sum() == pytest.approx(1.0 if 45 <= age <= 79 else 0.5, abs=2e-3)


def test_soft_labels_of_an_interior_age_sum_to_one_to_float_precision():
    assert soft_labels([60.0], SEED_BINS).sum() == pytest.approx(1.0, abs=1e-12)


def test_bins_that_do_not_tile_the_range_are_refused():
    with pytest.raises(ValueError, match="whole number"):
        SoftLabelConfig(42.0, 82.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="positive"):
        SoftLabelConfig(42.0, 82.0, 1.0, 0.0)


# --------------------------------------------------------------------------------------------- loss and readout
def test_kl_loss_is_the_seeds_sum_over_bins_averaged_over_the_batch():
    ages = np.array([[50.2], [61.9], [70.0]], np.float32)
    logits = np.random.default_rng(0).normal(size=(3, 40))
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    target = soft_labels(ages, SEED_BINS)
    expected = np.mean(np.sum(target * (np.log(target + 1e-16) - log_probs), axis=1))
    got = float(SoftLabelKL(42, 82, 1, 1)(ages, log_probs.astype(np.float32)))
    assert got == pytest.approx(expected, rel=1e-4)


def test_kl_loss_is_smallest_at_the_soft_labels_themselves():
    ages = np.array([[57.4]], np.float32)
    at_target = float(SoftLabelKL(42, 82, 1, 1)(ages, np.log(soft_labels(ages, SEED_BINS) + 1e-30).astype("float32")))
    shifted = float(SoftLabelKL(42, 82, 1, 1)(ages, np.log(soft_labels(ages + 2, SEED_BINS) + 1e-30).astype("float32")))
    assert at_target == pytest.approx(0.0, abs=1e-4) and shifted > 1.0


@pytest.mark.parametrize("index", [0, 7, 39])
def test_expectation_of_a_one_hot_bin_is_its_centre(index):
    log_probs = np.full((1, 40), -np.inf)
    log_probs[0, index] = 0.0
    centre = SEED_BINS.centres()[index]
    assert expected_value(log_probs, SEED_BINS.centres())[0] == centre
    layer = BinExpectation(SEED_BINS.centres())
    assert float(keras.ops.convert_to_numpy(layer(np.where(np.isinf(log_probs), -1e9, 0.0).astype("float32")))[0, 0]) \
        == pytest.approx(centre, abs=1e-4)


def test_expectation_refuses_log_probabilities_of_other_bins():
    with pytest.raises(ValueError, match=r"\[N, 40\]"):
        expected_value(np.zeros((2, 20)), SEED_BINS.centres())


def test_mae_metric_reads_the_expectation_in_years():
    log_probs = np.log(soft_labels([[50.0], [60.0]], SEED_BINS) + 1e-30).astype("float32")
    metric = SoftLabelMAE(42, 82, 1, 1)
    metric.update_state(np.array([[52.0], [60.0]], np.float32), log_probs)
    assert float(metric.result()) == pytest.approx(1.0, abs=1e-3)


# --------------------------------------------------------------------------------------------- encoder and model
def test_full_size_sfcn_builds_with_about_three_million_parameters():
    from ml4ge.tensormaps.brain_mri import t1_sfcn

    preset = sfcn_preset()
    model = build_family(Architecture("autoencoder", ("sfcn_encode",), ("concat",), ("soft_label",), preset.model),
                         [t1_sfcn], [AGE])
    encoder = model.encoders["t1_sfcn"]
    assert t1_sfcn.shape == (160, 192, 160, 1)
    assert encoder.get_layer("encode_t1_sfcn_conv_5").input.shape == (None, 5, 6, 5, 256)  # the seed's 5x6x5
    assert encoder.output.shape == (None, 64) and model.outputs[0].shape == (None, 40)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 2_952_936 and 2.9e6 < model.count_params() < 3.0e6  # "about 3 M"
    assert preset.training.optimizer == "adam" and preset.training.learning_rate == 3e-4
    assert preset.training.batch_size == 20 and preset.training.patience == 3


def test_stage_order_is_conv_bn_pool_relu_then_conv1_bn_relu_pool_dropout():
    kinds = [type(layer).__name__ for layer in tiny_model().encoders["vol"].layers[1:]]
    assert kinds == ["Conv3D", "BatchNormalization", "MaxPooling3D", "Activation"] * 2 + [
        "Conv3D", "BatchNormalization", "Activation", "GlobalAveragePooling3D", "Dropout"]


def test_a_volume_too_small_for_the_stages_is_refused_with_what_to_change():
    with pytest.raises(ValueError, match="fewer --sfcn_channels"):
        tiny_model(ModelConfig(sfcn=SFCNConfig(channels=(4, 4, 4, 4)), soft_label=TINY_BINS))


def test_the_head_trains_with_the_kl_loss_and_reports_mae_in_years():
    model = tiny_model()
    (tm,) = block_losses(model, [AGE])
    assert isinstance(tm.loss, SoftLabelKL) and tm.loss.bins == TINY_BINS
    assert isinstance(tm.metrics[0], SoftLabelMAE)


def test_fit_lowers_the_loss_and_save_load_is_identical(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    compile_model(model, block_losses(model, [AGE]), learning_rate=1e-2)
    rng = np.random.default_rng(1)
    ages = rng.uniform(42, 58, (16, 1)).astype("float32")
    x = (rng.normal(size=(16, *VOLUME.shape)) + (ages[:, :, None, None, None] - 50) / 4).astype("float32")
    history = model.fit({VOLUME.input_name: x}, {AGE.output_name: ages}, epochs=8, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "age_mae" in history.history
    paths = save_model(model, tmp_path, "sfcn")
    loaded = load_model(paths["full"])
    expected = keras.ops.convert_to_numpy(model({VOLUME.input_name: x})[AGE.output_name])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded({VOLUME.input_name: x})[AGE.output_name]),
                                  expected)
    assert loaded.spec["config"]["soft_label"] == {"start": 40.0, "stop": 60.0, "width": 2.0, "sigma": 1.5}
    assert np.allclose(np.exp(expected).sum(1), 1.0, atol=1e-5)


def test_preset_flags_move_the_bins_and_the_registry_names_both_presets():
    from ml4ge.arguments import build_parser
    from ml4ge.models.presets import preset_from_args

    assert {"sfcn", "sfcn_small"} <= set(PRESETS.names())
    args = build_parser().parse_args(["--mode", "train", "--model_preset", "sfcn", "--soft_label_range", "40", "86"])
    config, _ = preset_from_args(args)
    assert config.soft_label == SoftLabelConfig(40.0, 86.0, 1.0, 1.0) and config.sfcn == SFCNConfig()
    unchanged, _ = preset_from_args(build_parser().parse_args(["--mode", "train", "--model_preset", "sfcn"]))
    assert unchanged.soft_label == SEED_BINS



def test_a_given_range_keeps_the_presets_own_width_and_sigma_and_a_given_sigma_wins():
    from ml4ge.arguments import build_parser
    from ml4ge.models.presets import preset_from_args

    def bins(*flags):
        args = build_parser().parse_args(["--mode", "train", "--model_preset", "sfcn_small", *flags])
        return preset_from_args(args)[0].soft_label

    assert bins() == SoftLabelConfig(40.0, 85.0, 3.0, 3.0)
    assert bins("--soft_label_range", "30", "90") == SoftLabelConfig(30.0, 90.0, 3.0, 3.0)
    assert bins("--soft_label_sigma", "2") == SoftLabelConfig(40.0, 85.0, 3.0, 2.0)


def test_the_demo_sfcn_has_sfcns_five_stages_down_to_a_2x2x2_map():
    config = PRESETS.get("sfcn_small")().model
    volume = TensorMap("t1_demo", (64, 80, 64, 1))
    model = build_family(Architecture("autoencoder", ("sfcn_encode",), ("concat",), ("soft_label",), config),
                         [volume], [AGE])
    encoder = model.encoders["t1_demo"]
    assert len(config.sfcn.channels) == 5
    assert encoder.get_layer("encode_t1_demo_conv_5").input.shape == (None, 2, 2, 2, 64)  # the bottleneck's input
    assert model.outputs[0].shape[-1] == 15  # three-year bins over 40-85

# --------------------------------------------------------------------------------------------- the input map
def test_sfcn_input_divides_by_the_whole_volume_mean_then_crops_centrally(tmp_path):
    from ml4ge.tensormaps.brain_mri import t1, t1_sfcn

    volume = np.zeros((182, 218, 182), np.float32)
    volume[40:140, 50:170, 40:140] = np.random.default_rng(2).uniform(1, 3, (100, 120, 100))
    path = tmp_path / "s1.hd5"
    with h5py.File(path, "w") as hd5:
        hd5.create_dataset(f"{t1.key}/instance_0", data=volume)
    with h5py.File(path, "r") as hd5:
        x, mask = t1_sfcn.tensor(hd5, "s1")
    assert x.shape == (160, 192, 160, 1) and mask is None
    np.testing.assert_allclose(x[..., 0], (volume / volume.astype(np.float64).mean())[11:171, 13:205, 11:171],
                               rtol=1e-6)


def test_an_empty_volume_is_a_degenerate_sample_not_a_division_by_zero(tmp_path):
    from ml4ge.tensormaps.brain_mri import t1, t1_sfcn

    path = tmp_path / "s2.hd5"
    with h5py.File(path, "w") as hd5:
        hd5.create_dataset(f"{t1.key}/instance_0", data=np.zeros((182, 218, 182), np.float32))
    with h5py.File(path, "r") as hd5, pytest.raises(DegenerateSampleError, match="image mean"):
        t1_sfcn.tensor(hd5, "s2")
