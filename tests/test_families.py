"""Model families: the registry and contract, the train recipe's open hooks (a family of the tests' own with its
own train_step, compute_loss, second optimizer and callback, also under MirroredStrategy), the preset's training
settings as the optimizer really used them, and optional inputs end to end."""

import json
import subprocess
import sys
import textwrap

import h5py
import keras
import numpy as np
import pandas as pd
import pytest
from recipe_helpers import TINY_MODEL, subprocess_env, write_cohort, write_maps_package

from ml4ge.cli import main
from ml4ge.models.artifacts import load_model, save_model
from ml4ge.models.config import DenseConfig, ModelConfig, PairConfig
from ml4ge.models.factory import build_model, compile_model, family_class
from ml4ge.models.presets import UDIP_LEARNING_RATES
from ml4ge.models.registries import FAMILIES
from ml4ge.registry import UnknownNameError
from ml4ge.tensormap import TensorMap

PACKAGE = "family_maps"
FAMILY = f"{PACKAGE}.families.AdversarialAutoencoder"


@pytest.fixture(scope="module")
def maps_root(tmp_path_factory):
    root = write_maps_package(tmp_path_factory.mktemp("maps"), PACKAGE)
    sys.path.insert(0, str(root))  # --family and --tensormap_prefix import from it
    return root


@pytest.fixture(scope="module")
def cohort(maps_root):
    return write_cohort(maps_root, PACKAGE, 12, seed=5)


def train_argv(tensors, folder, run_id, *extra):
    return ["--mode", "train", "--tensors", str(tensors), "--output_folder", str(folder), "--id", run_id,
            "--tensormap_prefix", PACKAGE, "--batch_size", "4", "--valid_ratio", "0.25", "--test_ratio", "0.25",
            *TINY_MODEL, *extra]


def test_families_are_registered_and_looked_up_by_name_or_import_path(maps_root):
    assert "autoencoder" in FAMILIES
    with pytest.raises(UnknownNameError, match="autoencoder"):
        family_class("autoencodr")
    with pytest.raises(ValueError, match="cannot import"):
        family_class("no_such_package.Family")
    with pytest.raises(ValueError, match="not a model family"):
        family_class("ml4ge.models.factory.Architecture")
    assert family_class(FAMILY).family == "adversarial_autoencoder"


def test_a_saved_model_says_what_it_is_and_loads_in_a_fresh_python(tmp_path):
    a, b = TensorMap("a", (6,)), TensorMap("b", (6,))
    model = build_model([a, b], [a, b], ["dense_encode"], ["pair"], ["dense_decode"],
                        ModelConfig(dense=DenseConfig((8, 4)), pair=PairConfig(merge="dropout")))
    compile_model(model, [a, b])
    path = save_model(model, tmp_path, "run")["full"]
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    expected = np.asarray(model({"input_a": x, "input_b": x})["output_b"])
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import json, keras, numpy as np
        import ml4ge
        model = keras.saving.load_model({str(path)!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        out = np.asarray(model({{"input_a": x, "input_b": x}})["output_b"])
        print(json.dumps({{"class": type(model).__name__, "config": model.get_config()["spec"],
                          "out": out.tolist()}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=subprocess_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["class"] == "AutoencoderModel"
    spec = result["config"]
    assert spec["family"] == "autoencoder" and spec["merge"] == "pair"
    assert spec["encoders"] == {"a": {"block": "dense_encode"}, "b": {"block": "dense_encode"}}
    assert spec["decoders"]["b"] == {"block": "dense_decode"} and spec["config"]["dense"]["widths"] == [8, 4]
    np.testing.assert_allclose(result["out"], expected, rtol=1e-5, atol=1e-6)


def read_log(run):
    return pd.read_csv(run / "training_log.csv")


def test_a_family_of_ones_own_trains_through_the_train_recipe_with_its_hooks(cohort, tmp_path):
    assert main(train_argv(cohort, tmp_path, "adversarial", "--family", FAMILY, "--input_tensors", "brain.t1",
                           "--output_tensors", "brain.t1", "--epochs", "3", "--learning_rate", "1e-3")) == 0
    log = read_log(tmp_path / "adversarial")
    assert list(log["epoch"]) == [0, 1, 2]
    assert list(log["adversary_weight"]) == [0.0, 0.5, 1.0]  # the family's callback ran every epoch
    assert np.isfinite(log["discriminator_loss"]).all()  # its train_step stepped the second optimizer
    assert log["discriminator_loss"].nunique() == 3
    assert np.isfinite(log[["loss", "val_loss"]].to_numpy()).all()
    import importlib

    importlib.import_module(f"{PACKAGE}.families")
    model = load_model(tmp_path / "adversarial" / "adversarial.keras", compile=False)
    assert type(model).__name__ == "AdversarialAutoencoder" and model.spec["family"] == "adversarial_autoencoder"
    infer = ["--mode", "infer_encoders", "--tensors", str(cohort), "--output_folder", str(tmp_path), "--id",
             "adversarial", "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "--model_file",
             str(tmp_path / "adversarial" / "adversarial.keras"), "--num_workers", "0"]
    assert main(infer) == 0  # through the family's own encode
    latents = pd.read_csv(tmp_path / "adversarial" / "hidden_t1_tiny_adversarial.tsv", sep="\t")
    assert latents.shape == (12, 5) and np.isfinite(latents.iloc[:, 1:].to_numpy()).all()


MIRRORED_FAMILY = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from ml4ge.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_the_family_of_ones_own_trains_under_mirrored_strategy(cohort, maps_root, tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_FAMILY)
    argv = train_argv(cohort, tmp_path, "mirrored", "--family", FAMILY, "--input_tensors", "brain.t1",
                      "--output_tensors", "brain.t1", "--epochs", "2", "--strategy", "mirrored")
    done = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=300,
                          env=subprocess_env(maps_root))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MirroredStrategy with 2 replica(s)" in (tmp_path / "mirrored" / "log.txt").read_text()
    log = read_log(tmp_path / "mirrored")
    assert list(log["adversary_weight"]) == [0.0, 0.5]
    assert np.isfinite(log[["loss", "val_loss", "discriminator_loss"]].to_numpy()).all()


@pytest.mark.parametrize("modality", ["t1", "t2"])
def test_the_udip_preset_trains_at_udips_learning_rate(cohort, tmp_path, modality):
    """The rate the optimizer used, read from the training log, is UDIP's for the modality."""
    argv = train_argv(cohort, tmp_path, f"udip_{modality}", "--model_preset", "udip", "--input_tensors",
                      f"brain.{modality}", "--output_tensors", f"brain.{modality}", "--epochs", "1")
    assert main(argv) == 0
    log = read_log(tmp_path / f"udip_{modality}")
    assert log["learning_rate"].iloc[0] == pytest.approx(UDIP_LEARNING_RATES[modality], rel=1e-6)
    assert "schedule PlateauSchedule(factor=0.5, patience=4" in (tmp_path / f"udip_{modality}" / "log.txt").read_text()


def test_a_step_schedule_lowers_the_rate_every_k_epochs(cohort, tmp_path):
    argv = train_argv(cohort, tmp_path, "step", "--input_tensors", "brain.age", "--output_tensors", "brain.age",
                      "--encoder_blocks", "dense_encode", "--decoder_blocks", "dense_decode", "--epochs", "4",
                      "--learning_rate", "0.01", "--lr_schedule", "step", "--lr_step_epochs", "2",
                      "--lr_factor", "0.1", "--lr_min", "0.0005", "--patience", "10")
    assert main(argv) == 0
    np.testing.assert_allclose(read_log(tmp_path / "step")["learning_rate"], [0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def drop_t2(tensors, fraction):
    """Delete the T2 dataset from the first ``fraction`` of the cohort's files; returns their sample ids."""
    paths = sorted(tensors.glob("*.hd5"))
    dropped = paths[: round(fraction * len(paths))]
    for path in dropped:
        with h5py.File(path, "a") as hd5:
            del hd5["ukb_brain_mri/T2"]
    return [path.stem for path in dropped]


@pytest.mark.slow
def test_dropfuse_with_an_optional_t2_gives_every_subject_a_latent(maps_root, tmp_path):
    tensors = write_cohort(maps_root, PACKAGE, 20, seed=11)
    t1_only = drop_t2(tensors, 0.3)
    pair = ["--input_tensors", "brain.t1", "brain.t2", "--output_tensors", "brain.t1", "brain.t2",
            "--merge_blocks", "pair", "--pair_merge", "dropout", "--epochs", "2"]
    assert main(train_argv(tensors, tmp_path, "required", *pair)) == 0
    required = (tmp_path / "required" / "skipped_samples.tsv").read_text()
    assert all(sample in required for sample in t1_only)  # without --optional_tensors they are skipped
    assert main(train_argv(tensors, tmp_path, "optional", *pair, "--optional_tensors", "brain.t2")) == 0
    run = tmp_path / "optional"
    assert not any(sample in (run / "skipped_samples.tsv").read_text() for sample in t1_only)
    assert np.isfinite(read_log(run)[["loss", "val_loss", "contrastive_pair_loss"]].to_numpy()).all()
    infer = ["--mode", "infer_encoders", "--tensors", str(tensors), "--output_folder", str(tmp_path), "--id",
             "latents", "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "brain.t2",
             "--model_file", str(run / "optional.keras"), "--num_workers", "0"]
    assert main(infer) == 0
    fused = pd.read_csv(tmp_path / "latents" / "hidden_fused_latents.tsv", sep="\t", dtype={"sample_id": str})
    t1 = pd.read_csv(tmp_path / "latents" / "hidden_t1_tiny_latents.tsv", sep="\t", dtype={"sample_id": str})
    assert sorted(fused["sample_id"]) == sorted(path.stem for path in tensors.glob("*.hd5"))
    fused, t1 = fused.set_index("sample_id"), t1.set_index("sample_id")
    np.testing.assert_allclose(fused.loc[t1_only].to_numpy(), t1.loc[t1_only].to_numpy(), rtol=1e-5, atol=1e-6)
    both = [sample for sample in fused.index if sample not in t1_only]
    assert not np.allclose(fused.loc[both].to_numpy(), t1.loc[both].to_numpy())  # T2 takes part where present
    model = load_model(run / "optional.keras", compile=False)
    assert model.optional == ("t2_tiny",) and "present_t2_tiny" in model.input


def test_optional_tensors_must_name_model_maps(cohort, tmp_path):
    argv = train_argv(cohort, tmp_path, "bad", "--input_tensors", "brain.t1", "--output_tensors", "brain.t1",
                      "--optional_tensors", "brain.t2")
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_absent_optional_outputs_weigh_nothing_in_the_loss():
    a, b = TensorMap("a", (3,)), TensorMap("b", (2,))
    model = build_model([a, b], [a, b], ["dense_encode"], ["dropout"], ["dense_decode"],
                        ModelConfig(dense=DenseConfig((4,))), optional=["b"])
    compile_model(model, [a, b], run_eagerly=True)
    rng = np.random.default_rng(0)
    x = {"input_a": rng.normal(size=(4, 3)), "input_b": rng.normal(size=(4, 2)), "present_b": np.zeros((4, 1))}
    y = {"output_a": x["input_a"], "output_b": rng.normal(size=(4, 2)) * 100}
    weights = {"output_a": np.ones(4), "output_b": np.zeros(4)}
    logs = model.evaluate(x, y, sample_weight=weights, return_dict=True, verbose=0)
    assert logs["output_b_loss"] == 0.0 and logs["loss"] == pytest.approx(logs["output_a_loss"], rel=1e-6)
    latent = np.asarray(model.latent(x))  # T2 absent everywhere: the fused latent is a's embedding alone
    np.testing.assert_allclose(latent, np.asarray(model.encoders["a"](x["input_a"])), rtol=1e-6)
    assert keras.ops.convert_to_numpy(model.fuse(model.encode(x), {"b": x["present_b"]})).shape == (4, 4)
