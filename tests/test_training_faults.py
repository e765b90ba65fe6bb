"""Training when things go wrong: a loss that turns NaN, an interrupted or corrupt checkpoint, a full disk, and a
seed that must make two trainings alike. Real Keras models and real ``.weights.h5`` files throughout."""


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
