"""The command line: help per mode, short refusals, other modes' flags, typed settings, runs that share an id."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ml4ge.cli import main, parse, parse_settings
from ml4ge.modes import RECIPES

ROOT = Path(__file__).resolve().parents[1]


def refused(capsys, argv) -> str:
    """stderr of a command that must exit with status 2 in at most two lines, without a usage dump."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) <= 2 and "usage:" not in err, err
    return err


def helped(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


# Help ---------------------------------------------------------------------------------------------------------
def test_help_without_a_mode_lists_the_modes(capsys):
    text = helped(capsys, ["--help"])
    for mode in ("tensorize", "train", "infer_encoders", "compare", "associate", "interpret", "demo"):
        assert f"  {mode} " in text
    assert "--input_tensors" not in text and "--mode MODE --help" in text


def test_mode_help_shows_only_the_flags_of_that_mode(capsys):
    text = helped(capsys, ["--mode", "train", "--help"])
    for flag in ("--output_folder", "--input_tensors", "--encoder_blocks", "--pairs", "--epochs", "--learning_rate"):
        assert flag in text
    for flag in ("--atlas", "--genotypes", "--demo_epochs", "--latent_tables", "--manifest", "--shard"):
        assert flag not in text
    assert text.index("run:") < text.index("data:") < text.index("model:") < text.index("training:")
    encoders = helped(capsys, ["--mode", "infer_encoders", "--help"])
    assert "--shard" in encoders and "--model_file" in encoders
    assert "--epochs" not in encoders and "--output_tensors" not in encoders



@pytest.mark.parametrize("mode", sorted(RECIPES.names()))
def test_every_modes_help_prints(capsys, mode):
    """argparse %-formats help texts: a bare "30 %" in one (the demo's --study) crashed --help."""
    text = helped(capsys, ["--mode", mode, "--help"])
    assert text.startswith(f"usage: ml4ge --mode {mode} [flags]") and f"{mode}: " in text


def test_a_percent_sign_in_a_help_text_prints_as_written(capsys):
    assert "T2 missing for 30 %)" in " ".join(helped(capsys, ["--mode", "demo", "--help"]).split())

def test_recipes_py_runs_from_a_checkout():
    result = subprocess.run([sys.executable, "recipes.py", "--mode", "train", "--help"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0 and "--input_tensors" in result.stdout
    result = subprocess.run([sys.executable, "recipes.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "infer_encoders" in result.stdout


# Refusals -----------------------------------------------------------------------------------------------------
def test_unknown_mode_is_refused_with_closest_match(capsys):
    assert "Did you mean 'tensorize'" in refused(capsys, ["--mode", "tensorise"])


def test_missing_mode_is_refused(capsys):
    assert "choose a recipe with --mode" in refused(capsys, ["--id", "x"])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model_file", "missing.keras"], "--model_file 'missing.keras' does not exist"),
        (["--valid_ratio", "0.6", "--test_ratio", "0.5"], "leave some samples for training"),
        (["--sample_csv", "nowhere.csv"], "--sample_csv 'nowhere.csv' does not exist"),
        (["--epochs", "many"], "argument --epochs: invalid int value: 'many'"),
        (["--inptu_tensors", "t1"], "unknown flag --inptu_tensors. Did you mean --input_tensors"),
        (["--learning_rate", "-0.001"], "--learning_rate must be above 0, got -0.001"),
        (["--learning_rate", "0"], "--learning_rate must be above 0, got 0.0"),
        (["--learning_rate", "nan"], "--learning_rate must be above 0, got nan"),
        (["--num_workers", "-2"], "--num_workers must be at least 0, got -2"),
        (["--dense_layers", "32", "0"], "each value of --dense_layers must be at least 1, got 0"),
        (["--patience", "-1"], "--patience must be at least 0, got -1"),
        (["--lr_factor", "1.5"], "--lr_factor must be in (0, 1), got 1.5"),
    ],
)
def test_bad_flags_are_refused_before_any_work(tmp_path, capsys, flags, message):
    err = refused(capsys, ["--mode", "train", "--output_folder", str(tmp_path), *flags])
    assert message in err and "ml4ge --mode train --help" in err
    assert not any(tmp_path.iterdir()), "a refused run must not create its run folder"


def test_every_mode_refuses_numbers_out_of_bounds(tmp_path, capsys):
    from ml4ge.arguments import FLAGS, flag_names
    from ml4ge.modes import RECIPES

    for mode in RECIPES.names():
        settings_class = RECIPES.load(mode).Settings
        if "num_workers" in flag_names(settings_class):
            err = refused(capsys, ["--mode", mode, "--output_folder", str(tmp_path), "--num_workers", "-1"])
            assert "--num_workers must be at least 0" in err, (mode, err)
    assert FLAGS["learning_rate"].violation("learning_rate", 1e-3) is None


def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path, capsys, phenotypes):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    err = refused(capsys, tensorize_argv(tmp_path, phenotypes, "--output_folder", str(blocker / "runs")))
    assert "cannot write the run folder" in err and "choose a writable --output_folder" in err


# Typed settings -----------------------------------------------------------------------------------------------
def test_settings_are_typed_and_frozen(tmp_path):
    from ml4ge.arguments import FLAGS
    from ml4ge.recipes.train import TrainSettings

    settings = TrainSettings(input_tensors=["t1"], pairs=[["t1", "t2"]], tensors=tmp_path, conv_layers=[8])
    assert settings.input_tensors == ("t1",) and settings.pairs == (("t1", "t2"),)
    assert settings.tensors == str(tmp_path) and settings.conv_layers == (8,)
    assert settings.learning_rate == FLAGS["learning_rate"].default and settings.mode == "train"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.epochs = 3
    parsed = parse(["--mode", "train", "--input_tensors", "t1", "--pairs", "t1", "t2", "--conv_layers", "8",
                    "--tensors", str(tmp_path)]).settings
    assert parsed == settings


def test_every_mode_declares_settings_made_of_flags():
    from ml4ge import recipes
    from ml4ge.arguments import FLAGS, flag_names
    from ml4ge.modes import RECIPES

    for mode in RECIPES.names():
        settings_class = recipes.settings_class(mode)
        assert settings_class.mode == mode
        names = flag_names(settings_class)
        assert {"output_folder", "id", "overwrite"} <= set(names) <= set(FLAGS)
        defaults = settings_class()
        assert all(getattr(defaults, name) == FLAGS[name].default for name in names), mode


def test_model_config_reads_train_settings():
    from ml4ge.models.config import ModelConfig
    from ml4ge.recipes.train import TrainSettings

    config = ModelConfig.from_args(TrainSettings(dense_layers=(64,), pairs=(("a", "b"),)))
    assert config.dense.latent_size == 64 and config.pair.pairs == (("a", "b"),)


def test_argument_definitions_do_not_import_recipes():
    code = "import sys, ml4ge.arguments, ml4ge.modes; print(sorted(m for m in sys.modules if 'recipes' in m))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# Runs -----------------------------------------------------------------------------------------------------------
@pytest.fixture
def phenotypes(tmp_path) -> Path:
    path = tmp_path / "phenotypes.csv"
    path.write_text("sample_id,age\n1,50\n2,61\n")
    return path


def tensorize_argv(tmp_path, phenotypes, *extra):
    return ["--mode", "tensorize", "--phenotype_csv", str(phenotypes), "--tensors", str(tmp_path / "tensors"),
            "--output_folder", str(tmp_path / "runs"), "--id", "shared", "--num_workers", "0", *extra]


def test_flags_of_other_modes_are_named_in_one_warning(tmp_path, phenotypes, capsys):
    assert main(tensorize_argv(tmp_path, phenotypes, "--output_tensors", "t1", "--epochs", "3")) == 0
    warning = "--mode tensorize does not use --output_tensors --epochs; ignored."
    assert [line for line in capsys.readouterr().err.splitlines() if "does not use" in line][0].endswith(warning)
    assert warning in (tmp_path / "runs" / "shared" / "log.txt").read_text()


def test_arguments_are_saved_per_mode(tmp_path, phenotypes):
    from ml4ge.runs import start_run

    latents = tmp_path / "hidden.tsv"
    latents.write_text("sample_id\tlatent_0\n1\t0.5\n")
    settings = parse_settings(["--mode", "compare", "--output_folder", str(tmp_path), "--id", "run1", "--folds",
                               "3", "--latent_tables", f"t1={latents}", "--phenotypes", str(phenotypes)])
    path = start_run(settings) / "arguments_compare.json"
    saved = json.loads(path.read_text())
    assert saved["mode"] == "compare" and saved["folds"] == 3 and path.parent == tmp_path / "run1"
    assert saved["latent_tables"] == [f"t1={latents}"] and "epochs" not in saved


def test_a_mode_keeps_the_records_of_other_modes_with_its_id(tmp_path):
    from ml4ge.recipes.infer_encoders import InferEncodersSettings
    from ml4ge.recipes.train import TrainSettings
    from ml4ge.runs import start_run

    common = {"output_folder": str(tmp_path), "id": "udip"}
    folder = start_run(TrainSettings(input_tensors=("t1",), output_tensors=("t1",), epochs=3, **common))
    trained = (folder / "arguments_train.json").read_text()
    start_run(InferEncodersSettings(input_tensors=("t1",), model_file=str(folder / "udip.keras"), **common))
    assert (folder / "arguments_train.json").read_text() == trained
    assert json.loads((folder / "arguments_infer_encoders.json").read_text())["mode"] == "infer_encoders"
    assert not (folder / "arguments.json").exists()


def test_a_changed_rerun_is_refused_unless_overwrite(tmp_path, phenotypes, capsys):
    record = tmp_path / "runs" / "shared" / "arguments_tensorize.json"
    assert main(tensorize_argv(tmp_path, phenotypes)) == 0
    before = record.read_text()
    capsys.readouterr()
    err = refused(capsys, tensorize_argv(tmp_path, phenotypes, "--resample"))
    assert "--resample (was False, now True)" in err and "--overwrite" in err and "another --id" in err
    assert record.read_text() == before
    assert main(tensorize_argv(tmp_path, phenotypes, "--num_workers", "1")) == 0  # same settings: resumes
    assert main(tensorize_argv(tmp_path, phenotypes, "--resample", "--overwrite")) == 0
    assert json.loads(record.read_text())["resample"] is True
    log = (tmp_path / "runs" / "shared" / "log.txt").read_text()
    assert log.count("--mode tensorize started") == 3  # appended, never truncated


def test_overwrite_starts_training_over(tmp_path):
    from ml4ge.recipes.train import TrainSettings
    from ml4ge.runs import start_run

    common = dict(output_folder=str(tmp_path), id="r", input_tensors=("t1",), output_tensors=("t1",))
    folder = start_run(TrainSettings(dense_layers=(16,), **common))
    for name in ("checkpoints/backup/epoch_0002.weights.h5", "training_log.csv", "train.csv", "valid.csv",
                 "test.csv", "r.keras"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("state of the 16-wide model")
    start_run(TrainSettings(dense_layers=(16,), **common))  # same flags: resumes, keeps its state
    assert (folder / "training_log.csv").is_file() and (folder / "checkpoints").is_dir()
    start_run(TrainSettings(dense_layers=(8,), overwrite=True, **common))
    assert not (folder / "checkpoints").exists() and not (folder / "train.csv").exists()
    assert not (folder / "training_log.csv").exists()
    assert (folder / "r.keras").is_file()  # outputs are replaced when the new run writes them, not before
    assert json.loads((folder / "arguments_train.json").read_text())["dense_layers"] == [8]


# Model files ml4ge will not load --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "infer", "infer_encoders", "interpret"])
@pytest.mark.parametrize(
    "name, content, message",
    [
        ("model.h5", b"\x89HDF\r\n\x1a\n", "is a legacy HDF5 model file: ml4ge loads only .keras archives"),
        ("model.keras", b"just some text, not a zip\n", "is not a Keras model archive"),
        ("model.pkl", b"\x80\x04K\x01.", "is not a .keras model file"),
    ],
)
def test_model_files_that_are_not_keras_archives_are_refused(tmp_path, capsys, mode, name, content, message):
    model_file = tmp_path / name
    model_file.write_bytes(content)
    outputs = ["--output_tensors", "t1"] if mode in ("train", "infer") else []
    err = refused(capsys, ["--mode", mode, "--output_folder", str(tmp_path / "runs"), "--model_file",
                           str(model_file), "--input_tensors", "t1", *outputs])
    assert message in err, err
    assert not (tmp_path / "runs").exists()


def test_loading_refuses_legacy_and_non_archive_files(tmp_path):
    from ml4ge.models.artifacts import load_keras

    legacy = tmp_path / "encoder_t1.h5"
    legacy.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(ValueError, match="legacy HDF5 model file"):
        load_keras(legacy)
    text = tmp_path / "encoder_t1.keras"
    text.write_text("hello")
    with pytest.raises(ValueError, match="is not a Keras model archive"):
        load_keras(text)


def test_keras_is_required_without_the_published_safe_mode_bypasses():
    """Keras before 3.11 has published safe_mode bypasses (CVE-2025-1550, -8747, -9906); setup.py and the Docker
    images (which install through setup.py, keeping no Keras of their own) must not allow it."""
    import re
    from importlib.metadata import version

    requirement = re.search(r'"keras>=([0-9.]+)', (ROOT / "setup.py").read_text())
    assert requirement and tuple(map(int, requirement.group(1).split("."))) >= (3, 11)
    assert tuple(map(int, version("keras").split(".")[:2])) >= (3, 11)
    for dockerfile in (ROOT / "docker").glob("Dockerfile.*"):
        text = dockerfile.read_text()
        assert re.search(r"pip install --no-cache-dir .* \.( |$)", text, re.MULTILINE), dockerfile.name
        assert "--no-deps" not in text and "keras==" not in text
