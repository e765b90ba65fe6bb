"""Small synthetic cohorts written from TensorMaps, for tests, benchmarks and first tries.

Volumes are a noisy ellipsoidal "brain" on a zero background, so brain masks and brain z-scores behave as on
skull-stripped MRI. Scalars are drawn per sample; categorical maps store a category index.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ml4ge.hd5 import HD5_SUFFIX, write_tensor
from ml4ge.tensormap import Interpretation, TensorMap


def ellipsoid_volume(shape, rng: np.random.Generator, fill: float = 0.75) -> np.ndarray:
    """A float32 array of ``shape`` (spatial only) with noisy positive values inside a centred ellipsoid."""
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    radius = sum(g**2 for g in grids)
    inside = radius < fill * rng.uniform(0.85, 1.0)
    values = 100 + 20 * rng.standard_normal(shape) + 50 * (1 - radius)
    return np.where(inside, values, 0).astype(np.float32)


def synthetic_value(tm: TensorMap, rng: np.random.Generator) -> np.ndarray:
    """A value as tensorize would store it for ``tm`` (a category index for categorical maps)."""
    if tm.interpretation == Interpretation.CATEGORICAL and tm.channel_map is not None:
        return np.asarray([rng.integers(tm.shape[-1])])
    if tm.is_scalar:
        return rng.normal(50, 10, size=tm.shape).astype(np.float32)
    spatial = tm.shape[:-1] if tm.shape[-1] == 1 else tm.shape
    return ellipsoid_volume(spatial, rng)


def write_sample(path: Path, tmaps, rng: np.random.Generator) -> None:
    with h5py.File(path, "w") as hd5:
        for tm in tmaps:
            write_tensor(hd5, tm.key, synthetic_value(tm, rng), instance=0, attributes={"source": "synthetic"})


def write_cohort(folder, tmaps, n: int, seed: int = 0, prefix: str = "") -> list[Path]:
    """Write ``n`` files ``<prefix><i>.hd5`` in ``folder`` with a value for each TensorMap; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{prefix}{i}{HD5_SUFFIX}"
        write_sample(path, tmaps, rng)
        paths.append(path)
    return paths
