"""``--mode demo --study cvae``: a contrastive VAE of patients against controls beside a plain VAE of everyone, and
how well each latent space separates the two planted disease subtypes (issue #16 item 4).

Fast: the study's stages, models and flags, and a reused cohort without patients refused; slow: the quick study end
to end (its scores table, plots and report), and an RAE trained by hand on the same tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml4ge.cli import main, parse_settings
from ml4ge.demo.group_stages import SPACES, SUBTYPES
from ml4ge.demo.pipeline import DemoRun, demo_run_from_args, generate, ordered_stages, train_settings
from ml4ge.demo.presets import PRESETS
from ml4ge.demo.studies import GROUP_BATCH, GROUP_EPOCH_FACTORS, STUDIES

CVAE_STAGES = ["generate", "tensorize", "train_cvae_t1", "train_vae_t1", "infer_cvae_t1", "infer_vae_t1",
               "evaluate_groups"]


def test_the_cvae_study_trains_its_two_models_and_evaluates_the_groups():
    assert [name for name, _ in ordered_stages("cvae")] == CVAE_STAGES
    assert STUDIES.get("cvae").patients == pytest.approx(1 / 3) and STUDIES.get("default").patients == 0
    assert "evaluate_groups" not in [name for name, _ in ordered_stages("vit")]


def write_patient_lists(cohort: Path) -> None:
    cohort.mkdir(parents=True)
    for name, ids in (("patients.csv", ["sub0001"]), ("controls.csv", ["sub0002"])):
        pd.DataFrame({"sample_id": ids}).to_csv(cohort / name, index=False)


def test_the_cvae_trains_on_patients_against_controls_and_the_vae_on_everyone(tmp_path):
    from ml4ge import recipes

    run = demo_run_from_args(parse_settings(["--mode", "demo", "--study", "cvae", "--demo_epochs", "4",
                                             "--output_folder", str(tmp_path)]))
    run.tensors.mkdir(parents=True)
    (run.tensors / "sub0001.hd5").write_bytes(b"")  # validation only checks that the folder holds .hd5 files
    write_patient_lists(run.cohort)
    cvae, vae = train_settings(run, "cvae_t1"), train_settings(run, "vae_t1")
    for settings in (cvae, vae):
        recipes.validate(settings)
    assert (cvae.family, vae.family) == ("cvae", "vae")
    assert cvae.target_csv == str(run.cohort / "patients.csv") and cvae.background_csv == str(
        run.cohort / "controls.csv")
    assert vae.target_csv is None and vae.background_csv is None
    epochs = round(4 * GROUP_EPOCH_FACTORS["default"])  # one budget for both, a multiple of the preset's epochs
    assert epochs > 4 and cvae.epochs == vae.epochs == epochs and cvae.batch_size == vae.batch_size == GROUP_BATCH
    quick = DemoRun(tmp_path / "quick", PRESETS.get("quick"), seed=1, num_workers=0, study="cvae")
    assert train_settings(quick, "cvae_t1").epochs == train_settings(quick, "vae_t1").epochs == PRESETS.get(
        "quick").epochs  # the smoke test keeps the preset's
    assert (cvae.salient_size, cvae.background_size, vae.dense_layers[-1]) == (32, 32, 32)
    assert tuple(cvae.input_tensors) == tuple(vae.input_tensors) == ("ml4ge.demo.maps.t1_3mm",)


def test_the_other_studies_keep_the_presets_batch_and_no_sample_lists(tmp_path):
    run = DemoRun(tmp_path, PRESETS.get("default"), seed=1, num_workers=0, study="vit")
    for model in run.plan.models:
        settings = train_settings(run, model)
        assert settings.batch_size == run.settings.batch_size and settings.target_csv is None


def test_a_reused_cohort_without_patients_is_refused(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    run = DemoRun(tmp_path / "demo", PRESETS.get("quick"), seed=1, num_workers=0, data=cohort, study="cvae")
    with pytest.raises(FileNotFoundError, match="needs a cohort with patients.*groups.csv"):
        generate(run)
    generate(DemoRun(tmp_path / "demo", PRESETS.get("quick"), seed=1, num_workers=0, data=cohort))  # no patients


# The quick cvae study, end to end ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cvae_demo(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("demo_cvae")
    assert main(["--mode", "demo", "--quick", "--study", "cvae", "--output_folder", str(output), "--id", "cvae",
                 "--num_workers", "2", "--random_seed", "3"]) == 0
    return output / "cvae"


@pytest.mark.slow
def test_quick_cvae_study_scores_the_three_spaces(cvae_demo):
    groups = pd.read_csv(cvae_demo / "data" / "groups.csv", dtype={"sample_id": str})
    patients = groups[groups.group == "patient"]
    subjects = len(groups)
    for model, parts in (("cvae_t1", ("", "background_")), ("vae_t1", ("", "log_var_"))):
        for part in parts:
            table = pd.read_csv(cvae_demo / "latents" / model / f"hidden_t1_5mm_{part}{model}.tsv", sep="\t")
            assert table.shape == (subjects, 33) and np.isfinite(table.iloc[:, 1:].to_numpy()).all()
    log = pd.read_csv(cvae_demo / "cvae_t1" / "training_log.csv")
    assert {"discriminator_loss", "d_joint", "d_marginals", "tc_loss"} <= set(log.columns)

    scores = pd.read_csv(cvae_demo / "evaluate_groups" / "evaluate_groups.tsv", sep="\t").set_index("table")
    assert list(scores.index) == list(SPACES)
    assert (scores.n_samples == len(patients)).all() and (scores.groups == ",".join(SUBTYPES)).all()
    assert (scores.dimensions == 32).all()
    values = scores[["silhouette", "nmi_mean", "nmi_sd", "nmi_chance"]].to_numpy()
    assert np.isfinite(values).all()
    assert ((scores.silhouette >= -1) & (scores.silhouette <= 1)).all()
    assert ((scores[["nmi_mean", "nmi_chance"]] >= 0) & (scores[["nmi_mean", "nmi_chance"]] <= 1)).all().all()
    for space in SPACES:
        picture = cvae_demo / "evaluate_groups" / f"evaluate_groups_{space}.png"
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    report = (cvae_demo / "report.md").read_text()
    assert "## Disease subtypes in each latent space" in report and "study `cvae` (cvae_t1, vae_t1)" in report
    for space in SPACES:
        assert f"| {space} | {len(patients)} | 32 |" in report
        assert f"(evaluate_groups/evaluate_groups_{space}.png)" in report
    assert "The cvae's discriminator at its last epoch: D(v)" in report
    assert not (cvae_demo / "associate").exists() and not (cvae_demo / "compare").exists()
    timings = json.loads((cvae_demo / "stages" / "evaluate_groups.json").read_text())
    assert timings["kind"] == "evaluate"


@pytest.mark.slow
def test_an_rae_trains_on_the_demo_tensors_and_writes_its_latents(cvae_demo, tmp_path):
    common = ["--tensors", str(cvae_demo / "tensors"), "--input_tensors", "ml4ge.demo.maps.t1_5mm",
              "--output_folder", str(tmp_path), "--num_workers", "0", "--random_seed", "3"]
    flags = train_settings(DemoRun(cvae_demo, PRESETS.get("quick"), seed=3, num_workers=0, study="cvae"), "vae_t1")
    assert main(["--mode", "train", *common, "--output_tensors", "ml4ge.demo.maps.t1_5mm", "--family", "rae",
                 "--id", "rae", "--epochs", "1", "--batch_size", "8", "--encoder_blocks", "conv_encode",
                 "--decoder_blocks", "conv_decode", "--conv_layers", "--dense_blocks", "16", "32",
                 "--block_size", "1", "--dense_layers", *map(str, flags.dense_layers)]) == 0
    assert main(["--mode", "infer_encoders", *common, "--model_file", str(tmp_path / "rae" / "rae.keras"),
                 "--id", "rae_latents"]) == 0
    table = pd.read_csv(tmp_path / "rae_latents" / "hidden_t1_5mm_rae_latents.tsv", sep="\t")
    assert table.shape == (len(list((cvae_demo / "tensors").glob("*.hd5"))), 33)
    assert np.isfinite(table.iloc[:, 1:].to_numpy()).all()
    assert not (tmp_path / "rae_latents" / "hidden_t1_5mm_log_var_rae_latents.tsv").exists()
