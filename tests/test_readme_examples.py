"""README's worked examples, run as written: the custom TensorMap for a 2 mm cohort (a module of the user's own on
PYTHONPATH, named by --tensormap_prefix), through tensorize, train (--model_preset cpu_brain) and infer_encoders."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
FSL_2MM = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])  # MNI152_T1_2mm's affine


def readme_block(heading: str) -> str:
    """The first ```bash block after ``heading`` in README.md."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(f"\n{heading}\n"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def write_2mm_cohort(folder: Path, subjects: int = 10) -> None:
    """``subjects`` brain-like 91x109x91 volumes at 2 mm (an ellipsoid whose size follows age), a manifest naming
    them ``cohort.t1_2mm`` and a phenotype table."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in (91, 109, 91)], indexing="ij"))
    rows, ages = [], rng.uniform(45, 80, subjects)
    (folder / "nifti").mkdir(parents=True)
    for index, age in enumerate(ages):
        inside = (grid**2).sum(axis=0) < 0.75 - 0.004 * (age - 45)
        volume = (inside * rng.normal(100, 10, inside.shape)).astype(np.float32)
        path = f"nifti/{1000001 + index}_T1_2mm.nii.gz"
        nib.save(nib.Nifti1Image(volume, FSL_2MM), str(folder / path))
        rows.append((str(1000001 + index), "cohort.t1_2mm", path))
    pd.DataFrame(rows, columns=["sample_id", "tensor", "path"]).to_csv(folder / "manifest.csv", index=False)
    pd.DataFrame({"sample_id": [row[0] for row in rows], "age": ages.round(1),
                  "sex": rng.integers(0, 2, subjects)}).to_csv(folder / "phenotypes.csv", index=False)


@pytest.mark.slow
def test_the_readme_custom_tensormap_example_runs_as_written(tmp_path):
    write_2mm_cohort(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", "-e", "-c", readme_block("### A TensorMap for your own grid")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]
    report = pd.read_csv(tmp_path / "tensors" / "tensorize_report.tsv", sep="\t", keep_default_na=False)
    volumes = report[report.tensor == "cohort.t1_2mm"]
    assert set(report.status) == {"written"} and len(volumes) == 10
    assert (volumes.reason == "91x109x91 at 2 x 2 x 2 mm: centrally cropped/padded to cohort.t1_2mm's 96x112x96 on "
                              "read").all()  # the grid check took the 2 mm volumes and said what happens on read
    latents = pd.read_csv(tmp_path / "runs" / "ae_t1_2mm" / "hidden_t1_2mm_ae_t1_2mm.tsv", sep="\t")
    assert latents.shape == (10, 129) and np.isfinite(latents.iloc[:, 1:].to_numpy()).all()
    assert latents.iloc[:, 1:].std().max() > 0  # the latents differ between subjects
    log = (tmp_path / "runs" / "ae_t1_2mm" / "log.txt").read_text()
    assert "adam at learning rate 0.001, batches of 2" in log  # cpu_brain's own settings reached the training
