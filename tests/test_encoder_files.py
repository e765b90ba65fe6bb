"""Encoders others can load (#20 item 12): a CNN's encoder_<tm>.keras holds stock Keras layers only, so it loads in
a Python without ml4ge; --mode export writes SavedModels that load there too; models saved with the old ml4ge
layers (Template, CentralCropPad) still load."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from recipe_helpers import REPO, TINY_MODEL, subprocess_env, write_cohort

from ml4ge.arrays import center_crop_or_pad
from ml4ge.models.config import ConvConfig, DenseConfig, ModelConfig
from ml4ge.models.conv import CentralCropPad
from ml4ge.models.factory import build_model
from ml4ge.models.layers import Template
from ml4ge.tensormap import TensorMap

PACKAGE = "encoder_file_maps"
# A shape the pooling does not divide (the encoder pads it) and one it does.
MAPS_MODULE = textwrap.dedent("""
    from ml4ge.normalizers import brain_zscore
    from ml4ge.tensormap import TensorMap

    t1 = TensorMap("t1_odd", (10, 9, 8, 1), group="ukb_brain_mri", dataset="T1", normalization=brain_zscore(),
                   mask="nonzero")
    t2 = TensorMap("t2_even", (8, 8, 8, 1), group="ukb_brain_mri", dataset="T2", normalization=brain_zscore(),
                   mask="nonzero")
    age = TensorMap("age", (1,), group="phenotypes")
""")

# Run in a fresh `python -I` (no PYTHONPATH, no working folder on sys.path) where importing ml4ge fails even though
# the package is installed; LOAD loads the file and computes `out` from the batch `x`. Prints JSON: the outputs,
# whether ml4ge was ever imported, and the top-level packages of the model's layer classes.
WITHOUT_ML4GE = textwrap.dedent("""
    import importlib.abc, json, sys

    class NoMl4ge(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "ml4ge" or name.startswith("ml4ge."):
                raise ImportError("ml4ge is not installed here")

    sys.meta_path.insert(0, NoMl4ge())
    import numpy as np

    x = np.load(sys.argv[2])
    LOAD
    print(json.dumps({"out": np.asarray(out).tolist(), "ml4ge": any(m.split(".")[0] == "ml4ge" for m in sys.modules),
                      "classes": classes}))
""")
PLAIN_KERAS = WITHOUT_ML4GE.replace("LOAD", "import keras; model = keras.saving.load_model(sys.argv[1], "
                                    "compile=False); out = model.predict_on_batch(x); "
                                    "classes = sorted({type(l).__module__.split('.')[0] for l in model.layers})")
PLAIN_TF = WITHOUT_ML4GE.replace("LOAD", "import tensorflow as tf; served = tf.saved_model.load(sys.argv[1]); "
                                 "out = served.serve(x); classes = []")


def plain_python(script: str, *argv) -> dict:
    """Run ``script`` in an isolated Python (``-I``: no PYTHONPATH, no user site) that cannot import ml4ge."""
    env = {key: value for key, value in subprocess_env(REPO).items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", "-c", script, *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=REPO.parent, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


TINY = ModelConfig(conv=ConvConfig(layers=(4,), stages=(4,), block_size=1), dense=DenseConfig(widths=(8, 6)))
ODD = TensorMap("odd", (10, 9, 8, 1), group="mri")


def encoder_of(template: bool, tm=ODD):
    config = TINY.with_changes(conv=ConvConfig(**{**vars(TINY.conv), "template": template}))
    return build_model([tm], [tm], ["conv_encode"], [], ["conv_decode"], config)


@pytest.mark.parametrize("template", [False, True])
def test_conv_encoders_hold_stock_keras_layers_only(template):
    model = encoder_of(template)
    layers = model.encoders[ODD.name].layers
    assert {type(layer).__module__.split(".")[0] for layer in layers} == {"keras"}
    kinds = [type(layer).__name__ for layer in layers]
    assert kinds[1:3] == ["ZeroPadding3D", "Normalization"]  # pad, then the centring (or the oneDNN guard)
    # the centring holds a volume (mean and variance); the guard of a model without template, one channel's
    assert layers[2].adapt_mean.shape == ((10, 10, 8, 1) if template else (1,))


def test_the_encoder_centring_subtracts_the_training_mean_padded_like_the_input(tmp_path):
    """initialize_templates sets the encoder's Normalization to the mean: pad(x) - pad(mean) = pad(x - mean), what
    the old Template-then-CentralCropPad encoder computed; the decoder's template starts at the mean."""
    from ml4ge.synthetic import write_cohort as write
    from ml4ge.templates import initialize_templates, mean_tensors

    write(tmp_path, [ODD], 4, seed=1)
    paths = sorted(tmp_path.glob("*.hd5"))
    model = encoder_of(True)
    initialize_templates(model, paths, [ODD])
    mean = mean_tensors(paths, [ODD])[ODD.name]
    assert np.abs(mean).max() > 0.1  # so the test can tell
    encoder = model.encoders[ODD.name]
    centring = keras.Model(encoder.inputs, encoder.layers[2].output)
    x = np.random.default_rng(0).normal(size=(2, *ODD.shape)).astype("float32")
    expected = np.stack([center_crop_or_pad(sample - mean, (10, 10, 8, 1)) for sample in x])
    np.testing.assert_allclose(centring.predict_on_batch(x), expected, atol=1e-5)
    decoder_template = [layer for layer in model.decoders[ODD.name].layers if isinstance(layer, Template)]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(decoder_template[0].template), mean, atol=1e-6)


def test_models_saved_with_the_old_layers_still_load(tmp_path):
    """Encoders saved before #20 item 12 (Template at the input, CentralCropPad) load and compute as before."""
    from ml4ge.models.artifacts import load_keras

    inputs = keras.Input(ODD.shape)
    centred = Template(trainable=False, name="encode_odd_center_0")(inputs)
    padded = CentralCropPad((10, 10, 8), name="encode_odd_pad_0")(centred)
    old = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(padded)))
    old.layers[1].template.assign(np.full(ODD.shape, 0.5, dtype="float32"))
    old.save(tmp_path / "encoder_odd.keras")
    x = np.random.default_rng(0).normal(size=(2, *ODD.shape)).astype("float32")
    loaded = load_keras(tmp_path / "encoder_odd.keras")
    np.testing.assert_allclose(loaded.predict_on_batch(x), old.predict_on_batch(x), rtol=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny T1/T2 autoencoder with templates (T1's shape padded by the encoder) trained one epoch, and the
    latents infer_encoders writes with ml4ge."""
    from ml4ge.cli import main

    root = tmp_path_factory.mktemp("maps")
    (root / PACKAGE).mkdir()
    (root / PACKAGE / "__init__.py").write_text("")
    (root / PACKAGE / "brain.py").write_text(MAPS_MODULE)
    tensors = write_cohort(root, PACKAGE, 8, seed=2)
    out = tmp_path_factory.mktemp("runs")
    common = ["--tensors", str(tensors), "--output_folder", str(out), "--tensormap_prefix", PACKAGE,
              "--input_tensors", "brain.t1", "brain.t2"]
    assert main(["--mode", "train", *common, "--id", "ae", "--output_tensors", "brain.t1", "brain.t2",
                 "--encoder_blocks", "conv_encode", "--decoder_blocks", "conv_decode", "--decoder_template",
                 "--batch_size", "4", "--epochs", "1", "--valid_ratio", "0.25", "--test_ratio", "0.25",
                 *TINY_MODEL]) == 0
    assert main(["--mode", "infer_encoders", *common, "--id", "lat", "--model_file", str(out / "ae" / "ae.keras"),
                 "--num_workers", "0"]) == 0
    return out, tensors


def sample_batch(tensors, tm_name, folder):
    """The first four samples of a map as ml4ge reads them, saved for another process, and their ids."""
    import importlib

    import h5py

    tm = getattr(importlib.import_module(f"{PACKAGE}.brain"), tm_name)
    ids = [str(i) for i in range(4)]
    arrays = []
    for sample_id in ids:
        with h5py.File(tensors / f"{sample_id}.hd5", "r") as hd5:
            arrays.append(tm.tensor(hd5, sample_id)[0])
    path = folder / f"{tm.name}.npy"
    np.save(path, np.stack(arrays).astype("float32"))
    return tm, ids, path


def latents(out, tm, ids):
    import pandas as pd

    table = pd.read_csv(out / "lat" / f"hidden_{tm.name}_lat.tsv", sep="\t", dtype={"sample_id": str})
    return table.set_index("sample_id").loc[ids].to_numpy()


@pytest.mark.slow
@pytest.mark.parametrize("tm_name", ["t1", "t2"])
def test_a_trained_encoder_file_loads_in_plain_keras_and_gives_the_latents(trained, tm_name, tmp_path):
    out, tensors = trained
    tm, ids, batch = sample_batch(tensors, tm_name, tmp_path)
    answer = plain_python(PLAIN_KERAS, out / "ae" / f"encoder_{tm.name}.keras", batch)
    assert not answer["ml4ge"] and answer["classes"] == ["keras"]
    np.testing.assert_allclose(np.array(answer["out"]), latents(out, tm, ids), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_exported_encoders_load_with_tensorflow_alone_and_give_the_latents(trained, tmp_path):
    from ml4ge.cli import main

    out, tensors = trained
    assert main(["--mode", "export", "--output_folder", str(out), "--id", "served", "--tensormap_prefix", PACKAGE,
                 "--input_tensors", "brain.t1", "brain.t2", "--model_file", str(out / "ae" / "ae.keras")]) == 0
    for tm_name in ("t1", "t2"):
        tm, ids, batch = sample_batch(tensors, tm_name, tmp_path)
        answer = plain_python(PLAIN_TF, out / "served" / f"encoder_{tm.name}", batch)
        assert not answer["ml4ge"]
        np.testing.assert_allclose(np.array(answer["out"]), latents(out, tm, ids), rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in (out / "served").iterdir() if p.is_dir()) == ["encoder_t1_odd", "encoder_t2_even"]


def test_export_without_a_model_file_is_refused_before_any_work(tmp_path, capsys):
    from ml4ge.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--mode", "export", "--output_folder", str(tmp_path), "--id", "x", "--input_tensors", "brain_mri.t1",
              "--model_file", str(tmp_path / "none.keras")])
    assert exited.value.code == 2 and "none.keras' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
