"""``--mode sweep``: one predictor per input combination per target, the grid TSV and heatmap, and a resume after
a kill that retrains no finished cell."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from predictor_helpers import PACKAGE, TINY, write_predictor_cohort
from recipe_helpers import REPO, subprocess_env

from ml4ge.cli import main
from ml4ge.plots_sweep import best_inputs, grid_table

COMBOS = ["--sweep_inputs", "maps.t1", "maps.t2", "maps.t1+maps.t2"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    return root, write_predictor_cohort(root)


def sweep_argv(tensors, folder, run_id, *extra):
    return ["--mode", "sweep", "--tensors", str(tensors), "--output_folder", str(folder), "--id", run_id,
            "--tensormap_prefix", PACKAGE, "--input_tensors", "maps.t1", "maps.t2", "--optional_tensors", "maps.t2",
            *TINY, "--epochs", "1", *extra]


def test_the_grid_holds_mean_and_sd_over_repeats_and_marks_the_best():
    cells = pd.DataFrame({"target": ["age"] * 4 + ["sex"] * 4, "inputs": ["t1", "t1", "t2", "t2"] * 2,
                          "repeat": [0, 1] * 4, "metric": ["mae"] * 4 + ["balanced_accuracy"] * 4,
                          "value": [3.0, 5.0, 2.0, 2.0, 0.6, 0.8, 0.9, 0.7]})
    grid = grid_table(cells).set_index(["target", "inputs"])
    assert grid.loc[("age", "t1"), "mean"] == 4.0 and grid.loc[("age", "t1"), "sd"] == pytest.approx(np.sqrt(2))
    assert grid.loc[("age", "t2"), "repeats"] == 2
    assert best_inputs(grid.reset_index()) == {"age": "t2", "sex": "t2"}  # lowest MAE, highest accuracy


@pytest.mark.slow
def test_a_sweep_trains_every_cell_writes_the_grid_and_resumes_after_a_kill(cohort, tmp_path):
    root, tensors = cohort
    argv = sweep_argv(tensors, tmp_path, "grid", "--output_tensors", "maps.age", "maps.sex", *COMBOS)
    env = subprocess_env(root)
    command = [sys.executable, str(REPO / "recipes.py"), *argv]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    cells = tmp_path / "grid" / "cells"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None and not list(cells.glob("*/sweep_seconds.txt")):
        time.sleep(0.5)
    assert process.poll() is None, "the sweep ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)  # after the first cell finished
    process.wait()
    finished = {path.parent: path.parent.joinpath(f"{path.parent.name}.keras").stat().st_mtime_ns
                for path in cells.glob("*/sweep_seconds.txt")}
    assert finished and not (tmp_path / "grid" / "sweep_grid.tsv").exists()
    assert main(argv) == 0
    for cell, modified in finished.items():  # not retrained
        assert cell.joinpath(f"{cell.name}.keras").stat().st_mtime_ns == modified
    grid = pd.read_csv(tmp_path / "grid" / "sweep_grid.tsv", sep="\t")
    assert set(zip(grid["target"], grid["inputs"])) == {(t, i) for t in ("age", "sex")
                                                        for i in ("t1_p", "t2_p", "t1_p+t2_p")}
    assert set(grid.loc[grid["target"] == "age", "metric"]) == {"r2", "pearson_r", "mae"}
    assert set(grid.loc[grid["target"] == "sex", "metric"]) == {"balanced_accuracy", "roc_auc", "macro_f1"}
    with Image.open(tmp_path / "grid" / "sweep_grid.png") as image:
        assert image.size[0] > 100
    cell_table = pd.read_csv(tmp_path / "grid" / "sweep_cells.tsv", sep="\t")
    assert (cell_table["seconds"] > 0).all() and len(cell_table.drop_duplicates(["target", "inputs"])) == 6
    t2_only = (tmp_path / "grid" / "cells" / "age__t2_p__r0" / "skipped_samples.tsv").read_text()
    assert "s000" in t2_only or "s001" in t2_only or "s002" in t2_only  # no T2: nothing to predict from there
    both = tmp_path / "grid" / "cells" / "age__t1_p+t2_p__r0" / "skipped_samples.tsv"
    assert not both.exists() or "s00" not in both.read_text()  # an optional T2 beside T1 keeps every subject


def test_bad_sweep_flags_are_refused_before_any_work(cohort, tmp_path):
    _, tensors = cohort
    for extra in (["--sweep_inputs", "maps.t1+maps.flair"], ["--family", "vae"], ["--sweep_repeats", "0"]):
        with pytest.raises(SystemExit) as refused:
            main(sweep_argv(tensors, tmp_path, "bad", "--output_tensors", "maps.age", *extra))
        assert refused.value.code == 2
    assert not (tmp_path / "bad" / "cells").exists()
