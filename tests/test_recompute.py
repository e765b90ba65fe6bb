"""--recompute_encoders: the encoders run again in the backward pass, the gradients and the saved model do not
change, and encoders with state (batch norm, dropout) or families without encoders are refused before any work."""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from recipe_helpers import write_cohort, write_maps_package
from test_factory import SMALL, T1, T2, build_from_args, cohort, flags, train_save_load_predict
from test_train_recipe import PACKAGE, pair_args, validation_error

from ml4ge.models.factory import family_class
from ml4ge.models.recompute import recompute_in_backward

ML4H_FLAGS = ["--conv_layers", "4", "--dense_blocks", "4", "8", "--block_size", "2", "--dense_layers", "8",
              "--conv_z", "3", "--pool_z", "2", "--activation", "swish", "--conv_style", "ml4h"]


def two_modality_model():
    """T1 and T2 encoders concatenated (a deterministic merge: DropFuse's draws would differ between models)."""
    return build_from_args(flags("--input_tensors", "t1", "t2", "--output_tensors", "t1", "t2", "--merge_blocks",
                                 "concat", *ML4H_FLAGS), [T1, T2], [T1, T2])


def counted(part):
    """Count the runs of ``part``'s own call (a spy on the real layer, which still computes)."""
    runs = []
    call = part.call

    def counting(*args, **kwargs):
        runs.append(1)
        return call(*args, **kwargs)

    part.call = counting
    return runs


def gradients(model, x, y):
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True), training=True)
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


def test_recomputed_encoders_run_again_in_the_backward_pass_with_the_same_gradients(tmp_path):
    x, y = cohort(tmp_path, [T1, T2])
    kept, recomputed = two_modality_model(), two_modality_model()
    recomputed.set_weights(kept.get_weights())
    runs = {name: counted(part) for name, part in recomputed.encoders.items()}
    recomputed.recompute_encoders()
    expected, got = gradients(kept, x, y), gradients(recomputed, x, y)
    assert {name: len(calls) for name, calls in runs.items()} == {"t1": 2, "t2": 2}  # forward, then backward
    assert len(got) == len(expected) > 10
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)


def test_training_with_recomputed_encoders_saves_the_same_model(tmp_path):
    x, y = cohort(tmp_path, [T1, T2])
    model = two_modality_model()
    model.recompute_encoders()
    history, loaded = train_save_load_predict(model, x, y, tmp_path / "saved")
    assert np.isfinite(history["loss"]).all()
    for part in loaded.encoders.values():  # the wrapping is not part of the file
        assert part.call.__func__ is type(part).call


def test_an_encoder_with_batch_norm_or_dropout_is_refused():
    for flag, value, state in (("--conv_normalize", "batch_norm", "norm"), ("--dense_regularize", "dropout", "reg")):
        model = build_from_args(flags("--input_tensors", "t1", "--output_tensors", "t1", *ML4H_FLAGS, flag, value,
                                      "--dense_regularize_rate", "0.2"), [T1], [T1])
        with pytest.raises(ValueError, match=state) as caught:
            model.recompute_encoders()
        assert "--recompute_encoders" in str(caught.value) and flag in str(caught.value)
    inputs = keras.Input(SMALL)
    plain = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    recompute_in_backward(plain)  # no state: accepted


def test_the_flag_is_refused_before_any_work(tmp_path):
    from ml4ge.cli import main

    tensors = write_cohort(write_maps_package(tmp_path / "maps", PACKAGE), PACKAGE, 4, seed=3)
    argv = [*pair_args(tensors, tmp_path / "out"), "--recompute_encoders", "--conv_normalize", "batch_norm"]
    message = validation_error(argv)
    assert "encode_t1_tiny_norm_0" in message and "--conv_normalize" in message
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2 and not (tmp_path / "out").exists()
    for family in ("vae", "predictor"):
        with pytest.raises(ValueError, match=f"the {family} family has no separate encoders"):
            family_class(family).check_recompute(None, [T1])


def test_the_train_recipe_trains_with_recomputed_encoders(tmp_path):
    from ml4ge.cli import main

    tensors = write_cohort(write_maps_package(tmp_path / "maps", PACKAGE), PACKAGE, 8, seed=3)
    assert main([*pair_args(tensors, tmp_path), "--recompute_encoders"]) == 0
    run = tmp_path / "pair"
    assert "the encoders recompute their activations" in (run / "log.txt").read_text()
    assert np.isfinite(pd.read_csv(run / "training_log.csv")["val_loss"]).all()
    assert (run / "encoder_t1_tiny.keras").is_file()
