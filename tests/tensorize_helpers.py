"""Shared by the tensorize tests: a user TensorMap catalogue package, NIfTI inputs with a corrupt one, and the CLI."""

import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ml4ge.cli import main
from ml4ge.hd5 import hd5_paths

SHAPE = (12, 14, 10)
PREFIX = "ml4ge_test_tensorize_maps"
AFFINE = np.array([[2.0, 0, 0, -10], [0, 2.0, 0, -20], [0, 0, 2.5, 5], [0, 0, 0, 1]])


def write_maps_package(root: Path) -> Path:
    """``root/<PREFIX>/brain.py``: ``brain.vol`` (stored at mri/vol), ``brain.small`` (6^3) and ``brain.normed``."""
    package = root / PREFIX
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "brain.py").write_text(textwrap.dedent("""
        from ml4ge.normalizers import brain_zscore
        from ml4ge.tensormap import TensorMap
        vol = TensorMap("user_vol", (12, 14, 10, 1), group="mri", dataset="vol")
        small = TensorMap("user_small", (6, 6, 6, 1), group="mri", dataset="vol_small")
        normed = TensorMap("user_normed", (12, 14, 10, 1), group="mri", dataset="normed",
                           normalization=brain_zscore(), mask="nonzero")
    """))
    return root


def write_nifti(path, volume, affine=AFFINE):
    nib.save(nib.Nifti1Image(volume, affine), str(path))
    return path


def corrupt_copy(source, path):
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_inputs(folder, n_good=3, corrupt=True):
    """``n_good`` NIfTI volumes and one truncated .nii.gz, a manifest naming them, and a phenotype CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    volumes, rows = {}, []
    for i in range(n_good):
        volumes[f"s{i}"] = rng.normal(100, 20, SHAPE).astype(np.float32)
        write_nifti(folder / f"s{i}.nii.gz", volumes[f"s{i}"])
        rows.append((f"s{i}", "brain.vol", f"s{i}.nii.gz"))
    if corrupt:
        corrupt_copy(folder / "s0.nii.gz", folder / "bad.nii.gz")
        rows.append(("bad", "brain.vol", "bad.nii.gz"))
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows, columns=["sample_id", "tensor", "path"]).to_csv(manifest, index=False)
    phenotype_csv = folder / "phenotypes.csv"
    pd.DataFrame({"eid": [f"s{i}" for i in range(n_good)], "age": [60.5 + i for i in range(n_good)],
                  "sex": ["female", "male", 1][:n_good], "grip": [30.0, None, 28.0][:n_good]}).to_csv(
        phenotype_csv, index=False)
    return volumes, manifest, phenotype_csv


def run_cli(tmp_path, *extra):
    return main(["--mode", "tensorize", "--tensors", str(tmp_path / "tensors"), "--output_folder",
                 str(tmp_path / "runs"), "--id", "tz", "--tensormap_prefix", PREFIX, "--num_workers", "0", *extra])


def read_report(path):
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in hd5_paths(folder)}
