"""Training when things go wrong: a loss that turns NaN, an interrupted or corrupt checkpoint, a full disk, and a
seed that must make two trainings alike. Real Keras models and real ``.weights.h5`` files throughout."""


import json

import numpy as np
import pandas as pd
import pytest
from recipe_helpers import TINY_MODEL, write_cohort, write_maps_package

from ml4ge.training_settings import TrainingSettings

PACKAGE = "faults_maps"


def tiny_model(optimizer="sgd", learning_rate=0.01):
    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": learning_rate}}),
                  "mse")
    return model


def tiny_data(rows=32):
    import tensorflow as tf

    x = np.random.default_rng(0).normal(size=(rows, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, x.sum(axis=1, keepdims=True))).batch(4)


def raise_rate_at(epoch_index, rate):
    """A callback that sets the learning rate to ``rate`` from epoch ``epoch_index`` on (a diverging run)."""
    import keras

    class RaiseRate(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch >= epoch_index:
                self.model.optimizer.learning_rate = rate

    return RaiseRate()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = write_maps_package(tmp_path_factory.mktemp("maps"), PACKAGE)
    return write_cohort(root, PACKAGE, 12, seed=4)


def train_argv(tensors, output_folder, run_id, *extra):
    return ["--mode", "train", "--tensors", str(tensors), "--output_folder", str(output_folder), "--id", run_id,
            "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "--output_tensors", "brain.t1",
            "--merge_blocks", "concat", "--batch_size", "4", "--epochs", "1", "--valid_ratio", "0.25",
            "--test_ratio", "0", *TINY_MODEL, *extra]


# Item 4: a loss that becomes NaN or infinite ---------------------------------------------------------------------
def test_non_finite_loss_stops_the_run_and_keeps_the_good_epochs_checkpoints(tmp_path):
    import keras

    from ml4ge import training

    model = tiny_model()
    settings = TrainingSettings(patience=10, epochs=6)
    with pytest.raises(training.NonFiniteLoss) as caught:
        training.fit(model, tiny_data(), tiny_data(), tmp_path, settings, write_outputs=False,
                     callbacks=[raise_rate_at(2, 1e6)])
    message = str(caught.value)
    assert "--learning_rate" in message and "epoch 3" in message and "inputs" in message
    assert training.backed_up_epoch(tmp_path) == 2  # the two good epochs, not the diverged one
    assert list(pd.read_csv(tmp_path / training.TRAINING_LOG)["epoch"]) == [0, 1]
    best = tiny_model()
    assert training.load_best_weights(best, tmp_path)
    assert all(np.isfinite(w).all() for w in best.get_weights())
    resumed = tiny_model()
    history = training.fit(resumed, tiny_data(), tiny_data(), tmp_path, settings.with_changes(epochs=3),
                           write_outputs=False)
    assert history.epoch == [2] and all(np.isfinite(w).all() for w in resumed.get_weights())
    assert isinstance(resumed.optimizer, keras.optimizers.SGD)


@pytest.mark.slow
def test_train_recipe_with_a_diverging_rate_exits_1_without_saving_a_model(cohort, tmp_path, capsys):
    from ml4ge.cli import main

    assert main(train_argv(cohort, tmp_path, "diverged", "--learning_rate", "1e6", "--optimizer", "sgd")) == 1
    run = tmp_path / "diverged"
    assert not (run / "diverged.keras").exists()
    err = capsys.readouterr().err
    assert "--learning_rate" in err and ("nan" in err.lower() or "inf" in err.lower())


# Item 6: --random_seed seeds the weight initialisation -----------------------------------------------------------
def trained_weights(cohort, folder, run_id, seed):
    from ml4ge.cli import main
    from ml4ge.models.artifacts import load_model

    assert main(train_argv(cohort, folder, run_id, "--random_seed", str(seed))) == 0
    return load_model(folder / run_id / f"{run_id}.keras").get_weights()


@pytest.mark.slow
def test_one_seed_trains_the_same_model_and_another_seed_a_different_one(cohort, tmp_path):
    first = trained_weights(cohort, tmp_path, "first", 7)
    again = trained_weights(cohort, tmp_path, "again", 7)
    other = trained_weights(cohort, tmp_path, "other", 8)
    assert len(first) == len(again) == len(other)
    for a, b in zip(first, again):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # CPU: equal up to float summation order
    assert any(a.shape == b.shape and not np.allclose(a, b, atol=1e-3) for a, b in zip(first, other))


# Item 7: resume after a death inside the backup write, or from a corrupt backup ----------------------------------
class Killed(BaseException):
    """Stands in for SIGKILL at one instant: nothing after it runs, nothing catches it."""


def weights_by_epoch(store, kill_replace_at=None, kill_epoch=None):
    """A callback that records the weights at each epoch end (``store[epochs finished]``), and, from the end of
    epoch ``kill_epoch`` on, makes the ``kill_replace_at``-th ``os.replace`` raise :class:`Killed` (a death in
    the middle of writing that epoch's checkpoints)."""
    import os

    import keras

    real_replace = os.replace

    class Recorder(keras.callbacks.Callback):
        calls = 0

        def on_epoch_end(self, epoch, logs=None):
            store[epoch + 1] = [np.array(w) for w in self.model.get_weights()]
            if kill_epoch is not None and epoch + 1 == kill_epoch:
                os.replace = self.replace

        def replace(self, *args, **kwargs):
            Recorder.calls += 1
            if Recorder.calls == kill_replace_at:
                os.replace = real_replace
                raise Killed
            return real_replace(*args, **kwargs)

        def on_train_end(self, logs=None):
            os.replace = real_replace

    return Recorder()


def resumed_epoch(caplog) -> int:
    messages = [r.getMessage() for r in caplog.records if "resumed from the backup of epoch" in r.getMessage()]
    assert messages, "no resume was logged"
    return int(messages[-1].split("resumed from the backup of epoch ")[1].split()[0])


def assert_weights_equal(model, expected):
    for a, b in zip(model.get_weights(), expected):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kill_replace_at", [1, 2, 3, 4])
def test_a_death_while_the_backup_is_written_resumes_with_that_epochs_weights(tmp_path, caplog, kill_replace_at):
    import os

    from ml4ge import training

    real_replace, store = os.replace, {}
    settings = TrainingSettings(patience=10, epochs=3)
    try:
        with pytest.raises(Killed):
            training.fit(tiny_model(), tiny_data(), tiny_data(), tmp_path, settings, write_outputs=False,
                         callbacks=[weights_by_epoch(store, kill_replace_at, kill_epoch=3)])
    except pytest.fail.Exception:
        assert kill_replace_at > 2  # fewer renames than that: the kill came after the backup was whole
    finally:
        os.replace = real_replace
    caplog.set_level("INFO")
    resumed = tiny_model()
    assert training.fit(resumed, tiny_data(), tiny_data(), tmp_path, settings.with_changes(epochs=2),
                        write_outputs=False).epoch == []
    epoch = resumed_epoch(caplog)
    assert epoch in (2, 3)
    assert_weights_equal(resumed, store[epoch])  # never fresh (or other epochs') weights with this epoch count
    training.fit(resumed, tiny_data(), tiny_data(), tmp_path, settings.with_changes(epochs=4), write_outputs=False)
    assert list(pd.read_csv(tmp_path / training.TRAINING_LOG)["epoch"]) == [0, 1, 2, 3]


def latest_backup_weights(folder):
    from ml4ge import training

    record = json.loads((folder / training.BACKUP_FOLDER / "training_metadata.json").read_text())
    return folder / training.BACKUP_FOLDER / record.get("weights", "latest.weights.h5")


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_corrupt_latest_backup_falls_back_to_the_previous_epoch_with_its_counter(tmp_path, caplog):
    from ml4ge import training

    store, settings = {}, TrainingSettings(patience=10, epochs=3)
    training.fit(tiny_model(), tiny_data(), tiny_data(), tmp_path, settings, write_outputs=False,
                 callbacks=[weights_by_epoch(store)])
    truncate(latest_backup_weights(tmp_path))
    caplog.set_level("INFO")
    resumed = tiny_model()
    assert training.fit(resumed, tiny_data(), tiny_data(), tmp_path, settings.with_changes(epochs=2),
                        write_outputs=False).epoch == []
    assert resumed_epoch(caplog) == 2
    assert_weights_equal(resumed, store[2])
    assert any("unreadable" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    history = training.fit(resumed, tiny_data(), tiny_data(), tmp_path, settings.with_changes(epochs=5),
                           write_outputs=False)
    assert history.epoch == [2, 3, 4]
    assert list(pd.read_csv(tmp_path / training.TRAINING_LOG)["epoch"]) == [0, 1, 2, 3, 4]


def test_no_readable_backup_refuses_to_resume_and_says_how_to_start_again(tmp_path):
    from ml4ge import training
    from ml4ge.checkpoints import ResumeError

    settings = TrainingSettings(patience=10, epochs=3)
    training.fit(tiny_model(), tiny_data(), tiny_data(), tmp_path, settings, write_outputs=False)
    for path in (tmp_path / training.BACKUP_FOLDER).glob("*.weights.h5*"):
        truncate(path)
    model = tiny_model()
    before = [np.array(w) for w in model.get_weights()]
    with pytest.raises(ResumeError) as caught:
        training.fit(model, tiny_data(), tiny_data(), tmp_path, settings.with_changes(epochs=5),
                     write_outputs=False)
    message = str(caught.value)
    assert "cannot resume" in message and "--overwrite" in message and "epoch 3" in message
    assert_weights_equal(model, before)
    assert list(pd.read_csv(tmp_path / training.TRAINING_LOG)["epoch"]) == [0, 1, 2]


# Item 12: the best checkpoint is replaced atomically; an unreadable one is treated as absent --------------------
def test_unreadable_best_checkpoint_is_treated_as_absent_and_written_again(tmp_path, caplog):
    from ml4ge import training
    from ml4ge.checkpoints import unreadable

    settings = TrainingSettings(patience=10, epochs=2)
    training.fit(tiny_model(), tiny_data(), tiny_data(), tmp_path, settings, write_outputs=False)
    best = tmp_path / training.BEST_WEIGHTS
    truncate(best)
    model = tiny_model()
    before = [np.array(w) for w in model.get_weights()]
    caplog.set_level("WARNING")
    assert training.load_best_weights(model, tmp_path) is False
    assert_weights_equal(model, before)
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    training.fit(model, tiny_data(), tiny_data(), tmp_path, settings.with_changes(epochs=3), write_outputs=False)
    assert unreadable(best) is None and training.load_best_weights(tiny_model(), tmp_path)


FULL_DISK_FIT = """
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_training_faults import tiny_data, tiny_model
from ml4ge import training
from ml4ge.training_settings import TrainingSettings

folder = Path(sys.argv[1])
training.fit(tiny_model(), tiny_data(), tiny_data(), folder, TrainingSettings(patience=10, epochs=2),
             write_outputs=False)
size = (folder / training.BEST_WEIGHTS).stat().st_size
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, resource.RLIM_INFINITY))
training.fit(tiny_model(), tiny_data(), tiny_data(), folder, TrainingSettings(patience=10, epochs=4),
             write_outputs=False)
"""


def test_a_write_cut_short_leaves_the_previous_best_checkpoint_whole(tmp_path):
    import subprocess
    import sys

    from recipe_helpers import REPO, subprocess_env

    from ml4ge import training
    from ml4ge.checkpoints import unreadable

    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK_FIT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "run"), str(REPO / "tests")],
                          capture_output=True, text=True, env=subprocess_env(tmp_path), timeout=120)
    assert done.returncode == 1 and "Error" in done.stderr, done.stderr[-3000:]
    assert unreadable(tmp_path / "run" / training.BEST_WEIGHTS) is None
    assert training.load_best_weights(tiny_model(), tmp_path / "run")


# Item 14: a full disk ends train with a clear error and status 1, not a segfault ----------------------------------
def limit_file_size(limit):
    """For ``preexec_fn``: writes past ``limit`` bytes fail with EFBIG, as writes to a full disk fail."""
    import resource
    import signal

    def limit_writes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return limit_writes


def test_a_full_disk_error_names_the_folder_and_the_way_out(tmp_path):
    import resource
    import signal

    from ml4ge import training

    before, handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, before[1]))
        with pytest.raises(OSError) as caught, training.disk_errors(tmp_path):
            (tmp_path / "big.bin").write_bytes(bytes(5000))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)
        signal.signal(signal.SIGXFSZ, handler)
    message = str(caught.value)
    assert str(tmp_path) in message and "free disk space" in message and "--output_folder" in message
    with pytest.raises(OSError, match="No such file"), training.disk_errors(tmp_path):  # other errors unchanged
        (tmp_path / "absent" / "file").write_text("x")


@pytest.mark.slow
def test_train_on_a_full_disk_exits_1_naming_the_file_and_resumes_once_there_is_room(cohort, tmp_path):
    import subprocess
    import sys

    from recipe_helpers import REPO, subprocess_env

    argv = [sys.executable, str(REPO / "recipes.py"), *train_argv(cohort, tmp_path, "full")]
    env = subprocess_env(cohort.parent)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240,
                          preexec_fn=limit_file_size(20_000))  # smaller than the model's weights
    assert done.returncode == 1, done.stderr[-3000:]
    assert "File too large" in done.stderr and "free disk space" in done.stderr
    assert "checkpoints" in done.stderr.splitlines()[-1]  # the last line names the file that could not be written
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "full" / "full.keras").is_file()
