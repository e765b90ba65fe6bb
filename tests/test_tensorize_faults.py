"""tensorize under faults and concurrency: a subject written whole or not at all, an interrupted write, two
worker processes, two runs on one folder, another run's temporary files, and a full disk."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
from recipe_helpers import REPO, subprocess_env
from tensorize_helpers import PREFIX, SHAPE, make_inputs, read_report, run_cli, write_nifti

from ml4ge.hd5 import hd5_paths, read_dataset
from ml4ge.tensorize import FAILED, NOT_WRITTEN, REPORT_NAME, WRITTEN, Subject, VolumeInput, tensorize_subjects


def test_subject_is_written_whole_or_not_at_all(tmp_path):
    good = write_nifti(tmp_path / "good.nii", np.ones(SHAPE, np.float32))
    rows = tensorize_subjects([Subject("x", (
        VolumeInput("a", str(good), "mri/a", (*SHAPE, 1)),
        VolumeInput("b", str(tmp_path / "missing.nii.gz"), "mri/b", (*SHAPE, 1)),
    ))], tmp_path / "tensors")
    assert [(r.tensor, r.status) for r in rows] == [("a", NOT_WRITTEN), ("b", FAILED)]
    assert "FileNotFoundError" in rows[1].reason
    assert not list((tmp_path / "tensors").iterdir())


def test_interrupted_write_leaves_no_hd5(tmp_path, monkeypatch):
    import ml4ge.tensorize as tensorize

    volume = write_nifti(tmp_path / "v.nii", np.ones(SHAPE, np.float32))

    def interrupted(volume_input):
        raise KeyboardInterrupt

    monkeypatch.setattr(tensorize, "prepare_volume", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tensorize_subjects([Subject("x", (VolumeInput("a", str(volume), "mri/a", (*SHAPE, 1)),))], tmp_path / "t")
    assert not list((tmp_path / "t").iterdir())


@pytest.mark.slow
def test_two_worker_processes_write_the_same_files(tmp_path, user_maps):
    volumes, manifest, phenotype_csv = make_inputs(tmp_path / "in")
    status = run_cli(tmp_path, "--manifest", str(manifest), "--phenotype_csv", str(phenotype_csv),
                     "--num_workers", "2")
    assert status == 1
    assert [p.name for p in hd5_paths(tmp_path / "tensors")] == ["s0.hd5", "s1.hd5", "s2.hd5"]
    for sample_id, volume in volumes.items():
        with h5py.File(tmp_path / "tensors" / f"{sample_id}.hd5", "r") as hd5:
            np.testing.assert_array_equal(read_dataset(hd5, "mri/vol"), volume)


def test_another_runs_temporary_file_is_left_alone(tmp_path):
    """Two runs on one folder shared the name <id>.hd5.tmp and deleted (or truncated) each other's files."""
    volume = write_nifti(tmp_path / "v.nii", np.ones(SHAPE, np.float32) + np.arange(SHAPE[2]))
    folder = tmp_path / "t"
    folder.mkdir()
    foreign = [folder / "x.hd5.tmp", folder / "x.hd5.1.tmp"]  # the old shared name; another process's name
    for path in foreign:
        path.write_bytes(b"another run is writing this")
    rows = tensorize_subjects([Subject("x", (VolumeInput("a", str(volume), "mri/a", (*SHAPE, 1)),))], folder)
    assert [r.status for r in rows] == [WRITTEN]
    assert [path.read_bytes() for path in foreign] == [b"another run is writing this"] * 2
    assert sorted(p.name for p in folder.iterdir()) == ["x.hd5", "x.hd5.1.tmp", "x.hd5.tmp"]


@pytest.mark.slow
def test_two_runs_on_one_folder_write_whole_files(tmp_path, user_maps):
    """Two tensorize processes with --overwrite on one folder: every file they leave is whole, none is left over."""
    folder, rng = tmp_path / "in", np.random.default_rng(5)
    folder.mkdir()
    volumes = {f"s{i}": rng.normal(100, 20, SHAPE).astype(np.float32) for i in range(12)}
    for sample_id, volume in volumes.items():
        write_nifti(folder / f"{sample_id}.nii.gz", volume)
    manifest = folder / "m.csv"
    manifest.write_text("sample_id,tensor,path\n" + "".join(f"{i},brain.vol,{i}.nii.gz\n" for i in volumes))
    command = [sys.executable, str(REPO / "recipes.py"), "--mode", "tensorize", "--tensors", str(tmp_path / "tensors"),
               "--tensormap_prefix", PREFIX, "--manifest", str(manifest), "--overwrite", "--num_workers", "0"]
    for trial in range(3):
        runs = [subprocess.Popen([*command, "--output_folder", str(tmp_path / f"runs{trial}"), "--id", f"r{i}"],
                                 env=subprocess_env(user_maps), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for i in range(2)]
        errors = [run.communicate()[1].decode() for run in runs]
        assert [run.returncode for run in runs] == [0, 0], errors
        expected = sorted([*(f"{sample_id}.hd5" for sample_id in volumes), REPORT_NAME])
        assert sorted(p.name for p in (tmp_path / "tensors").iterdir()) == expected
        for sample_id, volume in volumes.items():
            with h5py.File(tmp_path / "tensors" / f"{sample_id}.hd5", "r") as hd5:
                np.testing.assert_array_equal(read_dataset(hd5, "mri/vol"), volume)


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from ml4ge.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_full_disk_stops_with_a_clear_error_and_keeps_the_report(tmp_path, user_maps):
    """A failed write segfaulted tensorize (exit 139) after "No space left on device", with no report."""
    folder, rng = tmp_path / "in", np.random.default_rng(4)
    folder.mkdir()
    for sample_id, shape in (("a", SHAPE), ("b", SHAPE), ("c", (40, 40, 40)), ("d", SHAPE)):
        write_nifti(folder / f"{sample_id}.nii.gz", rng.normal(100, 20, shape).astype(np.float32))
    manifest = folder / "m.csv"
    manifest.write_text("sample_id,tensor,path\n" + "".join(f"{i},brain.vol,{i}.nii.gz\n" for i in "abcd"))
    tensors = tmp_path / "tensors"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, "100000", "--mode", "tensorize", "--tensors", str(tensors),
                           "--output_folder", str(tmp_path / "runs"), "--id", "full", "--tensormap_prefix", PREFIX,
                           "--manifest", str(manifest), "--num_workers", "0"],
                          env=subprocess_env(user_maps), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    last_line = done.stderr.strip().splitlines()[-1]
    assert "File too large" in last_line and "disk" in last_line and "c.hd5" in last_line
    report = read_report(tensors / REPORT_NAME)
    assert list(zip(report.sample_id, report.status)) == [("a", WRITTEN), ("b", WRITTEN)]
    assert (tmp_path / "runs" / "full" / REPORT_NAME).exists()
    assert sorted(p.name for p in tensors.iterdir()) == ["a.hd5", "b.hd5", REPORT_NAME]
