"""ml4h flags: --inspect_model (picture and timing), --save_last_model, and the ml4h flags ml4ge refuses with what to
use instead (exit 2 before any work)."""

import importlib.util
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from recipe_helpers import REPO, TINY_MODEL, subprocess_env, write_cohort, write_maps_package

PACKAGE = "ml4h_flags_maps"


@pytest.fixture(scope="module")
def maps_root(tmp_path_factory):
    return write_maps_package(tmp_path_factory.mktemp("maps"), PACKAGE)


@pytest.fixture(scope="module")
def cohort(maps_root):
    return write_cohort(maps_root, PACKAGE, 12, seed=5)


def train_args(tensors, output_folder, run_id="ae", *extra):
    return ["--mode", "train", "--tensors", str(tensors), "--output_folder", str(output_folder), "--id", run_id,
            "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "--output_tensors", "brain.t1",
            "--encoder_blocks", "conv_encode", "--merge_blocks", "--decoder_blocks", "conv_decode",
            "--batch_size", "4", "--epochs", "2", "--valid_ratio", "0.34", "--test_ratio", "0.0", *TINY_MODEL,
            *extra]


def refusal(cohort, tmp_path, *extra):
    from ml4ge.cli import main

    with pytest.raises(SystemExit) as caught:
        main(train_args(cohort, tmp_path / "out", "ae", *extra))
    assert caught.value.code == 2
    assert not (tmp_path / "out" / "ae" / "checkpoints").exists()  # refused before any work


@pytest.mark.parametrize("extra, named", [
    (("--learning_rate_schedule", "cosine_decay"), "--lr_schedule"),
    (("--model_layers", "old.keras"), "--model_file"),
    (("--model_layers", "old.keras", "--freeze_model_layers"), "--encoder_blocks encoder_<tmap>.keras"),
])
def test_ml4h_flags_refused_with_what_to_use(cohort, tmp_path, capsys, extra, named):
    refusal(cohort, tmp_path, *extra)
    assert named in capsys.readouterr().err


def test_inspect_model_without_graphviz_says_what_to_install(cohort, maps_root, tmp_path):
    """``dot`` off the PATH: exit 2 before any work, naming Graphviz and how to install it."""
    bare = tmp_path / "bin"
    bare.mkdir()
    argv = [sys.executable, str(REPO / "recipes.py"), *train_args(cohort, tmp_path / "out", "ae", "--inspect_model")]
    done = subprocess.run(argv, env=subprocess_env(maps_root, PATH=str(bare)), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Graphviz" in done.stderr and "apt-get install graphviz" in done.stderr
    assert not (tmp_path / "out" / "ae" / "checkpoints").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dot") is None or importlib.util.find_spec("pydot") is None,
                    reason="Graphviz's dot or pydot is not installed (.ci/run installs both)")
def test_inspect_model_writes_picture_and_timing(cohort, tmp_path):
    from PIL import Image

    from ml4ge.cli import main

    assert main(train_args(cohort, tmp_path, "ae", "--inspect_model", "--epochs", "1")) == 0
    run = tmp_path / "ae"
    with Image.open(run / "architecture_ae.png") as picture:
        assert picture.size[0] > 100 and picture.size[1] > 100
    assert "Total params" in (run / "architecture_ae.txt").read_text()
    timing = pd.read_csv(run / "inspect_timing_ae.tsv", sep="\t").set_index("name")["value"]
    assert timing["batch_size"] == 4
    assert timing["train_seconds"] > 0 and timing["inference_seconds"] > 0


def test_timing_restores_weights_and_optimizer():
    """Inspecting a model does not train it: weights and optimizer state are as before."""
    import keras

    from ml4ge.models.inspect import time_batches

    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, {"y": keras.layers.Dense(1, name="y")(inputs)})
    model.compile(keras.optimizers.Adam(0.1), {"y": "mse"})
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    timing = time_batches(model, {"x": x}, {"y": x.sum(axis=1, keepdims=True)}, steps=2)
    assert timing["batch_size"] == 4 and timing["train_seconds"] > 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(model.optimizer.iterations.numpy()) == 0


@pytest.mark.slow
def test_save_last_model_keeps_the_last_epoch(cohort, tmp_path):
    """With --save_last_model the saved model holds the last epoch's weights (its backup), not the best's."""
    from ml4ge.cli import main
    from ml4ge.models.artifacts import load_model

    argv = train_args(cohort, tmp_path, "last", "--save_last_model", "--keep_checkpoints", "--epochs", "3",
                      "--learning_rate", "0.05")
    assert main(argv) == 0
    run = tmp_path / "last"
    saved = load_model(run / "last.keras")
    last = load_model(run / "last.keras")
    last.load_weights(run / "checkpoints" / "backup" / "epoch_0003.weights.h5")
    for a, b in zip(saved.get_weights(), last.get_weights()):
        np.testing.assert_array_equal(a, b)
    val_loss = pd.read_csv(run / "training_log.csv")["val_loss"]
    if val_loss.idxmin() != len(val_loss) - 1:  # the best epoch is another one: its weights are not the saved ones
        best = load_model(run / "last.keras")
        best.load_weights(run / "checkpoints" / "best.weights.h5")
        assert any(not np.array_equal(a, b) for a, b in zip(saved.get_weights(), best.get_weights()))


def test_conv_width_without_one_dimensional_maps_is_noted():
    from ml4ge.recipes.ml4h_compat import unused_conv_width
    from ml4ge.recipes.train import TrainSettings
    from ml4ge.tensormap import TensorMap

    image, signal = TensorMap("dxa", (64, 64, 1)), TensorMap("ecg", (600, 12))
    note = unused_conv_width(TrainSettings(conv_width=(31,)), [image])
    assert "--conv_width 31" in note and "--conv_x" in note
    assert unused_conv_width(TrainSettings(conv_width=(31,)), [image, signal]) is None
    assert unused_conv_width(TrainSettings(), [image]) is None  # not given
