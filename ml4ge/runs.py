"""Run folders that several modes share: one record per mode, a changed rerun refused, one appended log.

``<output_folder>/<id>/`` may hold runs of several modes (train, then infer_encoders with the same ``--id``, as
ml4h command lines do). Each mode records its settings in ``arguments_<mode>.json`` and never touches another
mode's record; every run appends to ``log.txt``. Rerunning a mode with the same settings resumes it; with other
settings it is refused unless ``--overwrite`` (its outputs would mix two configurations).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ml4ge.arguments import run_folder
from ml4ge.atomic import write_text

log = logging.getLogger(__name__)
LOG_NAME = "log.txt"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RerunError(ValueError):
    """A mode rerun in its run folder with settings other than the recorded ones."""


class RunFolderError(ValueError):
    """The run folder cannot be created or written (a read-only or missing disk, a file in the way)."""


def record_path(folder: Path, mode: str) -> Path:
    """``<folder>/arguments_<mode>.json``."""
    return Path(folder) / f"arguments_{mode}.json"


def settings_record(settings) -> dict:
    """The mode and every flag of ``settings``, JSON-ready (tuples as lists)."""
    return json.loads(json.dumps({"mode": settings.mode, **dataclasses.asdict(settings)}, default=str))


def changed_flags(settings, recorded: dict) -> list[str]:
    """Flags whose value differs from ``recorded``, as ``--flag (was X, now Y)``.

    A flag the record lacks (added to ml4ge since) counts as changed only when it is not at its default; flags in
    ``settings.rerun_may_change`` never count.
    """
    now, default = settings_record(settings), settings_record(type(settings)())
    changed = []
    for name, value in now.items():
        before = recorded.get(name, default[name])
        if name not in settings.rerun_may_change and before != value:
            changed.append(f"--{name} (was {before!r}, now {value!r})")
    return changed


def check_rerun(settings) -> None:
    """Refuse to rerun a mode in a folder where it ran with other settings, unless ``settings.overwrite``.

    Raises:
        RerunError: naming the changed flags and the ways out.
    """
    path = record_path(Path(settings.output_folder) / settings.id, settings.mode)
    if settings.overwrite or not path.is_file():
        return
    changed = changed_flags(settings, json.loads(path.read_text()))
    if changed:
        raise RerunError(f"{path.parent} holds a --mode {settings.mode} run with other flags: {', '.join(changed)}.")


def discard_state(folder: Path, names) -> list[Path]:
    """Remove the named files and folders of ``folder`` (what a rerun would resume from); returns those removed."""
    removed = []
    for name in names:
        path = Path(folder) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def start_run(settings) -> Path:
    """Check a rerun, create the run folder and write this mode's record; returns the folder. With ``--overwrite``
    the mode starts over: its :attr:`~ml4ge.arguments.Settings.state_files` are removed first.

    Raises:
        RerunError: see :func:`check_rerun` (nothing is created then).
        RunFolderError: when the folder or its record cannot be written.
    """
    check_rerun(settings)
    try:
        folder = run_folder(settings)
        removed = discard_state(folder, settings.state_files) if settings.overwrite else []
        if removed:
            log.warning("--overwrite: %s removed; --mode %s starts over in %s.",
                        ", ".join(path.name for path in removed), settings.mode, folder)
        write_text(record_path(folder, settings.mode), json.dumps(settings_record(settings), indent=2,
                                                                  sort_keys=True))
    except OSError as error:
        raise RunFolderError(f"cannot write the run folder {Path(settings.output_folder) / settings.id}: "
                             f"{error.strerror or error}; choose a writable --output_folder.") from None
    return folder


def log_handler(folder: Path) -> logging.FileHandler:
    """A handler appending to ``<folder>/log.txt`` (runs of every mode in the folder add to one log)."""
    handler = logging.FileHandler(Path(folder) / LOG_NAME, mode="a")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


@contextmanager
def run_log(folder: Path) -> Iterator[None]:
    """Log to ``<folder>/log.txt`` (appending) while the block runs."""
    handler = log_handler(folder)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
