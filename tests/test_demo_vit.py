"""``--mode demo --study vit``: the CNN and the UDIP-ViT autoencoder of T1 on the same cohort, side by side.

Fast: the flag, the study's stages and models, resuming; slow: the quick study end to end and its table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ml4ge.arguments import FLAGS
from ml4ge.cli import main, parse_settings
from ml4ge.demo.pipeline import DemoRun, check_settings, demo_run_from_args, ordered_stages, train_settings
from ml4ge.demo.presets import PRESETS
from ml4ge.demo.studies import MODELS, STUDIES, Study

DEFAULT_STAGES = ["generate", "tensorize", "train_ae_t1", "train_ae_t2", "train_dropfuse", "train_ae_deep",
                  "infer_ae_t1", "infer_ae_t2", "infer_dropfuse", "infer_ae_deep", "associate", "compare",
                  "compare_adjusted", "interpret"]


def test_the_study_flag_offers_the_registered_studies(capsys, tmp_path):
    assert FLAGS["study"].choices == tuple(STUDIES.names()) and FLAGS["study"].default == "default"
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(["--mode", "demo", "--study", "vits", "--output_folder", str(tmp_path)])
    assert exit_info.value.code == 2 and "invalid choice: 'vits'" in capsys.readouterr().err


def test_the_default_study_keeps_its_stages_and_vit_runs_the_t1_models():
    assert [name for name, _ in ordered_stages()] == DEFAULT_STAGES
    assert [name for name, _ in ordered_stages("vit")] == [
        "generate", "tensorize", "train_ae_t1", "train_vit_t1", "infer_ae_t1", "infer_vit_t1", "associate", "compare",
        "compare_adjusted", "interpret"]


def test_the_vit_study_reads_the_flag_and_trains_the_vit_preset(tmp_path):
    from ml4ge import recipes

    run = demo_run_from_args(parse_settings(["--mode", "demo", "--study", "vit", "--demo_epochs", "4",
                                             "--output_folder", str(tmp_path)]))
    assert run.study == "vit" and run.plan.models == ("ae_t1", "vit_t1") and run.fingerprint()["study"] == "vit"
    run.tensors.mkdir(parents=True)
    (run.tensors / "sub0001.hd5").write_bytes(b"")  # validation only checks that the folder holds .hd5 files
    vit, cnn = train_settings(run, "vit_t1"), train_settings(run, "ae_t1")
    recipes.validate(vit)
    assert (vit.model_preset, vit.encoder_blocks, vit.decoder_blocks) == ("udip_vit_small", ("vit_encode",),
                                                                          ("vit_decode",))
    assert tuple(vit.input_tensors) == tuple(cnn.input_tensors) == ("ml4ge.demo.maps.t1_3mm",)
    assert vit.batch_size == cnn.batch_size
    assert vit.epochs == MODELS["vit_t1"].epochs(run.settings) and cnn.epochs == 4


def test_a_folder_of_one_study_is_not_resumed_by_another(tmp_path):
    default = DemoRun(tmp_path, PRESETS.get("quick"), seed=1, num_workers=0)
    vit = DemoRun(tmp_path, PRESETS.get("quick"), seed=1, num_workers=0, study="vit")
    (tmp_path / "demo.json").write_text(json.dumps({"settings": default.fingerprint()}))
    with pytest.raises(ValueError, match=r"\(study differ\)"):
        check_settings(vit)
    older = {key: value for key, value in default.fingerprint().items() if key != "study"}
    (tmp_path / "demo.json").write_text(json.dumps({"settings": older}))  # written before studies existed
    check_settings(default)
    with pytest.raises(ValueError, match=r"\(study differ\)"):
        check_settings(vit)


def test_a_study_names_known_models_and_interprets_its_own():
    with pytest.raises(ValueError, match="got models .*'cnn_t1'"):
        Study(models=("cnn_t1",), interpret=(), pairs=())
    with pytest.raises(ValueError, match="interprets some of its own"):
        Study(models=("ae_t1",), interpret=("vit_t1",), pairs=())


# The quick ViT study, end to end ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vit_demo(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("demo_vit")
    assert main(["--mode", "demo", "--quick", "--study", "vit", "--output_folder", str(output), "--id", "vit",
                 "--num_workers", "2", "--random_seed", "3"]) == 0
    return output / "vit"


@pytest.mark.slow
def test_quick_vit_study_sets_the_cnn_and_the_vit_side_by_side(vit_demo):
    truth = json.loads((vit_demo / "data" / "truth.json").read_text())
    subjects = pd.read_csv(vit_demo / "data" / "phenotypes.csv").shape[0]
    for model, width in (("ae_t1", 32), ("vit_t1", 64)):  # the quick CNN's latents; udip_vit_small's token width
        table = pd.read_csv(vit_demo / "latents" / model / f"hidden_t1_5mm_{model}.tsv", sep="\t")
        assert table.shape == (subjects, 1 + width) and table.iloc[:, 1:].notna().all().all()
    assert not (vit_demo / "ae_t2").exists() and not (vit_demo / "stages" / "train_dropfuse.json").exists()
    genetics = pd.read_csv(vit_demo / "compare" / "compare_genetics.tsv", sep="\t")
    assert set(genetics.space) == {"ae_t1", "vit_t1"}
    ranks = pd.read_csv(vit_demo / "interpret_truth.tsv", sep="\t")
    assert set(ranks.model) == {"ae_t1", "vit_t1"} and set(ranks.route) == {"trait", "trait_direction", "snp"}
    assert ((ranks.ks_rank >= 1) & (ranks.ks_rank <= ranks.regions)).all()

    table = pd.read_csv(vit_demo / "study_table.tsv", sep="\t").set_index("measure")
    assert list(table.columns[:2]) == ["ae_t1", "vit_t1"]
    assert table.loc["training", "vit_t1"].startswith("3 epochs")  # the quick preset's factor is 1
    for snp in truth["snps"]:
        cell = table.loc[f"GWAS hits, {snp['trait']} SNP {snp['id']}", "vit_t1"]
        assert "-log10 P" in cell
    adjusted = [m for m in table.index if m.startswith("R^2 ")]
    perdi = [m for m in table.index if m.startswith("PerDI rank of ")]
    assert len(adjusted) == len(truth["regions"]) and len(perdi) == 4
    assert table.loc[adjusted, "covariates"].notna().all()
    report = (vit_demo / "report.md").read_text()
    assert "## The models side by side (study `vit`)" in report and "study `vit` (ae_t1, vit_t1)" in report
    assert "## Model `vit_t1`" in report
