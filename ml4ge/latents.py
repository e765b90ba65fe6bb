"""Latent tables: ``hidden_<tmap>_<id>.tsv`` written batch by batch and atomically, split in shards and joined.

A table has the id column(s) then ``latent_0 .. latent_{D-1}``. The id columns are ``sample_id``, or ``FID IID``
(both the sample id) with ``--tsv_style genetics`` so PLINK and REGENIE read the table as a phenotype file.
Shard ``i`` of ``n`` (0-based, ``0 <= i < n``) holds every n-th sample in sample-id order starting at ``i``, so
the shards of one cohort are disjoint and together cover it. :func:`load_latents` reads a table back (either id
style) and :func:`latent_tables` parses ``--latent_tables name=path``; both without compare's modelling libraries,
so a recipe that only reads latents (associate) starts quickly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ID_COLUMNS = {"standard": ("sample_id",), "genetics": ("FID", "IID")}
FLOAT_FORMAT = "%.7g"  # float32 precision
ANY_ID_COLUMNS = ("sample_id", "FID", "IID")  # what a table read by load_latents may start with


def id_columns(tsv_style: str) -> tuple[str, ...]:
    """The id column names of ``--tsv_style``.

    Raises:
        ValueError: for an unknown style.
    """
    if tsv_style not in ID_COLUMNS:
        raise ValueError(f"--tsv_style {tsv_style!r} is not one of {', '.join(ID_COLUMNS)}.")
    return ID_COLUMNS[tsv_style]


def latent_columns(dimension: int) -> list[str]:
    return [f"latent_{i}" for i in range(dimension)]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> ``(i, n)``; None -> None.

    Raises:
        ValueError: unless ``i`` and ``n`` are integers with ``0 <= i < n``.
    """
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise ValueError(f"--shard {text!r} must be i/n with 0 <= i < n (0-based), e.g. 0/4 ... 3/4.")
    return int(match.group(1)), int(match.group(2))


def shard_items(items: Sequence, shard: tuple[int, int] | None) -> list:
    """The items of shard ``(i, n)``: every n-th item starting at ``i``; all items when ``shard`` is None."""
    if shard is None:
        return list(items)
    index, count = shard
    return list(items)[index::count]


def table_name(tmap_name: str, run_id: str, shard: tuple[int, int] | None = None) -> str:
    """``hidden_<tmap>_<id>.tsv`` or ``hidden_<tmap>_<id>.shard_<i>_of_<n>.tsv``."""
    stem = f"hidden_{tmap_name}_{run_id}"
    return f"{stem}.tsv" if shard is None else f"{stem}.shard_{shard[0]}_of_{shard[1]}.tsv"


class LatentTableWriter:
    """Writes a latent table batch by batch to a temporary file, renamed into place only on success.

    Args:
        path: the final table path.
        dimension: D, the latent size.
        tsv_style: ``standard`` or ``genetics``.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "hidden_t1_run.tsv"
        >>> with LatentTableWriter(path, 2) as table:
        ...     table.write(["a"], np.array([[0.5, 1.0]]))
        >>> path.read_text().splitlines()
        ['sample_id\\tlatent_0\\tlatent_1', 'a\\t0.5\\t1']
    """

    def __init__(self, path: Path, dimension: int, tsv_style: str = "standard"):
        self.path = Path(path)
        self.dimension = int(dimension)
        self.ids = id_columns(tsv_style)
        self.temporary = self.path.with_name(self.path.name + ".tmp")
        self.rows = 0
        self._handle = None

    def __enter__(self) -> LatentTableWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.temporary, "w")
        self._handle.write("\t".join([*self.ids, *latent_columns(self.dimension)]) + "\n")
        return self

    def write(self, sample_ids: Sequence[str], latents: np.ndarray) -> None:
        """Append one batch.

        Raises:
            ValueError: if the batch does not hold one D-vector per sample, or holds NaN/Inf.
        """
        latents = np.asarray(latents, dtype=np.float32).reshape(len(sample_ids), -1)
        if latents.shape[1] != self.dimension:
            raise ValueError(f"{self.path.name}: latents have {latents.shape[1]} values per sample, "
                             f"expected {self.dimension}.")
        if not np.all(np.isfinite(latents)):
            bad = [sample_ids[i] for i in np.flatnonzero(~np.isfinite(latents).all(axis=1))]
            raise ValueError(f"{self.path.name}: non-finite latents for samples {bad[:5]}; check the model.")
        ids = np.asarray([[str(s)] * len(self.ids) for s in sample_ids], dtype=object)
        values = np.char.mod(FLOAT_FORMAT, latents)
        for row_ids, row_values in zip(ids, values):
            self._handle.write("\t".join([*row_ids, *row_values]) + "\n")
        self.rows += len(sample_ids)

    def __exit__(self, kind, value, traceback) -> None:
        self._handle.close()
        if kind is None:
            os.replace(self.temporary, self.path)
        else:
            self.temporary.unlink(missing_ok=True)


SHARD_PATTERN = re.compile(r"^(hidden_.+)\.shard_(\d+)_of_(\d+)\.tsv$")


def find_shards(folder: Path) -> dict[str, dict[int, tuple[int, Path]]]:
    """Shard files in ``folder`` by table stem: ``{stem: {i: (n, path)}}``."""
    found: dict[str, dict[int, tuple[int, Path]]] = {}
    for path in sorted(Path(folder).glob("hidden_*.shard_*_of_*.tsv")):
        match = SHARD_PATTERN.match(path.name)
        if match:
            found.setdefault(match.group(1), {})[int(match.group(2))] = (int(match.group(3)), path)
    return found


def merge_table(folder: Path, stem: str, shards: dict[int, tuple[int, Path]]) -> tuple[Path, int]:
    """Join the shards of one table into ``<stem>.tsv``, streaming line by line; returns (path, rows).

    Raises:
        ValueError: if shards disagree on their count, one is missing, headers differ, or a sample id repeats.
    """
    counts = {n for n, _ in shards.values()}
    if len(counts) != 1:
        raise ValueError(f"{stem}: shard files disagree on the number of shards ({sorted(counts)}); "
                         "remove the shards of the old split.")
    count = counts.pop()
    missing = sorted(set(range(count)) - set(shards))
    if missing:
        raise ValueError(f"{stem}: shards {missing} of {count} are missing in {folder}; run --shard i/{count} "
                         "for each before merging.")
    path = Path(folder) / f"{stem}.tsv"
    temporary = path.with_name(path.name + ".tmp")
    seen: set[str] = set()
    header = None
    try:
        with open(temporary, "w") as out:
            for index in range(count):
                header = _append_shard(shards[index][1], out, header, seen)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path, len(seen)


def _append_shard(path: Path, out, header: str | None, seen: set[str]) -> str:
    with open(path) as handle:
        first = handle.readline()
        if header is None:
            out.write(first)
        elif first != header:
            raise ValueError(f"{path.name} has columns that differ from the other shards; were they made by "
                             "different models?")
        for line in handle:
            sample_id = line.split("\t", 1)[0]
            if sample_id in seen:
                raise ValueError(f"sample {sample_id!r} appears in more than one shard ({path.name}); the shards "
                                 "overlap: rerun them with one --shard i/n split.")
            seen.add(sample_id)
            out.write(line)
    return first


def cohort_paths(tensors, sample_csv=None, shard: tuple[int, int] | None = None) -> list[Path]:
    """The ``.hd5`` files of ``tensors`` to infer: those listed in ``sample_csv`` (all without it), then the
    chosen shard, in sample-id order.

    Raises:
        FileNotFoundError: if ``tensors`` does not exist.
        ValueError: if no file is left to infer.
    """
    from ml4ge.hd5 import hd5_paths, sample_id_from_path
    from ml4ge.splits import read_ids

    paths = hd5_paths(tensors)
    if sample_csv:
        wanted = set(read_ids(sample_csv, [sample_id_from_path(p) for p in paths]))
        paths = [p for p in paths if sample_id_from_path(p) in wanted]
    paths = shard_items(paths, shard)
    if not paths:
        raise ValueError(f"no .hd5 file of --tensors {str(tensors)!r} is left to infer (after --sample_csv "
                         f"{sample_csv} and --shard {shard}); check those flags.")
    return paths


def latent_tables(specs: list[str]) -> dict[str, Path]:
    """``name=path`` (or a bare path, named by its stem) -> ``{name: path}``.

    Raises:
        ValueError: for repeated names; FileNotFoundError: for missing files.
    """
    tables: dict[str, Path] = {}
    for spec in specs:
        name, _, path = spec.partition("=") if "=" in spec else (Path(spec).stem, "", spec)
        if name in tables:
            raise ValueError(f"--latent_tables names {name!r} twice; give each table its own name=path.")
        if not Path(path).is_file():
            raise FileNotFoundError(f"--latent_tables {spec!r}: {path!r} does not exist.")
        tables[name] = Path(path)
    return tables


def load_latents(path) -> pd.DataFrame:
    """A latent table written by infer_encoders, indexed by sample id (a string), one float column per dimension.

    Accepts ``sample_id, latent_0 ...`` and the genetics style ``FID IID latent_0 ...`` (IID is the sample id).

    Raises:
        ValueError: without an id column, with repeated ids, non-numeric or missing latent values.
    """
    frame = pd.read_csv(path, sep="\t", dtype={name: str for name in ANY_ID_COLUMNS})
    id_column = "sample_id" if "sample_id" in frame.columns else "IID" if "IID" in frame.columns else None
    if id_column is None:
        raise ValueError(f"{path}: no sample_id or IID column; found {', '.join(map(str, frame.columns[:5]))} ...")
    other_ids = [c for c in ANY_ID_COLUMNS if c in frame.columns and c != id_column]
    frame = frame.set_index(id_column).drop(columns=other_ids)
    frame.index = frame.index.astype(str).rename("sample_id")
    if frame.index.duplicated().any():
        raise ValueError(f"{path}: sample id {frame.index[frame.index.duplicated()][0]!r} appears more than once.")
    try:
        frame = frame.apply(pd.to_numeric)
    except ValueError as error:
        raise ValueError(f"{path}: latent columns must be numbers ({error}).") from error
    if frame.shape[1] == 0:
        raise ValueError(f"{path}: needs at least one latent column after the id column(s).")
    if frame.isna().any().any():
        rows = frame.index[frame.isna().any(axis=1)]
        raise ValueError(f"{path}: {len(rows)} samples have missing latent values (e.g. {list(rows[:3])}); "
                         "rerun infer_encoders for them or drop their rows.")
    return frame


def as_numeric(series: pd.Series, what: str) -> pd.Series:
    """``series`` as floats; a non-numeric column with two distinct values is coded 0/1 (sorted).

    Raises:
        ValueError: for non-numeric columns with more than two distinct values.
    """
    numeric = pd.to_numeric(series, errors="coerce")
    if numeric.notna().sum() == series.notna().sum():
        return numeric.astype(float)
    levels = sorted(series.dropna().astype(str).unique())
    if len(levels) != 2:
        raise ValueError(f"{what} {series.name!r} is not numeric and has {len(levels)} levels ({levels[:5]}); "
                         "code it as numbers or as a two-level (binary) column.")
    return series.map(lambda value: np.nan if pd.isna(value) else float(levels.index(str(value))))
