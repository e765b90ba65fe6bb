"""ml4h's conv structure (``--conv_style ml4h``, the default) and ml4ge's plain one (``--conv_style plain``)."""

import keras
import numpy as np
import pytest

from ml4ge.arguments import build_parser
from ml4ge.models.config import ModelConfig
from ml4ge.models.factory import build_model
from ml4ge.models.presets import udip_config
from ml4ge.tensormap import TensorMap

# The seed's DXA autoencoder flags (ml4h model_zoo/registration_reveals_genetics/README.md).
SEED_MODEL = ["--encoder_blocks", "conv_encode", "--merge_blocks", "--decoder_blocks", "conv_decode",
              "--activation", "swish", "--conv_layers", "32", "--conv_width", "31", "--dense_blocks", "32", "32",
              "32", "32", "32", "--dense_layers", "256", "--block_size", "3"]
DXA_64 = TensorMap("dxa_2", shape=(64, 64, 1))
# ml4h's count for a (64, 64, 1) map, by hand from ml4h's conv_blocks.py (REFERENCE_ML4H.md 4.3): stem conv 320;
# 5 DenseNet stages of 3 convs at 32 channels (inputs 32, 64, 96 channels): 5 x (9,248 + 18,464 + 27,680) =
# 276,960; embed Dense(2*2*32 -> 256) 33,024; decoder Dense(256 -> 2*2*32) 32,896, the same 5 stages 276,960,
# 1x1 output conv 33. Total 620,193 (the figure).
ML4H_DXA_PARAMETERS = 620_193
PLAIN_DXA_PARAMETERS = 352_961  # ml4ge's plain stages, the figure
# Measured on main before the ml4h style existed: UDIP at 64^3, and the demo presets' T1 and deep-brain models.
UDIP_64_PARAMETERS = 9_701_521
DEMO_PARAMETERS = {("default", "t1"): 11_649_156, ("default", "t1_deep"): 1_290_372,
                   ("quick", "t1"): 810_036, ("quick", "t1_deep"): 237_348}


def seed_model(*extra, tm=DXA_64):
    args = build_parser().parse_args(["--mode", "train", *SEED_MODEL, *extra])
    return build_model([tm], [tm], args.encoder_blocks, args.merge_blocks, args.decoder_blocks,
                       ModelConfig.from_args(args))


def test_seed_dxa_command_builds_ml4h_parameter_count():
    assert seed_model().count_params() == ML4H_DXA_PARAMETERS


def test_plain_style_keeps_ml4ge_stages():
    assert seed_model("--conv_style", "plain").count_params() == PLAIN_DXA_PARAMETERS


def layer_types(model):
    return [type(layer).__name__ for layer in model.encoders["dxa_2"].layers]


def test_ml4h_encoder_structure():
    """DenseNet connections, no linear embedding: the encoder's output is the activation after ``embed_``."""
    parts = seed_model()
    encoder = parts.encoders["dxa_2"]
    # each stage's 2nd and 3rd convolutions also read the earlier outputs (1 + 2 kernel parts, summed)
    assert layer_types(parts).count("Add") == 5 * 2
    assert sum(layer.name.startswith("encode_dxa_2_conv_part") for layer in encoder.layers) == 5 * 3
    assert encoder.get_layer("embed_dxa_2") is not None
    assert type(encoder.layers[-1]).__name__ == "Activation"
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 1)).astype("float32")
    latent = keras.ops.convert_to_numpy(encoder(x))
    assert latent.shape == (2, 256) and latent.min() >= -0.2785  # swish's minimum: the embedding is activated


def test_conv_of_concatenation_is_one_convolution_of_the_concatenated_pieces():
    """The sum of per-piece convolutions equals ml4h's convolution of the concatenation with the parts' kernels
    stacked, and every part draws from Glorot-uniform's bound of that whole kernel."""
    from ml4ge.models.blocks import Namer
    from ml4ge.models.conv_ml4h import conv_of_concatenation, glorot_limit

    pieces = [keras.Input((6, 5, 3)), keras.Input((6, 5, 2))]
    model = keras.Model(pieces, conv_of_concatenation(pieces, 4, (3, 2), 2, Namer("t")))
    parts = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    whole = keras.layers.Conv2D(4, (3, 2), padding="same")
    whole.build((None, 6, 5, 5))
    kernels = [keras.ops.convert_to_numpy(part.kernel) for part in parts]
    whole.set_weights([np.concatenate(kernels, axis=-2), keras.ops.convert_to_numpy(parts[0].bias)])
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 6, 5, 3)).astype("float32"), rng.normal(size=(2, 6, 5, 2)).astype("float32")
    got = keras.ops.convert_to_numpy(model([a, b]))
    expected = keras.ops.convert_to_numpy(whole(np.concatenate([a, b], axis=-1)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert [part.use_bias for part in parts] == [True, False]
    assert max(np.abs(kernel).max() for kernel in kernels) <= glorot_limit((3, 2), 5, 4)


def test_residual_stem_adds_from_second_layer():
    parts = seed_model("--conv_layers", "8", "16", "4", "--dense_blocks", "8", "--block_size", "2",
                       "--dense_layers", "16")
    names = [layer.name for layer in parts.encoders["dxa_2"].layers]
    assert sum(name.startswith("encode_dxa_2_add") for name in names) == 2
    residual = parts.encoders["dxa_2"].get_layer("encode_dxa_2_residual_0")
    assert residual.kernel.shape == (1, 1, 16, 8)  # a 1x1 conv of the 2nd conv's output to the first width


def test_ml4h_style_pads_and_crops_centrally():
    """ml4h's decoder gives a wrong shape when the pooling does not divide the map; ml4ge pads and crops."""
    odd = TensorMap("odd", shape=(30, 22, 1))
    parts = seed_model("--dense_blocks", "8", "8", "--block_size", "2", "--dense_layers", "16", tm=odd)
    x = np.zeros((1, 30, 22, 1), "float32")
    assert parts.predict({odd.input_name: x}, verbose=0)[odd.output_name].shape == (1, 30, 22, 1)


def test_udip_preset_is_plain_and_unchanged():
    """UDIP at 64^3: the same parameter count as before the ml4h style existed."""
    tm = TensorMap("t1", shape=(64, 64, 64, 1))
    parts = build_model([tm], [tm], ["conv_encode"], [], ["conv_decode"], udip_config())
    assert udip_config().conv.style == "plain"
    assert parts.count_params() == UDIP_64_PARAMETERS


def test_saved_configs_without_style_are_plain():
    data = ModelConfig().to_dict()
    del data["conv"]["style"]
    assert ModelConfig.from_dict(data).conv.style == "plain"


def test_unknown_style_refused():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--mode", "train", "--conv_style", "densenet"])


@pytest.mark.parametrize("preset, model", sorted(DEMO_PARAMETERS))
def test_demo_models_are_plain_and_unchanged(preset, model):
    import argparse

    from ml4ge.demo.presets import PRESETS
    from ml4ge.lookup import resolve_all
    from ml4ge.models.presets import settings_from_args
    from ml4ge.recipes.train import TrainSettings

    demo = PRESETS.get(preset)
    settings = TrainSettings(**demo.model_flags)
    config, _ = settings_from_args(argparse.Namespace(**vars(settings)))
    tm = resolve_all([getattr(demo, model)], None)[0]
    assert config.conv.style == "plain"
    parts = build_model([tm], [tm], settings.encoder_blocks, (), settings.decoder_blocks, config)
    assert parts.count_params() == DEMO_PARAMETERS[preset, model]
