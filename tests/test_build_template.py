"""``--mode build_template``: iterative rigid registration to the running mean, on a small generated cohort whose
subjects are one anatomy in different poses; the template built is closer to every subject, and to the anatomy,
than the plain mean."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ml4ge.cli import main
from ml4ge.registration import register_rigid, resample_rigid
from ml4ge.template_building import build_template, correlation

SHAPE, VOXEL_MM = (32, 36, 30), 3.0
AFFINE = np.diag([VOXEL_MM] * 3 + [1.0])
AFFINE[:3, 3] = -np.asarray(SHAPE) * VOXEL_MM / 2


def anatomy() -> np.ndarray:
    """A skull-stripped "brain": an ellipsoid of grey intensity with a dark ventricle pair and bright deep nuclei."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
    x, y, z = grid
    brain = 60.0 * ((x / 0.8) ** 2 + (y / 0.85) ** 2 + (z / 0.75) ** 2 < 1)
    for side in (-1, 1):
        brain[((x - 0.15 * side) / 0.08) ** 2 + (y / 0.3) ** 2 + ((z - 0.1) / 0.15) ** 2 < 1] = 15.0
        brain[((x - 0.4 * side) / 0.12) ** 2 + ((y + 0.1) / 0.15) ** 2 + (z / 0.15) ** 2 < 1] = 100.0
    brain[(((y - 0.5) / 0.1) ** 2 + (x / 0.5) ** 2 + ((z - 0.3) / 0.1) ** 2 < 1)] = 90.0
    return ndimage.gaussian_filter(brain, 0.7).astype(np.float32)


def posed(volume: np.ndarray, rotation_deg, shift_mm, gain: float, rng) -> np.ndarray:
    """``volume`` turned by ``rotation_deg`` about the grid centre and shifted by ``shift_mm``, times ``gain``,
    with noise inside the head."""
    rotation = Rotation.from_euler("xyz", rotation_deg, degrees=True).as_matrix()
    centre = (np.asarray(SHAPE) - 1) / 2
    offset = centre - rotation @ (centre + np.asarray(shift_mm) / VOXEL_MM)
    moved = ndimage.affine_transform(volume, rotation, offset=offset, order=1)
    return (gain * moved * (1 + 0.05 * rng.standard_normal(SHAPE)) * (moved > 1)).astype(np.float32)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """12 subjects in random poses (up to 8 degrees, 6 mm) and gains, as NIfTI files with a manifest."""
    folder = tmp_path_factory.mktemp("template_cohort")
    rng, truth = np.random.default_rng(4), anatomy()
    rows = []
    for index in range(12):
        volume = posed(truth, rng.uniform(-8, 8, 3), rng.uniform(-6, 6, 3), rng.uniform(0.7, 1.4), rng)
        nib.save(nib.Nifti1Image(volume, AFFINE), str(folder / f"s{index}.nii.gz"))
        rows.append((f"s{index}", "t2_own", f"s{index}.nii.gz"))
    pd.DataFrame(rows, columns=["sample_id", "tensor", "path"]).to_csv(folder / "manifest.csv", index=False)
    return folder, truth


def aligned_to(volume: np.ndarray, truth: np.ndarray) -> float:
    """The correlation with ``truth`` of ``volume`` registered rigidly to it (the template's frame is the cohort's
    average pose, not the truth's)."""
    rigid = register_rigid(volume, AFFINE, truth, AFFINE)
    return correlation(truth, resample_rigid(volume, AFFINE, rigid, SHAPE, AFFINE), truth > 5)


def test_iterations_bring_the_template_closer_to_every_subject_and_to_the_anatomy(cohort):
    folder, truth = cohort
    paths = [str(folder / f"s{index}.nii.gz") for index in range(12)]
    result = build_template(paths, iterations=3)
    rows = pd.DataFrame(result.iterations).set_index("iteration")
    assert list(rows.index) == [0, 1, 2, 3] and (rows.volumes == 12).all() and not result.skipped
    assert rows.loc[3, "mean_correlation"] > rows.loc[0, "mean_correlation"] + 0.05
    assert rows.loc[3, "least_correlation"] > rows.loc[0, "least_correlation"] + 0.05
    plain = np.mean([nib.load(path).get_fdata() / nib.load(path).get_fdata()[truth > 5].mean() for path in paths],
                    axis=0).astype(np.float32)
    assert aligned_to(result.template, truth) > aligned_to(plain, truth) + 0.02
    assert np.allclose(result.affine, AFFINE) and result.template.shape == SHAPE


def test_build_template_mode_writes_the_template_and_its_iterations(cohort, tmp_path):
    folder, _ = cohort
    assert main(["--mode", "build_template", "--manifest", str(folder / "manifest.csv"), "--template_iterations",
                 "2", "--output_folder", str(tmp_path), "--id", "template"]) == 0
    image = nib.load(tmp_path / "template" / "template_t2_own.nii.gz")
    assert image.shape == SHAPE and np.allclose(image.affine, AFFINE) and image.get_fdata().max() > 0
    rows = pd.read_csv(tmp_path / "template" / "build_template_iterations.tsv", sep="\t")
    assert list(rows.iteration) == [0, 1, 2] and rows.mean_correlation.is_monotonic_increasing


def test_an_unreadable_volume_is_left_out_and_listed(cohort, tmp_path):
    folder, _ = cohort
    (tmp_path / "broken.nii.gz").write_bytes((folder / "s0.nii.gz").read_bytes()[:200])
    paths = [str(folder / f"s{index}.nii.gz") for index in range(3)] + [str(tmp_path / "broken.nii.gz")]
    result = build_template(paths, iterations=1)
    assert list(result.skipped) == [str(tmp_path / "broken.nii.gz")]
    assert pd.DataFrame(result.iterations).volumes.tolist() == [3, 3]


@pytest.mark.parametrize("flags, message", [
    (["--template_iterations", "0"], "--template_iterations"),
    (["--template_tensor", "t1"], "--template_tensor t1: choose one of the manifest's tensors (t2_own)"),
])
def test_bad_flags_are_refused_before_any_work(cohort, tmp_path, capsys, flags, message):
    folder, _ = cohort
    with pytest.raises(SystemExit) as exit_info:
        main(["--mode", "build_template", "--manifest", str(folder / "manifest.csv"), "--output_folder",
              str(tmp_path), "--id", "t", *flags])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "t" / "template_t2_own.nii.gz").exists()
