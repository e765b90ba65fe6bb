"""Atomic outputs: every file is written under a temporary name and renamed, so it is whole or absent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers infer the format); rename on success.

    The temporary name carries the process id: processes writing the same file (the workers of a multi-worker
    run all save ``arguments_train.json``) each rename their own whole copy, and the last one stays.
    On an exception the temporary file is removed and the exception propagates; ``path`` is left untouched.
    """
    path = Path(path)
    temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def write_table(frame: pd.DataFrame, path, sep: str = "\t") -> Path:
    """Write ``frame`` without its index (TSV by default) atomically."""
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, sep=sep, index=False)
    return Path(path)
