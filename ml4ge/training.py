"""Fitting a compiled model: callbacks, steps, resumable runs and the streamed test evaluation.

Resume. A run folder holds ``checkpoints/backup/`` written at the end of every epoch by :class:`RunBackup`
(Keras' ``BackupAndRestore`` with atomic writes). Starting the same run again restores, before the first epoch:

* the model weights and the optimizer state (Adam moments, iteration counter and the learning rate, which is an
  optimizer variable and so carries ReduceLROnPlateau's reductions);
* the epoch counter (training goes on at the epoch after the last finished one);
* the internal state of EarlyStopping (``wait``, ``best``), ReduceLROnPlateau (``wait``, ``best``, ``cooldown``)
  and the best-model checkpoint (``best``), kept beside the weights in ``training_metadata.json``;
* the CSV log, trimmed to the finished epochs so an epoch cut short is not listed twice.

Not restored: the position inside an epoch (a killed epoch is redone from its start), the shuffling order of the
input pipeline, and EarlyStopping's ``best_weights`` (not used: the best weights come from the checkpoint file).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path

import keras

from ml4ge.atomic import atomic_path, write_text

log = logging.getLogger(__name__)

BACKUP_FOLDER = "checkpoints/backup"
BEST_WEIGHTS = "checkpoints/best.weights.h5"
TRAINING_LOG = "training_log.csv"
MONITOR = "val_loss"


def set_seed(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras' global seed generator (``--random_seed``).

    Called before a model is built, so its initialisers, dropout and noise layers draw the same numbers in every
    run with this seed (see the README on how far a run is reproducible on CPU and GPU).
    """
    keras.utils.set_random_seed(int(seed))


def steps_or_none(steps: int | None) -> int | None:
    """``--training_steps``-style flags: 0 or None mean one full pass over the split (None for Keras)."""
    return int(steps) if steps else None


def trim_csv_log(path: Path, epochs: int) -> None:
    """Keep the header and the rows of epochs ``0 .. epochs-1`` of a CSVLogger file (written atomically)."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) < epochs]
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)


def backed_up_epoch(folder: Path) -> int:
    """Epochs finished according to the run folder's backup (0 without one)."""
    metadata = folder / BACKUP_FOLDER / "training_metadata.json"
    return int(json.loads(metadata.read_text())["epoch"]) if metadata.exists() else 0


STATE_ATTRIBUTES = {
    "EarlyStopping": ("wait", "best", "stopped_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
    "ModelCheckpoint": ("best",),
}


class RunBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that writes atomically and also keeps the other callbacks' counters.

    Put it last in the callback list: it restores the counters after the other callbacks reset them in their
    own ``on_train_begin``.

    Args:
        backup_dir: folder for ``latest.weights.h5`` and ``training_metadata.json``.
        stateful: callbacks whose counters (:data:`STATE_ATTRIBUTES`) are saved and restored.
    """

    def __init__(self, backup_dir, stateful=()):
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=True, delete_checkpoint=False)
        self.stateful = list(stateful)
        self.restored_epoch = 0

    def _states(self) -> list[dict]:
        states = []
        for callback in self.stateful:
            names = STATE_ATTRIBUTES.get(type(callback).__name__, ())
            states.append({name: _jsonable(getattr(callback, name, None)) for name in names})
        return states

    def _save_model(self):
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        weights, metadata = Path(self._weights_path), Path(self._training_metadata_path)
        temporary = weights.with_name("writing.weights.h5")  # save_weights needs the .weights.h5 suffix
        self.model.save_weights(str(temporary), overwrite=True)
        if weights.exists():
            os.replace(weights, self._prev_weights_path)
        os.replace(temporary, weights)
        record = {"epoch": self._current_epoch, "batch": 0, "callbacks": self._states()}
        write_text(metadata, json.dumps(record))

    def _load_model(self):
        super()._load_model()
        metadata = Path(self._training_metadata_path)
        if not metadata.exists():
            return
        record = json.loads(metadata.read_text())
        self.restored_epoch = int(record["epoch"])
        for callback, state in zip(self.stateful, record.get("callbacks", [])):
            for name, value in state.items():
                if value is not None:
                    setattr(callback, name, value)
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        log.info("resumed from the backup of epoch %d (learning rate %.3g)", self.restored_epoch, lr)


class NonFiniteLoss(RuntimeError):
    """The training or validation loss became NaN or infinite; the run stops without saving that epoch."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises :class:`NonFiniteLoss` at the first batch, or the validation, whose loss is NaN or infinite.

    First in the callback list: raising in ``on_epoch_end`` before the checkpoint and backup callbacks run keeps
    the last good epoch's ``best.weights.h5`` and backup, and the recipe stops before saving the model.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._check("loss", logs, f"batch {batch + 1} of epoch {self.epoch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        for name in ("loss", MONITOR):
            self._check(name, logs, f"the end of epoch {epoch + 1}")

    def _check(self, name: str, logs, where: str) -> None:
        value = (logs or {}).get(name)
        if value is None or math.isfinite(float(value)):
            return
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        raise NonFiniteLoss(
            f"the {name} is {float(value)} at {where}: training stopped, the model is not saved; the backup and "
            f"best checkpoint of the last finished epoch are kept. Lower --learning_rate (now {rate:.3g}) and rerun "
            "with --overwrite or another --id, or check the inputs for NaN or infinite values.")


class EpochRate(keras.callbacks.Callback):
    """Sets the optimizer's learning rate at the start of each epoch from ``schedule.rate(epoch, ...)`` and logs it."""

    def __init__(self, schedule, learning_rate: float, epochs: int):
        super().__init__()
        self.schedule, self.learning_rate, self.epochs = schedule, float(learning_rate), int(epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = self.schedule.rate(epoch, self.learning_rate, self.epochs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def _jsonable(value):
    if value is None:
        return None
    value = float(keras.ops.convert_to_numpy(value)) if not isinstance(value, int | float) else value
    return None if isinstance(value, float) and math.isinf(value) else value


def make_callbacks(folder: Path, settings, write_outputs: bool = True, extra=()) -> list[keras.callbacks.Callback]:
    """The NaN-loss guard, early stopping, the learning-rate schedule, best-weights checkpoint, CSV log, TensorBoard
    and the backup.

    Args:
        folder: the run folder (or a scratch folder for non-chief workers).
        settings: a :class:`~ml4ge.training_settings.TrainingSettings` (patience, schedule).
        write_outputs: False leaves out TensorBoard (non-chief workers in multi-worker training).
        extra: the family's own callbacks (a KL-weight schedule); they run before the logs are written.

    Returns:
        The callbacks, :class:`StopOnNonFiniteLoss` first and :class:`RunBackup` last.
    """
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    stopping = keras.callbacks.EarlyStopping(monitor=MONITOR, patience=settings.patience, verbose=1)
    plateau = settings.schedule_callback()
    best = keras.callbacks.ModelCheckpoint(str(folder / BEST_WEIGHTS), monitor=MONITOR, save_best_only=True,
                                           save_weights_only=True, verbose=0)
    csv_path = folder / TRAINING_LOG
    logger = keras.callbacks.CSVLogger(str(csv_path), append=True)
    callbacks = [StopOnNonFiniteLoss(), *extra, stopping, plateau, best, logger]
    if write_outputs:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(folder / "tensorboard"), write_graph=False))
    callbacks.append(RunBackup(str(folder / BACKUP_FOLDER), stateful=[stopping, plateau, best]))
    return callbacks


def fit(model, train, valid, folder: Path, settings, training_steps: int | None = None,
        validation_steps: int | None = None, write_outputs: bool = True, callbacks=()) -> keras.callbacks.History:
    """Fit ``model`` on ``train``, validating on ``valid``; resumes from the run folder's backup if there is one.

    Args:
        model: a compiled Keras model.
        train, valid: finite datasets of ``(inputs, targets)`` batches (one pass each).
        folder: the run folder.
        settings: a :class:`~ml4ge.training_settings.TrainingSettings`: epochs (the maximum, counting epochs
            finished before a resume), early-stopping patience and the learning-rate schedule.
        training_steps, validation_steps: steps per epoch; 0 or None mean one full pass. When given, the
            datasets are repeated so an epoch can be longer than one pass.
        write_outputs: False for non-chief workers.
        callbacks: the family's own callbacks.

    Returns:
        The Keras History of this process's epochs (the CSV log has all of them across resumes).
    """
    training_steps, validation_steps = steps_or_none(training_steps), steps_or_none(validation_steps)
    if training_steps:
        train = train.repeat()
    if validation_steps:
        valid = valid.repeat()
    # Before CSVLogger opens the log: rows of an epoch cut short by the kill are dropped, as the epoch is redone.
    trim_csv_log(folder / TRAINING_LOG, backed_up_epoch(folder))
    callbacks = make_callbacks(folder, settings, write_outputs, callbacks)
    return model.fit(train, validation_data=valid, epochs=settings.epochs, steps_per_epoch=training_steps,
                     validation_steps=validation_steps, callbacks=callbacks, verbose=2)


def load_best_weights(model, folder: Path) -> bool:
    """Load the best-validation weights saved during training into ``model``; False when none were saved."""
    path = folder / BEST_WEIGHTS
    if not path.exists():
        return False
    model.load_weights(str(path))
    return True


def evaluate(model, test, test_steps: int | None = None) -> dict[str, float]:
    """Evaluate on ``test`` batch by batch (the split is streamed, never held in memory at once)."""
    steps = steps_or_none(test_steps)
    if steps:
        test = test.repeat()
    results = model.evaluate(test, steps=steps, return_dict=True, verbose=0)
    return {name: float(value) for name, value in results.items()}


def write_metrics(metrics: dict[str, float], path: Path) -> Path:
    """A two-column TSV (``metric``, ``value``), written atomically."""
    lines = ["metric\tvalue"] + [f"{name}\t{value:.6g}" for name, value in metrics.items()]
    write_text(path, "\n".join(lines) + "\n")
    return path
