"""The demo's ``--study legibility``: its stages, T2 removed for 30 % of its own cohort, and the quick study end
to end (the grid of predictors over T1, T2, T1 + T2 and T1 + T2 + brain volumes, for age and sex)."""

from pathlib import Path

import pandas as pd
import pytest

from ml4ge.cli import main
from ml4ge.demo.context import DemoRun
from ml4ge.demo.legibility import drop_t2, missing_subjects, sweep_section
from ml4ge.demo.pipeline import ordered_stages
from ml4ge.demo.presets import PRESETS
from ml4ge.plots_sweep import grid_table


def test_the_legibility_study_runs_its_own_stages_only():
    assert [name for name, _ in ordered_stages("legibility")] == ["generate", "drop_t2", "tensorize", "sweep"]
    assert "sweep" not in [name for name, _ in ordered_stages()] and "drop_t2" not in dict(ordered_stages("vit"))


def test_thirty_percent_lose_their_t2_in_a_seeded_draw():
    ids = [f"sub{i:04d}" for i in range(1, 81)]
    dropped = missing_subjects(ids, seed=3)
    assert len(dropped) == 24 and set(dropped) <= set(ids) and dropped == missing_subjects(ids, seed=3)
    assert dropped != missing_subjects(ids, seed=4)


def test_another_demos_cohort_is_never_changed(tmp_path):
    run = DemoRun(tmp_path / "demo", PRESETS.get("quick"), seed=1, num_workers=0, data=tmp_path / "data",
                  study="legibility")
    with pytest.raises(ValueError, match="--demo_data"):
        drop_t2(run)


@pytest.fixture(scope="module")
def legibility_demo(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("legibility")
    assert main(["--mode", "demo", "--quick", "--study", "legibility", "--demo_subjects", "30", "--demo_epochs", "1",
                 "--output_folder", str(output), "--id", "legible", "--num_workers", "0"]) == 0
    return output / "legible"


@pytest.mark.slow
def test_quick_legibility_study_writes_the_grid_and_keeps_every_subject(legibility_demo):
    dropped = pd.read_csv(legibility_demo / "data" / "t2_missing.csv", dtype=str)["sample_id"].tolist()
    assert len(dropped) == 9 and not any((legibility_demo / "data" / "t2" / f"{s}.nii.gz").exists() for s in dropped)
    grid = pd.read_csv(legibility_demo / "sweep" / "sweep_grid.tsv", sep="\t")
    combinations = {"t1_5mm", "t2_5mm", "t1_5mm+t2_5mm", "t1_5mm+t2_5mm+brain_volumes"}
    assert set(grid["inputs"]) == combinations and set(grid["target"]) == {"age", "sex"}
    cells = legibility_demo / "sweep" / "cells"
    for combination in ("t1_5mm+t2_5mm", "t1_5mm+t2_5mm+brain_volumes"):  # no subject dropped beside T1
        skipped = cells / f"age__{combination}__r0" / "skipped_samples.tsv"
        assert not skipped.exists() or not any(s in skipped.read_text() for s in dropped)
    report = (legibility_demo / "report.md").read_text()
    assert "## Legibility" in report and "sweep/sweep_grid.png" in report
    assert (legibility_demo / "sweep" / "sweep_grid.png").stat().st_size > 0


def test_the_report_section_shows_the_grid_and_the_cost_per_cell(tmp_path):
    run = DemoRun(tmp_path, PRESETS.get("quick"), seed=1, num_workers=0, study="legibility")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (tmp_path / "data").mkdir()
    pd.DataFrame({"sample_id": ["sub0001", "sub0002"]}).to_csv(tmp_path / "data" / "t2_missing.csv", index=False)
    cells = pd.DataFrame({"target": ["age", "age", "sex", "sex"], "inputs": ["t1_5mm", "t2_5mm"] * 2,
                          "repeat": 0, "seconds": [10.0, 20.0, 30.0, 40.0],
                          "metric": ["mae", "mae", "balanced_accuracy", "balanced_accuracy"],
                          "value": [4.5, 6.0, 0.9, 0.7]})
    cells.to_csv(sweep / "sweep_cells.tsv", sep="\t", index=False)
    grid_table(cells).to_csv(sweep / "sweep_grid.tsv", sep="\t", index=False)
    section = sweep_section(run)
    assert "## Legibility" in section and "t2_5mm missing for 2 subjects" in section
    assert "4.500" in section and "0.700" in section and "25.0 s of training per cell" in section
    assert "sweep/sweep_grid.png" in section
    assert sweep_section(DemoRun(tmp_path / "none", PRESETS.get("quick"), seed=1, num_workers=0)) == ""


def test_drop_t2_deletes_the_files_and_manifest_rows_of_thirty_percent_once(tmp_path):
    run = DemoRun(tmp_path, PRESETS.get("quick"), seed=2, num_workers=0, study="legibility")
    cohort = tmp_path / "data"
    rows = []
    for contrast in ("t1", "t2"):
        (cohort / contrast).mkdir(parents=True)
        for index in range(1, 21):
            path = f"{contrast}/sub{index:04d}.nii.gz"
            (cohort / path).write_bytes(b"volume")
            rows.append({"sample_id": f"sub{index:04d}", "tensor": contrast, "path": path})
    pd.DataFrame(rows).to_csv(cohort / "manifest.csv", index=False)
    drop_t2(run)
    drop_t2(run)  # a resumed stage drops the same subjects, no more
    dropped = pd.read_csv(cohort / "t2_missing.csv", dtype=str)["sample_id"].tolist()
    manifest = pd.read_csv(cohort / "manifest.csv", dtype=str)
    assert len(dropped) == 6 and len(manifest) == 34 and len(list((cohort / "t1").iterdir())) == 20
    assert sorted(p.name for p in (cohort / "t2").iterdir()) == sorted(
        f"{s}.nii.gz" for s in manifest.loc[manifest["tensor"] == "t2", "sample_id"])
    assert not set(dropped) & set(manifest.loc[manifest["tensor"] == "t2", "sample_id"])
