"""The demo cohort's optional patient group (#16 item 4, generator part): two planted disease subtypes, age- and
sex-matched to the controls; off by default, and then the cohort is byte for byte the one written before it existed.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from cohort_fingerprint import DEFAULT_FINGERPRINT, default_cohort_fingerprint
from scipy import ndimage

from ml4ge.demo.cohort import write_demo_cohort
from ml4ge.demo.patients import CONTROL, DISEASE_SUBTYPES, assign_subtypes

VOXEL_MM = 6.0
SUBJECTS = 48
SEED = 3


def test_the_default_cohort_is_unchanged(tmp_path):
    paths, fingerprint = default_cohort_fingerprint(tmp_path)
    assert fingerprint == DEFAULT_FINGERPRINT
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
