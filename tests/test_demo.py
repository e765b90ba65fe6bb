"""The end-to-end demo: refusals and stage mechanics (fast), the quick demo and the notebook on its outputs (slow)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ml4ge.cli import main, parse_settings
from ml4ge.demo.pipeline import (
    STAGES,
    DemoRun,
    Stage,
    check_settings,
    demo_manifest,
    ordered_stages,
    run_stage,
)
from ml4ge.demo.presets import PRESETS
from ml4ge.demo.studies import GROUP_EPOCH_FACTORS, VIT_EPOCH_FACTORS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "latent_space_comparison.ipynb"
LATENT_SPACES = ("ae_t1", "ae_t2", "dropfuse_t1", "dropfuse_t2", "ae_deep")


def refusal(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(["--mode", "demo", *argv])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


# Refusals and mechanics ----------------------------------------------------------------------------------------
def test_contradicting_presets_are_refused(capsys, tmp_path):
    err = refusal(capsys, "--quick", "--full_resolution", "--output_folder", str(tmp_path))
    assert "--quick and --full_resolution contradict" in err


def test_too_few_subjects_are_refused(capsys, tmp_path):
    assert "--demo_subjects 5: the demo needs at least 30" in refusal(capsys, "--demo_subjects", "5",
                                                                      "--output_folder", str(tmp_path))


def test_demo_data_must_hold_a_cohort(capsys, tmp_path):
    assert "is not a folder" in refusal(capsys, "--demo_data", str(tmp_path / "nowhere"))
    (tmp_path / "manifest.csv").write_text("sample_id,tensor,path\n")
    err = refusal(capsys, "--demo_data", str(tmp_path))
    assert "has no phenotypes.csv, truth.json" in err


def test_demo_data_on_another_grid_is_refused(capsys, tmp_path):
    for name in ("manifest.csv", "phenotypes.csv"):
        (tmp_path / name).write_text("sample_id\n")
    (tmp_path / "truth.json").write_text(json.dumps({"voxel_mm": 3.0}))
    err = refusal(capsys, "--quick", "--demo_data", str(tmp_path), "--output_folder", str(tmp_path / "out"))
    assert "generated at 3.0 mm but this preset uses 5.0 mm" in err


def test_resuming_with_other_settings_is_refused(tmp_path):
    quick = DemoRun(tmp_path, PRESETS.get("quick"), seed=1, num_workers=0)
    default = DemoRun(tmp_path, PRESETS.get("default"), seed=1, num_workers=0)
    (tmp_path / "demo.json").write_text(json.dumps({"settings": default.fingerprint()}))
    with pytest.raises(ValueError, match=r"other settings \(.*epochs.*subjects.*\)"):
        check_settings(quick)
    (tmp_path / "demo.json").write_text(json.dumps({"settings": quick.fingerprint()}))
    check_settings(quick)
    with pytest.raises(ValueError, match=r"\(seed differ\)"):
        check_settings(DemoRun(tmp_path, PRESETS.get("quick"), seed=2, num_workers=0))


def test_presets_follow_the_flags(tmp_path):
    from ml4ge.demo.pipeline import demo_run_from_args
    from ml4ge.lookup import resolve

    def settings(*flags):
        return demo_run_from_args(parse_settings(["--mode", "demo", "--output_folder", str(tmp_path),
                                                        *flags])).settings

    full = settings("--full_resolution")
    assert (full.voxel_mm, resolve(full.t1).shape, resolve(full.t2).shape) == (1.0, (182, 218, 182, 1),
                                                                              (182, 218, 182, 1))
    assert full.model_flags["model_preset"] == "udip"
    quick = settings("--quick", "--demo_subjects", "40", "--demo_epochs", "1")
    assert (quick.preset, quick.subjects, quick.epochs, resolve(quick.t1).shape) == ("quick", 40, 1, (40, 48, 40, 1))
    assert settings().subjects == 300 and resolve(settings().t2).shape == (64, 80, 64, 1)
    assert [resolve(s.t1_deep).shape for s in (full, quick, settings())] == [(96, 96, 96, 1), (24, 24, 24, 1),
                                                                             (32, 32, 32, 1)]


@pytest.mark.parametrize("preset", PRESETS.names())
def test_every_preset_trains_models_with_valid_flags(preset, tmp_path):
    from ml4ge import recipes
    from ml4ge.demo.pipeline import MODELS, train_settings

    run = DemoRun(tmp_path, PRESETS.get(preset), seed=1, num_workers=0)
    run.tensors.mkdir()
    (run.tensors / "sub0001.hd5").write_bytes(b"")  # validation only checks that the folder holds .hd5 files
    run.cohort.mkdir()
    for name in ("patients.csv", "controls.csv"):  # the cvae study's sample lists (validation checks they exist)
        (run.cohort / name).write_text("sample_id\n")
    for model in MODELS:
        if model.startswith("ml4h_") and "model_preset" in run.settings.model_flags:  # its preset's own structure
            with pytest.raises(ValueError, match="--study ml4h builds ml4h's blocks"):
                train_settings(run, model)
            continue
        settings = train_settings(run, model)
        recipes.validate(settings)
        factor = {"ae_deep": run.settings.deep_epoch_factor, "vit_t1": VIT_EPOCH_FACTORS[preset],
                  "cvae_t1": GROUP_EPOCH_FACTORS[preset], "vae_t1": GROUP_EPOCH_FACTORS[preset]}.get(model, 1)
        assert settings.epochs == max(1, round(run.settings.epochs * factor))
        assert (settings.pairs != ()) == MODELS[model].paired


def test_stages_run_in_order_and_names_are_unique():
    names = [name for name, _ in ordered_stages()]
    assert names[:2] == ["generate", "tensorize"]
    assert names.index("train_dropfuse") < names.index("infer_ae_t1") < names.index("compare")
    assert names.index("infer_dropfuse") < names.index("associate") < names.index("compare") < names.index("interpret")
    with pytest.raises(ValueError, match="already registered"):
        STAGES.register("compare", Stage(99, "compare", lambda run: None))


def test_a_recorded_stage_is_skipped_and_a_new_one_is_recorded(tmp_path):
    run = DemoRun(tmp_path, PRESETS.get("quick"), seed=1, num_workers=0)
    calls = []
    stage = Stage(1, "toy", lambda demo: calls.append(demo.folder))
    record = run_stage(run, "toy", stage)
    assert calls == [tmp_path] and record["kind"] == "toy" and record["wall_s"] >= 0
    assert json.loads(run.stage_record("toy").read_text()) == record

    def fail(demo):
        raise AssertionError("a recorded stage must not run again")

    assert run_stage(run, "toy", Stage(1, "toy", fail)) == record


def test_manifest_rows_get_the_demo_maps_and_absolute_paths(tmp_path):
    (tmp_path / "manifest.csv").write_text("sample_id,tensor,path\nsub0001,x,t1/sub0001.nii.gz\n"
                                           "sub0001,y,t2/sub0001.nii.gz\n")
    run = DemoRun(tmp_path / "demo", PRESETS.get("quick"), seed=1, num_workers=0, data=tmp_path)
    manifest = demo_manifest(run)
    assert list(manifest.tensor) == ["ml4ge.demo.maps.t1_5mm", "ml4ge.demo.maps.t2_5mm"]
    assert manifest.path.iloc[1] == str(tmp_path.resolve() / "t2" / "sub0001.nii.gz")
    (tmp_path / "manifest.csv").write_text("sample_id,tensor,path\nsub0001,x,flair/sub0001.nii.gz\n")
    with pytest.raises(ValueError, match=r"paths under \['flair'\]; the demo expects t1/ and t2/"):
        demo_manifest(run)


# The quick demo, end to end ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory) -> Path:
    """Runs ``--mode demo --quick`` once for every test that reads its outputs."""
    output = tmp_path_factory.mktemp("demo")
    assert main(["--mode", "demo", "--quick", "--output_folder", str(output), "--id", "quick",
                 "--num_workers", "2", "--random_seed", "3"]) == 0
    return output / "quick"


@pytest.mark.slow
def test_quick_demo_writes_the_report_and_the_latents_carry_signal(quick_demo):
    report = (quick_demo / "report.md").read_text()
    for heading in ("## Headline", "## Cohort", "## Model `dropfuse`", "## Comparison of the latent spaces", "## Cost",
                    "## Genetic association of the latents",
                    "## Which regions the trait- and SNP-selected dimensions change"):
        assert heading in report
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(pictures) >= 8 and all((quick_demo / picture).is_file() for picture in pictures)
    log = (quick_demo / "log.txt").read_text()  # each stage started with the time left
    assert "demo stage 1/" in log and re.search(r"demo stage 2/\d+ tensorize: about .+ left \(this stage about", log)
    subjects = pd.read_csv(quick_demo / "data" / "phenotypes.csv").shape[0]
    for model, tmap in (("ae_t1", "t1_5mm"), ("ae_t2", "t2_5mm"), ("dropfuse", "t1_5mm"), ("dropfuse", "t2_5mm"),
                        ("ae_deep", "t1_deep_5mm")):
        table = pd.read_csv(quick_demo / "latents" / model / f"hidden_{tmap}_{model}.tsv", sep="\t")
        assert table.shape == (subjects, 33) and table.iloc[:, 1:].notna().all().all()
    summary = pd.read_csv(quick_demo / "compare" / "compare_summary.tsv", sep="\t").set_index(["space", "phenotype"])
    assert set(LATENT_SPACES) | {"brain_volume_only"} <= set(summary.index.get_level_values("space"))
    best_sex_auc = max(summary.loc[(space, "sex"), "mean"] for space in LATENT_SPACES)
    best_age_r2 = max(summary.loc[(space, "age"), "mean"] for space in LATENT_SPACES)
    assert best_sex_auc > 0.7 and best_age_r2 > 0.05, (best_sex_auc, best_age_r2)
    timings = pd.read_csv(quick_demo / "demo_timings.tsv", sep="\t")
    assert {"generate", "tensorize", "train", "infer", "associate", "compare", "interpret"} <= set(timings.kind)
    assert (timings.peak_rss_mb > 0).all()
    if (os.cpu_count() or 1) >= 2:  # two models trained at the same time, each in its own process
        trained = timings[timings.kind == "train"].set_index("stage")
        finished = pd.to_datetime(trained.finished)
        started = finished - pd.to_timedelta(trained.wall_s, unit="s")
        assert started["train_ae_t2"] < finished["train_ae_t1"] - pd.Timedelta(seconds=2)
        assert "[train_ae_t2]" in log and "2 at a time" in log


@pytest.mark.slow
def test_quick_demo_checks_the_planted_snps_and_regions(quick_demo):
    truth = json.loads((quick_demo / "data" / "truth.json").read_text())
    snps = pd.read_csv(quick_demo / "associate" / "truth_snps.tsv", sep="\t")
    assert list(snps.id) == [snp["id"] for snp in truth["snps"]]
    assert snps.best_log10p.notna().all() and set(snps.best_space) <= set(LATENT_SPACES)
    genetics = pd.read_csv(quick_demo / "compare" / "compare_genetics.tsv", sep="\t")
    assert set(genetics.space) == set(LATENT_SPACES) and (genetics.dimensions == 32).all()
    ranks = pd.read_csv(quick_demo / "interpret_truth.tsv", sep="\t")
    assert set(ranks.model) == {"ae_t1", "ae_deep"} and set(ranks.trait) == {snp["trait"] for snp in truth["snps"]}
    assert set(ranks.route) == {"trait", "trait_direction", "snp"}
    by_trait = ranks[ranks.route == "trait"]
    assert by_trait.abs_r.between(0, 1).all() and by_trait.log10p.isna().all()
    assert ((ranks.ks_rank >= 1) & (ranks.ks_rank <= ranks.regions)).all()
    merged = ranks[ranks.merged]
    assert set(merged.region) == {"lateral_ventricle", "hippocampus", "thalamus", "putamen"}


@pytest.mark.slow
def test_rerunning_the_demo_skips_finished_stages(quick_demo):
    before = {path.name: path.read_text() for path in (quick_demo / "stages").glob("*.json")}
    assert main(["--mode", "demo", "--quick", "--output_folder", str(quick_demo.parent), "--id", "quick",
                 "--num_workers", "2", "--random_seed", "3"]) == 0
    after = {path.name: path.read_text() for path in (quick_demo / "stages").glob("*.json")}
    assert before == after and len(after) == len(ordered_stages())


def readme_notebook_command(folder: Path, demo_folder: Path | None) -> subprocess.CompletedProcess:
    """README's ``jupyter nbconvert`` line, word for word, run by a shell in ``folder`` (a checkout's layout: a copy of
    notebooks/ and, when given, ``demo_output/demo`` linking to ``demo_folder``) with this Python's ``jupyter``."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith("ML4GE_DEMO_FOLDER=demo_output/demo jupyter nbconvert ")]
    assert len(lines) == 1, "README shows one jupyter nbconvert command"
    (folder / "notebooks").mkdir()
    shutil.copy(NOTEBOOK, folder / "notebooks")
    if demo_folder is not None:
        (folder / "demo_output").mkdir()
        (folder / "demo_output" / "demo").symlink_to(demo_folder)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", lines[0]], cwd=folder, env=env, capture_output=True, text=True, timeout=900)


def test_the_notebook_names_the_folders_it_looked_in(tmp_path):
    pytest.importorskip("nbconvert")
    done = readme_notebook_command(tmp_path, demo_folder=None)
    assert done.returncode != 0
    assert "no demo run folder (one holding latents/) at " in done.stderr
    assert str(tmp_path / "demo_output" / "demo") in done.stderr and str(ROOT / "demo_output" / "demo") in done.stderr


@pytest.mark.slow
def test_the_readme_notebook_command_repeats_the_reports_numbers(quick_demo, tmp_path):
    pytest.importorskip("nbconvert")
    done = readme_notebook_command(tmp_path, demo_folder=quick_demo)
    assert done.returncode == 0, done.stderr[-4000:]
    page = (tmp_path / "notebooks" / "latent_space_comparison.html").read_text()
    assert "Traceback" not in page and page.count("data:image/png;base64") >= 2
    assert f"seed 3, {PRESETS.get('quick').folds} folds" in page
    keys = ["space", "phenotype", "metric"]
    ours = pd.read_csv(quick_demo / "notebook_compare_summary.tsv", sep="\t").set_index(keys)["mean"]
    report = pd.read_csv(quick_demo / "compare" / "compare_summary.tsv", sep="\t").set_index(keys)["mean"]
    shared = ours.index.intersection(report.index)
    assert len(shared) == len(ours) >= len(LATENT_SPACES) * 6
    assert ours.loc[shared].to_numpy() == pytest.approx(report.loc[shared].to_numpy(), abs=1e-9)
