"""The factory from flags and from Python: T1 autoencoder, T1/T2 DropFuse pair model, UDIP preset; saved parts."""

import keras
import numpy as np
import pytest

from ml4ge.arguments import build_parser
from ml4ge.hd5 import open_sample
from ml4ge.models.artifacts import load_model, save_model
from ml4ge.models.config import DenseConfig, ModelConfig
from ml4ge.models.factory import build_family, build_model, compile_model
from ml4ge.models.presets import UDIP_LEARNING_RATES, preset_from_args, udip_config
from ml4ge.recipes.train import model_settings
from ml4ge.synthetic import write_cohort
from ml4ge.tensormap import TensorMap
from ml4ge.tensormaps import brain_mri

SMALL = (11, 13, 9, 1)
T1 = brain_mri.t1.with_changes(shape=SMALL)
T2 = brain_mri.t2.with_changes(shape=SMALL)
TINY_FLAGS = ["--conv_layers", "4", "--dense_blocks", "4", "8", "--block_size", "1", "--dense_layers", "8",
              "--conv_z", "3", "--pool_z", "2", "--activation", "leaky_relu", "--conv_normalize", "batch_norm"]


def flags(*extra):
    return build_parser().parse_args(["--mode", "train", *extra])


def build_from_args(args, input_tmaps, output_tmaps):
    """The train recipe's own path: the flags' architecture and training settings, built and compiled."""
    architecture, settings = model_settings(args, input_tmaps, output_tmaps)
    return compile_model(build_family(architecture, input_tmaps, output_tmaps), output_tmaps, settings=settings)


def cohort(tmp_path, tmaps, n=4):
    """Synthetic HD5 volumes read back through the TensorMaps: inputs and mask-packed targets."""
    x = {tm.input_name: [] for tm in tmaps}
    y = {tm.output_name: [] for tm in tmaps}
    for path in write_cohort(tmp_path / "hd5", tmaps, n=n, seed=3):
        with open_sample(path) as hd5:
            for tm in tmaps:
                array, mask = tm.tensor(hd5, path.stem)
                x[tm.input_name].append(array)
                y[tm.output_name].append(tm.target(array, mask))
    return {k: np.stack(v) for k, v in x.items()}, {k: np.stack(v) for k, v in y.items()}


def train_save_load_predict(parts, x, y, folder):
    history = parts.fit(x, y, batch_size=2, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    loaded = load_model(save_model(parts, folder, "run")["full"])
    expected = parts.predict(x, verbose=0)
    for name, value in loaded.predict(x, verbose=0).items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-5)
    return history, loaded


def test_t1_autoencoder_from_flags(tmp_path):
    x, y = cohort(tmp_path, [T1])
    parts = build_from_args(flags("--input_tensors", "t1", "--output_tensors", "t1", *TINY_FLAGS), [T1], [T1])
    assert tuple(parts.output[T1.output_name].shape[1:]) == SMALL
    _, loaded = train_save_load_predict(parts, x, y, tmp_path / "model")
    assert set(loaded.encoders) == {"t1"} and loaded.latent_size == 8
    # The loaded full model was compiled with the masked loss; evaluating needs no custom objects.
    assert np.isfinite(loaded.evaluate(x, y, verbose=0, return_dict=True)["loss"])


def test_pair_model_from_flags_starts_from_saved_unimodal_parts(tmp_path):
    """The DropFuse workflow: unimodal autoencoders' saved encoders/decoders given as blocks of a pair model."""
    x, y = cohort(tmp_path, [T1, T2])
    paths = {}
    for tm in (T1, T2):
        unimodal = build_from_args(flags(*TINY_FLAGS), [tm], [tm])
        paths[tm.name] = save_model(unimodal, tmp_path / tm.name, "ae")
        paths[tm.name]["model"] = unimodal
    args = flags("--input_tensors", "t1", "t2", "--output_tensors", "t1", "t2", *TINY_FLAGS,
                 "--encoder_blocks", str(paths["t1"]["encoder_t1"]), str(paths["t2"]["encoder_t2"]), "conv_encode",
                 "--decoder_blocks", str(paths["t1"]["decoder_t1"]), "conv_decode",
                 "--merge_blocks", "pair", "--pairs", "t1", "t2", "--pair_loss", "contrastive",
                 "--pair_merge", "dropout", "--pair_loss_weight", "0.1")
    parts = build_from_args(args, [T1, T2], [T1, T2])
    for tm in (T1, T2):  # the saved encoders' weights are used
        np.testing.assert_allclose(parts.encoders[tm.name](x[tm.input_name]),
                                   paths[tm.name]["model"].encoders[tm.name](x[tm.input_name]), rtol=1e-6)
    np.testing.assert_allclose(parts.decoders["t1"](np.ones((1, 8))),
                               paths["t1"]["model"].decoders["t1"](np.ones((1, 8))), rtol=1e-6)
    history, loaded = train_save_load_predict(parts, x, y, tmp_path / "pair")
    assert history["contrastive_pair_loss"][0] > 0
    assert set(loaded.encoders) == {"t1", "t2"} and set(loaded.decoders) == {"t1", "t2"}


def test_udip_preset_from_flags_at_small_size(tmp_path):
    volume = brain_mri.t1.with_changes(shape=(13, 15, 11, 1))
    x, y = cohort(tmp_path, [volume])
    args = flags("--model_preset", "udip", "--input_tensors", "t1", "--output_tensors", "t1")
    parts = build_from_args(args, [volume], [volume])
    encoder = parts.encoders["t1"]
    assert encoder.get_layer("encode_t1_pad_0").output.shape[1:] == (16, 16, 16, 1)
    assert encoder.get_layer("encode_t1_flatten_0").output.shape[1:] == (256,)
    assert encoder.get_layer("encode_t1_act_0").negative_slope == pytest.approx(0.01)
    assert float(parts.optimizer.learning_rate) == pytest.approx(UDIP_LEARNING_RATES["t1"])
    train_save_load_predict(parts, x, y, tmp_path / "udip")


@pytest.mark.slow
def test_udip_full_size_has_about_138m_parameters_and_keeps_the_mni_shape():
    parts = build_model([brain_mri.t1], [brain_mri.t1], ["conv_encode"], [], ["conv_decode"], udip_config("t1"))
    assert 137.5e6 < parts.count_params() < 138.5e6
    encoder, decoder = parts.encoders["t1"], parts.decoders["t1"]
    assert encoder.get_layer("encode_t1_pad_0").output.shape[1:] == (192, 224, 192, 1)
    assert encoder.get_layer("encode_t1_flatten_0").output.shape[1:] == (12 * 14 * 12 * 256,)
    assert encoder.output.shape[1:] == (128,)
    assert decoder.output.shape[1:] == (182, 218, 182, 1)


def test_udip_preset_learning_rates_and_plateau_schedule():
    t2_args = flags("--model_preset", "udip", "--input_tensors", "t2_64", "--output_tensors", "t2_64")
    config, training = preset_from_args(t2_args)
    assert config.preset == "udip" and config.conv.stages == (32, 64, 128, 256)
    assert training.learning_rate == pytest.approx(3.020e-4, rel=1e-3)
    callback = training.schedule_callback()
    assert isinstance(callback, keras.callbacks.ReduceLROnPlateau)
    assert (callback.factor, callback.patience) == (0.5, 4)
    assert callback.min_lr == pytest.approx(training.learning_rate / 1000)
    _, explicit = preset_from_args(flags("--model_preset", "udip", "--learning_rate", "0.01"))
    assert explicit.learning_rate == 0.01 and explicit.schedule.min_lr == pytest.approx(1e-5)
    _, stepped = preset_from_args(flags("--model_preset", "udip", "--lr_schedule", "step", "--lr_step_epochs", "3"))
    assert stepped.learning_rate == pytest.approx(UDIP_LEARNING_RATES["t1"]) and stepped.schedule.every == 3


def test_model_config_from_flags_keeps_each_block_to_its_own_config():
    config = ModelConfig.from_args(flags(*TINY_FLAGS, "--dense_layers", "16", "8", "--pairs", "a", "b",
                                         "--pair_loss", "cosine"))
    assert config.conv.stages == (4, 8) and config.conv.kernel(3, 0) == (3, 3, 3) and config.conv.pool == (2, 2, 2)
    assert config.dense.hidden == (16,) and config.latent_size == 8
    assert config.pair.pairs == (("a", "b"),) and config.pair.loss == "cosine"
    with pytest.raises(ValueError, match="--dense_layers"):
        ModelConfig.from_args(flags("--dense_layers", "0"))


def _named_encoder(width, name="encoder"):
    """An encoder built by hand, with the same model and layer names as any other made by this function."""
    inputs = keras.Input((width,), name="x")
    return keras.Model(inputs, keras.layers.Dense(4, name="dense")(inputs), name=name)


def test_loaded_encoders_with_clashing_names_are_kept_apart(tmp_path):
    a, b = TensorMap("a", (5,)), TensorMap("b", (7,))
    _named_encoder(5).save(tmp_path / "encoder_a.keras")
    _named_encoder(7).save(tmp_path / "encoder_b.keras")
    config = ModelConfig(dense=DenseConfig(widths=(4,)))
    parts = build_model([a, b], [a, b], [str(tmp_path / "encoder_a.keras"), str(tmp_path / "encoder_b.keras")],
                        ["average"], ["dense_decode"], config)
    assert {layer.name for layer in parts.layers} >= {"encode_a", "encode_b"}
    compile_model(parts, [a, b], run_eagerly=True)
    rng = np.random.default_rng(0)
    x = {"input_a": rng.normal(size=(4, 5)), "input_b": rng.normal(size=(4, 7))}
    y = {"output_a": x["input_a"], "output_b": x["input_b"]}
    parts.fit(x, y, batch_size=2, verbose=0)
    loaded = load_model(save_model(parts, tmp_path / "run", "run")["full"])
    np.testing.assert_allclose(loaded(x)["output_b"], parts(x)["output_b"], rtol=1e-6)


def test_loss_weights_are_honoured():
    a = TensorMap("a", (3,), loss_weight=3.0)
    b = TensorMap("b", (2,), loss_weight=0.5)
    parts = build_model([a], [a, b], ["dense_encode"], [], ["dense_decode"], ModelConfig(dense=DenseConfig((4,))))
    compile_model(parts, [a, b], run_eagerly=True)
    rng = np.random.default_rng(0)
    x = {"input_a": rng.normal(size=(4, 3))}
    logs = parts.evaluate(x, {"output_a": x["input_a"], "output_b": rng.normal(size=(4, 2))},
                               return_dict=True, verbose=0)
    assert logs["loss"] == pytest.approx(3.0 * logs["output_a_loss"] + 0.5 * logs["output_b_loss"], rel=1e-5)


def test_saved_part_arguments_are_checked(tmp_path):
    a = TensorMap("a", (5,))
    with pytest.raises(FileNotFoundError, match="encoder_a.keras"):
        build_model([a], [a], [str(tmp_path / "encoder_a.keras")], [], ["dense_decode"])
    _named_encoder(5).save(tmp_path / "encoder_z.keras")
    with pytest.raises(ValueError, match="matches no TensorMap"):
        build_model([a], [a], [str(tmp_path / "encoder_z.keras"), "dense_encode"], [], ["dense_decode"])
    _named_encoder(6).save(tmp_path / "encoder_a.keras")
    with pytest.raises(ValueError, match="trained for this TensorMap"):
        build_model([a], [a], [str(tmp_path / "encoder_a.keras")], [], ["dense_decode"])
    with pytest.raises(FileNotFoundError, match="missing"):
        load_model(tmp_path / "nothing.keras")


@pytest.mark.parametrize("style", ["plain", "ml4h"])
def test_mixed_precision_keeps_the_dense_layers_float32(tmp_path, style):
    """Under mixed precision the convolutions compute in bfloat16 and the dense layers on one vector per sample in
    float32 (their kernels, not their activations, hold the memory); it trains and loads."""
    from ml4ge import strategy

    x, y = cohort(tmp_path, [T1])
    default = strategy.make_strategy("default")
    strategy.set_precision(True, default)
    try:
        parts = build_from_args(flags("--input_tensors", "t1", "--output_tensors", "t1", "--conv_style", style,
                                      *TINY_FLAGS), [T1], [T1])
        layers = [layer for model in (parts.encoders["t1"], parts.decoders["t1"]) for layer in model.layers]
        dense = {layer.name: layer.compute_dtype for layer in layers if isinstance(layer, keras.layers.Dense)}
        convs = {layer.compute_dtype for layer in layers if isinstance(layer, keras.layers.Conv3D)}
        assert len(dense) >= 2 and set(dense.values()) == {"float32"}, dense
        assert convs == {"bfloat16"}
        assert parts.encoders["t1"].get_layer("embed_t1").output.dtype == "float32"
        _, loaded = train_save_load_predict(parts, x, y, tmp_path / "saved")
        assert {layer.compute_dtype for layer in loaded.layers if isinstance(layer, keras.layers.Dense)} <= {"float32"}
    finally:
        strategy.set_precision(False, default)
