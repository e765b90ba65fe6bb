"""Tidy run folders (#20 item 6): a finished train run deletes its resume checkpoints unless --keep_checkpoints, a
rerun of it does not train again, and the demo report lists the files that exist."""

import pandas as pd
import pytest
from recipe_helpers import TINY_MODEL, write_cohort, write_maps_package

PACKAGE = "run_folder_maps"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = write_maps_package(tmp_path_factory.mktemp("maps"), PACKAGE)
    return write_cohort(root, PACKAGE, 8, seed=4)


def train_argv(tensors, output_folder, run_id, *extra):
    return ["--mode", "train", "--tensors", str(tensors), "--output_folder", str(output_folder), "--id", run_id,
            "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "--output_tensors", "brain.t1",
            "--batch_size", "4", "--epochs", "2", "--valid_ratio", "0.25", "--test_ratio", "0.25", *TINY_MODEL,
            *extra]


@pytest.mark.slow
def test_a_finished_run_deletes_its_checkpoints_and_a_rerun_does_not_train_again(cohort, tmp_path, caplog):
    from ml4ge.cli import main
    from ml4ge.models.artifacts import load_model

    assert main(train_argv(cohort, tmp_path, "tidy")) == 0
    run = tmp_path / "tidy"
    assert not (run / "checkpoints").exists()
    assert (run / "tidy.keras").is_file() and (run / "encoder_t1_tiny.keras").is_file()
    trained = load_model(run / "tidy.keras").get_weights()
    assert main(train_argv(cohort, tmp_path, "tidy")) == 0  # the same flags: finished, nothing to redo
    assert "finished earlier" in (run / "log.txt").read_text()
    assert pd.read_csv(run / "training_log.csv")["epoch"].tolist() == [0, 1]
    for before, after in zip(trained, load_model(run / "tidy.keras").get_weights()):
        assert (before == after).all()


@pytest.mark.slow
def test_keep_checkpoints_keeps_them_and_a_rerun_resumes_from_them(cohort, tmp_path):
    from ml4ge.cli import main

    assert main(train_argv(cohort, tmp_path, "kept", "--keep_checkpoints")) == 0
    run = tmp_path / "kept"
    assert (run / "checkpoints" / "backup" / "training_metadata.json").is_file()
    assert (run / "checkpoints" / "best.weights.h5").is_file()
    assert main(train_argv(cohort, tmp_path, "kept")) == 0  # keeping them or not is no change of the run
    assert "resumed from the backup of epoch 2" in (run / "log.txt").read_text()
    assert not (run / "checkpoints").exists()


def test_the_report_lists_the_files_that_exist(tmp_path):
    from ml4ge.demo.context import DemoRun
    from ml4ge.demo.presets import PRESETS
    from ml4ge.demo.report import outputs_section

    for model in ("ae_t1", "ae_deep"):
        (tmp_path / model).mkdir()
        (tmp_path / model / f"{model}.keras").write_text("model")
    for folder in ("data", "tensors", "latents/ae_t1", "latents/ae_deep", "interpret_ae_deep", "compare",
                   "stages", "something_new"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("interpret_truth.tsv", "demo_timings.tsv", "report.md"):
        (tmp_path / name).write_text("")
    section = outputs_section(DemoRun(tmp_path, PRESETS.get("quick"), seed=1, num_workers=0))
    lines = section.splitlines()
    assert any(line.startswith("- `ae_deep/`, `ae_t1/`: trained models") for line in lines), section
    assert "`interpret_ae_deep/`" in section and "interpret_ae_t2" not in section and "ae_t2" not in section
    assert "`latents/ae_deep/`, `latents/ae_t1/`" in section  # the models whose latents were written
    assert "- `something_new/`" in lines  # a folder without a description is still listed
    assert "dropfuse" not in section and "`tensorize/`" not in section  # what does not exist is not named
    assert "report.md" not in section
