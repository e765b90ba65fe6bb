"""``--mode demo --study brain_age``: SFCN on a cohort with an ageing SNP, baselines, and the GWAS of BAG.

Fast: the study's stages run only in it and leave the other studies' alone; slow: the quick study end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml4ge.cli import main, parse_settings
from ml4ge.demo.brain_age_study import SFCN_INPUTS, STUDY
from ml4ge.demo.pipeline import demo_run_from_args, ordered_stages
from ml4ge.demo.studies import STUDIES

OWN_STAGES = {"train_sfcn", "brain_age", "brain_age_baselines", "associate_bag"}


def test_the_study_runs_its_own_stages_and_the_t1_autoencoder_for_the_latent_baseline():
    assert [name for name, _ in ordered_stages(STUDY)] == [
        "generate", "tensorize", "train_ae_t1", "train_sfcn", "infer_ae_t1", "brain_age", "brain_age_baselines",
        "associate", "associate_bag", "compare"]
    for other in STUDIES.names():
        if other != STUDY:
            assert not OWN_STAGES & {name for name, _ in ordered_stages(other)}, other


def test_the_study_plants_the_ageing_snp_in_its_own_cohort_only():
    assert dict(STUDIES.get(STUDY).cohort_options) == {"ageing_years": 3.0}
    others = [STUDIES.get(name) for name in STUDIES.names() if name != STUDY]
    assert all("ageing_years" not in dict(study.cohort_options) for study in others)


def test_the_flag_selects_the_study(tmp_path):
    run = demo_run_from_args(parse_settings(["--mode", "demo", "--study", STUDY, "--output_folder", str(tmp_path)]))
    assert run.study == STUDY and run.fingerprint()["study"] == STUDY
    assert set(SFCN_INPUTS) == {"default", "quick", "full_resolution"}


# The quick brain-age study, end to end ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def brain_age_demo(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("demo_brain_age")
    assert main(["--mode", "demo", "--quick", "--study", STUDY, "--output_folder", str(output), "--id", "ba",
                 "--num_workers", "2", "--random_seed", "3"]) == 0
    return output / "ba"


@pytest.mark.slow
def test_quick_study_reports_mae_beside_the_baselines_and_the_ageing_snp(brain_age_demo):
    truth = json.loads((brain_age_demo / "data" / "truth.json").read_text())
    assert truth["ageing_snp"]["years_per_allele"] == 3.0
    mae = pd.read_csv(brain_age_demo / STUDY / "brain_age_mae.tsv", sep="\t").set_index("method")
    assert set(mae.index) == {"sfcn", "sfcn_corrected", "ridge_ae_t1", "ridge_regional"}
    assert (mae.test_mae.drop("sfcn_corrected") > 0).all() and mae.n_test.nunique() == 1  # one test split for all
    ageing = pd.read_csv(brain_age_demo / STUDY / "ageing_truth.tsv", sep="\t").iloc[0]
    assert ageing.id == truth["ageing_snp"]["id"] and ageing.t_cortical_gm_volume < 0  # the data carry it
    report = (brain_age_demo / "report.md").read_text()
    assert "## Brain age (SFCN)" in report and "ridge_regional" in report
    if (brain_age_demo / STUDY / "not_learnt.txt").is_file():  # 64 training subjects at 5 mm may not suffice
        assert np.isnan(mae.loc["sfcn_corrected", "test_mae"]) and np.isnan(ageing.bag_log10p)
        assert "did not learn age" in report and not (brain_age_demo / "associate_bag").exists()
        return
    assert ageing.bag_log10p >= 0
    bag = pd.read_csv(brain_age_demo / "associate_bag" / "associate_counts.tsv", sep="\t")
    assert list(bag.space) == ["bag"] and int(bag.dimensions.iloc[0]) == 1


def _write_glm(path: Path, rows: list[tuple[str, float, float]]) -> None:
    import gzip

    header = "#CHROM\tPOS\tID\tREF\tALT\tA1\tA1_FREQ\tTEST\tOBS_CT\tBETA\tSE\tT_STAT\tP\tERRCODE\n"
    lines = [f"1\t{1000 + i}\t{snp}\tC\tA\tA\t0.3\tADD\t270\t{beta}\t0.5\t{beta / 0.5}\t{p}\t.\n"
             for i, (snp, beta, p) in enumerate(rows)]
    with gzip.open(path, "wt") as handle:
        handle.write(header + "".join(lines))


def test_the_ageing_snps_row_is_read_from_the_bag_tables_summary_statistics(tmp_path):
    from ml4ge.demo.brain_age_study import bag_sumstats
    from ml4ge.demo.truth import planted_sumstats

    _write_glm(tmp_path / "bag.bag.glm.linear.gz", [("rs1", 0.2, 0.5), ("rs2", 1.5, 1e-9)])
    row = bag_sumstats(tmp_path, "rs2")
    assert row.ID.tolist() == ["rs2"] and row.BETA.iloc[0] == 1.5 and abs(row.LOG10P.iloc[0] - 9.0) < 1e-9
    assert bag_sumstats(tmp_path, "rs3").empty
    # the BAG table is not a latent space: the latent truth check finds no table of dimensions in it, and says so
    # with an empty frame rather than failing on an empty concatenation
    assert planted_sumstats(tmp_path, ["rs2"]).empty
    with pytest.raises(FileNotFoundError, match="bag.bag"):
        bag_sumstats(tmp_path / "nowhere", "rs2")
