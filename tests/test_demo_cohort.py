"""The demo cohort generator: files, formats, reproducibility, and that the planted effects are in the data."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bed_reader import open_bed
from scipy import ndimage

from ml4ge.demo.anatomy import load_template
from ml4ge.demo.atlas import load_atlas
from ml4ge.demo.cohort import write_demo_cohort
from ml4ge.demo.effects import PLANTED_EFFECTS
from ml4ge.demo.genotypes import simulate_genotypes
from ml4ge.demo.subject import SubjectSpec, build_scene, render_subject

VOXEL_MM = 4.0
GRID_4MM = (50, 59, 48)  # ceil of the 197x233x189 mm MNI152 grid over 4 mm
SUBJECTS = 80


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    paths = write_demo_cohort(folder, subjects=SUBJECTS, voxel_mm=VOXEL_MM, snps=400, seed=0,
                              tensors=("t1_4mm", "t2_4mm"))
    return folder, paths


def _adjusted_t(y: np.ndarray, genotypes: np.ndarray, covariates: np.ndarray) -> np.ndarray:
    """t statistic of every SNP (mean-imputed) for ``y`` after regressing out ``covariates`` (plus intercept)."""
    design = np.column_stack([np.ones(len(y)), covariates])

    def residual(values):
        return values - design @ np.linalg.lstsq(design, values, rcond=None)[0]

    filled = np.where(np.isnan(genotypes), np.nanmean(genotypes, axis=0), genotypes)
    ry, rg = residual(y), residual(filled)
    r = (rg * ry[:, None]).sum(axis=0) / np.sqrt((rg**2).sum(axis=0) * (ry**2).sum())
    return r * np.sqrt((len(y) - design.shape[1] - 1) / (1 - r**2))


def test_files_shapes_and_affines(cohort):
    folder, paths = cohort
    for name in ("manifest", "phenotypes", "covariates", "bed", "bim", "fam", "atlas", "atlas_labels", "truth",
                 "brain_mask", "template_t1", "template_t2"):
        assert paths[name].is_file(), name
    t1 = nib.load(folder / "t1" / "sub0001.nii.gz")
    t2 = nib.load(folder / "t2" / "sub0080.nii.gz")
    atlas = nib.load(paths["atlas"])
    templates = [nib.load(paths[name]) for name in ("template_t1", "template_t2")]
    for image in (t1, t2, atlas, nib.load(paths["brain_mask"]), *templates):
        assert image.shape == GRID_4MM
        np.testing.assert_allclose(image.affine[:3, :3], np.diag([VOXEL_MM] * 3))
        np.testing.assert_allclose(image.affine[:3, 3], [-98.0, -134.0, -72.0])
    assert t1.get_data_dtype() == np.float32 and np.issubdtype(atlas.get_data_dtype(), np.integer)
    t1_data, t2_data = t1.get_fdata(), t2.get_fdata()
    assert np.isfinite(t1_data).all() and t1_data.max() > 0.5
    assert (t1_data > 0).mean() > 0.1 and (t1_data == 0).mean() > 0.3  # a skull-stripped brain in its box
    manifest = pd.read_csv(paths["manifest"])
    assert list(manifest.columns) == ["sample_id", "tensor", "path"] and len(manifest) == 2 * SUBJECTS
    assert set(manifest["tensor"]) == {"t1_4mm", "t2_4mm"}
    assert all((folder / p).is_file() for p in manifest["path"])
    assert t2_data.max() > 0
    covariates = pd.read_csv(paths["covariates"], sep="\t")
    assert list(covariates.columns) == ["sample_id", "age", "sex", "PC1", "PC2", "PC3", "PC4"]
    phenotypes = pd.read_csv(paths["phenotypes"])
    expected = {"sample_id", "age", "sex", "brain_volume", *(effect.trait for effect in PLANTED_EFFECTS)}
    assert expected <= set(phenotypes.columns) and phenotypes.notna().all().all()
    assert set(phenotypes["sex"]) == {0, 1} and phenotypes["age"].between(45, 80).all()


def test_t1_and_t2_contrasts(cohort):
    """T1: white matter brighter than CSF; T2-like: the opposite."""
    folder, paths = cohort
    template = load_template(VOXEL_MM)
    wm, csf = template.wm > 0.9, (template.csf > 0.9) & (template.mask > 0)
    t1 = nib.load(folder / "t1" / "sub0003.nii.gz").get_fdata()
    t2 = nib.load(folder / "t2" / "sub0003.nii.gz").get_fdata()
    assert np.median(t1[wm]) > 1.5 * np.median(t1[csf])
    assert np.median(t2[csf]) > 1.5 * np.median(t2[wm])


def test_deep_grey_structures_are_painted_and_their_growth_shows_in_the_images():
    """The thalamus is grey matter inside its atlas region, and growing it changes the images only around it."""
    template, atlas = load_template(VOXEL_MM), load_atlas(VOXEL_MM)
    scene = build_scene(template, atlas)
    thalamus = np.isin(atlas.labels, [atlas.label_of("thalamus_left"), atlas.label_of("thalamus_right")])
    tissue = scene.template.gm + scene.template.wm
    assert np.median((scene.template.gm / np.maximum(tissue, 1e-6))[thalamus]) > 0.85
    assert np.median(scene.template.t1[thalamus]) < np.median(template.t1[thalamus])  # grey is darker in T1
    amounts = {name: 0.0 for name in scene.growth}
    images = {}
    for grow in (-2.0, 2.0):
        spec = SubjectSpec(index=5, sample_id="s", age=60.0, sex=1,
                           region_amounts={**amounts, "thalamus_left": grow, "thalamus_right": grow})
        images[grow] = render_subject(scene, spec, seed=0)
    assert images[2.0].traits["thalamus_volume"] > 1.3 * images[-2.0].traits["thalamus_volume"]
    near = ndimage.binary_dilation(thalamus, iterations=2)
    far = ~ndimage.binary_dilation(thalamus, iterations=6) & (template.mask > 0)
    for contrast in ("t1", "t2"):
        change = np.abs(getattr(images[2.0], contrast) - getattr(images[-2.0], contrast))
        assert change[near].mean() > 0.01 and change[near].mean() > 10 * change[far].mean(), contrast


def test_genotypes_read_back_with_sample_ids(cohort):
    _, paths = cohort
    phenotypes = pd.read_csv(paths["phenotypes"])
    bed = open_bed(paths["bed"])
    assert list(bed.iid) == list(phenotypes["sample_id"]) == list(bed.fid)
    assert phenotypes["sample_id"].iloc[0] == "sub0001"
    values = bed.read()
    assert values.shape == (SUBJECTS, 400)
    observed = values[~np.isnan(values)]
    assert set(np.unique(observed)) <= {0.0, 1.0, 2.0}
    assert 0.002 < np.isnan(values).mean() < 0.03
    assert len(set(bed.chromosome)) >= 3
    np.testing.assert_array_equal(bed.sex, np.where(phenotypes["sex"] == 1, 1, 2))


def test_truth_names_snps_and_regions_that_exist(cohort):
    _, paths = cohort
    truth = json.loads(paths["truth"].read_text())
    bim = pd.read_csv(paths["bim"], sep="\t", header=None, names=["chrom", "id", "cm", "pos", "a1", "a2"])
    labels = pd.read_csv(paths["atlas_labels"], sep="\t")
    atlas = nib.load(paths["atlas"]).get_fdata().astype(int)
    assert truth["seed"] == 0 and truth["subjects"] == SUBJECTS and truth["voxel_mm"] == VOXEL_MM
    assert len(truth["snps"]) == len(PLANTED_EFFECTS) and truth["null_snps"] == 400 - len(PLANTED_EFFECTS)
    assert set(labels["hemisphere"]) == {"left", "right", "both"} and 20 <= len(labels) <= 40
    phenotype_columns = pd.read_csv(paths["phenotypes"]).columns
    for snp in truth["snps"]:
        row = bim.loc[bim["id"] == snp["id"]].iloc[0]
        assert (int(row["chrom"]), int(row["pos"])) == (snp["chrom"], snp["pos"])
        assert snp["trait"] in phenotype_columns and truth["regions"][snp["trait"]] == snp["region"]
        assert np.sign(snp["measured_t"]) == np.sign(snp["effect_sd_per_allele"])
        for region in snp["region"]:
            label = int(labels.loc[labels["name"] == region, "label"].iloc[0])
            assert (atlas == label).sum() > 5, region


def test_planted_effects_are_in_the_data(cohort):
    _, paths = cohort
    phenotypes = pd.read_csv(paths["phenotypes"])
    assert np.corrcoef(phenotypes["age"], phenotypes["ventricle_volume"])[0, 1] > 0.5
    assert np.corrcoef(phenotypes["age"], phenotypes["cortical_gm_volume"])[0, 1] < -0.5
    male, female = (phenotypes.loc[phenotypes["sex"] == s, "brain_volume"].mean() for s in (1, 0))
    assert male > 1.05 * female
    truth = json.loads(paths["truth"].read_text())
    bed = open_bed(paths["bed"])
    genotypes = bed.read()
    covariates = phenotypes[["age", "sex"]].to_numpy(dtype=float)
    for snp in truth["snps"]:
        t = _adjusted_t(phenotypes[snp["trait"]].to_numpy(), genotypes, covariates)
        causal = t[list(bed.sid).index(snp["id"])]
        null = np.abs(t[bed.chromosome != str(snp["chrom"])])
        assert np.sign(causal) == np.sign(snp["effect_sd_per_allele"]) and abs(causal) > 4.0, snp
        assert np.median(null) < 1.0 and (null > 3.5).mean() < 0.01, snp


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    first = write_demo_cohort(tmp_path / "a", subjects=20, voxel_mm=VOXEL_MM, snps=200, seed=5)
    second = write_demo_cohort(tmp_path / "b", subjects=20, voxel_mm=VOXEL_MM, snps=200, seed=5, workers=2)
    for name in ("phenotypes", "covariates", "bed", "bim", "fam", "truth", "atlas", "manifest"):
        assert first[name].read_bytes() == second[name].read_bytes(), name
    for contrast in ("t1", "t2"):
        assert (first[contrast] / "sub0007.nii.gz").read_bytes() == (second[contrast] / "sub0007.nii.gz").read_bytes()


def test_another_seed_another_cohort():
    genotypes = [simulate_genotypes(30, 200, np.random.default_rng(seed))[0].complete for seed in (5, 6)]
    assert not np.array_equal(*genotypes)


@pytest.mark.parametrize("arguments, message", [
    ({"subjects": 5}, "subjects must be at least 20"),
    ({"voxel_mm": 0.5}, "voxel_mm must be between 1 and 8 mm"),
    ({"snps": 50}, "snps=50 is too few"),
    ({"tensors": ("t1",)}, "tensors must name the T1 and the T2"),
])
def test_bad_arguments_are_refused(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        write_demo_cohort(tmp_path, **arguments)
