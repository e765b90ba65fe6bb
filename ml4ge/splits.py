"""Leak-free train/valid/test splits of sample ids: exact ratios, seeded, the same on every machine.

Each id is ranked by ``sha256("<seed>:<id>")``; the first ``round(n * valid_ratio)`` ids of that ranking go to
valid, the next ``round(n * test_ratio)`` to test and the rest to train. The ranking depends only on the seed and
the ids, never on the order files are listed in, the file system, the Python hash seed or the number of
processes; a new sample only lands where its own hash puts it.

Explicit lists (``--train_csv/--valid_csv/--test_csv``) assign their ids first; the ratios then split the ids
left over among the splits without a list. As in ml4h, when a train list is given the left-over ids that are
not drawn for valid or test are left out instead of being added to train. ``--sample_csv`` keeps only the ids
it lists, explicit lists included.

The split is written to the run folder as ``train.csv``, ``valid.csv``, ``test.csv`` (one ``sample_id`` column)
so that later recipes and other tools use the very same ids.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ml4ge.atomic import write_table
from ml4ge.hd5 import HD5_SUFFIX, hd5_paths, sample_id_from_path
from ml4ge.readers import SAMPLE_ID_COLUMNS

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
ID_COLUMN = "sample_id"


@dataclass(frozen=True)
class Split:
    """Sample ids per split, each sorted; ``absent`` lists ids named in explicit CSVs but not available."""

    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]
    absent: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    def ids(self, name: str) -> tuple[str, ...]:
        """The ids of split ``name`` (train, valid or test)."""
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def counts(self) -> dict[str, int]:
        return {name: len(self.ids(name)) for name in SPLITS}


def read_ids(path, known: Iterable[str] = ()) -> list[str]:
    """Sample ids from a CSV/TSV: the ``sample_id``/``eid``/... column of a header, else the first column.

    The first row is a header when one of its cells is a usual id column name, or when its first cell is
    neither a number nor one of the ``known`` ids (ml4h's rule, made safe for string ids).

    Raises:
        ValueError: if the file holds no ids.
    """
    separator = "\t" if str(path).endswith((".tsv", ".tsv.gz", ".txt")) else ","
    frame = pd.read_csv(path, sep=separator, header=None, dtype=str, keep_default_na=False)
    frame = frame.apply(lambda column: column.str.strip())
    if frame.empty:
        raise ValueError(f"{path} holds no sample ids.")
    first_row = [cell.lower() for cell in frame.iloc[0]]
    named = [i for i, cell in enumerate(first_row) if cell in SAMPLE_ID_COLUMNS]
    if named:
        column, rows = min(named, key=lambda i: SAMPLE_ID_COLUMNS.index(first_row[i])), frame.iloc[1:]
    else:
        first = frame.iat[0, 0]
        is_header = first not in set(known) and pd.isna(pd.to_numeric(first, errors="coerce"))
        column, rows = 0, frame.iloc[1:] if is_header else frame
    ids = [i for i in rows.iloc[:, column] if i]
    if not ids:
        raise ValueError(f"{path} holds no sample ids.")
    return ids


def hash_rank(ids: Iterable[str], seed: int) -> list[str]:
    """``ids`` ordered by ``sha256("<seed>:<id>")`` (ties, which need a hash collision, by id)."""
    return sorted(ids, key=lambda i: (hashlib.sha256(f"{seed}:{i}".encode()).hexdigest(), i))


def rounded_count(n: int, ratio: float) -> int:
    """``n * ratio`` rounded half up (Python's ``round`` rounds half to even)."""
    return int(math.floor(n * ratio + 0.5))


def split_ids(
    sample_ids: Iterable[str],
    valid_ratio: float,
    test_ratio: float,
    seed: int,
    sample_csv=None,
    train_csv=None,
    valid_csv=None,
    test_csv=None,
) -> Split:
    """Split ``sample_ids`` into train/valid/test.

    Args:
        sample_ids: the available ids (usually the stems of the HD5 files); order does not matter.
        valid_ratio, test_ratio: fractions of the ids not assigned by an explicit list.
        seed: the ``--random_seed``.
        sample_csv: keep only the ids it lists.
        train_csv, valid_csv, test_csv: explicit assignments.

    Returns:
        A :class:`Split` with sorted ids; ids listed in explicit CSVs but not available are in ``absent``
        (and logged).

    Raises:
        ValueError: for ratios outside [0, 1) or summing to 1 or more, or an id listed in two explicit CSVs.
    """
    if not (0 <= valid_ratio < 1 and 0 <= test_ratio < 1 and valid_ratio + test_ratio < 1):
        raise ValueError(f"valid_ratio {valid_ratio} and test_ratio {test_ratio} must be in [0, 1) and sum below 1.")
    available = {str(i) for i in sample_ids}
    if sample_csv:
        available &= set(read_ids(sample_csv, available))
    explicit = {name: path for name, path in zip(SPLITS, (train_csv, valid_csv, test_csv), strict=True) if path}
    assigned: dict[str, set[str]] = {name: set() for name in SPLITS}
    owner: dict[str, str] = {}
    absent: dict[str, tuple[str, ...]] = {}
    for name, path in explicit.items():
        listed = set(read_ids(path, available))
        for sample_id in sorted(listed):
            if sample_id in owner:
                raise ValueError(f"sample {sample_id!r} is in both --{owner[sample_id]}_csv and --{name}_csv; "
                                 "list each sample in one split only.")
            owner[sample_id] = name
        assigned[name] = listed & available
        if listed - available:
            absent[name] = tuple(sorted(listed - available))
            log.warning("%d id(s) of --%s_csv %s have no HD5 file (or are not in --sample_csv), e.g. %s",
                        len(absent[name]), name, path, ", ".join(absent[name][:3]))
    pool = hash_rank(available - set(owner), seed)
    n_valid = 0 if "valid" in explicit else rounded_count(len(pool), valid_ratio)
    n_test = 0 if "test" in explicit else rounded_count(len(pool), test_ratio)
    assigned["valid"] |= set(pool[:n_valid])
    assigned["test"] |= set(pool[n_valid:n_valid + n_test])
    if "train" not in explicit:
        assigned["train"] |= set(pool[n_valid + n_test:])
    return Split(*(tuple(sorted(assigned[name])) for name in SPLITS), absent=absent)


# Files ----------------------------------------------------------------------------------------------------
def write_split(split: Split, folder) -> dict[str, Path]:
    """Write ``train.csv``, ``valid.csv``, ``test.csv`` (column ``sample_id``) into ``folder``, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in SPLITS:
        path = folder / f"{name}.csv"
        paths[name] = write_table(pd.DataFrame({ID_COLUMN: list(split.ids(name))}), path, sep=",")
    return paths


def has_split(folder) -> bool:
    """Whether ``folder`` holds a written split."""
    return all((Path(folder) / f"{name}.csv").is_file() for name in SPLITS)


def read_split(folder) -> Split:
    """The split written by :func:`write_split` in ``folder``.

    Raises:
        FileNotFoundError: if one of the three files is missing.
    """
    folder = Path(folder)
    ids = {}
    for name in SPLITS:
        path = folder / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; a split folder holds train.csv, valid.csv and test.csv.")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        ids[name] = tuple(frame[ID_COLUMN]) if ID_COLUMN in frame.columns else ()
    return Split(ids["train"], ids["valid"], ids["test"])


def split_paths(
    tensors,
    valid_ratio: float,
    test_ratio: float,
    seed: int,
    sample_csv=None,
    train_csv=None,
    valid_csv=None,
    test_csv=None,
) -> tuple[Split, dict[str, list[Path]]]:
    """Split the HD5 files of ``tensors`` (see :func:`split_ids`).

    Returns:
        ``(split, {"train": [paths], "valid": [...], "test": [...]})``, paths sorted by sample id.

    Raises:
        FileNotFoundError: if ``tensors`` does not exist.
        ValueError: as :func:`split_ids`, and if the folder holds no .hd5 file.
    """
    paths = {sample_id_from_path(p): p for p in hd5_paths(tensors)}
    if not paths:
        raise ValueError(f"--tensors {str(tensors)!r} holds no .hd5 files; run --mode tensorize first.")
    split = split_ids(paths, valid_ratio, test_ratio, seed, sample_csv, train_csv, valid_csv, test_csv)
    return split, {name: [paths[i] for i in split.ids(name)] for name in SPLITS}


def split_for_run(args, folder) -> dict[str, list[Path]]:
    """Paths per split for a run: the split already in ``folder`` (a resumed run), else a new one, written there.

    ``args`` needs ``tensors``, ``valid_ratio``, ``test_ratio``, ``random_seed``, ``sample_csv``, ``train_csv``,
    ``valid_csv`` and ``test_csv``. Ids of a stored split map to ``<tensors>/<id>.hd5`` whether or not the file
    still exists; the input pipeline reports missing ones as bad samples.
    """
    if has_split(folder):
        split = read_split(folder)
        log.info("split: reusing %s in %s", split.counts(), folder)
        return {name: [Path(args.tensors) / f"{i}{HD5_SUFFIX}" for i in split.ids(name)] for name in SPLITS}
    split, paths = split_paths(args.tensors, args.valid_ratio, args.test_ratio, args.random_seed,
                               args.sample_csv, args.train_csv, args.valid_csv, args.test_csv)
    write_split(split, folder)
    log.info("split: %s written to %s", split.counts(), folder)
    return paths
