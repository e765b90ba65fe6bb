"""The train recipe: validation before any work, and the seed workflow end to end (train a T1/T2 pair model,
then infer_encoders) through ml4ge.cli.main on synthetic HD5 volumes."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from recipe_helpers import TINY_MODEL, write_cohort, write_maps_package

PACKAGE = "train_recipe_maps"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = write_maps_package(tmp_path_factory.mktemp("maps"), PACKAGE)
    return write_cohort(root, PACKAGE, 16, seed=3)


def pair_args(tensors, output_folder, run_id="pair", *extra):
    return ["--mode", "train", "--tensors", str(tensors), "--output_folder", str(output_folder), "--id", run_id,
            "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "brain.t2",
            "--output_tensors", "brain.t1", "brain.t2", "--encoder_blocks", "conv_encode", "--merge_blocks", "pair",
            "--decoder_blocks", "conv_decode", "--pairs", "brain.t1", "brain.t2", "--pair_loss", "contrastive",
            "--pair_merge", "dropout", "--batch_size", "4", "--epochs", "2", "--valid_ratio", "0.25",
            "--test_ratio", "0.25", *TINY_MODEL, *extra]


def validation_error(argv):
    from ml4ge.cli import parse
    from ml4ge.recipes import validate

    settings = parse(argv).settings
    with pytest.raises((ValueError, KeyError, FileNotFoundError)) as caught:
        validate(settings)
    return str(caught.value)


def replace_flag(argv, flag, *values):
    i = argv.index(flag)
    j = i + 1
    while j < len(argv) and not argv[j].startswith("--"):
        j += 1
    return [*argv[:i], flag, *values, *argv[j:]]


def test_pair_member_not_among_inputs(cohort, tmp_path):
    argv = replace_flag(pair_args(cohort, tmp_path), "--pairs", "brain.t1", "brain.age")
    message = validation_error(argv)
    assert "brain.age" in message and "--input_tensors" in message


def test_missing_tensors_folder(tmp_path):
    message = validation_error(pair_args(tmp_path / "nowhere", tmp_path))
    assert "nowhere" in message and "does not exist" in message


def test_unknown_block(cohort, tmp_path):
    message = validation_error(replace_flag(pair_args(cohort, tmp_path), "--encoder_blocks", "conv_encoder"))
    assert "conv_encoder" in message and "conv_encode" in message


def test_unknown_tensormap(cohort, tmp_path):
    message = validation_error(replace_flag(pair_args(cohort, tmp_path), "--input_tensors", "brain.t1", "brain.t3"))
    assert "t3" in message and "brain.t1" in message  # names the closest maps of the module


def test_missing_model_file(cohort, tmp_path):
    message = validation_error([*pair_args(cohort, tmp_path), "--model_file", str(tmp_path / "none.keras")])
    assert "none.keras" in message


def test_main_exits_2_without_work(cohort, tmp_path):
    from ml4ge.cli import main

    argv = replace_flag(pair_args(cohort, tmp_path / "out"), "--pairs", "brain.t1", "brain.age")
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_train_pair_model_then_infer_encoders(cohort, tmp_path):
    from ml4ge.cli import main

    assert main(pair_args(cohort, tmp_path)) == 0
    run = tmp_path / "pair"
    for name in ("pair.keras", "encoder_t1_tiny.keras", "encoder_t2_tiny.keras", "decoder_t1_tiny.keras",
                 "decoder_t2_tiny.keras", "merger.keras", "train.csv", "valid.csv", "test.csv",
                 "learning_curves_pair.png", "test_metrics.tsv", "arguments_train.json", "log.txt"):
        assert (run / name).is_file(), name
    split = {name: set(pd.read_csv(run / f"{name}.csv", dtype=str)["sample_id"]) for name in ("train", "valid", "test")}
    assert [len(split[s]) for s in ("train", "valid", "test")] == [8, 4, 4]
    assert not (split["train"] & split["test"]) and not (split["train"] & split["valid"])
    log = pd.read_csv(run / "training_log.csv")
    assert list(log["epoch"]) == [0, 1] and np.isfinite(log["val_loss"]).all()
    metrics = pd.read_csv(run / "test_metrics.tsv", sep="\t").set_index("metric")["value"]
    assert {"loss", "contrastive_pair_loss"} <= set(metrics.index) and np.isfinite(metrics).all()
    assert len(list((run / "reconstructions").glob("*_t1_tiny.png"))) == 3
    assert len(list((run / "decoding_t2_tiny_from_t1_tiny").glob("*.png"))) == 3
    assert any((run / "tensorboard").rglob("events.out.tfevents*"))

    infer = ["--mode", "infer_encoders", "--tensors", str(cohort), "--output_folder", str(tmp_path), "--id", "lat",
             "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "brain.t2",
             "--model_file", str(run / "pair.keras"), "--batch_size", "5", "--num_workers", "0"]
    assert main(infer) == 0
    for tm in ("t1_tiny", "t2_tiny"):
        table = pd.read_csv(tmp_path / "lat" / f"hidden_{tm}_lat.tsv", sep="\t", dtype={"sample_id": str})
        assert list(table.columns) == ["sample_id", *[f"latent_{i}" for i in range(16)]]
        assert sorted(table["sample_id"]) == sorted(str(i) for i in range(16))
        assert np.isfinite(table.iloc[:, 1:].to_numpy()).all()
        assert table.iloc[:, 1:].to_numpy().std(axis=0).max() > 0  # samples differ
    # the fused latent DropFuse gives at inference (#20 item 11): the mean of the two modalities' latents
    fused = pd.read_csv(tmp_path / "lat" / "hidden_fused_lat.tsv", sep="\t", dtype={"sample_id": str})
    latents = [pd.read_csv(tmp_path / "lat" / f"hidden_{tm}_lat.tsv", sep="\t", dtype={"sample_id": str})
               .set_index("sample_id").loc[fused["sample_id"]].to_numpy() for tm in ("t1_tiny", "t2_tiny")]
    assert list(fused.columns) == ["sample_id", *[f"latent_{i}" for i in range(16)]] and len(fused) == 16
    np.testing.assert_allclose(fused.iloc[:, 1:].to_numpy(), (latents[0] + latents[1]) / 2, rtol=1e-4, atol=1e-5)
    again = tmp_path / "lat2"
    assert main([*infer[:7], "lat2", *infer[8:]]) == 0  # DropFuse model: latents are deterministic
    first = pd.read_csv(tmp_path / "lat" / "hidden_t1_tiny_lat.tsv", sep="\t")
    second = pd.read_csv(again / "hidden_t1_tiny_lat2.tsv", sep="\t")
    np.testing.assert_array_equal(first.to_numpy(), second.to_numpy())


@pytest.fixture(scope="module")
def saved_pair_model(cohort, tmp_path_factory):
    """An untrained T1/T2 pair model (contrastive, DropFuse) saved with all its parts, as --mode train saves it."""
    from ml4ge.cli import parse
    from ml4ge.models.artifacts import save_model
    from ml4ge.models.factory import build_family, compile_model
    from ml4ge.recipes.train import model_settings, tensormaps

    folder = tmp_path_factory.mktemp("base")
    args = parse(pair_args(cohort, folder)).settings
    input_tmaps, output_tmaps = tensormaps(args)
    architecture, settings = model_settings(args, input_tmaps, output_tmaps)
    parts = build_family(architecture, input_tmaps, output_tmaps)
    compile_model(parts, output_tmaps, settings=settings)
    save_model(parts, folder, "base")
    return folder / "base.keras"


def test_model_file_with_other_tensormaps_is_refused(cohort, saved_pair_model, tmp_path):
    argv = [*pair_args(cohort, tmp_path), "--model_file", str(saved_pair_model)]
    argv = replace_flag(replace_flag(argv, "--output_tensors", "brain.t1"), "--input_tensors", "brain.t1", "brain.t2")
    message = validation_error(argv)
    assert "output_t2_tiny" in message and "--output_tensors brain.t1" in message
    assert "leave out --model_file" in message


def test_model_file_that_is_not_a_keras_model_is_refused(cohort, tmp_path):
    fake = tmp_path / "fake.keras"
    fake.write_text("not a zip")
    message = validation_error([*pair_args(cohort, tmp_path), "--model_file", str(fake)])
    assert "fake.keras" in message and "is not a Keras model archive" in message


@pytest.mark.slow
def test_fine_tune_a_saved_model(cohort, saved_pair_model, tmp_path):
    from ml4ge.cli import main
    from ml4ge.models.artifacts import load_keras, load_model

    base = load_model(saved_pair_model, compile=False)
    start = load_model(saved_pair_model)
    for mine, saved in zip(start.get_weights(), base.get_weights()):
        np.testing.assert_array_equal(mine, saved)  # training starts from the loaded weights
    assert all(start.get_layer(part.name) is part for part in start.encoders.values())

    argv = [*replace_flag(pair_args(cohort, tmp_path, "tuned"), "--epochs", "1"), "--model_file",
            str(saved_pair_model), "--learning_rate", "0.01"]
    assert main(argv) == 0
    run = tmp_path / "tuned"
    for name in ("tuned.keras", "encoder_t1_tiny.keras", "encoder_t2_tiny.keras", "decoder_t1_tiny.keras",
                 "decoder_t2_tiny.keras", "merger.keras", "train.csv", "training_log.csv", "test_metrics.tsv"):
        assert (run / name).is_file(), name
    assert list(pd.read_csv(run / "training_log.csv")["epoch"]) == [0]
    assert "fine-tuning" in (run / "log.txt").read_text()
    tuned = load_model(run / "tuned.keras", compile=False)
    changed = [not np.array_equal(a, b) for a, b in zip(tuned.get_weights(), base.get_weights())]
    assert sum(changed) > len(changed) // 2  # training moved the weights
    for name, encoder in tuned.encoders.items():  # the saved parts hold the fine-tuned weights
        for part, full in zip(encoder.get_weights(), tuned.get_layer(f"encode_{name}").get_weights()):
            np.testing.assert_array_equal(part, full)
    temperature = tuned.get_layer("pair_loss").get_weights()
    assert not np.array_equal(temperature, base.get_layer("pair_loss").get_weights())
    width = tuned.latent_size
    embeddings = {name: np.random.default_rng(1).normal(size=(3, width)).astype("float32") for name in tuned.encoders}
    merger = load_keras(run / "merger.keras")  # the saved merger fuses as the model does (DropFuse: the mean)
    np.testing.assert_allclose(merger.predict_on_batch([embeddings[tm.name] for tm in tuned.input_maps]),
                               tuned.fuse(embeddings), rtol=1e-6)


def test_templates_start_at_the_training_mean_and_are_saved(cohort, tmp_path):
    """With --decoder_template the decoders add a template that begins as the training split's mean volume, and
    the encoders subtract that mean, frozen, from their input."""
    import h5py
    import keras

    from ml4ge.cli import main
    from ml4ge.lookup import resolve
    from ml4ge.models.layers import Template

    argv = replace_flag(pair_args(cohort, tmp_path, "templated", "--decoder_template", "--learning_rate", "1e-12"),
                        "--epochs", "1")
    assert main(argv) == 0
    run = tmp_path / "templated"
    t1 = resolve("brain.t1", PACKAGE)
    train_ids = pd.read_csv(run / "train.csv").iloc[:, 0].astype(str)
    volumes = []
    for sample_id in train_ids:
        with h5py.File(cohort / f"{sample_id}.hd5", "r") as hd5:
            volumes.append(t1.tensor(hd5, sample_id)[0])
    decoder = keras.saving.load_model(run / f"decoder_{t1.name}.keras")
    templates = [layer for layer in decoder.layers if isinstance(layer, Template)]
    assert len(templates) == 1
    mean = np.mean(volumes, axis=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(templates[0].template), mean, atol=1e-4)
    assert np.abs(mean).max() > 0.1  # the mean is not zero, so the test can tell
    encoder = keras.saving.load_model(run / f"encoder_{t1.name}.keras")
    # the encoder subtracts it in a stock Normalization (tests/test_encoder_files.py: loads without ml4ge)
    centres = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Normalization)]
    assert len(centres) == 1 and "_center_" in centres[0].name
    np.testing.assert_allclose(keras.ops.convert_to_numpy(centres[0].adapt_mean), mean, atol=1e-4)
    # a fresh process that built nothing (infer_encoders, interpret) loads the decoder with its custom layer
    script = ("import sys; from ml4ge.models.artifacts import load_keras; "
              "print(sum(type(x).__name__ == 'Template' for x in load_keras(sys.argv[1]).layers))")
    loaded = subprocess.run([sys.executable, "-c", script, str(run / f"decoder_{t1.name}.keras")],
                            capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "1"
