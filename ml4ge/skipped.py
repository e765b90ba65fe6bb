"""Bad samples: the error a reader raises for one, and the run's list of skipped samples.

A bad sample (missing dataset, wrong shape, NaN/Inf, corrupt or empty file) never stops a run: the pipeline
records it here and goes on. The list is written to ``<run folder>/skipped_samples.tsv`` with one row per
(sample id, tensor, reason), however many epochs saw it.
"""

from __future__ import annotations

import csv
import os
import threading
from collections import Counter
from pathlib import Path

SKIPPED_FILE = "skipped_samples.tsv"
COLUMNS = ("sample_id", "tensor", "reason")
FILE_TENSOR = "(file)"  # the tensor column when the whole file is unreadable
# Longest reason kept: an error message may quote a value from the file (a 10 MB attribute), which must not be
# copied into the list, the log and every traceback.
MAX_REASON = 300


def shorten(text: str, limit: int = MAX_REASON) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class SampleError(Exception):
    """One sample cannot be used.

    Args:
        sample_id: the file's sample id.
        tensor: name of the TensorMap that failed, or ``"(file)"`` when the file itself is unreadable.
        reason: short description, free of sample-specific text so that reasons can be counted; cut to
            :data:`MAX_REASON` characters.
    """

    def __init__(self, sample_id: str, tensor: str, reason: str):
        reason = shorten(reason)
        super().__init__(f"sample {sample_id!r}, tensor {tensor!r}: {reason}")
        self.sample_id, self.tensor, self.reason = sample_id, tensor, reason

    def __reduce__(self):
        return type(self), (self.sample_id, self.tensor, self.reason)


class NoUsableSamplesError(ValueError):
    """Every sample of a pass failed; the message names the commonest reasons with their counts."""

    @classmethod
    def from_reasons(cls, reasons: Counter, total: int, top: int = 5) -> NoUsableSamplesError:
        """Build the error from a Counter of reasons over ``total`` samples."""
        listed = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common(top))
        return cls(
            f"none of the {total} samples could be read. Commonest reasons: {listed or 'none recorded'}. "
            f"Check --tensors and the TensorMaps' group/dataset names against the HD5 files."
        )


class SkippedSamples:
    """Collects skipped samples in the main process and writes them as a TSV.

    Args:
        path: the run folder (the file is ``<path>/skipped_samples.tsv``) or the path of a ``.tsv`` file.

    Recording is guarded by a lock, so the pipeline's threads may record concurrently. :meth:`write` merges
    with rows already in the file (another dataset of the same run) and replaces it atomically.

    Example:
        >>> skipped = SkippedSamples(run_folder)
        >>> skipped.record("1001", "t1", "KeyError: missing dataset 'ukb_brain_mri/t1'")
        >>> skipped.count, skipped.write()
    """

    def __init__(self, path):
        path = Path(path)
        self.path = path if path.suffix == ".tsv" else path / SKIPPED_FILE
        self._rows: dict[tuple[str, str, str], None] = {}  # insertion-ordered set
        self._lock = threading.Lock()

    def record(self, sample_id: str, tensor: str, reason: str) -> None:
        """Note one skipped (sample, tensor, reason); repeats are listed once."""
        with self._lock:
            self._rows.setdefault((str(sample_id), str(tensor), str(reason)), None)

    def record_error(self, error: SampleError) -> None:
        self.record(error.sample_id, error.tensor, error.reason)

    @property
    def count(self) -> int:
        """Number of distinct (sample, tensor, reason) rows recorded."""
        with self._lock:
            return len(self._rows)

    @property
    def sample_ids(self) -> set[str]:
        with self._lock:
            return {sample_id for sample_id, _, _ in self._rows}

    def rows(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return list(self._rows)

    def reasons(self) -> Counter:
        """How many rows give each reason."""
        return Counter(reason for _, _, reason in self.rows())

    def write(self) -> Path:
        """Write (merging with an existing file) ``skipped_samples.tsv`` atomically and return its path."""
        rows = dict.fromkeys(_read_rows(self.path))
        rows.update(dict.fromkeys(self.rows()))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(COLUMNS)
            writer.writerows(rows)
        os.replace(temporary, self.path)
        return self.path


def _read_rows(path: Path) -> list[tuple[str, str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is not None and tuple(header) != COLUMNS:
            raise ValueError(f"{str(path)!r} has columns {header}, expected {list(COLUMNS)}; move it away.")
        return [tuple(row) for row in reader if len(row) == len(COLUMNS)]
