"""Shared by the predictor tests: a TensorMap package of tiny volumes, tabular domains and targets, and a cohort
whose T2 is missing for 30 % of subjects."""

import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np

PACKAGE = "predictor_maps"
MAPS = textwrap.dedent("""
    from ml4ge.tensormap import TensorMap
    from ml4ge.tensormaps.phenotypes import domain

    t1 = TensorMap("t1_p", (8, 8, 8, 1), group="mri", dataset="T1")
    t2 = TensorMap("t2_p", (8, 8, 8, 1), group="mri", dataset="T2")
    volumes = domain("volumes_p", ["brain_volume", "gm_volume"])
    constitutional = domain("constitutional_p", ["age", "weight"])
    age = TensorMap("age", (1,), group="phenotypes")
    sex = TensorMap("sex", (2,), interpretation="categorical", group="phenotypes", channel_map={"f": 0, "m": 1})
""")
TINY = ["--predictor_stages", "4", "4", "--predictor_width", "8", "--num_workers", "0", "--batch_size", "6",
        "--valid_ratio", "0.2", "--test_ratio", "0.25", "--epochs", "2", "--learning_rate", "0.001"]


def write_predictor_cohort(root: Path, subjects: int = 40) -> Path:
    """``root/<PACKAGE>/maps.py`` (put on sys.path) and ``root/tensors/*.hd5``: T1 carries age and sex, T2 (missing
    for 30 %) a noisy copy, the phenotype columns age, sex (a third male), weight and two volumes."""
    (root / PACKAGE).mkdir(parents=True)
    (root / PACKAGE / "__init__.py").write_text("")
    (root / PACKAGE / "maps.py").write_text(MAPS)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    rng = np.random.default_rng(0)
    tensors = root / "tensors"
    tensors.mkdir()
    for index in range(subjects):
        sex, age = index % 3 == 0, rng.uniform(45, 80)
        with h5py.File(tensors / f"s{index:03d}.hd5", "w") as hd5:
            t1 = rng.normal(size=(8, 8, 8, 1)) + 0.05 * age + sex
            hd5.create_dataset("mri/T1", data=t1.astype("float32"))
            if index % 10 >= 3:
                hd5.create_dataset("mri/T2", data=(t1 + rng.normal(size=t1.shape)).astype("float32"))
            for name, value in {"age": age, "sex": int(sex), "weight": 70 + 10 * sex,
                                "brain_volume": 1200 - 3 * age, "gm_volume": 600 - 2 * age}.items():
                hd5.create_dataset(f"phenotypes/{name}/instance_0", data=[value])
    return tensors
