"""The vae and rae families: the KL against its closed form, the beta schedules' values, RAE without sampling,
save/load in safe mode, the command line (bad flags refused, train then infer_encoders writes means) and a
SIGKILLed run that resumes with its schedule."""

import subprocess
import sys

import keras
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

from ml4ge.cli import main
from ml4ge.models.beta_schedules import BETA_SCHEDULES, BetaSchedule, beta_values
from ml4ge.models.config import DenseConfig, ModelConfig
from ml4ge.models.factory import Architecture, build_family, compile_model
from ml4ge.models.vae import LOG_VAR, MEAN, GaussianSample, gaussian_kl
from ml4ge.models.vae_config import VAEConfig
from ml4ge.tensormap import TensorMap

PACKAGE = "vae_maps"
VECTOR = TensorMap("v", (6,))


def vector_model(family="vae", **options):
    architecture = Architecture(family, ("dense_encode",), (), ("dense_decode",),
                                ModelConfig(dense=DenseConfig((8, 3))), (), VAEConfig(**options))
    model = build_family(architecture, [VECTOR], [VECTOR])
    compile_model(model, [VECTOR], learning_rate=1e-2, run_eagerly=True)
    return model


def vectors(n=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, 6)).astype("float32")
    return {VECTOR.input_name: x}, {VECTOR.output_name: x}


def closed_form_kl(mean, log_var):
    """KL(N(m, s^2) || N(0, 1)) = 0.5 (s^2 + m^2 - 1 - ln s^2), summed over dimensions."""
    return 0.5 * np.sum(np.exp(log_var) + mean ** 2 - 1.0 - log_var, axis=-1)


def test_the_kl_term_equals_the_closed_form():
    rng = np.random.default_rng(1)
    mean, log_var = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gaussian_kl(mean, log_var)),
                               closed_form_kl(mean, log_var), rtol=1e-5)
    # and in the model: loss = alpha * reconstruction + beta * KL of the posterior it computed
    model = vector_model(alpha=2.0, beta=0.25)
    x, y = vectors()
    logs = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    posterior = model.predict(x, verbose=0)
    kl = closed_form_kl(posterior[MEAN].astype("float64"), posterior[LOG_VAR].astype("float64")).mean()
    assert logs["kl_loss"] == pytest.approx(kl, rel=1e-4)
    reconstruction = np.mean((posterior[VECTOR.output_name] - y[VECTOR.output_name]) ** 2)  # the mean at inference
    assert logs["reconstruction_loss"] == pytest.approx(reconstruction, rel=1e-4)
    assert logs["loss"] == pytest.approx(2.0 * reconstruction + 0.25 * kl, rel=1e-4)


def test_the_beta_schedules_give_the_documented_values():
    assert set(BETA_SCHEDULES.names()) >= {"constant", "warmup", "cyclical", "explode_cycle"}
    # Fu et al. 2019, T = 10 epochs, M = 2 cycles, R = 0.5: tau = (t mod 5) / 5, factor min(1, tau / R)
    assert beta_values(VAEConfig(schedule="cyclical", cycles=2), 10) == pytest.approx(
        [0.0, 0.4, 0.8, 1.0, 1.0] * 2)
    assert beta_values(VAEConfig(beta=2.0, schedule="cyclical", cycles=1, ratio=0.25), 8) == pytest.approx(
        [0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    # the seed's model 3: explode 4, cycle 20; a ramp 2m/cycle over the first half of each cycle, then beta
    seed = beta_values(VAEConfig(schedule="explode_cycle", cycle_epochs=20, explode_epochs=4), 45)
    assert seed[:4] == [1.0] * 4
    assert seed[4:15] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert seed[23] == 1.0 and seed[24] == 0.0 and seed[34] == 1.0
    assert beta_values(VAEConfig(beta=3.0, schedule="warmup", warmup_epochs=4), 6) == pytest.approx(
        [0.0, 0.75, 1.5, 2.25, 3.0, 3.0])
    assert beta_values(VAEConfig(beta=0.5), 3) == [0.5] * 3


def test_the_schedule_callback_sets_the_models_beta_every_epoch():
    model = vector_model(schedule="cyclical", cycles=2)
    x, y = vectors()
    history = model.fit(x, y, epochs=4, batch_size=8, verbose=0,
                        callbacks=model.training_callbacks(type("Settings", (), {"epochs": 4})))
    assert history.history["beta"] == pytest.approx([0.0, 1.0, 0.0, 1.0])
    assert isinstance(model.training_callbacks(type("S", (), {"epochs": 4}))[0], BetaSchedule)
    assert not model.beta.trainable and all(v is not model.beta for v in model.trainable_variables)


def test_vae_samples_in_training_and_rae_does_not():
    x, _ = vectors(4)
    vae, rae = vector_model("vae"), vector_model("rae")
    assert any(isinstance(layer, GaussianSample) for layer in vae.layers)
    first, second = (keras.ops.convert_to_numpy(vae(x, training=True)[VECTOR.output_name]) for _ in range(2))
    assert not np.allclose(first, second)  # a new eps every call
    assert not any(isinstance(layer, GaussianSample) for layer in rae.layers)
    assert LOG_VAR not in rae.output and MEAN in rae.output
    first, second = (keras.ops.convert_to_numpy(rae(x, training=True)[VECTOR.output_name]) for _ in range(2))
    np.testing.assert_array_equal(first, second)  # deterministic code: z is the mean
    mean = keras.ops.convert_to_numpy(rae.encode(x)[VECTOR.name])
    logs = rae.evaluate(x, vectors(4)[1], return_dict=True, verbose=0)
    assert logs["code_norm_loss"] == pytest.approx(np.mean(0.5 * np.sum(mean ** 2, axis=-1)), rel=1e-4)


@pytest.mark.parametrize("family", ["vae", "rae"])
def test_save_and_load_in_safe_mode_give_the_same_model(tmp_path, family):
    model = vector_model(family, beta=0.5)
    x, y = vectors()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.beta.assign(0.37)
    path = tmp_path / f"{family}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model) and loaded.spec == model.spec and loaded.family == family
    assert float(loaded.beta.numpy()) == pytest.approx(0.37)
    for name in (VECTOR.output_name, MEAN):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)[name]),
                                   keras.ops.convert_to_numpy(model(x)[name]), rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.encoder_of(VECTOR)(x[VECTOR.input_name])),
                               keras.ops.convert_to_numpy(model.encode(x)[VECTOR.name]), rtol=1e-6)


# Command line ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def maps_root(tmp_path_factory):
    root = write_maps_package(tmp_path_factory.mktemp("maps"), PACKAGE)
    sys.path.insert(0, str(root))
    return root


@pytest.fixture(scope="module")
def cohort(maps_root):
    return write_cohort(maps_root, PACKAGE, 12, seed=3)


def train_argv(tensors, folder, run_id, *extra):
    return ["--mode", "train", "--tensors", str(tensors), "--output_folder", str(folder), "--id", run_id,
            "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "--output_tensors", "brain.t1",
            "--batch_size", "4", "--valid_ratio", "0.25", "--test_ratio", "0.25", *TINY_MODEL, *extra]


@pytest.mark.parametrize("bad", [["--beta_schedule", "cyclicl"], ["--beta", "-1"], ["--beta_ratio", "0"],
                                 ["--alpha", "0"], ["--input_tensors", "brain.t1", "brain.t2"]])
def test_bad_vae_flags_are_refused_before_any_work(cohort, tmp_path, bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(train_argv(cohort, tmp_path, "bad", "--family", "vae", *bad))
    assert exit_info.value.code == 2
    assert not (tmp_path / "bad" / "checkpoints").exists()


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vae", "rae"])
def test_train_then_infer_encoders_writes_the_posterior_means(cohort, tmp_path, family):
    assert main(train_argv(cohort, tmp_path, family, "--family", family, "--epochs", "2",
                           "--beta_schedule", "warmup", "--beta_warmup_epochs", "2")) == 0
    run = tmp_path / family
    log = pd.read_csv(run / "training_log.csv")
    assert list(log["beta"]) == [0.0, 0.5]
    penalty = "kl_loss" if family == "vae" else "code_norm_loss"
    assert np.isfinite(log[["loss", "val_loss", "reconstruction_loss", penalty]].to_numpy()).all()
    assert (run / "decoder_t1_tiny.keras").is_file() and not (run / "encoder_t1_tiny.keras").exists()
    infer = ["--mode", "infer_encoders", "--tensors", str(cohort), "--output_folder", str(tmp_path), "--id",
             f"{family}_latents", "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "--model_file",
             str(run / f"{family}.keras"), "--num_workers", "0"]
    assert main(infer) == 0
    table = pd.read_csv(tmp_path / f"{family}_latents" / f"hidden_t1_tiny_{family}_latents.tsv", sep="\t",
                        dtype={"sample_id": str}).set_index("sample_id")
    assert table.shape == (12, 16)
    from ml4ge.models.artifacts import load_model
    from ml4ge.pipeline import iterate_batches

    model = load_model(run / f"{family}.keras", compile=False)
    t1 = model.input_maps[0]
    import importlib

    maps = importlib.import_module(f"{PACKAGE}.brain")
    ids, inputs, _ = next(iterate_batches(sorted(cohort.glob("*.hd5"))[:3], [maps.t1], [], 3, num_workers=0))
    means = keras.ops.convert_to_numpy(model.encode({t1.input_name: inputs[t1.input_name]})[t1.name])
    np.testing.assert_allclose(table.loc[list(ids)].to_numpy(), means, rtol=1e-4, atol=1e-5)
    log_var = tmp_path / f"{family}_latents" / f"hidden_t1_tiny_log_var_{family}_latents.tsv"
    assert log_var.is_file() == (family == "vae")  # the second table: log-variances (the RAE has none)
    if family == "vae":
        log_vars = pd.read_csv(log_var, sep="\t", dtype={"sample_id": str}).set_index("sample_id")
        expected = keras.ops.convert_to_numpy(model.encode_log_var({t1.input_name: inputs[t1.input_name]})[t1.name])
        np.testing.assert_allclose(log_vars.loc[list(ids)].to_numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_sigkilled_vae_run_resumes_its_schedule(tmp_path):
    root = write_maps_package(tmp_path / "maps", PACKAGE)
    tensors = write_cohort(root, PACKAGE, 16, seed=5)
    epochs = 8  # enough epochs that a loaded machine still catches the run between its first and last backup
    argv = [sys.executable, str(REPO / "recipes.py"), *train_argv(tensors, tmp_path / "runs", "killed"),
            "--family", "vae", "--epochs", str(epochs), "--patience", "10", "--beta_schedule", "cyclical",
            "--beta_cycles", "2"]
    run = tmp_path / "runs" / "killed"
    killed_after = sigkill_after_first_backup(argv, subprocess_env(root), run, wait_s=180)
    assert 1 <= killed_after < epochs
    done = subprocess.run(argv, env=subprocess_env(root), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from the backup of epoch" in done.stderr
    log = pd.read_csv(run / "training_log.csv")
    assert list(log["epoch"]) == list(range(epochs))
    assert list(log["beta"]) == pytest.approx([0.0, 0.5, 1.0, 1.0] * 2)  # the schedule goes on where it stopped
