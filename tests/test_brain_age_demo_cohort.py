"""The demo cohort's optional ageing SNP: the default cohort is unchanged, and the allele ages the anatomy."""

import json

import numpy as np
import pandas as pd
import pytest
from bed_reader import open_bed
from cohort_fingerprint import DEFAULT_FINGERPRINT, default_cohort_fingerprint

from ml4ge.demo.ageing import AGEING_MIN_MAF
from ml4ge.demo.cohort import write_demo_cohort

VOXEL_MM, SEED = 6.0, 3


def test_without_the_option_the_default_cohort_is_byte_for_byte_unchanged(tmp_path):
    paths, fingerprint = default_cohort_fingerprint(tmp_path, ageing_years=0.0)
    assert fingerprint == DEFAULT_FINGERPRINT
    assert "ageing_snp" not in json.loads(paths["truth"].read_text())


@pytest.fixture(scope="module")
def aged(tmp_path_factory):
    folder = tmp_path_factory.mktemp("aged")
    return write_demo_cohort(folder, subjects=120, voxel_mm=VOXEL_MM, snps=200, seed=SEED, ageing_years=3.0)


def test_the_ageing_snp_changes_only_the_anatomy_not_genotypes_ages_or_sexes(aged, tmp_path):
    plain = write_demo_cohort(tmp_path, subjects=120, voxel_mm=VOXEL_MM, snps=200, seed=SEED)
    for name in ("bed", "bim", "fam", "covariates", "manifest"):
        assert plain[name].read_bytes() == aged[name].read_bytes(), name
    truth, plain_truth = (json.loads(p["truth"].read_text()) for p in (aged, plain))
    snp = truth["ageing_snp"]
    assert snp["years_per_allele"] == 3.0 and snp["maf"] >= AGEING_MIN_MAF - 0.05
    assert snp["id"] not in {s["id"] for s in truth["snps"]}
    phenotypes = [pd.read_csv(p["phenotypes"]) for p in (aged, plain)]
    recorded = ["sample_id", "age", "sex"]
    pd.testing.assert_frame_equal(phenotypes[0][recorded], phenotypes[1][recorded])
    bim = pd.read_csv(aged["bim"], sep="\t", header=None)
    dose = open_bed(aged["bed"]).read()[:, int(np.flatnonzero(bim[1] == snp["id"])[0])]
    carriers = np.nan_to_num(dose, nan=0.0) > 0
    same = [(aged["t1"] / f"{s}.nii.gz").read_bytes() == (plain["t1"] / f"{s}.nii.gz").read_bytes()
            for s in phenotypes[0].sample_id]
    assert not any(np.asarray(same)[carriers])  # every carrier's anatomy moved
    assert all(np.asarray(same)[dose == 0])  # non-carriers are the cohort without the option


def test_the_data_carry_the_planted_ageing(aged):
    measured = json.loads(aged["truth"].read_text())["ageing_snp"]["measured"]
    # older-looking anatomy: less cortical grey matter, larger ventricles, per allele (t adjusted for age and sex)
    assert measured["cortical_gm_volume"]["measured_t"] < -2.0  # 120 subjects: about -2.7 (0.37 SD per allele)
    assert measured["ventricle_volume"]["measured_t"] > 2.0


def test_bad_ageing_years_are_refused(tmp_path):
    with pytest.raises(ValueError, match="ageing_years"):
        write_demo_cohort(tmp_path, subjects=20, voxel_mm=VOXEL_MM, snps=200, seed=SEED, ageing_years=-1.0)
