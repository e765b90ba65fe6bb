"""Tensorize checks each NIfTI's grid against the TensorMap it is stored under: a map that takes a given voxel size
refuses another one (the subject fails, the reason names the maps to use); a map that resamples takes any grid and
the report says so; a grid of the right voxel size but another shape is noted (cropped/padded on read)."""

from __future__ import annotations

import logging

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ml4ge.cli import main
from ml4ge.nifti import GridExpectation, GridMismatchError


def brain(shape, seed=0) -> np.ndarray:
    """An ellipsoid of noisy intensities in a zero background (a skull-stripped brain's histogram, roughly)."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inside = (grid**2).sum(axis=0) < 0.7
    return (inside * np.random.default_rng(seed).normal(100, 15, shape)).astype(np.float32)


def write_nifti(path, shape, voxel_mm):
    affine = np.diag([*np.broadcast_to(voxel_mm, 3), 1.0])
    affine[:3, 3] = -np.asarray(shape) * np.asarray(np.broadcast_to(voxel_mm, 3)) / 2
    nib.save(nib.Nifti1Image(brain(shape), affine), str(path))
    return path


def tensorize(tmp_path, rows, *flags):
    """Run ``--mode tensorize`` on NIfTI files described by ``(sample, tensor, shape, voxel_mm)``; returns
    ``(exit code, report)``."""
    inputs = tmp_path / "nifti"
    inputs.mkdir(exist_ok=True)
    manifest = [(sample, tensor, write_nifti(inputs / f"{sample}.nii.gz", shape, mm).name)
                for sample, tensor, shape, mm in rows]
    pd.DataFrame(manifest, columns=["sample_id", "tensor", "path"]).to_csv(inputs / "manifest.csv", index=False)
    code = main(["--mode", "tensorize", "--tensors", str(tmp_path / "tensors"), "--output_folder", str(tmp_path),
                 "--id", "tz", "--manifest", str(inputs / "manifest.csv"), "--num_workers", "0", *flags])
    report = pd.read_csv(tmp_path / "tensors" / "tensorize_report.tsv", sep="\t", keep_default_na=False)
    return code, report.set_index("sample_id")


def test_the_1mm_t1_refuses_a_2mm_cohort_and_names_the_maps_that_take_it(tmp_path):
    code, report = tensorize(tmp_path, [("s2mm", "t1", (91, 109, 91), 2.0)])
    assert code == 1 and report.loc["s2mm", "status"] == "failed"
    reason = report.loc["s2mm", "reason"]
    assert "GridMismatchError: t1 takes 1 x 1 x 1 mm voxels but this volume is 91x109x91 at 2 x 2 x 2 mm" in reason
    assert "t1_64" in reason and "t1_96" in reason and "--resample" in reason
    assert not (tmp_path / "tensors" / "s2mm.hd5").exists()


def test_a_map_that_resamples_takes_any_grid_and_the_report_says_so(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ml4ge.recipes.tensorize"):
        code, report = tensorize(tmp_path, [("s2mm", "t1_64", (91, 109, 91), 2.0)])
    assert code == 0 and report.loc["s2mm", "status"] == "written"
    assert report.loc["s2mm", "reason"] == "91x109x91 at 2 x 2 x 2 mm resampled to t1_64's 64x64x64"
    assert "1 t1_64 volume(s) on another grid than the map's" in caplog.text


def test_resample_flag_takes_a_2mm_volume_into_the_1mm_map(tmp_path):
    code, report = tensorize(tmp_path, [("s2mm", "t1", (91, 109, 91), 2.0)], "--resample")
    assert code == 0 and "resampled to t1's 182x218x182" in report.loc["s2mm", "reason"]
    with h5py.File(tmp_path / "tensors" / "s2mm.hd5") as hd5:
        stored = hd5["ukb_brain_mri/T1_brain_to_MNI/instance_0"]
        assert stored.shape[:3] == (182, 218, 182) and np.allclose(stored.attrs["voxel_size"], 1.0, atol=0.02)


def test_a_demo_grid_map_takes_its_voxel_size_and_notes_another_shape(tmp_path):
    code, report = tensorize(tmp_path, [("own", "ml4ge.demo.maps.t1_5mm", (40, 48, 40), 5.0),
                                        ("wider", "ml4ge.demo.maps.t1_5mm", (40, 47, 38), 5.0),
                                        ("nearly", "ml4ge.demo.maps.t1_5mm", (40, 48, 40), 5.0004),
                                        ("fine", "ml4ge.demo.maps.t1_5mm", (66, 78, 63), 3.0)])
    assert code == 1
    assert report.loc["own", "reason"] == "" and report.loc["nearly", "reason"] == ""
    assert report.loc["wider", "reason"] == ("40x47x38 at 5 x 5 x 5 mm: centrally cropped/padded to "
                                             "ml4ge.demo.maps.t1_5mm's 40x48x40 on read")
    assert report.loc["fine", "status"] == "failed"
    assert ("takes 5 x 5 x 5 mm voxels but this volume is 66x78x63 at 3 x 3 x 3 mm; store it under "
            "ml4ge.demo.maps.t1_3mm or ml4ge.demo.maps.t2_3mm") in report.loc["fine", "reason"]


def test_grid_expectation_without_a_voxel_size_checks_nothing():
    free = GridExpectation("mine", (10, 10, 10))
    assert free.check((20, 20, 20), (2.0, 2.0, 2.0)) == ""
    anisotropic = GridExpectation("aniso", (10, 10, 10), voxel_mm=(1.0, 1.0, 3.0))
    assert anisotropic.check((10, 10, 10), (1.0, 1.0, 3.0)) == ""
    with pytest.raises(GridMismatchError, match="aniso takes 1 x 1 x 3 mm voxels but this volume is 10x10x10 at "
                                                "1 x 1 x 1 mm; store it under a TensorMap of that voxel size"):
        anisotropic.check((10, 10, 10), (1.0, 1.0, 1.0))
