"""tensorize on NIfTI files that are not 3-D volumes of the map's shape: the wrong rank, not NIfTI at all, 4-D,
or a header that claims a volume too large to read. Each fails its own subject with the reason; the others are
written."""

import h5py
import numpy as np
import pytest
from test_tensorize import SHAPE, write_nifti

from ml4ge.hd5 import read_dataset
from ml4ge.tensorize import FAILED, WRITTEN, Subject, VolumeInput, tensorize_subjects


def test_wrong_rank_and_non_nifti_are_reported(tmp_path):
    flat = write_nifti(tmp_path / "flat.nii", np.ones((12, 14), np.float32))
    text = tmp_path / "text.nii"
    text.write_text("not an image")
    subjects = [Subject(name, (VolumeInput("a", str(path), "mri/a", (*SHAPE, 1)),))
                for name, path in (("flat", flat), ("text", text))]
    rows = {r.sample_id: r for r in tensorize_subjects(subjects, tmp_path / "t")}
    assert rows["flat"].status == FAILED and "cannot take the TensorMap shape" in rows["flat"].reason
    assert rows["text"].status == FAILED and "ImageFileError" in rows["text"].reason


def test_a_4d_nifti_is_refused_and_a_trailing_single_frame_is_3d(tmp_path):
    """A 4-D file was stored whole and read back as its middle frame; one frame (a trailing 1) is a 3-D volume."""
    frames = np.random.default_rng(2).normal(100, 20, (*SHAPE, 3)).astype(np.float32)
    write_nifti(tmp_path / "frames.nii.gz", frames)
    write_nifti(tmp_path / "single.nii.gz", frames[..., :1])
    subjects = [Subject(name, (VolumeInput("a", str(tmp_path / f"{name}.nii.gz"), "mri/a", (*SHAPE, 1)),))
                for name in ("frames", "single")]
    rows = {r.sample_id: r for r in tensorize_subjects(subjects, tmp_path / "t")}
    assert rows["frames"].status == FAILED and "4-D" in rows["frames"].reason and "3 frames" in rows["frames"].reason
    assert rows["single"].status == WRITTEN
    with h5py.File(tmp_path / "t" / "single.hd5", "r") as hd5:
        np.testing.assert_array_equal(read_dataset(hd5, "mri/a"), frames[..., 0])


def claim_shape(path, shape):
    """Rewrite the header's dims of a NIfTI file (plain or gzip) in place: the data stays as it was."""
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = bytearray(handle.read())
    data[40:56] = np.array([len(shape), *shape, *[1] * (7 - len(shape))], "<i2").tobytes()
    with opener(path, "wb") as handle:
        handle.write(bytes(data))
    return path


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_a_header_claiming_a_huge_volume_is_refused_before_reading(tmp_path, name):
    """A header of 30000^3 voxels raised MemoryError and aborted the run without a report."""
    path = claim_shape(write_nifti(tmp_path / name, np.ones(SHAPE, np.float32)), (30000, 30000, 30000))
    good = write_nifti(tmp_path / "good.nii.gz", np.ones(SHAPE, np.float32))
    subjects = [Subject(n, (VolumeInput("a", str(p), "mri/a", (*SHAPE, 1)),))
                for n, p in (("huge", path), ("ok", good))]
    rows = {r.sample_id: r for r in tensorize_subjects(subjects, tmp_path / "t")}
    assert rows["huge"].status == FAILED and "header claims" in rows["huge"].reason
    assert rows["ok"].status == WRITTEN
