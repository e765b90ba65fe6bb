"""The default demo cohort's fingerprint: options that add to the cohort (patients, the ageing SNP) must leave the
cohort without them byte for byte what it was."""

from __future__ import annotations

import hashlib

from ml4ge.demo.cohort import write_demo_cohort

VOXEL_MM, SEED = 6.0, 3
# sha256 of files of write_demo_cohort(subjects=20, voxel_mm=6.0, snps=200, seed=3), computed with the generator as
# it was before the patient group existed (commit eeafdfd) and unchanged since.
DEFAULT_FINGERPRINT = {
    "phenotypes": "67a2829b6f4384c6866095224d13ce142b375031e1fa8c6220a98bcdb1803afb",
    "covariates": "89f7f04c7e86d20d307115efd3a4c9474a61be0f90ae762f69ce008576fe5c42",
    "bed": "797be24bba8d30ac6c2dfdd611b97813066a46a14d13a2e5c9f3a89a02729594",
    "truth": "ca72e7eeed9ee5e9cf84eeec104604f89a59c5373e8b93488b00c692d68b2e66",
    "manifest": "bb7f77b40b9850445c72d79ae417fe8bea407b8d078f281a92d75a9848faf6f4",
    "t1/sub0002": "f7a3365b368f049d7fa0d7fe71a3b3f5cf6a8e3e476293bb159a652685c14b37",
    "t1/sub0013": "189d860fbbf78224a6b84b51c7177bcc1867b1f0eba422560d251221163c3972",
    "t2/sub0002": "1ca14bc836040192f373ea57ae9209aac02d2760d46692bffd72897eaee044dd",
    "t2/sub0013": "54e0325424b9014ae350748281cb39b273a50dadd0de8f433802ffad19d61405",
}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def default_cohort_fingerprint(folder, **options) -> tuple[dict, dict]:
    """``(paths, fingerprint)`` of the small default cohort written to ``folder`` with ``options``."""
    paths = write_demo_cohort(folder, subjects=20, voxel_mm=VOXEL_MM, snps=200, seed=SEED, **options)
    files = {name: paths[name] for name in ("phenotypes", "covariates", "bed", "truth", "manifest")}
    files |= {f"{c}/{s}": paths[c] / f"{s}.nii.gz" for c in ("t1", "t2") for s in ("sub0002", "sub0013")}
    return paths, {name: sha256(path) for name, path in files.items()}
