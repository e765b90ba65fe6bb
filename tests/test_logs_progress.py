"""Logs and progress (#20 item 5): epoch lines reach log.txt, steps print progress lines with an ETA when stderr is not
a terminal, and a training run's console has none of the Keras warnings and TensorFlow start-up lines every run
printed."""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from recipe_helpers import REPO, TINY_MODEL, subprocess_env, write_cohort, write_maps_package

from ml4ge.progress import LineProgress, duration, progress

PACKAGE = "logs_progress_maps"


class Clock:
    """Seconds that the test moves on."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_line_progress_prints_every_30_s_or_each_10_percent_with_an_eta():
    clock, lines = Clock(), []
    bar = LineProgress(total=100, description="tensorize", unit="subject", clock=clock, emit=lines.append)
    clock.now = 2.0
    bar.update(10)  # 10 % but only 2 s since the start: no line yet
    assert lines == []
    clock.now = 6.0
    bar.update(10)  # 20 %, 6 s: a line
    assert lines == ["tensorize: 20/100 subjects (20 %), 6 s, ETA 24 s"]
    clock.now = 7.0
    bar.update(5)  # same decile, 1 s later: none
    clock.now = 40.0
    bar.update(1)  # no new decile, but 34 s since the last line
    assert lines[-1] == "tensorize: 26/100 subjects (26 %), 40 s, ETA 1 min 54 s"
    clock.now = 200.0
    bar.close()
    assert lines[-1] == "tensorize: 26 subjects done in 3 min 20 s" and len(lines) == 3


def test_a_short_step_prints_nothing_and_an_unknown_total_has_no_eta():
    clock, lines = Clock(), []
    with LineProgress(range(5), description="infer", unit="sample", clock=clock, emit=lines.append) as bar:
        assert sum(bar) == 10
    assert lines == []
    unknown = LineProgress(description="scan", unit="SNP", clock=clock, emit=lines.append)
    clock.now = 31.0
    unknown.update(7)
    assert lines == ["scan: 7 SNPs, 31 s"]


def test_progress_gives_lines_when_stderr_is_not_a_terminal(capsys):
    assert not sys.stderr.isatty()  # pytest captures it
    assert isinstance(progress(total=3, description="x"), LineProgress)
    quiet = progress(range(3), disable=True)
    assert not isinstance(quiet, LineProgress) and sum(quiet) == 3
    assert duration(59.6) == "1 min 00 s" and duration(3 * 3600 + 65) == "3 h 01 min"


def test_epoch_lines_name_the_epoch_its_metrics_and_the_eta(caplog):
    import keras
    import tensorflow as tf

    from ml4ge.training import EpochLog, one_pass_datasets

    clock = Clock()

    class Tick(keras.callbacks.Callback):  # each batch takes 20 s of the test's clock
        def on_train_batch_end(self, batch, logs=None):
            clock.now += 20.0

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    x = np.random.default_rng(0).normal(size=(12, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    signature = (tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None, 1), tf.float32))
    data = tf.data.Dataset.from_generator(lambda: ((x[i: i + 4], y[i: i + 4]) for i in range(0, 12, 4)),
                                          output_signature=signature)  # of unknown length, as ml4ge's datasets
    with caplog.at_level(logging.INFO, logger="ml4ge.training"), one_pass_datasets():
        model.fit(data, validation_data=data, epochs=3, initial_epoch=1, verbose=0,
                  callbacks=[Tick(), EpochLog(epochs=3, clock=clock)], shuffle=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "ml4ge.training"]
    assert lines[0] == "epoch 2/3: batch 2, loss " + lines[0].split("loss ")[1]  # 40 s in: no length known yet
    assert lines[1].startswith("epoch 2/3: loss ") and " - val_loss " in lines[1]
    assert lines[1].endswith("(1 min 00 s; ETA 1 min 00 s)")  # three batches of 20 s, one epoch left
    assert lines[2].startswith("epoch 3/3: batch 2/3, loss ") and lines[2].endswith(", epoch ETA 20 s")
    assert lines[3].startswith("epoch 3/3: loss ") and lines[3].endswith("(1 min 00 s; ETA 0 s)")


def test_tensorflows_start_up_lines_are_held_back_and_others_kept():
    from ml4ge.quiet import kept_lines, noise_patterns

    text = "\n".join([
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796222300.698024   27960 port.cc:153] oneDNN custom operations are on. You may see slightly",
        "I0000 00:00:1796222300.698387   27960 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
        "will not be used.",
        "E0000 00:00:1796222304.700304   27960 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        "Traceback (most recent call last):", ""])
    assert kept_lines(text, noise_patterns(nvidia_driver=False)) == "Traceback (most recent call last):\n"
    on_gpu_machine = kept_lines(text, noise_patterns(nvidia_driver=True))
    assert "Could not find cuda drivers" in on_gpu_machine and "cuInit" in on_gpu_machine
    assert "oneDNN" not in on_gpu_machine


@pytest.mark.slow
def test_a_training_run_logs_its_epochs_and_prints_no_warnings(tmp_path):
    root = write_maps_package(tmp_path / "maps", PACKAGE)
    tensors = write_cohort(root, PACKAGE, 8, seed=6)
    argv = [sys.executable, str(REPO / "recipes.py"), "--mode", "train", "--tensors", str(tensors),
            "--output_folder", str(tmp_path / "runs"), "--id", "logged", "--tensormap_prefix", PACKAGE,
            "--input_tensors", "brain.t1", "--output_tensors", "brain.t1", "--batch_size", "4", "--epochs", "2",
            "--valid_ratio", "0.25", "--test_ratio", "0.25", *TINY_MODEL]
    env = {key: value for key, value in subprocess_env(root).items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)  # stderr: a pipe
    assert done.returncode == 0, done.stderr[-3000:]
    log = (tmp_path / "runs" / "logged" / "log.txt").read_text()
    for epoch in (1, 2):
        assert f"epoch {epoch}/2: loss " in log and f"epoch {epoch}/2: loss " in done.stderr
    assert "Epoch 1/2" not in done.stdout  # Keras' own lines are not printed a second time
    for warning in ("ran out of data", "shuffle=True", "absl::InitializeLog", "oneDNN custom operations"):
        assert warning not in done.stderr, warning
    if not Path("/proc/driver/nvidia").exists():  # a CPU machine: no CUDA lines either
        assert "cuda drivers" not in done.stderr and "cuInit" not in done.stderr


def test_an_early_stop_is_logged(caplog):
    import keras

    from ml4ge.training import EpochLog

    class Stop(keras.callbacks.Callback):  # stands in for EarlyStopping
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("adam", "mse")
    with caplog.at_level(logging.INFO, logger="ml4ge.training"):
        model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=5, verbose=0, callbacks=[Stop(), EpochLog(epochs=5)])
    assert "training stopped early after epoch 1 of 5" in caplog.text


def test_early_stopping_says_so_in_the_log_not_on_stdout(tmp_path, capfd, caplog):
    import keras
    import tensorflow as tf

    from ml4ge.training import fit
    from ml4ge.training_settings import TrainingSettings

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    settings = TrainingSettings(learning_rate=1e-30, patience=1, epochs=6)  # the loss cannot fall: it stops
    model.compile(settings.make_optimizer(), "mse")
    data = tf.data.Dataset.from_tensor_slices((np.ones((4, 3), "float32"), np.zeros((4, 1), "float32"))).batch(2)
    with caplog.at_level(logging.INFO, logger="ml4ge.training"):
        history = fit(model, data, data, tmp_path, settings)
    assert len(history.epoch) == 2 and "training stopped early after epoch 2 of 6" in caplog.text
    assert "early stopping" not in capfd.readouterr().out
