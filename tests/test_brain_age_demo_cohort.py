"""The demo cohort's optional ageing SNP: the default cohort is unchanged, and the allele ages the anatomy."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from bed_reader import open_bed

from ml4ge.demo.ageing import AGEING_MIN_MAF
from ml4ge.demo.cohort import write_demo_cohort

VOXEL_MM, SEED = 6.0, 3
# sha256 of files of write_demo_cohort(subjects=20, voxel_mm=6.0, snps=200, seed=3) as the generator wrote them
# before the ageing SNP existed (commit 56e10af; the same fingerprint as test_demo_patients.py).
DEFAULT_FINGERPRINT = {
    "phenotypes": "67a2829b6f4384c6866095224d13ce142b375031e1fa8c6220a98bcdb1803afb",
    "covariates": "89f7f04c7e86d20d307115efd3a4c9474a61be0f90ae762f69ce008576fe5c42",
    "bed": "797be24bba8d30ac6c2dfdd611b97813066a46a14d13a2e5c9f3a89a02729594",
    "truth": "ca72e7eeed9ee5e9cf84eeec104604f89a59c5373e8b93488b00c692d68b2e66",
    "manifest": "bb7f77b40b9850445c72d79ae417fe8bea407b8d078f281a92d75a9848faf6f4",
    "t1/sub0002": "f7a3365b368f049d7fa0d7fe71a3b3f5cf6a8e3e476293bb159a652685c14b37",
    "t1/sub0013": "189d860fbbf78224a6b84b51c7177bcc1867b1f0eba422560d251221163c3972",
    "t2/sub0002": "1ca14bc836040192f373ea57ae9209aac02d2760d46692bffd72897eaee044dd",
    "t2/sub0013": "54e0325424b9014ae350748281cb39b273a50dadd0de8f433802ffad19d61405",
}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fingerprint(paths) -> dict:
    files = {name: paths[name] for name in ("phenotypes", "covariates", "bed", "truth", "manifest")}
    files |= {f"{c}/{s}": paths[c] / f"{s}.nii.gz" for c in ("t1", "t2") for s in ("sub0002", "sub0013")}
    return {name: sha256(path) for name, path in files.items()}


def test_without_the_option_the_default_cohort_is_byte_for_byte_unchanged(tmp_path):
    paths = write_demo_cohort(tmp_path, subjects=20, voxel_mm=VOXEL_MM, snps=200, seed=SEED, ageing_years=0.0)
    assert _fingerprint(paths) == DEFAULT_FINGERPRINT
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
