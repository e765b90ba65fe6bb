"""``--mode demo --study ml4h``: the registration study's models with ml4h's blocks, DropFuse with ml4ge's corrected
and with ml4h's exact pair loss and fusion, side by side.

Fast: the study's stages and train flags, the cross-modal agreement measure, the presets' full batches; slow: the
quick study end to end, its latent tables, its table and the two DropFuse versions' spaces.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml4ge.cli import main, parse_settings
from ml4ge.demo.pair_agreement import agreement, split_batches
from ml4ge.demo.pipeline import DemoRun, ordered_stages, train_settings
from ml4ge.demo.presets import PRESETS
from ml4ge.splits import split_ids

MODELS = ("ml4h_ae_t1", "ml4h_ae_t2", "ml4h_dropfuse", "ml4h_dropfuse_exact")
SPACES = ["ml4h_ae_t1", "ml4h_ae_t2", "ml4h_dropfuse_t1", "ml4h_dropfuse_t2", "ml4h_dropfuse_exact_t1",
          "ml4h_dropfuse_exact_t2"]
PAIR_SPACES = SPACES[2:]


def test_the_ml4h_study_trains_four_models_with_ml4h_blocks_and_two_pair_losses(tmp_path):
    assert [name for name, _ in ordered_stages("ml4h")] == [
        "generate", "tensorize", *(f"train_{m}" for m in MODELS), *(f"infer_{m}" for m in MODELS), "associate",
        "compare", "compare_adjusted", "interpret"]
    run = DemoRun(tmp_path, PRESETS.get("default"), seed=1, num_workers=0, study="ml4h")
    settings = {model: train_settings(run, model) for model in MODELS}
    preset = run.settings.model_flags
    for trained in settings.values():
        assert trained.conv_style == "ml4h" and trained.batch_size == run.settings.batch_size
        assert all(getattr(trained, flag) == value for flag, value in preset.items() if flag != "conv_style")
    corrected, exact = settings["ml4h_dropfuse"], settings["ml4h_dropfuse_exact"]
    assert (corrected.pair_loss, corrected.pair_merge) == ("contrastive", "dropout")
    assert (exact.pair_loss, exact.pair_merge) == ("contrastive_ml4h", "dropout_ml4h")
    assert corrected.pair_loss_weight == exact.pair_loss_weight == run.settings.pair_flags["pair_loss_weight"]
    assert exact.merge_blocks == corrected.merge_blocks == ("pair",)
    # the default study's DropFuse keeps the plain blocks and the corrected loss
    default = train_settings(DemoRun(tmp_path, PRESETS.get("default"), seed=1, num_workers=0), "dropfuse")
    assert (default.conv_style, default.pair_loss, default.pair_merge) == ("plain", "contrastive", "dropout")


def test_the_ml4h_study_refuses_the_full_resolution_preset_whose_model_preset_is_plain(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(["--mode", "demo", "--study", "ml4h", "--full_resolution", "--output_folder", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--study ml4h builds ml4h's blocks" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_agreement_counts_subjects_whose_own_other_latent_is_nearest():
    rng = np.random.default_rng(0)
    first = rng.normal(size=(6, 4))
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    same = agreement(first, first)
    assert same["n"] == 6 and same["first_to_second"] == same["second_to_first"] == 6
    assert same["own"] == pytest.approx(1.0) and same["others"] < 1.0
    shuffled = agreement(first, first[[1, 2, 3, 4, 5, 0]])  # every subject's partner is another's latent
    assert shuffled["first_to_second"] == shuffled["second_to_first"] == 0
    assert shuffled["own"] < same["own"]


@pytest.mark.parametrize("preset", ["quick", "default"])
def test_the_presets_splits_divide_into_full_batches_as_ml4h_contrastive_loss_needs(preset):
    settings = PRESETS.get(preset)
    ids = [f"sub{i:04d}" for i in range(settings.subjects)]
    split = split_ids(ids, valid_ratio=0.1, test_ratio=0.1, seed=1)  # the train recipe's default ratios
    assert split_batches(split.counts(), settings.batch_size).endswith("every batch full")
    assert split_batches({"train": 65, "valid": 8, "test": 8}, 8).endswith("train's last batch holds 1")


# The quick ml4h study, end to end -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ml4h_demo(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("demo_ml4h")
    assert main(["--mode", "demo", "--quick", "--study", "ml4h", "--output_folder", str(output), "--id", "ml4h",
                 "--num_workers", "2", "--random_seed", "3"]) == 0
    return output / "ml4h"


def latents(demo: Path, model: str, tmap: str) -> pd.DataFrame:
    return pd.read_csv(demo / "latents" / model / f"hidden_{tmap}_{model}.tsv", sep="\t", dtype={"sample_id": str})


@pytest.mark.slow
def test_quick_ml4h_study_writes_the_four_models_latents_and_two_different_dropfuse_spaces(ml4h_demo, tmp_path):
    subjects = pd.read_csv(ml4h_demo / "data" / "phenotypes.csv").shape[0]
    tables = {"ml4h_ae_t1": [latents(ml4h_demo, "ml4h_ae_t1", "t1_5mm")],
              "ml4h_ae_t2": [latents(ml4h_demo, "ml4h_ae_t2", "t2_5mm")],
              **{m: [latents(ml4h_demo, m, t) for t in ("t1_5mm", "t2_5mm")] for m in MODELS[2:]}}
    for model, frames in tables.items():
        flags = json.loads((ml4h_demo / model / "arguments_train.json").read_text())
        assert flags["conv_style"] == "ml4h"
        for frame in frames:  # the quick preset's 32 latents, every subject, all finite
            assert frame.shape == (subjects, 33) and np.isfinite(frame.iloc[:, 1:].to_numpy()).all()
    exact_flags = json.loads((ml4h_demo / "ml4h_dropfuse_exact" / "arguments_train.json").read_text())
    assert (exact_flags["pair_loss"], exact_flags["pair_merge"]) == ("contrastive_ml4h", "dropout_ml4h")
    # same initial weights and batches (one seed), another loss and fusion: other spaces
    for corrected, exact in zip(tables["ml4h_dropfuse"], tables["ml4h_dropfuse_exact"]):
        assert (corrected.sample_id == exact.sample_id).all()
        assert np.abs(corrected.iloc[:, 1:].to_numpy() - exact.iloc[:, 1:].to_numpy()).max() > 1e-2
    logs = {m: pd.read_csv(ml4h_demo / m / "training_log.csv") for m in MODELS[2:]}
    assert "contrastive_pair_loss" in logs["ml4h_dropfuse"]
    assert "contrastive_ml4h_pair_loss" in logs["ml4h_dropfuse_exact"]
    # the encoders alone give the exact model's spaces: inferring them again gives the same tables
    model_file = ml4h_demo / "ml4h_dropfuse_exact" / "ml4h_dropfuse_exact.keras"
    assert main(["--mode", "infer_encoders", "--tensors", str(ml4h_demo / "tensors"), "--input_tensors",
                 "ml4ge.demo.maps.t1_5mm", "ml4ge.demo.maps.t2_5mm", "--model_file", str(model_file),
                 "--output_folder", str(tmp_path), "--id", "ml4h_dropfuse_exact", "--num_workers", "0"]) == 0
    again = pd.read_csv(tmp_path / "ml4h_dropfuse_exact" / "hidden_t1_5mm_ml4h_dropfuse_exact.tsv", sep="\t",
                        dtype={"sample_id": str})
    pd.testing.assert_frame_equal(again, tables["ml4h_dropfuse_exact"][0])


@pytest.mark.slow
def test_quick_ml4h_study_reports_the_corrected_and_exact_dropfuse_side_by_side(ml4h_demo):
    truth = json.loads((ml4h_demo / "data" / "truth.json").read_text())
    table = pd.read_csv(ml4h_demo / "study_table.tsv", sep="\t", keep_default_na=False).set_index("measure")
    assert list(table.columns) == [*SPACES, "covariates"]
    assert table.loc["training", "ml4h_dropfuse_exact_t1"].startswith("3 epochs")
    assert table.loc["training", "ml4h_dropfuse_exact_t2"] == "same model"
    for snp in truth["snps"]:
        assert all("-log10 P" in cell for cell in table.loc[f"GWAS hits, {snp['trait']} SNP {snp['id']}", SPACES])
    adjusted = [m for m in table.index if m.startswith("R^2 ")]
    assert len(adjusted) == len(truth["regions"]) and (table.loc[adjusted, SPACES] != "").all().all()
    retrieval = next(m for m in table.index if m.startswith("cross-modal retrieval"))
    cosine = next(m for m in table.index if m.startswith("cosine of a subject's two latents"))
    test_subjects = len(pd.read_csv(ml4h_demo / "ml4h_dropfuse" / "test.csv"))
    for space in PAIR_SPACES:
        found, of = table.loc[retrieval, space].split(" (")[0].split(" of ")
        assert int(of) == test_subjects and 0 <= int(found) <= test_subjects
        own, others = (float(v) for v in table.loc[cosine, space].split(" / "))
        assert -1 <= others <= 1 and -1 <= own <= 1
    assert (table.loc[[retrieval, cosine], ["ml4h_ae_t1", "ml4h_ae_t2"]] == "").all().all()
    assert table.loc[cosine, "ml4h_dropfuse_t1"] != table.loc[cosine, "ml4h_dropfuse_exact_t1"]
    assert len([m for m in table.index if m.startswith("PerDI rank of ")]) == len(truth["regions"])
    pairs = pd.read_csv(ml4h_demo / "compare" / "compare_pairs.tsv", sep="\t")
    assert {("ml4h_dropfuse_exact_t1", "ml4h_ae_t1"), ("ml4h_dropfuse_t2", "ml4h_ae_t2"),
            ("ml4h_dropfuse_exact_t2", "ml4h_dropfuse_t2")} <= set(zip(pairs.a, pairs.b))
    report = (ml4h_demo / "report.md").read_text()
    assert "## The models side by side (study `ml4h`)" in report
    assert "`ml4h_dropfuse_exact`: train 64, valid 8, test 8 subjects in batches of 8: every batch full" in report
    assert "deterministic for both models" in report and "## Model `ml4h_dropfuse_exact`" in report
