"""A blob at a known world position stays there: NIfTI -> tensorize -> every kind of TensorMap (stored as is,
cropped, padded, resampled on read, resampled by tensorize, a reader's mask) -> the map's affine, and through
``--mode infer`` (an identity model saved as .keras) back to a NIfTI prediction (:mod:`ml4ge.grids`)."""

from pathlib import Path

import h5py
import keras
import nibabel as nib
import numpy as np
import pytest

from ml4ge.demo import maps as demo_maps
from ml4ge.grids import crop_pad_affine, fitted_affine, map_affine, read_affine, voxel_of, world_of
from ml4ge.models.family import FamilyModel, map_from_spec, map_spec
from ml4ge.tensorize import Subject, VolumeInput, tensorize_subjects
from ml4ge.tensormaps import brain_mri

# The grids the maps are made for: FSL's 1 mm MNI (182x218x182, x flipped) and the demo's grids on nilearn's
# MNI152 2009 template (197x233x189 mm from (-98, -134, -72)) at 1, 3 and 5 mm.
FSL_MNI = (brain_mri.MNI_SHAPE, np.array([[-1.0, 0, 0, 90], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]]))


def demo_grid(mm: int):
    shape = tuple(int(np.ceil(n / mm)) for n in (197, 233, 189))
    return shape, np.array([[mm, 0, 0, -98.0], [0, mm, 0, -134], [0, 0, mm, -72], [0, 0, 0, 1]])


BLOB_MM = np.array([-14.0, -18.0, 9.0])  # left thalamus-ish: inside every map's field of view, the deep crops too
BLOB_RADIUS_MM = 7.0


def blob_image(shape, affine) -> nib.Nifti1Image:
    """A 'brain' (a box of 100) with a bright ball (1000) centred at BLOB_MM."""
    volume = np.zeros(shape, np.float32)
    volume[tuple(slice(n // 6, n - n // 6) for n in shape)] = 100.0
    centre = voxel_of(BLOB_MM, affine)
    reach = int(np.ceil(BLOB_RADIUS_MM / np.min(np.abs(np.diag(affine)[:3])))) + 1
    window = tuple(slice(max(int(c) - reach, 0), int(c) + reach + 2) for c in centre)
    index = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in window], indexing="ij"), axis=-1)
    inside = np.linalg.norm(world_of(index, affine) - BLOB_MM, axis=-1) <= BLOB_RADIUS_MM
    volume[window][inside] = 1000.0
    return nib.Nifti1Image(volume, affine)


def blob_world(volume: np.ndarray, affine) -> np.ndarray:
    """World position (mm) of the centre of the bright voxels (above halfway between background and peak)."""
    volume = np.asarray(volume, np.float64).reshape(volume.shape[:3])
    bright = volume > (np.median(volume[volume != 0]) + volume.max()) / 2
    weights = np.where(bright, volume, 0.0)
    index = np.stack(np.meshgrid(*[np.arange(s) for s in volume.shape], indexing="ij"), axis=-1)
    centre = (index * weights[..., None]).reshape(-1, 3).sum(0) / weights.sum()
    return world_of(centre, affine)


def tensorize(tmp_path: Path, grids: dict[str, tuple], resampled: tuple = ()) -> Path:
    """One subject's HD5 written by tensorize from a blob NIfTI per ``{map name: (grid, dataset tm)}``; maps in
    ``resampled`` are stored fitted to their shape (``--resample``)."""
    volumes = []
    for name, ((shape, affine), tm) in grids.items():
        path = tmp_path / f"{name}.nii.gz"
        nib.save(blob_image(shape, affine), path)
        volumes.append(VolumeInput(tensor=tm.name, path=str(path), key=tm.key, map_shape=tm.shape,
                                   resample=name in resampled))
    rows = tensorize_subjects([Subject("1001", tuple(volumes))], tmp_path / "tensors")
    assert {row.status for row in rows} == {"written"}, rows
    return tmp_path / "tensors" / "1001.hd5"


# (map, the grid its dataset is written on, the map that names the dataset, stored resampled by tensorize?)
CASES = {
    "t1 (as stored)": (brain_mri.t1, FSL_MNI, brain_mri.t1, False),
    "t1_64 (resampled on read)": (brain_mri.t1_64, FSL_MNI, brain_mri.t1, False),
    "t1_96 (resampled on read)": (brain_mri.t1_96, FSL_MNI, brain_mri.t1, False),
    "t1_64 (resampled by tensorize)": (brain_mri.t1_64, FSL_MNI, brain_mri.t1_64, True),
    "t1_brain_mask (reader)": (brain_mri.t1_brain_mask, FSL_MNI, brain_mri.t1, False),
    "t1_3mm (crop x, pad y, z)": (demo_maps.t1_3mm, demo_grid(3), demo_maps.t1_3mm, False),
    "t1_5mm (pad)": (demo_maps.t1_5mm, demo_grid(5), demo_maps.t1_5mm, False),
    "t1_deep_3mm (crop)": (demo_maps.t1_deep_3mm, demo_grid(3), demo_maps.t1_deep_3mm, False),
    "t1_deep_5mm (crop)": (demo_maps.t1_deep_5mm, demo_grid(5), demo_maps.t1_deep_5mm, False),
    "t1_deep_1mm (crop)": (demo_maps.t1_deep_1mm, demo_grid(1), demo_maps.t1_deep_1mm, False),
}


@pytest.mark.parametrize("case", CASES)
def test_a_blob_keeps_its_world_position_through_every_map_kind(tmp_path, case):
    tm, grid, stored_as, resampled = CASES[case]
    path = tensorize(tmp_path, {"volume": (grid, stored_as)}, resampled=("volume",) if resampled else ())
    with h5py.File(path, "r") as hd5:
        fitted = tm.fit_shape(tm.read_raw(hd5))
        affine = map_affine(tm, hd5)
    assert fitted.shape == tm.shape
    if tm.reader is not None:  # the brain mask: only the ball is bright after a mask, so make it the ball's
        with h5py.File(path, "r") as hd5:
            fitted = fitted * brain_mri.t1.fit_shape(brain_mri.t1.read_raw(hd5))
    voxel_mm = float(np.abs(np.linalg.det(affine[:3, :3])) ** (1 / 3))
    resamples = tm.resize and tm.shape[:3] != grid[0]
    # crop/pad keeps voxels: exact; resampling moves the ball's voxelised edge by a fraction of a voxel
    tolerance = 0.3 * voxel_mm if resamples or resampled else 1e-6
    np.testing.assert_allclose(blob_world(fitted, affine), blob_world(blob_image(*grid).get_fdata(), grid[1]),
                               atol=tolerance)


def test_crop_pad_and_resample_affines_compose_like_the_arrays():
    affine = np.array([[-2.0, 0, 0, 60], [0, 2, 0, -80], [0, 0, 2.5, -50], [0, 0, 0, 1]])
    np.testing.assert_allclose(crop_pad_affine(affine, (10, 10, 10), (10, 10, 10)), affine)
    np.testing.assert_allclose(fitted_affine(affine, (4, 5, 6), (4, 5, 6)), affine)
    # 12 -> 6 by one factor 1/2 on every axis: output voxel j is input 2j + 0.5; then no crop/pad
    half = fitted_affine(affine, (12, 12, 12), (6, 6, 6))
    np.testing.assert_allclose(half[:3, :3], affine[:3, :3] * 2)
    np.testing.assert_allclose(world_of([0, 0, 0], half), world_of([0.5, 0.5, 0.5], affine))


def test_a_malformed_stored_affine_is_refused_naming_it():
    with pytest.raises(ValueError, match="malformed affine attribute: 3 values"):
        read_affine([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="expected 16 finite numbers"):
        read_affine(np.full((4, 4), np.nan))


# --mode infer -------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="ml4ge_test_grids")
class IdentityFamily(FamilyModel):
    """Each output map is its input map, unchanged: the prediction is the model's input, on the map's grid."""

    family = "identity"

    def __init__(self, spec, **kwargs):
        maps = [map_from_spec(m) for m in spec["inputs"]]
        inputs = {tm.input_name: keras.Input(tm.shape, name=tm.input_name) for tm in maps}
        outputs = {tm.output_name: keras.layers.Identity(name=tm.output_name)(inputs[tm.input_name]) for tm in maps}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.set_spec(spec)


# (name on the command line, map, the grid its dataset is written on, the map that names the dataset)
INFER_MAPS = {"deep": ("ml4ge.demo.maps.t1_deep_3mm", demo_maps.t1_deep_3mm, demo_grid(3), demo_maps.t1_deep_3mm),
              "whole": ("ml4ge.demo.maps.t1_5mm", demo_maps.t1_5mm, demo_grid(5), demo_maps.t1_5mm),
              "resampled": ("t1_64", brain_mri.t1_64, FSL_MNI, brain_mri.t1)}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["nifti", "hd5"])
def test_infer_writes_predictions_where_the_input_was(tmp_path, fmt):
    """The deep-brain crop was 95 mm off and the whole-brain maps 3 mm before infer took the map's affine."""
    from ml4ge.cli import main

    path = tensorize(tmp_path, {key: (grid, stored_as) for key, (_, _, grid, stored_as) in INFER_MAPS.items()})
    tmaps = [tm for _, tm, _, _ in INFER_MAPS.values()]
    model_file = tmp_path / "identity.keras"
    IdentityFamily({"family": "identity", "inputs": [map_spec(tm) for tm in tmaps],
                    "outputs": [map_spec(tm) for tm in tmaps]}).save(model_file)
    names = [name for name, _, _, _ in INFER_MAPS.values()]
    argv = ["--mode", "infer", "--tensors", str(path.parent), "--output_folder", str(tmp_path / "runs"), "--id",
            "inf", "--model_file", str(model_file), "--input_tensors", *names, "--output_tensors", *names,
            "--num_workers", "0", "--inference_format", fmt]
    assert main(argv) == 0
    inferred = tmp_path / "runs" / "inf" / "inferred"
    for key, (_, tm, _, _) in INFER_MAPS.items():
        if fmt == "nifti":
            image = nib.load(inferred / f"1001_{tm.name}.nii.gz")
            values, affine = image.get_fdata(), image.affine
        else:
            with h5py.File(inferred / "1001.hd5", "r") as out:
                dataset = out[f"{tm.name}_prediction/instance_0"]
                values, affine = dataset[()], dataset.attrs["affine"]
        voxel_mm = float(np.abs(np.linalg.det(affine[:3, :3])) ** (1 / 3))
        np.testing.assert_allclose(blob_world(values, affine), BLOB_MM, atol=0.3 * voxel_mm, err_msg=key)
