"""Write a small synthetic cohort as NIfTI files plus a manifest and a phenotype CSV, for the quickstart.

Each subject has a T1-like and a T2-FLAIR-like volume of an ellipsoidal brain whose size follows sex and whose
central "ventricles" grow with age, so the learned latents have signal to find. The real demo cohort built on
the MNI152 template is a separate, later piece of work.

Usage: python examples/make_quickstart_data.py OUTPUT_FOLDER [--subjects N] [--size S] [--seed K]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd


def subject_volumes(age: float, male: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    grids = np.meshgrid(*[np.linspace(-1, 1, size)] * 3, indexing="ij")
    scale = 0.78 + 0.06 * male + 0.02 * rng.standard_normal()
    radius = np.sqrt(grids[0] ** 2 / 0.8 + grids[1] ** 2 + grids[2] ** 2 / 0.8) / scale
    brain = radius < 1
    ventricle = radius < 0.12 + 0.25 * (age - 45) / 35
    noise = rng.standard_normal((size, size, size))
    t1 = np.where(brain, 300 + 80 * (1 - radius) - 200 * ventricle + 10 * noise, 0)
    t2 = np.where(brain, 200 + 60 * radius + 250 * ventricle + 10 * noise, 0)
    return t1.astype(np.float32), t2.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    out = Path(args.output)
    (out / "nifti").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    rows, phenotypes = [], []
    affine = np.diag([182 / args.size, 218 / args.size, 182 / args.size, 1.0])
    for i in range(args.subjects):
        sample_id = str(1000 + i)
        age, male = float(rng.uniform(45, 80)), int(rng.integers(2))
        for name, volume in zip(("t1_64", "t2_64"), subject_volumes(age, male, args.size, rng)):
            path = out / "nifti" / f"{sample_id}_{name}.nii.gz"
            nib.save(nib.Nifti1Image(volume, affine), path)
            rows.append({"sample_id": sample_id, "tensor": name, "path": str(path)})
        phenotypes.append({"sample_id": sample_id, "age": round(age, 2), "sex": male})
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    pd.DataFrame(phenotypes).to_csv(out / "phenotypes.csv", index=False)
    print(f"wrote {args.subjects} subjects to {out}")


if __name__ == "__main__":
    main()
