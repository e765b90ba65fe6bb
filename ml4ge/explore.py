"""Explore a cohort: one row per sample summarising each TensorMap, with the error that stopped it, if any.

Summaries are of the stored values in their own units: ``read_raw`` then ``fit_shape`` (crop/pad, one-hot),
without normalization or augmentation, so a user sees ages in years and intensities as stored. The
normalization is still applied once (and its result discarded) so that a sample that would fail at training
time (an all-zero brain, say) fails here too, with the same message.

Columns per TensorMap ``tm``:

- scalar maps of shape ``(1,)``: ``<tm>``;
- maps with a ``channel_map``: ``<tm>_<label>`` per channel, the channel's mean (the one-hot value for a
  categorical scalar, the class fraction for a segmentation);
- other arrays: ``<tm>_mean``, ``<tm>_std``, ``<tm>_nonzero`` (fraction of nonzero values);
- ``error_<tm>``: empty when the map read fine, else ``<ExceptionType>: <message>``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ml4ge.atomic import write_table
from ml4ge.hd5 import open_sample, sample_id_from_path
from ml4ge.progress import progress
from ml4ge.tensormap import TensorMap

# What marks a sample as bad (the same set the training pipeline skips); anything else is a bug and propagates.
SAMPLE_ERRORS = (KeyError, ValueError, OSError, RuntimeError, IndexError)


def summary_columns(tm: TensorMap) -> list[str]:
    """The summary columns of ``tm`` (see the module docstring), without its error column."""
    if tm.channel_map is not None:
        return [f"{tm.name}_{label}" for label, _ in sorted(tm.channel_map.items(), key=lambda item: item[1])]
    if tm.shape == (1,):
        return [tm.name]
    return [f"{tm.name}_mean", f"{tm.name}_std", f"{tm.name}_nonzero"]


def error_column(tm: TensorMap) -> str:
    return f"error_{tm.name}"


def columns(tmaps: Sequence[TensorMap]) -> list[str]:
    """All columns of an explore table, in order."""
    return ["sample_id"] + [c for tm in tmaps for c in (*summary_columns(tm), error_column(tm))]


def summarise(tm: TensorMap, hd5, sample_id: str) -> dict[str, float]:
    """The summary values of one map for one open sample (raw values after shape fitting).

    Raises:
        KeyError, ValueError, OSError: for a missing dataset, bad values or an unreadable file.
    """
    raw = tm.read_raw(hd5, sample_id)
    tm.validate(raw)
    fitted = tm.fit_shape(raw)
    if tm.normalization is not None:  # fail here as training would; the normalized values are not kept
        tm.normalization.transform(fitted, tm.mask_array(fitted, hd5, sample_id))
    names = summary_columns(tm)
    if tm.channel_map is not None:
        means = fitted.reshape(-1, fitted.shape[-1]).mean(axis=0)
        return {name: float(means[index]) for name, index in zip(names, sorted(tm.channel_map.values()))}
    if tm.shape == (1,):
        return {names[0]: float(fitted.reshape(-1)[0])}
    return {names[0]: float(fitted.mean()), names[1]: float(fitted.std()), names[2]: float(np.mean(fitted != 0))}


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip() or repr(error)}".replace("\t", " ").replace("\n", " ")


def sample_row(path, tmaps: Sequence[TensorMap]) -> dict:
    """One explore row for the HD5 file at ``path``; a file that cannot be opened fills every error column."""
    sample_id = sample_id_from_path(path)
    row: dict = {"sample_id": sample_id}
    try:
        hd5 = open_sample(path)
    except OSError as error:
        return {**row, **{error_column(tm): _describe(error) for tm in tmaps}}
    with hd5:
        for tm in tmaps:
            try:
                row.update(summarise(tm, hd5, sample_id))
                row[error_column(tm)] = ""
            except SAMPLE_ERRORS as error:
                row[error_column(tm)] = _describe(error)
    return row


def map_files(function: Callable, paths: Sequence, num_workers: int = 0, description: str = "",
              show_progress: bool | None = None) -> list:
    """``[function(path) for path in paths]`` in order, over ``num_workers`` processes, with a progress bar.

    h5py serialises reads behind one lock, so parallel reading needs processes. Workers are spawned (not
    forked) so that a parent that has loaded TensorFlow or opened HD5 files hands them a clean state;
    ``function`` must be picklable (a module-level function or a ``functools.partial`` of one).

    Args:
        function: called with one path.
        paths: the files.
        num_workers: processes; 0 or 1 runs in this process.
        description: label of the progress bar.
        show_progress: None shows the bar only on a terminal.
    """
    disable = None if show_progress is None else not show_progress
    if num_workers <= 1 or len(paths) < 2:
        return [function(path) for path in progress(paths, description=description, unit="file", disable=disable)]
    workers = min(num_workers, len(paths))
    chunksize = max(1, min(64, len(paths) // (workers * 8)))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        results = pool.map(function, paths, chunksize=chunksize)
        return list(progress(results, total=len(paths), description=description, unit="file", disable=disable))


def explore(paths: Sequence, tmaps: Sequence[TensorMap], num_workers: int = 0,
            show_progress: bool | None = None) -> pd.DataFrame:
    """The explore table of ``paths`` (columns from :func:`columns`; summaries NaN where a map failed)."""
    rows = map_files(partial(sample_row, tmaps=tuple(tmaps)), [str(p) for p in paths], num_workers, "explore",
                     show_progress)
    frame = pd.DataFrame(rows, columns=columns(tmaps))
    errors = [error_column(tm) for tm in tmaps]
    frame[errors] = frame[errors].fillna("")
    return frame


def failure_counts(frame: pd.DataFrame, tmaps: Sequence[TensorMap]) -> pd.DataFrame:
    """Per TensorMap: samples, failures, and the most common error with its count."""
    rows = []
    for tm in tmaps:
        errors = frame[error_column(tm)]
        failed = errors[errors != ""]
        common = failed.value_counts()
        rows.append({"tensor_map": tm.name, "samples": len(errors), "failures": len(failed),
                     "most_common_error": common.index[0] if len(common) else "",
                     "most_common_count": int(common.iloc[0]) if len(common) else 0})
    return pd.DataFrame(rows, columns=["tensor_map", "samples", "failures", "most_common_error", "most_common_count"])


def write_tsv(frame: pd.DataFrame, path) -> Path:
    """Write ``frame`` as a TSV under a temporary name and rename it, so the table is whole or absent."""
    return write_table(frame, path)
