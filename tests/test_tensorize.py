"""tensorize: real NIfTI files (nibabel) to real HD5 files (h5py), through the core and through the CLI (faults
and concurrent runs: test_tensorize_faults.py)."""

import h5py
import numpy as np
import pandas as pd
import pytest
from tensorize_helpers import (
    AFFINE,
    PREFIX,
    SHAPE,
    make_inputs,
    mtimes,
    read_report,
    run_cli,
    write_nifti,
)

from ml4ge.arrays import fit_to_shape
from ml4ge.cli import main
from ml4ge.hd5 import hd5_paths, read_dataset
from ml4ge.tensorize import (
    FAILED,
    REPORT_NAME,
    SKIPPED_EXISTING,
    WRITTEN,
    fitted_affine,
)
from ml4ge.tensormaps import phenotypes


def test_corrupt_input_fails_only_its_subject(tmp_path, user_maps):
    volumes, manifest, phenotype_csv = make_inputs(tmp_path / "in")
    status = run_cli(tmp_path, "--manifest", str(manifest), "--phenotype_csv", str(phenotype_csv))
    assert status == 1
    tensors = tmp_path / "tensors"
    assert [p.name for p in hd5_paths(tensors)] == ["s0.hd5", "s1.hd5", "s2.hd5"]
    assert not list(tensors.glob("*.tmp"))
    report = read_report(tensors / REPORT_NAME)
    bad = report[report.sample_id == "bad"].iloc[0]
    assert bad.status == FAILED and "EOFError" in bad.reason and bad.path.endswith("bad.nii.gz")
    assert set(report[report.sample_id != "bad"].status) == {WRITTEN}
    assert (tmp_path / "runs" / "tz" / REPORT_NAME).read_text() == (tensors / REPORT_NAME).read_text()
    with h5py.File(tensors / "s1.hd5", "r") as hd5:
        np.testing.assert_array_equal(read_dataset(hd5, "mri/vol"), volumes["s1"])
        attrs = hd5["mri/vol/instance_0"].attrs
        assert attrs["source"].endswith("s1.nii.gz")
        np.testing.assert_allclose(attrs["affine"], AFFINE)
        np.testing.assert_allclose(attrs["voxel_size"], [2.0, 2.0, 2.5])
        assert attrs["date"] > 0


def test_rerun_writes_nothing_new_and_overwrite_rewrites(tmp_path, user_maps):
    volumes, manifest, phenotype_csv = make_inputs(tmp_path / "in")
    assert run_cli(tmp_path, "--manifest", str(manifest)) == 1
    before = mtimes(tmp_path / "tensors")
    write_nifti(tmp_path / "in" / "s2.nii.gz", volumes["s2"] + 1)  # a changed input must not leak in
    assert run_cli(tmp_path, "--manifest", str(manifest)) == 1  # the corrupt input still fails
    assert mtimes(tmp_path / "tensors") == before
    report = read_report(tmp_path / "tensors" / REPORT_NAME)
    assert list(report.status) == [FAILED, SKIPPED_EXISTING, SKIPPED_EXISTING, SKIPPED_EXISTING]
    with h5py.File(tmp_path / "tensors" / "s2.hd5", "r") as hd5:
        np.testing.assert_array_equal(read_dataset(hd5, "mri/vol"), volumes["s2"])

    assert run_cli(tmp_path, "--manifest", str(manifest), "--overwrite") == 1
    with h5py.File(tmp_path / "tensors" / "s2.hd5", "r") as hd5:
        np.testing.assert_array_equal(read_dataset(hd5, "mri/vol"), volumes["s2"] + 1)
        assert list(hd5["mri/vol"]) == ["instance_0"]


def test_phenotypes_read_back_through_catalogue_maps(tmp_path, user_maps):
    _, _, phenotype_csv = make_inputs(tmp_path / "in", corrupt=False)
    assert run_cli(tmp_path, "--phenotype_csv", str(phenotype_csv)) == 0
    expected_sex = {"s0": [1, 0], "s1": [0, 1], "s2": [0, 1]}
    for i in range(3):
        with h5py.File(tmp_path / "tensors" / f"s{i}.hd5", "r") as hd5:
            age, _ = phenotypes.age.tensor(hd5, f"s{i}")
            sex, _ = phenotypes.sex.tensor(hd5, f"s{i}")
            assert age.tolist() == [60.5 + i]
            assert sex.tolist() == expected_sex[f"s{i}"]
            assert ("phenotypes/grip" in hd5) == (i != 1)  # an empty cell is not written
            assert "mri" not in hd5
    with h5py.File(tmp_path / "tensors" / "s2.hd5", "r") as hd5:
        assert read_dataset(hd5, "phenotypes/grip", 0).tolist() == [28.0]


def test_bad_category_fails_that_subject(tmp_path, user_maps):
    csv = tmp_path / "p.csv"
    pd.DataFrame({"sample_id": ["a", "b"], "sex": ["male", "unknown"], "age": [50, 51]}).to_csv(csv, index=False)
    assert run_cli(tmp_path, "--phenotype_csv", str(csv)) == 1
    report = read_report(tmp_path / "tensors" / REPORT_NAME).set_index("sample_id")
    assert report.loc["a", "status"] == WRITTEN
    assert report.loc["b", "status"] == FAILED and "unknown" in report.loc["b", "reason"]
    assert [p.name for p in hd5_paths(tmp_path / "tensors")] == ["a.hd5"]


def test_resample_stores_the_map_shape_with_its_affine(tmp_path, user_maps):
    folder = tmp_path / "in"
    folder.mkdir()
    ramp = np.broadcast_to(np.arange(SHAPE[0], dtype=np.float32)[:, None, None], SHAPE).copy()
    write_nifti(folder / "r.nii.gz", ramp)
    manifest = folder / "m.csv"
    manifest.write_text("sample_id,tensor,path\nr,brain.small,r.nii.gz\n")
    assert run_cli(tmp_path, "--manifest", str(manifest), "--resample") == 0
    with h5py.File(tmp_path / "tensors" / "r.hd5", "r") as hd5:
        stored = read_dataset(hd5, "mri/vol_small")
        attrs = hd5["mri/vol_small/instance_0"].attrs
        affine, voxel_size, resampled = attrs["affine"], attrs["voxel_size"], attrs["resampled"]
    assert stored.shape == (6, 6, 6, 1)
    np.testing.assert_allclose(stored, fit_to_shape(ramp, (6, 6, 6, 1), resize=True))
    assert resampled
    # The stored affine maps each stored voxel to the source voxel whose ramp value (its x index) it holds.
    source_x = (np.linalg.inv(AFFINE) @ affine @ np.array([[i, 3, 3, 1] for i in range(1, 5)]).T)[0]
    np.testing.assert_allclose(stored[1:5, 3, 3, 0], source_x, atol=1e-4)
    # One zoom factor 6/14: 12x14x10 becomes 5x6x4 voxels (rounded), so each axis scales by have / zoomed.
    np.testing.assert_allclose(voxel_size, [2.0 * 12 / 5, 2.0 * 14 / 6, 2.5 * 10 / 4])


def test_fitted_affine_is_identity_for_equal_shapes():
    np.testing.assert_allclose(fitted_affine(AFFINE, (4, 5, 6), (4, 5, 6)), AFFINE)


@pytest.mark.parametrize(
    "manifest_text, message",
    [
        ("sample_id,tensor,path\na,brain.vo,a.nii\n", "brain.vol"),
        ("sample_id,tensor,path\na,t1_brain_mak,a.nii\n", "t1_brain_mask"),
        ("sample_id,tensor,path\na,t1_brain_mask,a.nii\n", "computed on read"),
        ("sample_id,tensor,path\na,age,a.nii\n", "scalar"),
        ("sample_id,tensor\na,brain.vol\n", "missing column(s) path"),
        ("sample_id,tensor,path,instance\na,brain.vol,a.nii,x\n", "instance 'x'"),
        ("sample_id,tensor,path,instance\na,brain.vol,a.nii,0\na,brain.vol,b.nii,0\n", "twice"),
    ],
)
def test_bad_manifest_fails_before_any_work(tmp_path, user_maps, capsys, manifest_text, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text(manifest_text)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tmp_path, "--manifest", str(manifest))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "tensors").exists()


def test_tensorize_needs_an_input_and_a_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--mode", "tensorize", "--tensors", str(tmp_path / "t"), "--output_folder", str(tmp_path)])
    assert "--manifest" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--mode", "tensorize", "--phenotype_csv", __file__, "--output_folder", str(tmp_path)])
    assert "--tensors" in capsys.readouterr().err


def test_a_volume_without_spread_fails_its_subject(tmp_path, user_maps):
    """A binary mask given as T1 (or a constant image) cannot be z-scored: its subject fails with that reason."""
    folder = tmp_path / "in"
    folder.mkdir()
    mask = np.zeros(SHAPE, np.uint8)
    mask[3:9, 3:9, 3:7] = 1
    write_nifti(folder / "mask.nii.gz", mask)
    write_nifti(folder / "flat.nii.gz", np.full(SHAPE, 50.0, np.float32))
    write_nifti(folder / "good.nii.gz", np.random.default_rng(1).normal(100, 20, SHAPE).astype(np.float32))
    manifest = folder / "m.csv"
    manifest.write_text("sample_id,tensor,path\n" + "".join(f"{n},brain.normed,{n}.nii.gz\n"
                                                            for n in ("mask", "flat", "good")))
    assert run_cli(tmp_path, "--manifest", str(manifest)) == 1
    report = read_report(tmp_path / "tensors" / REPORT_NAME).set_index("sample_id")
    assert report.loc["good", "status"] == WRITTEN
    for name in ("mask", "flat"):
        assert report.loc[name, "status"] == FAILED and "no spread" in report.loc[name, "reason"]
    assert [p.name for p in hd5_paths(tmp_path / "tensors")] == ["good.hd5"]


def test_a_sample_id_too_long_for_a_file_name_is_refused_before_any_work(tmp_path, user_maps, capsys):
    """An id of 300 characters failed every write with ENAMETOOLONG and aborted the run without a report."""
    csv = tmp_path / "p.csv"
    pd.DataFrame({"sample_id": ["a", "x" * 300], "age": [50, 51]}).to_csv(csv, index=False)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tmp_path, "--phenotype_csv", str(csv))
    assert exit_info.value.code == 2
    assert "too long" in capsys.readouterr().err
    assert not (tmp_path / "tensors").exists()


@pytest.mark.parametrize("tensor, prefix", [("ml4ge_test_evil.t1", None), ("ml4ge_test_evil.t1", PREFIX),
                                            (".ml4ge_test_evil.t1", PREFIX), ("brain..t1", PREFIX)])
def test_a_manifest_imports_only_modules_under_the_prefix(tmp_path, user_maps, capsys, monkeypatch, tensor, prefix):
    """The tensor column went to importlib.import_module: ``this.t1`` imported any module and ran its code."""
    marker = tmp_path / "imported"
    (tmp_path / "ml4ge_test_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"sample_id,tensor,path\na,{tensor},a.nii\n")
    flags = ["--tensormap_prefix", prefix] if prefix else []
    with pytest.raises(SystemExit) as exit_info:
        main(["--mode", "tensorize", "--tensors", str(tmp_path / "tensors"), "--output_folder", str(tmp_path / "runs"),
              "--manifest", str(manifest), *flags])
    assert exit_info.value.code == 2
    assert "--tensormap_prefix" in capsys.readouterr().err
    assert not marker.exists()


def test_dotted_names_from_data_without_a_prefix_resolve_in_ml4ge_only():
    from ml4ge.lookup import resolve
    from ml4ge.registry import UnknownNameError

    assert resolve("ml4ge.demo.maps.t1_3mm", from_data=True).name == "t1_3mm"  # the demo's manifest needs no prefix
    with pytest.raises(UnknownNameError, match="--tensormap_prefix"):
        resolve("json.decoder", from_data=True)
    with pytest.raises(UnknownNameError, match="Python names"):
        resolve("brain..t1", "some_prefix")


@pytest.mark.parametrize("text, message", [("sample_id,age\n", "0 rows"), ("sample_id\na\nb\n", "0 value columns"),
                                           ("sample_id,age\n,50\nb,51\n", "row 2 has no sample id")])
def test_a_phenotype_csv_without_rows_values_or_ids_is_refused(tmp_path, capsys, text, message):
    """Found by the property tests: no rows passed validation and wrote nothing; an empty id cell crashed it."""
    csv = tmp_path / "p.csv"
    csv.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tmp_path, "--phenotype_csv", str(csv))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "tensors").exists()
