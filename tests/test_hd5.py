import h5py
import numpy as np
import pytest

from ml4ge.arrays import center_crop_or_pad, fit_to_shape, resample
from ml4ge.hd5 import hd5_paths, instance_names, open_sample, read_dataset, sample_id_from_path, write_tensor
from ml4ge.normalizers import brain_zscore
from ml4ge.tensormap import TensorMap


def test_write_tensor_layout_compression_and_provenance(tmp_path):
    path = tmp_path / "1001.hd5"
    volume = np.random.default_rng(0).random((20, 22, 18)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    with h5py.File(path, "w") as hd5:
        write_tensor(hd5, "ukb_brain_mri/T1", volume, attributes={"source": "/data/t1.nii.gz", "affine": affine})
        write_tensor(hd5, "phenotypes/age", 63.5)
    with open_sample(path) as hd5:
        dataset = hd5["ukb_brain_mri/T1/instance_0"]
        assert dataset.compression == "gzip" and dataset.chunks is not None
        np.testing.assert_array_equal(dataset[()], volume)
        assert dataset.attrs["source"] == "/data/t1.nii.gz"
        np.testing.assert_array_equal(dataset.attrs["affine"], affine)
        assert dataset.attrs["date"] > 0
        assert hd5["phenotypes/age/instance_0"].shape == (1,)
    assert sample_id_from_path(path) == "1001"


def test_instances_are_ordered_numerically(tmp_path):
    with h5py.File(tmp_path / "s.hd5", "w") as hd5:
        for k in (2, 10, 0):
            write_tensor(hd5, "g/x", np.full(3, k), instance=k)
        write_tensor(hd5, "g/x", np.full(3, 11))  # next free instance
        assert instance_names(hd5["g/x"]) == ["instance_0", "instance_2", "instance_10", "instance_11"]
        assert read_dataset(hd5, "g/x", "first")[0] == 0
        assert read_dataset(hd5, "g/x", "last")[0] == 11
        assert read_dataset(hd5, "g/x", 10)[0] == 10  # not instance_2, as a lexicographic sort would give
        with pytest.raises(KeyError, match="has no instance_5"):
            read_dataset(hd5, "g/x", 5)
        with pytest.raises(KeyError, match="missing dataset"):
            read_dataset(hd5, "g/y")


def _write_ml4h_slices(path, volume):
    """ml4h's NIfTI tensorizer layout: one dataset per axial slice."""
    with h5py.File(path, "w") as hd5:
        for i in range(volume.shape[-1]):
            hd5.create_dataset(f"ukb_brain_mri/T1_brain_to_MNI/axial_{i}/instance_0", data=volume[..., i])


def test_ml4h_slice_layout_reads_as_volume_and_as_slice_stack(tmp_path):
    volume = np.random.default_rng(1).random((10, 12, 11)).astype(np.float32) + 1
    path = tmp_path / "2.hd5"
    _write_ml4h_slices(path, volume)
    as_volume = TensorMap("t1_ml4h", (10, 12, 11, 1), group="ukb_brain_mri", dataset="T1_brain_to_MNI")
    as_slices = TensorMap("t1_ml4h_slices", (10, 12, 3), group="ukb_brain_mri", dataset="T1_brain_to_MNI",
                          axial_slices=(2, 5, 10))
    with open_sample(path) as hd5:
        x, mask = as_volume.tensor(hd5)
        np.testing.assert_array_equal(x[..., 0], volume)
        assert mask is None
        slices, _ = as_slices.tensor(hd5)
        np.testing.assert_array_equal(slices, volume[..., [2, 5, 10]])


def test_axial_slices_from_a_volume_dataset(tmp_path):
    volume = np.random.default_rng(2).random((6, 7, 9)).astype(np.float32)
    with h5py.File(tmp_path / "3.hd5", "w") as hd5:
        write_tensor(hd5, "mri/T1", volume)
    tm = TensorMap("t1_s", (6, 7, 2), group="mri", dataset="T1", axial_slices=(0, 8))
    with open_sample(tmp_path / "3.hd5") as hd5:
        np.testing.assert_array_equal(tm.tensor(hd5)[0], volume[..., [0, 8]])


def test_open_sample_rejects_empty_and_non_hdf5(tmp_path):
    (tmp_path / "empty.hd5").write_bytes(b"")
    (tmp_path / "text.hd5").write_text("not hdf5")
    with pytest.raises(OSError, match="empty file"):
        open_sample(tmp_path / "empty.hd5")
    with pytest.raises(OSError, match="not an HDF5 file"):
        open_sample(tmp_path / "text.hd5")


def test_hd5_paths_sorted_and_missing_folder(tmp_path):
    for name in ("b.hd5", "a.hd5", "notes.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in hd5_paths(tmp_path)] == ["a.hd5", "b.hd5"]
    with pytest.raises(FileNotFoundError, match="--tensors folder"):
        hd5_paths(tmp_path / "nope")


def test_center_crop_or_pad_keeps_the_centre():
    x = np.arange(25, dtype=np.float32).reshape(5, 5)
    cropped = center_crop_or_pad(x, (3, 3))
    np.testing.assert_array_equal(cropped, x[1:4, 1:4])
    padded = center_crop_or_pad(x, (7, 5))
    np.testing.assert_array_equal(padded[1:6], x)
    assert padded[0].sum() == 0 and padded[6].sum() == 0


def test_resample_is_isotropic_and_centred():
    x = np.ones((182, 218, 182), dtype=np.float32)
    y = resample(x, (64, 64, 64))
    assert y.shape == (64, 64, 64)
    # 218 -> 64 sets the zoom; 182 -> about 53 voxels, centred with zero margins on both sides.
    profile = y[:, 32, 32]
    nonzero = np.flatnonzero(profile > 0.5)
    assert 51 <= len(nonzero) <= 55
    assert abs(nonzero[0] - (63 - nonzero[-1])) <= 1
    assert fit_to_shape(x, (64, 64, 64, 1), resize=True).shape == (64, 64, 64, 1)


def test_downsampled_map_falls_back_to_full_resolution_on_read(tmp_path):
    full = TensorMap("full", (20, 24, 20, 1), group="mri", dataset="T1", normalization=brain_zscore(), mask="nonzero")
    small = TensorMap("small", (10, 10, 10, 1), group="mri", dataset="T1_10", resize=True, fallback=full,
                      normalization=brain_zscore(), mask="nonzero")
    volume = np.zeros((20, 24, 20), dtype=np.float32)
    volume[5:15, 6:18, 5:15] = 5.0 + np.random.default_rng(3).random((10, 12, 10))
    with h5py.File(tmp_path / "4.hd5", "w") as hd5:
        write_tensor(hd5, "mri/T1", volume)
    with open_sample(tmp_path / "4.hd5") as hd5:
        x, mask = small.tensor(hd5)
    assert x.shape == mask.shape == (10, 10, 10, 1)
    assert 0 < mask.mean() < 1
    assert x[mask.astype(bool)].mean() == pytest.approx(0.0, abs=1e-4)
