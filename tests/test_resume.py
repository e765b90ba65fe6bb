"""Resumable training: what the backup restores (in process), and a SIGKILLed training run that goes on from its
last finished epoch (in a subprocess)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from recipe_helpers import (
    REPO,
    TINY_MODEL,
    sigkill_after_first_backup,
    subprocess_env,
    write_cohort,
    write_maps_package,
)

from ml4ge.schedules import PlateauSchedule
from ml4ge.training_settings import TrainingSettings

PACKAGE = "resume_maps"


def tiny_model():
    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def tiny_data():
    import tensorflow as tf

    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, x.sum(axis=1, keepdims=True))).batch(4)


def test_backup_restores_weights_optimizer_learning_rate_epoch_and_counters(tmp_path):
    import keras

    from ml4ge import training

    class SetLearningRate(keras.callbacks.Callback):  # stands in for a ReduceLROnPlateau reduction
        def on_epoch_end(self, epoch, logs=None):
            self.model.optimizer.learning_rate = 0.00123

    first = tiny_model()
    settings = TrainingSettings(patience=4, epochs=2, schedule=PlateauSchedule(patience=2))
    callbacks = training.make_callbacks(tmp_path, settings, write_outputs=False)
    first.fit(tiny_data(), validation_data=tiny_data(), epochs=2, callbacks=[SetLearningRate(), *callbacks],
              verbose=0)
    plateau = next(c for c in callbacks if isinstance(c, keras.callbacks.ReduceLROnPlateau))
    stopping = next(c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping))

    second = tiny_model()  # fresh weights, fresh optimizer, learning rate 0.01
    history = training.fit(second, tiny_data(), tiny_data(), tmp_path, settings, write_outputs=False)
    assert history.epoch == []  # both epochs were already done: nothing is repeated
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(second.optimizer.iterations) == int(first.optimizer.iterations) == 8
    for a, b in zip(first.optimizer.variables, second.optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b))
    assert float(second.optimizer.learning_rate) == pytest.approx(0.00123)
    record = json.loads((tmp_path / training.BACKUP_FOLDER / "training_metadata.json").read_text())
    assert record["epoch"] == 2
    early, lr, best = record["callbacks"]
    assert early["wait"] == stopping.wait and early["best"] == pytest.approx(stopping.best)
    assert lr["wait"] == plateau.wait and lr["best"] == pytest.approx(plateau.best)
    assert best["best"] == pytest.approx(stopping.best)


def test_trim_csv_log_drops_unfinished_epochs(tmp_path):
    from ml4ge.training import trim_csv_log

    log = tmp_path / "log.csv"
    log.write_text("epoch,loss\n0,1.0\n1,0.9\n2,0.8\n")
    trim_csv_log(log, 2)
    assert log.read_text().splitlines() == ["epoch,loss", "0,1.0", "1,0.9"]


@pytest.mark.slow
def test_sigkilled_training_resumes_from_last_finished_epoch(tmp_path):
    root = write_maps_package(tmp_path / "maps", PACKAGE)
    tensors = write_cohort(root, PACKAGE, 16, seed=5)
    epochs = 4
    argv = [sys.executable, str(REPO / "recipes.py"), "--mode", "train", "--tensors", str(tensors),
            "--output_folder", str(tmp_path / "runs"), "--id", "killed", "--tensormap_prefix", PACKAGE,
            "--input_tensors", "brain.t1", "--output_tensors", "brain.t1", "--merge_blocks", "concat",
            "--batch_size", "4", "--epochs", str(epochs), "--patience", "10", *TINY_MODEL]
    run = tmp_path / "runs" / "killed"
    killed_after = sigkill_after_first_backup(argv, subprocess_env(root), run, wait_s=120)
    assert 1 <= killed_after < epochs

    done = subprocess.run(argv, env=subprocess_env(root), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed_at = int(done.stderr.split("resumed from the backup of epoch ")[1].split()[0])
    assert resumed_at >= killed_after
    assert f"epoch {resumed_at + 1}/{epochs}: loss" in done.stderr and "epoch 1/" not in done.stderr
    log = pd.read_csv(run / "training_log.csv")
    assert list(log["epoch"]) == list(range(epochs))  # each epoch once, none redone from 0
    assert (run / "killed.keras").is_file() and not (run / "checkpoints").exists()  # finished: removed
