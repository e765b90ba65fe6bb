"""Checkpoint files of a training run, each committed by one rename, so a kill at any instant leaves them whole.

``checkpoints/backup/`` is what a rerun resumes from. It holds one weights file per kept epoch,
``epoch_<n>.weights.h5`` (model and optimizer variables after ``n`` finished epochs), and
``training_metadata.json``, written last: it names the latest weights file with its epoch and the callbacks'
counters, and the record before it. The metadata is the commit point: a weights file written before a kill but
not yet named is ignored, and a file is deleted only once the metadata no longer names it, so an epoch counter
always goes with the weights of that epoch.

:func:`resume_record` takes the latest record whose weights file reads whole; an unreadable one is skipped with a
warning (that epoch is redone); when none is readable it refuses (:class:`ResumeError`) rather than resume with
fresh weights and an old counter.

``checkpoints/best.weights.h5`` (:class:`BestCheckpoint`) is replaced the same way; an unreadable one is treated as
absent, with a warning (:func:`discard_unreadable`).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from pathlib import Path

import h5py
import keras

from ml4ge.atomic import write_text

log = logging.getLogger(__name__)

METADATA = "training_metadata.json"
LEGACY_WEIGHTS = "latest.weights.h5"  # backups written before the metadata named its weights file

STATE_ATTRIBUTES = {
    "EarlyStopping": ("wait", "best", "stopped_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
    "BestCheckpoint": ("best",),
    "ModelCheckpoint": ("best",),
}


class ResumeError(RuntimeError):
    """A run folder's backup exists but cannot be resumed from."""


def weights_image(model) -> bytes:
    """The ``.weights.h5`` file ``model.save_weights`` would write (model and optimizer variables), built in memory.

    Not ``save_weights`` to the file itself: when a write fails there (a full disk), HDF5 segfaults while h5py
    closes the half-written file, and the run dies with status 139 before any error is reported. Built in memory
    (as Keras builds the weights inside a ``.keras`` archive) the file is then written by Python, whose OSError
    reaches the recipe. Keras 3 has no public call for this; ``tests/test_training_faults.py`` would catch a
    change.
    """
    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    store.close()
    return buffer.getvalue()


def save_weights(model, path) -> Path:
    """Write ``model``'s weights to ``path`` under a temporary name, synced, then renamed over ``path``: a kill
    mid-write leaves the previous file whole, and a full disk raises an OSError naming the file (never a
    segfault).
    """
    path = Path(path)
    temporary = path.with_name(f"writing.{os.getpid()}.{path.name}")
    image = weights_image(model)
    try:
        with open(temporary, "wb") as handle:
            handle.write(image)
            handle.flush()
            os.fsync(handle.fileno())  # the data is on disk before the rename makes it the checkpoint
        os.replace(temporary, path)
    except OSError as error:
        raise OSError(error.errno, f"cannot write {path} ({len(image) / 1e6:.3g} MB): {error.strerror}; free disk "
                      f"space there or choose another --output_folder, then rerun to resume") from error
    finally:
        temporary.unlink(missing_ok=True)
    return path


def unreadable(path) -> str | None:
    """Why the HDF5 file at ``path`` cannot be read in full (every dataset is read), or None when it can."""
    def read(_name, item):
        if isinstance(item, h5py.Dataset):
            item[()]
        return None  # visititems stops at the first non-None value

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(read)
    except (OSError, ValueError, KeyError, RuntimeError) as error:  # h5py's errors for a damaged file
        return f"{type(error).__name__}: {error}"
    return None


def discard_unreadable(path) -> None:
    """Delete the checkpoint at ``path`` when it cannot be read (a write cut short), with a warning."""
    path = Path(path)
    problem = path.exists() and unreadable(path)
    if problem:
        log.warning("%s is unreadable (%s): treated as absent and deleted; the next better epoch writes it again",
                    path, problem)
        path.unlink()


def read_metadata(backup_dir) -> dict | None:
    """The backup's committed record, or None when there is none yet.

    Raises:
        ResumeError: if the metadata file is not JSON with an ``epoch``.
    """
    path = Path(backup_dir) / METADATA
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        int(record["epoch"])
    except (ValueError, KeyError, TypeError) as error:
        raise ResumeError(f"cannot resume: {path} is unreadable ({error}); rerun with --overwrite to start the run "
                          "again.") from error
    return record


def resume_record(backup_dir) -> dict | None:
    """The latest backup record whose weights file reads whole (``epoch``, ``weights``, ``callbacks``), or None
    when the run has no backup yet.

    Raises:
        ResumeError: when a backup exists but none of its weights files can be read.
    """
    record = read_metadata(backup_dir)
    if record is None:
        return None
    problems = []
    for candidate in (record, record.get("previous")):
        if not candidate:
            continue
        path = Path(backup_dir) / candidate.get("weights", LEGACY_WEIGHTS)
        problem = unreadable(path) if path.exists() else "missing"
        if problem is None:
            if problems:
                log.warning("the backup weights of epoch %s are unreadable (%s); resuming from the backup of epoch "
                            "%s instead (that epoch is redone)", record["epoch"], problems[0], candidate["epoch"])
            return candidate
        problems.append(f"epoch {candidate['epoch']}: {path} {problem}")
    raise ResumeError(f"cannot resume: no backup weights can be read ({'; '.join(problems)}); rerun with "
                      "--overwrite to start the run again.")


class RunBackup(keras.callbacks.Callback):
    """Writes the backup at the end of every epoch and restores a resumed run's weights and counters.

    Put it last in the callback list: it saves after the other callbacks updated their counters, and restores
    them after the other callbacks reset them in their own ``on_train_begin``. The epoch to start at is given to
    ``fit`` by the caller (``resume["epoch"]``).

    Args:
        backup_dir: the folder of the weights files and ``training_metadata.json``.
        stateful: callbacks whose counters (:data:`STATE_ATTRIBUTES`) are saved and restored.
        resume: the record of :func:`resume_record` to restore, or None for a fresh run.
    """

    def __init__(self, backup_dir, stateful=(), resume: dict | None = None):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.stateful = list(stateful)
        self.resume = resume
        self.latest = _without_previous(resume)
        self.restored_epoch = 0

    def on_train_begin(self, logs=None):
        if self.resume:
            self._restore(self.resume)

    def on_epoch_end(self, epoch, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch_{epoch + 1:04d}.weights.h5"
        save_weights(self.model, self.backup_dir / name)
        record = {"epoch": epoch + 1, "weights": name, "callbacks": self._states()}
        write_text(self.backup_dir / METADATA, json.dumps({**record, "previous": self.latest}))  # the commit
        kept = {name, (self.latest or {}).get("weights")}
        self.latest = record
        for path in self.backup_dir.glob("*.weights.h5"):
            if path.name not in kept:
                path.unlink(missing_ok=True)  # older epochs, and weights written before a kill but never named

    def _states(self) -> list[dict]:
        states = []
        for callback in self.stateful:
            names = STATE_ATTRIBUTES.get(type(callback).__name__, ())
            states.append({name: _jsonable(getattr(callback, name, None)) for name in names})
        return states

    def _restore(self, record: dict) -> None:
        path = self.backup_dir / record.get("weights", LEGACY_WEIGHTS)
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # so its variables are loaded too
        try:
            self.model.load_weights(str(path))
        except (OSError, ValueError) as error:
            raise ResumeError(f"cannot resume: the backup weights of epoch {record['epoch']} ({path}) do not load "
                              f"into this model ({error}); rerun with --overwrite to start the run again.") from error
        self.restored_epoch = int(record["epoch"])
        for callback, state in zip(self.stateful, record.get("callbacks", [])):
            for name, value in state.items():
                if value is not None:
                    setattr(callback, name, value)
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        log.info("resumed from the backup of epoch %d (learning rate %.3g)", self.restored_epoch, lr)


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the weights of the epoch with the lowest ``monitor`` so far, atomically (see :func:`save_weights`).

    An epoch without the monitored value, or with no checkpoint file on disk (deleted as unreadable), saves too.
    """

    def __init__(self, path, monitor: str):
        super().__init__()
        self.path, self.monitor, self.best = Path(path), monitor, math.inf

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is not None and self.path.exists() and not float(current) < self.best:
            return
        if current is not None:
            self.best = float(current)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save_weights(self.model, self.path)


def _without_previous(record: dict | None) -> dict | None:
    return None if record is None else {key: value for key, value in record.items() if key != "previous"}


def _jsonable(value):
    if value is None:
        return None
    value = float(keras.ops.convert_to_numpy(value)) if not isinstance(value, int | float) else value
    return None if isinstance(value, float) and math.isinf(value) else value
