"""Shared by the recipe tests: a user TensorMap module with tiny maps, a synthetic cohort, tiny model flags."""

import os
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MAPS_MODULE = textwrap.dedent("""
    from ml4ge.normalizers import ZScore, brain_zscore
    from ml4ge.tensormap import TensorMap

    t1 = TensorMap("t1_tiny", (8, 8, 8, 1), group="ukb_brain_mri", dataset="T1", normalization=brain_zscore(),
                   mask="nonzero")
    t2 = TensorMap("t2_tiny", (8, 8, 8, 1), group="ukb_brain_mri", dataset="T2", normalization=brain_zscore(),
                   mask="nonzero")
    age = TensorMap("age_tiny", (1,), group="phenotypes", normalization=ZScore(50, 10))
""")

TINY_MODEL = ["--conv_layers", "4", "--dense_blocks", "8", "--block_size", "1", "--dense_layers", "16",
              "--num_workers", "0"]


def write_maps_package(root: Path, package: str) -> Path:
    """``<root>/<package>/brain.py`` holding t1, t2 and age; returns ``root`` (to put on sys.path)."""
    folder = root / package
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text("")
    (folder / "brain.py").write_text(MAPS_MODULE)
    return root


def write_cohort(root: Path, package: str, n: int, seed: int = 0) -> Path:
    """A cohort of ``n`` HD5 files with t1, t2 and age under ``root/tensors``."""
    import importlib

    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    maps = importlib.import_module(f"{package}.brain")
    from ml4ge.synthetic import write_cohort as write

    write(root / "tensors", [maps.t1, maps.t2, maps.age], n, seed=seed)
    return root / "tensors"


def subprocess_env(maps_root: Path, **extra) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(maps_root), os.environ.get("PYTHONPATH", "")])
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env
