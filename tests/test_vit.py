"""The vision-transformer blocks (vit_encode / vit_decode), their layers, the patch-masked MSE, the brain-token set
and the UDIP-ViT presets (issue #15 items 1, 2, 3, 6)."""

import json
import math
import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pandas as pd
import pytest
from recipe_helpers import REPO, write_cohort, write_maps_package

from ml4ge.models.artifacts import load_model, save_model
from ml4ge.models.config import ModelConfig
from ml4ge.models.factory import build_model, compile_model
from ml4ge.models.presets import PRESETS
from ml4ge.models.vit_config import ViTConfig
from ml4ge.models.vit_layers import AddPositions, PlacePatches, axis_widths, patchify, sincos_1d, sincos_codes
from ml4ge.models.vit_loss import PatchMaskedMeanSquaredError
from ml4ge.models.vit_tokens import brain_tokens, union_mask, with_brain_tokens
from ml4ge.tensormap import TensorMap
from ml4ge.training_settings import TrainingSettings

TINY_VIT = ViTConfig(patch=(8, 8, 8), width=16, depth=2, heads=2, decoder_width=8, decoder_depth=1, decoder_heads=2)


def decode_positions(codes: np.ndarray, grid) -> list[np.ndarray]:
    """Each row's coordinate per axis: the nearest 1-D code of that axis's slice of the row."""
    coordinates, start = [], 0
    for size, width in zip(grid, axis_widths(codes.shape[1], len(grid))):
        axis_codes = sincos_1d(np.arange(size), width)
        part = codes[:, start:start + width]
        coordinates.append(np.argmin(((part[:, None, :] - axis_codes[None]) ** 2).sum(-1), axis=1))
        start += width
    return coordinates


@pytest.mark.parametrize("grid", [(13, 14, 13), (5, 7), (9,)])
def test_position_codes_decode_to_grid_coordinates_in_flatten_order(grid):
    codes = sincos_codes(grid, 64)
    expected = np.unravel_index(np.arange(math.prod(grid)), grid)
    for got, want in zip(decode_positions(codes, grid), expected):
        np.testing.assert_array_equal(got, want)
    kept = [0, 3, math.prod(grid) - 1]
    added = keras.ops.convert_to_numpy(AddPositions(grid, kept)(np.zeros((1, 3, 64), "float32")))[0]
    for got, want in zip(decode_positions(added, grid), np.unravel_index(kept, grid)):
        np.testing.assert_array_equal(got, want)


def test_patch_tokens_are_flattened_row_major():
    """A single bright patch at grid coordinate (i, j, k) changes token ravel_multi_index((i, j, k)) only: the
    flatten order of the patch embedding is the order the position codes assume."""
    tm = TensorMap("vol", (16, 24, 8, 1))
    model = build_model([tm], [tm], ["vit_encode"], ["concat"], ["vit_decode"], ModelConfig(vit=TINY_VIT))
    encoder = model.encoders["vol"]
    tokens = keras.Model(encoder.input, encoder.get_layer("encode_vol_tokens_0").output)
    x = np.zeros((1, *tm.shape), "float32")
    base = keras.ops.convert_to_numpy(tokens(x))[0]
    x[0, 8:16, 16:24, 0:8] = 1.0  # grid coordinate (1, 2, 0) of a 2x3x1 grid
    changed = np.flatnonzero(np.abs(keras.ops.convert_to_numpy(tokens(x))[0] - base).sum(-1) > 0)
    assert changed.tolist() == [np.ravel_multi_index((1, 2, 0), (2, 3, 1))]


def test_place_patches_inverts_patchify_and_zeroes_unkept_patches():
    x = np.random.default_rng(0).normal(size=(2, 4, 6, 4, 3)).astype("float32")
    patches = keras.ops.convert_to_numpy(patchify(x, (2, 3, 2)))
    assert patches.shape == (2, 8, 36)
    kept = [1, 4, 6]
    placed = keras.ops.convert_to_numpy(PlacePatches((2, 2, 2), (2, 3, 2), 3, kept)(patches[:, kept]))
    back = keras.ops.convert_to_numpy(patchify(placed, (2, 3, 2)))
    np.testing.assert_array_equal(back[:, kept], patches[:, kept])
    assert not back[:, [0, 2, 3, 5, 7]].any()


def numpy_patch_masked_mse(values, mask, prediction, patch):
    """B.3 written out with loops: per patch holding brain, the mean squared error over its voxels in the volume."""
    total, count = 0.0, 0
    spatial = values.shape[1:-1]
    grid = [-(-s // p) for s, p in zip(spatial, patch)]
    starts = [(-(-s // p) * p - s) // 2 for s, p in zip(spatial, patch)]  # central padding before the volume
    for b in range(values.shape[0]):
        for cell in np.ndindex(*grid):
            box = tuple(slice(max(0, c * p - o), c * p - o + p) for c, p, o in zip(cell, patch, starts))
            if mask[(b, *box)].any():
                total += ((values[(b, *box)] - prediction[(b, *box)]) ** 2).mean()
                count += 1
    return total / max(count, 1)


@pytest.mark.parametrize("shape,patch", [((5, 6, 7, 1), (2, 4, 3)), ((9, 10, 2), (4, 3, 1)), ((11, 1), (4, 1, 1))])
def test_patch_masked_loss_equals_numpy(shape, patch):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(3, *shape)).astype("float32")
    prediction = rng.normal(size=(3, *shape)).astype("float32")
    mask = (rng.random((3, *shape)) < 0.08).astype("float32")
    loss = PatchMaskedMeanSquaredError(patch)
    got = float(loss(np.concatenate([values, mask], -1), prediction))
    assert got == pytest.approx(numpy_patch_masked_mse(values, mask, prediction, patch), rel=1e-5)
    empty = np.concatenate([values, np.zeros_like(mask)], -1)
    assert float(loss(empty, prediction)) == 0.0


def test_brain_tokens_are_the_patches_holding_mask_voxels():
    mask = np.zeros((16, 16, 16, 1))
    mask[1, 1, 1] = mask[9, 2, 15] = 1  # grid cells (0, 0, 0) and (1, 0, 1) of 2x2x2
    assert brain_tokens(mask, (8, 8, 8)).tolist() == [0, 5]
    mask = np.zeros((4, 5, 1))  # padded to 6x6: one row before and after on axis 0, a column after on axis 1
    mask[2, 4] = 1  # padded (3, 4) -> patch (1, 2) of a 2x3 grid
    assert brain_tokens(mask, (3, 2, 1)).tolist() == [5]


@pytest.fixture(scope="module")
def kept_model():
    """A tiny ViT autoencoder of a 16^3 volume (2x2x2 tokens of 8^3) keeping tokens 0, 3 and 5."""
    tm = TensorMap("vol", (16, 16, 16, 1), mask="nonzero")
    mask = np.zeros(tm.shape, "float32")
    for cell in (0, 3, 5):
        i, j, k = np.unravel_index(cell, (2, 2, 2))
        mask[i * 8 + 2:i * 8 + 6, j * 8 + 1:j * 8 + 7, k * 8 + 3:k * 8 + 5] = 1
    config = ModelConfig(vit=TINY_VIT.with_kept(tm.name, brain_tokens(mask, TINY_VIT.patch)))
    model = build_model([tm], [tm], ["vit_encode"], ["concat"], ["vit_decode"], config)
    return tm, mask, model


def test_only_kept_tokens_take_part(kept_model):
    tm, mask, model = kept_model
    assert model.spec["config"]["vit"]["kept_tokens"] == [["vol", [0, 3, 5]]]
    encoder = model.encoders["vol"]
    assert encoder.get_layer("encode_vol_keep_0").output.shape == (None, 3, 16)
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(2, *tm.shape)) * mask).astype("float32")
    out = keras.ops.convert_to_numpy(model({tm.input_name: x})[tm.output_name])
    patches = keras.ops.convert_to_numpy(patchify(out, (8, 8, 8)))
    assert not patches[:, [1, 2, 4, 6, 7]].any() and np.abs(patches[:, [0, 3, 5]]).sum(-1).min() > 0


def test_voxels_outside_the_kept_tokens_change_neither_latent_nor_loss(kept_model):
    tm, mask, model = kept_model
    compile_model(model, [tm], settings=TrainingSettings())
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(2, *tm.shape)) * mask).astype("float32")
    changed = x.copy()
    changed[:, 8:16, 8:16, 8:16] = rng.normal(size=(2, 8, 8, 8, 1))  # token 7, not kept; its mask stays 0
    changed[:, 0:8, 8:16, 0:8] = 5.0  # token 2, not kept
    latent = keras.ops.convert_to_numpy(model.encode({tm.input_name: x})["vol"])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.encode({tm.input_name: changed})["vol"]), latent)
    loss = PatchMaskedMeanSquaredError(TINY_VIT.patch)
    values = [float(loss(np.concatenate([inputs, mask[None].repeat(2, 0)], -1),
                         model({tm.input_name: inputs})[tm.output_name])) for inputs in (x, changed)]
    assert values[0] == values[1] and values[0] > 0


@pytest.mark.parametrize("shape", [(30, 2), (20, 18, 1)])
def test_signals_and_images(shape):
    tm = TensorMap("low_rank", shape)
    model = build_model([tm], [tm], ["vit_encode"], ["concat"], ["vit_decode"], ModelConfig(vit=TINY_VIT))
    x = np.random.default_rng(4).normal(size=(3, *shape)).astype("float32")
    assert tuple(model({tm.input_name: x})[tm.output_name].shape) == (3, *shape)
    assert tuple(model.encode({tm.input_name: x})["low_rank"].shape) == (3, 16)


def test_full_size_preset_builds_with_its_parameter_count():
    preset = PRESETS.get("udip_vit")("t1")
    tm = TensorMap("t1_1mm", (182, 218, 182, 1), mask="nonzero")
    model = build_model([tm], [tm], ["vit_encode"], ["concat"], ["vit_decode"], preset.model)
    encoder = model.encoders["t1_1mm"]
    assert encoder.get_layer("encode_t1_1mm_pad_0").output.shape == (None, 182, 224, 182, 1)
    assert encoder.get_layer("encode_t1_1mm_keep_0").output.shape == (None, 2366, 128)
    assert encoder.output.shape == (None, 128) and model.outputs[0].shape == (None, 182, 218, 182, 1)
    assert sum(math.prod(w.shape) for w in model.trainable_weights) == 3_593_088  # "about 3.6 M"
    assert preset.training.optimizer == "adamw" and preset.training.learning_rate == 1e-3
    assert preset.training.batch_size == 2
    assert [preset.training.schedule.rate(e, 1e-3, 300) for e in (0, 3, 6, 30)] == [1e-3, 5e-4, 2.5e-4, 1e-5]


def test_save_load_identical(kept_model, tmp_path):
    tm, mask, model = kept_model
    model.compile(optimizer="adam", loss={tm.output_name: PatchMaskedMeanSquaredError(TINY_VIT.patch)})
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(4, *tm.shape)) * mask).astype("float32")
    y = np.concatenate([x, mask[None].repeat(4, 0)], -1)
    model.fit({tm.input_name: x}, {tm.output_name: y}, epochs=1, batch_size=2, verbose=0)
    paths = save_model(model, tmp_path, "vit")
    loaded = load_model(paths["full"])
    expected = keras.ops.convert_to_numpy(model({tm.input_name: x})[tm.output_name])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded({tm.input_name: x})[tm.output_name]), expected)
    assert loaded.spec["config"]["vit"]["kept_tokens"] == [["vol", [0, 3, 5]]]
    assert isinstance(loaded.loss[tm.output_name] if isinstance(loaded.loss, dict) else loaded.loss,
                      PatchMaskedMeanSquaredError)
    encoder = keras.saving.load_model(tmp_path / "encoder_vol.keras", safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(encoder(x)),
                                  keras.ops.convert_to_numpy(model.encode({tm.input_name: x})["vol"]))


PACKAGE = "vit_recipe_maps"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = write_maps_package(tmp_path_factory.mktemp("maps"), PACKAGE)
    return write_cohort(root, PACKAGE, 12, seed=5)


def test_brain_tokens_from_the_training_masks(cohort):
    sys.path.insert(0, str(cohort.parent))
    from vit_recipe_maps.brain import t1

    paths = sorted(cohort.glob("*.hd5"))[:6]
    union = union_mask(paths, t1)
    for path in paths:
        with h5py.File(path, "r") as hd5:
            assert not (t1.tensor(hd5, path.stem)[1].astype(bool) & ~union).any()
    config = with_brain_tokens(ModelConfig(vit=ViTConfig(patch=(4, 4, 4))), paths, [t1, t1])
    assert config.vit.kept("t1_tiny") == tuple(brain_tokens(union, (4, 4, 4)).tolist())


@pytest.mark.slow
def test_train_and_infer_encoders_with_vit_blocks(cohort, tmp_path):
    """The train recipe builds the ViT blocks from the registry (here through the reduced preset); infer_encoders
    writes a latent table of the preset's width."""
    from ml4ge.cli import main

    common = ["--tensors", str(cohort), "--output_folder", str(tmp_path), "--tensormap_prefix", PACKAGE,
              "--input_tensors", "brain.t1", "--num_workers", "0"]
    train = ["--mode", "train", *common, "--id", "vit", "--output_tensors", "brain.t1", "--encoder_blocks",
             "vit_encode", "--decoder_blocks", "vit_decode", "--model_preset", "udip_vit_small", "--batch_size", "4",
             "--epochs", "1", "--valid_ratio", "0.25", "--test_ratio", "0.25"]
    assert main(train) == 0
    log = pd.read_csv(tmp_path / "vit" / "training_log.csv")
    assert np.isfinite(log["loss"]).all()
    assert main(["--mode", "infer_encoders", *common, "--id", "lat", "--model_file",
                 str(tmp_path / "vit" / "vit.keras"), "--batch_size", "5"]) == 0
    table = pd.read_csv(tmp_path / "lat" / "hidden_t1_tiny_lat.tsv", sep="\t")
    assert table.shape == (12, 1 + 64) and np.isfinite(table.iloc[:, 1:].to_numpy()).all()


def test_a_fresh_process_loads_a_saved_vit_model_in_safe_mode(kept_model, tmp_path):
    tm, _, model = kept_model
    path = tmp_path / "vit.keras"
    model.save(path)
    code = (f"import keras, ml4ge; m = keras.saving.load_model({str(path)!r}, compile=False, safe_mode=True); "
            "print(m.count_params())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) == model.count_params()


def test_udip_vit_trains_with_adamw_at_the_seed_weight_decay():
    """PyTorch's AdamW decays weights by 0.01; Keras' AdamW by 0.004 unless told."""
    optimizer = PRESETS.get("udip_vit")("t1").training.make_optimizer()
    assert isinstance(optimizer, keras.optimizers.AdamW) and optimizer.weight_decay == pytest.approx(0.01)


def test_an_explicit_optimizer_drops_the_presets_weight_decay():
    from ml4ge.arguments import build_parser
    from ml4ge.models.presets import preset_from_args

    base = ["--mode", "train", "--model_preset", "udip_vit"]
    assert preset_from_args(build_parser().parse_args(base))[1].weight_decay == 0.01
    assert preset_from_args(build_parser().parse_args([*base, "--optimizer", "sgd"]))[1].weight_decay is None


VIT_JAX_SCRIPT = """
import json
import keras
import numpy as np
from ml4ge.models.config import ModelConfig
from ml4ge.models.factory import build_model, compile_model
from ml4ge.models.vit_config import ViTConfig
from ml4ge.models.vit_loss import PatchMaskedMeanSquaredError
from ml4ge.tensormap import TensorMap
from ml4ge.training_settings import TrainingSettings

vit = ViTConfig(patch=(8, 8, 8), width=16, depth=2, heads=2, decoder_width=8, decoder_depth=1, decoder_heads=2)
tm = TensorMap("t1", (16, 16, 16, 1), mask="nonzero", loss=PatchMaskedMeanSquaredError((8, 8, 8)))
config = ModelConfig(vit=vit.with_kept("t1", [0, 3]))
model = build_model([tm], [tm], ["vit_encode"], ["concat"], ["vit_decode"], config)
compile_model(model, [tm], settings=TrainingSettings(optimizer="adamw", learning_rate=1e-3, weight_decay=0.01))
x = np.random.default_rng(0).normal(size=(4, 16, 16, 16, 1)).astype("float32")
y = tm.target(x, (x > 0).astype("float32"))
history = model.fit({tm.input_name: x}, {tm.output_name: y}, epochs=2, batch_size=2, verbose=0)
print(json.dumps([keras.backend.backend(), history.history["loss"]]))
"""


def test_vit_trains_two_epochs_on_jax():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", VIT_JAX_SCRIPT], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    backend, losses = json.loads(done.stdout.strip().splitlines()[-1])
    assert backend == "jax" and len(losses) == 2 and np.isfinite(losses).all()
