"""Rigid registration: known transforms are recovered, across grids, and through tensorize --register_to."""

import textwrap

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from ml4ge.cli import main
from ml4ge.hd5 import read_dataset
from ml4ge.registration import Rigid, register_rigid, resample_rigid

SHAPE = (28, 32, 26)
AFFINE = np.array([[3.0, 0, 0, -42], [0, 3.0, 0, -50], [0, 0, 3.0, -36], [0, 0, 0, 1]])
PREFIX = "ml4ge_test_registration_maps"


def phantom(shape=SHAPE, affine=AFFINE) -> np.ndarray:
    """A skull-stripped-looking head: an ellipsoid 'brain' holding blobs of different sizes and brightness."""
    index = np.indices(shape, dtype=np.float64).reshape(3, -1)
    x, y, z = (affine[:3, :3] @ index + affine[:3, 3:4])
    brain = ((x / 34) ** 2 + (y / 40) ** 2 + (z / 30) ** 2) < 1
    image = 0.6 * brain
    for (cx, cy, cz), radius, value in (((-12, 10, 4), 8, 0.4), ((14, -8, 8), 5, -0.3), ((2, 22, -12), 6, 0.3),
                                        ((-4, -24, 10), 4, -0.4)):
        image += value * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * radius**2)) * brain
    return image.reshape(shape).astype(np.float32)


def moved(image, affine, truth: Rigid, shape, target_affine) -> np.ndarray:
    """``image`` seen through the inverse of ``truth``: registering the result back must give ``truth``."""
    inverse = Rigid(truth.rotation.T, -truth.rotation.T @ truth.translation, truth.centre)
    return resample_rigid(image, affine, inverse, shape, target_affine)


def true_transform(centre) -> Rigid:
    return Rigid(Rotation.from_rotvec(np.deg2rad([3.0, -2.0, 4.0])).as_matrix(), np.array([2.5, -1.5, 2.0]),
                 np.asarray(centre, dtype=float))


def reference_centre(reference, affine):
    return (affine[:3, :3] @ np.argwhere(reference != 0).mean(axis=0)) + affine[:3, 3]


def assert_same_transform(fitted: Rigid, truth: Rigid, degrees=0.35, mm=0.35):
    """Compare where the transforms send points 40 mm around the centre: their largest disagreement."""
    points = truth.centre[:, None] + 40.0 * np.vstack([np.eye(3), -np.eye(3)]).T
    gap = np.linalg.norm(fitted.apply(points) - truth.apply(points), axis=0).max()
    assert gap < mm + 40 * np.deg2rad(degrees), f"transforms disagree by {gap:.2f} mm"


def test_a_known_rigid_transform_is_recovered_despite_scale_and_noise():
    reference = phantom()
    truth = true_transform(reference_centre(reference, AFFINE))
    moving = 1.3 * moved(reference, AFFINE, truth, SHAPE, AFFINE)
    moving += 0.02 * np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32) * (moving > 0)
    fitted = register_rigid(moving, AFFINE, reference, AFFINE)
    assert_same_transform(fitted, truth)
    np.testing.assert_allclose(fitted.parameters()[:3], [3.0, -2.0, 4.0], atol=0.4)
    inside = reference > 0.3
    error = {name: np.abs(resample_rigid(moving, AFFINE, rigid, SHAPE, AFFINE) / 1.3 - reference)[inside].mean()
             for name, rigid in (("fitted", fitted), ("true", truth))}
    before = np.abs(moving / 1.3 - reference)[inside].mean()
    assert error["fitted"] < 1.1 * error["true"] < 0.6 * before  # interpolation and noise set the floor


def test_registration_works_across_grids_and_lands_on_the_reference_grid():
    fine_affine = np.array([[2.0, 0, 0, -45], [0, 2.0, 0, -55], [0, 0, 2.0, -40], [0, 0, 0, 1]])
    fine_shape = (46, 56, 42)
    reference = phantom()
    truth = true_transform(reference_centre(reference, AFFINE))
    moving = moved(phantom(fine_shape, fine_affine), fine_affine, truth, fine_shape, fine_affine)
    fitted = register_rigid(moving, fine_affine, reference, AFFINE)
    assert_same_transform(fitted, truth, degrees=0.5, mm=0.5)
    assert resample_rigid(moving, fine_affine, fitted, SHAPE, AFFINE).shape == SHAPE


def test_identity_stays_identity():
    reference = phantom()
    fitted = register_rigid(reference, AFFINE, reference, AFFINE)
    np.testing.assert_allclose(fitted.parameters(), 0.0, atol=1e-3)


@pytest.mark.parametrize("moving_shape, reference, message", [
    ((4, 4, 4, 2), np.ones((4, 4, 4)), "3-D"),
    ((4, 4, 4), np.zeros((4, 4, 4)), "all zeros"),
])
def test_bad_volumes_are_refused(moving_shape, reference, message):
    with pytest.raises(ValueError, match=message):
        register_rigid(np.ones(moving_shape), np.eye(4), reference, np.eye(4))


# tensorize --register_to ----------------------------------------------------------------------------------
@pytest.fixture()
def registration_inputs(tmp_path, monkeypatch):
    """A TensorMap package, a template NIfTI, two moved subjects and their manifest."""
    package = tmp_path / PREFIX
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "brain.py").write_text(textwrap.dedent(f"""
        from ml4ge.tensormap import TensorMap
        vol = TensorMap("reg_vol", ({SHAPE[0]}, {SHAPE[1]}, {SHAPE[2]}, 1), group="mri", dataset="vol")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    reference = phantom()
    nib.save(nib.Nifti1Image(reference, AFFINE), str(tmp_path / "template.nii.gz"))
    truth = true_transform(reference_centre(reference, AFFINE))
    rows = []
    for name, rigid in (("a", truth), ("b", Rigid(np.eye(3), np.zeros(3), truth.centre))):
        nib.save(nib.Nifti1Image(moved(reference, AFFINE, rigid, SHAPE, AFFINE), AFFINE), str(tmp_path / f"{name}.nii"))
        rows.append((name, "brain.vol", f"{name}.nii"))
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows, columns=["sample_id", "tensor", "path"]).to_csv(manifest, index=False)
    return tmp_path, manifest, reference


def tensorize(folder, manifest, *flags):
    return main(["--mode", "tensorize", "--manifest", str(manifest), "--tensors", str(folder / "tensors"),
                 "--output_folder", str(folder / "runs"), "--id", "tz", "--tensormap_prefix", PREFIX,
                 "--num_workers", "0", *flags])


def test_tensorize_registers_volumes_to_the_template(registration_inputs):
    folder, manifest, reference = registration_inputs
    assert tensorize(folder, manifest, "--register_to", f"brain.vol={folder / 'template.nii.gz'}") == 0
    with h5py.File(folder / "tensors" / "a.hd5", "r") as hd5:
        stored = np.asarray(read_dataset(hd5, "mri/vol")).reshape(SHAPE)
        attributes = dict(hd5["mri/vol/instance_0"].attrs)
    np.testing.assert_allclose(attributes["affine"], AFFINE)
    assert attributes["registered_to"].endswith("template.nii.gz")
    np.testing.assert_allclose(attributes["rigid_parameters"][:3], [3.0, -2.0, 4.0], atol=0.4)
    unregistered = nib.load(str(folder / "a.nii")).get_fdata()
    before, after = (np.corrcoef(v.ravel(), reference.ravel())[0, 1] for v in (unregistered, stored))
    assert before < 0.93 and after > 0.97
    with h5py.File(folder / "tensors" / "b.hd5", "r") as hd5:
        np.testing.assert_allclose(hd5["mri/vol/instance_0"].attrs["rigid_parameters"], 0.0, atol=0.05)


@pytest.mark.parametrize("pair, message", [
    ("brain.vol", "write TENSOR=TEMPLATE"),
    ("brain.other={template}", "not a tensor of --manifest"),
    ("brain.vol={folder}/missing.nii.gz", "no template file"),
    ("brain.vol={folder}/four_d.nii.gz", "give a 3-D volume"),
    ("brain.vol={folder}/text.nii.gz", "template cannot be used"),  # was a raw traceback
    ("brain.vol={folder}/truncated.nii.gz", "template cannot be used"),  # was blamed on every subject
    ("brain.vol={folder}/zeros.nii.gz", "all zeros"),
])
def test_bad_register_to_is_refused_before_any_work(registration_inputs, capsys, pair, message):
    folder, manifest, _ = registration_inputs
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 2), np.float32), AFFINE), str(folder / "four_d.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), AFFINE), str(folder / "zeros.nii.gz"))
    (folder / "text.nii.gz").write_text("not a NIfTI file")
    template = (folder / "template.nii.gz").read_bytes()
    (folder / "truncated.nii.gz").write_bytes(template[: len(template) // 2])
    pair = pair.format(folder=folder, template=folder / "template.nii.gz")
    with pytest.raises(SystemExit) as exit_info:
        tensorize(folder, manifest, "--register_to", pair)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (folder / "tensors").exists()
