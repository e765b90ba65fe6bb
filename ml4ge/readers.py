"""Readers for TensorMaps whose values do not come from one HD5 dataset: derived masks, CSV phenotypes.

Readers are small picklable callables ``reader(tm, hd5, sample_id) -> array`` so that TensorMaps using them can
travel to worker processes. Files are opened on first use, never at import or construction time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from ml4ge.hd5 import read_dataset

SAMPLE_ID_COLUMNS = ("sample_id", "sampleid", "eid", "iid", "id")


@dataclass(frozen=True)
class NonzeroOf:
    """The nonzero voxels of another TensorMap's raw array (a brain mask of a skull-stripped image)."""

    source: object  # a TensorMap

    def __call__(self, tm, hd5, sample_id: str = "") -> np.ndarray:
        return (self.source.read_raw(hd5, sample_id) != 0).astype(np.float32)


@dataclass(frozen=True)
class MeanScaled:
    """Another TensorMap's raw array divided by its own mean over the whole stored volume (SFCN's input scaling).

    The mean is taken before the map's centre crop, as the seed divides the 182x218x182 image and then crops it.

    Raises:
        DegenerateSampleError (a ValueError: the sample is skipped with this reason): for a mean that is not a
            finite positive number (an empty or negative image).
    """

    source: object  # a TensorMap

    def __call__(self, tm, hd5, sample_id: str = "") -> np.ndarray:
        from ml4ge.normalizers import DegenerateSampleError

        raw = np.asarray(self.source.read_raw(hd5, sample_id), dtype=np.float64)
        mean = float(raw.mean()) if raw.size else float("nan")
        if not (np.isfinite(mean) and mean > 0):
            raise DegenerateSampleError(f"{tm.name}: cannot divide by the image mean ({mean}); SFCN's scaling needs "
                                        "an image of non-negative intensities that is not all zero")
        return (raw / mean).astype(np.float32)


def sample_id_column(frame: pd.DataFrame, path: str = "") -> str:
    """The column of ``frame`` holding sample ids: the first of the usual names present, else the first column."""
    lowered = {str(c).lower(): c for c in frame.columns}
    for name in SAMPLE_ID_COLUMNS:
        if name in lowered:
            return lowered[name]
    return frame.columns[0]


@lru_cache(maxsize=16)
def read_table(path: str) -> pd.DataFrame:
    """A CSV/TSV (separator sniffed from the extension) indexed by sample id as strings; cached per process."""
    separator = "\t" if str(path).endswith((".tsv", ".tsv.gz", ".txt")) else ","
    frame = pd.read_csv(path, sep=separator, dtype={0: str})
    id_column = sample_id_column(frame, path)
    frame[id_column] = frame[id_column].astype(str)
    if frame[id_column].duplicated().any():
        duplicated = frame.loc[frame[id_column].duplicated(), id_column].iloc[0]
        raise ValueError(f"{path}: sample id {duplicated!r} appears more than once; keep one row per sample.")
    return frame.set_index(id_column)


@dataclass(frozen=True)
class CsvColumn:
    """One column of a CSV/TSV keyed by sample id.

    Raises (when called):
        KeyError: if the sample or the column is absent, or the value is empty.
    """

    path: str
    column: str

    def __call__(self, tm, hd5, sample_id: str = "") -> np.ndarray:
        table = read_table(self.path)
        if self.column not in table.columns:
            raise KeyError(f"column {self.column!r} not in {self.path}; it has {', '.join(map(str, table.columns))}")
        if sample_id not in table.index:
            raise KeyError(f"sample {sample_id!r} not in {self.path}")
        value = table.at[sample_id, self.column]
        if pd.isna(value):
            raise KeyError(f"sample {sample_id!r} has no {self.column!r} value in {self.path}")
        return np.asarray([value], dtype=np.float32)


@dataclass(frozen=True)
class PhenotypeColumns:
    """Several scalars of one sample stored by tensorize at ``<group>/<column>`` as one vector (a tabular domain).

    Raises (when called):
        KeyError: if any column is missing (an optional domain is then absent as a whole).
    """

    columns: tuple[str, ...]
    group: str = "phenotypes"

    def __call__(self, tm, hd5, sample_id: str = "") -> np.ndarray:
        return np.concatenate([np.asarray(read_dataset(hd5, f"{self.group}/{column}", tm.instance),
                                          np.float32).reshape(-1) for column in self.columns])
