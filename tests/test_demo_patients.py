"""The demo cohort's optional patient group (#16 item 4, generator part): two planted disease subtypes, age- and
sex-matched to the controls; off by default, and then the cohort is byte for byte the one written before it existed.
"""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from ml4ge.demo.cohort import write_demo_cohort
from ml4ge.demo.patients import CONTROL, DISEASE_SUBTYPES, assign_subtypes

VOXEL_MM = 6.0
SUBJECTS = 48
SEED = 3

# sha256 of files of write_demo_cohort(subjects=20, voxel_mm=6.0, snps=200, seed=3), computed with the generator
# as it was before the patient group existed (commit eeafdfd).
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


def test_the_default_cohort_is_unchanged(tmp_path):
    paths = write_demo_cohort(tmp_path, subjects=20, voxel_mm=VOXEL_MM, snps=200, seed=SEED)
    files = {name: paths[name] for name in ("phenotypes", "covariates", "bed", "truth", "manifest")}
    files |= {f"{c}/{s}": paths[c] / f"{s}.nii.gz" for c in ("t1", "t2") for s in ("sub0002", "sub0013")}
    assert {name: sha256(path) for name, path in files.items()} == DEFAULT_FINGERPRINT
    assert not (tmp_path / "groups.csv").exists() and "groups" not in paths


def test_subtypes_are_matched_on_age_and_sex():
    rng = np.random.default_rng(0)
    ages, sexes = rng.uniform(45, 80, 600), rng.integers(0, 2, 600)
    labels = assign_subtypes(ages, sexes, 1 / 3, np.random.default_rng(1))
    names = [subtype.name for subtype in DISEASE_SUBTYPES]
    assert set(labels) == {CONTROL, *names}
    for sex in (0, 1):
        mine = labels[sexes == sex]
        assert abs((mine != CONTROL).sum() - (sexes == sex).sum() / 3) <= 1  # a third of each sex
        counts = [(mine == name).sum() for name in names]
        assert max(counts) - min(counts) <= 1
    patient = labels != CONTROL
    assert abs(ages[patient].mean() - ages[~patient].mean()) < 1.0
    assert abs(ages[labels == names[0]].mean() - ages[labels == names[1]].mean()) < 1.5
    assert abs(sexes[patient].mean() - sexes[~patient].mean()) < 0.02


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """The same cohort without and with a third of patients."""
    folder = tmp_path_factory.mktemp("patients")
    plain = write_demo_cohort(folder / "plain", subjects=SUBJECTS, voxel_mm=VOXEL_MM, snps=200, seed=SEED)
    with_patients = write_demo_cohort(folder / "patients", subjects=SUBJECTS, voxel_mm=VOXEL_MM, snps=200, seed=SEED,
                                      patients=1 / 3)
    return plain, with_patients


def test_patient_files_and_truth(cohorts):
    _, paths = cohorts
    groups = pd.read_csv(paths["groups"], dtype={"sample_id": str})
    assert list(groups.columns) == ["sample_id", "group", "subtype", "atrophy_mm"] and len(groups) == SUBJECTS
    patients = groups[groups.group == "patient"]
    assert abs(len(patients) - SUBJECTS / 3) <= 2
    assert set(patients.subtype) == {subtype.name for subtype in DISEASE_SUBTYPES}
    assert (patients.atrophy_mm < 0).all() and (groups[groups.group == "control"].atrophy_mm == 0).all()
    assert pd.read_csv(paths["patients_list"]).sample_id.tolist() == patients.sample_id.tolist()
    assert len(pd.read_csv(paths["controls_list"])) == SUBJECTS - len(patients)
    record = json.loads(paths["truth"].read_text())["patients"]
    assert record["fraction"] == pytest.approx(1 / 3) and len(record["subtypes"]) == 2
    assert sum(group["subjects"] for group in record["groups"].values()) == SUBJECTS


def test_controls_are_untouched_and_the_atrophy_is_where_it_was_planted(cohorts):
    plain, paths = cohorts
    groups = pd.read_csv(paths["groups"], dtype={"sample_id": str}).set_index("sample_id")
    before = pd.read_csv(plain["phenotypes"], dtype={"sample_id": str}).set_index("sample_id")
    after = pd.read_csv(paths["phenotypes"], dtype={"sample_id": str}).set_index("sample_id")
    controls = groups.index[groups.group == CONTROL]
    pd.testing.assert_frame_equal(before.loc[controls], after.loc[controls])
    for sample in controls[:3]:
        assert (plain["t1"] / f"{sample}.nii.gz").read_bytes() == (paths["t1"] / f"{sample}.nii.gz").read_bytes()
    atlas = nib.load(paths["atlas"]).get_fdata().astype(int)
    labels = pd.read_csv(paths["atlas_labels"], sep="\t").set_index("name")["label"]
    by_name = {subtype.name: subtype for subtype in DISEASE_SUBTYPES}
    for name, subtype in by_name.items():
        sample = groups.index[groups.subtype == name][0]
        region = np.isin(atlas, [labels[r] for r in subtype.regions])
        others = np.isin(atlas, [labels[r] for other in DISEASE_SUBTYPES if other is not subtype
                                 for r in other.regions])
        near = ndimage.distance_transform_edt(~region) * VOXEL_MM <= 18.0  # the regions pushed their surroundings
        image = nib.load(plain["t1"] / f"{sample}.nii.gz").get_fdata()
        difference = np.abs(nib.load(paths["t1"] / f"{sample}.nii.gz").get_fdata() - image)
        assert difference.sum() > 0, name
        assert difference[near].sum() / difference.sum() > 0.9, name  # the change lies around the subtype's regions
        # ... and not in the other subtype's regions (over a tenth of the brain: white matter of other lobes)
        assert others.sum() > 0.1 * (image > 0).sum(), name
        assert difference[others].sum() < 0.05 * difference.sum(), name


def test_bad_fractions_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        write_demo_cohort(tmp_path, subjects=20, patients=1.0)
    with pytest.raises(ValueError, match="raise subjects"):
        write_demo_cohort(tmp_path, subjects=20, patients=0.1)
    assert not any(tmp_path.iterdir())
