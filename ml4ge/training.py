"""Fitting a compiled model: callbacks, steps, resumable runs and the streamed test evaluation.

Resume. A run folder holds ``checkpoints/backup/`` written at the end of every epoch by
:class:`~ml4ge.checkpoints.RunBackup` (weights and epoch committed together; see :mod:`ml4ge.checkpoints`).
Starting the same run again restores, before the first epoch:

* the model weights and the optimizer state (Adam moments, iteration counter and the learning rate, which is an
  optimizer variable and so carries ReduceLROnPlateau's reductions);
* the epoch counter (training goes on at the epoch after the last finished one);
* the internal state of EarlyStopping (``wait``, ``best``), ReduceLROnPlateau (``wait``, ``best``, ``cooldown``)
  and the best-model checkpoint (``best``), kept beside the weights in ``training_metadata.json``;
* the CSV log, trimmed to the finished epochs so an epoch cut short is not listed twice.

An unreadable latest backup falls back to the one before it; with none readable the run refuses to resume
(:class:`~ml4ge.checkpoints.ResumeError`). A loss that turns NaN or infinite stops the run
(:class:`NonFiniteLoss`) before that epoch's checkpoints are written.

Not restored: the position inside an epoch (a killed epoch is redone from its start), the shuffling order of the
input pipeline, and EarlyStopping's ``best_weights`` (not used: the best weights come from the checkpoint file).
"""

from __future__ import annotations

import csv
import errno
import logging
import math
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import keras

from ml4ge.atomic import atomic_path, write_text
from ml4ge.checkpoints import BestCheckpoint, RunBackup, discard_unreadable, read_metadata, resume_record, unreadable
from ml4ge.progress import LINE_INTERVAL_S, duration

log = logging.getLogger(__name__)

CHECKPOINT_FOLDER = "checkpoints"
BACKUP_FOLDER = f"{CHECKPOINT_FOLDER}/backup"
BEST_WEIGHTS = f"{CHECKPOINT_FOLDER}/best.weights.h5"
TRAINING_LOG = "training_log.csv"
MONITOR = "val_loss"


def set_seed(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras' global seed generator (``--random_seed``).

    Called before a model is built, so its initialisers, dropout and noise layers draw the same numbers in every
    run with this seed (see the README on how far a run is reproducible on CPU and GPU).
    """
    keras.utils.set_random_seed(int(seed))


DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}  # no space, file too large, quota exceeded


@contextmanager
def disk_errors(folder: Path):
    """Re-raise a full-disk OSError that does not say what to do, naming ``folder`` and the way out (free space,
    or another ``--output_folder``, then rerun to resume); other errors pass unchanged."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_FULL or "free disk space" in str(error):
            raise
        where = error.filename or folder
        raise OSError(error.errno, f"cannot write in {where}: {error.strerror or error}; free disk space there or "
                      "choose another --output_folder, then rerun to resume") from error


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
    record = read_metadata(folder / BACKUP_FOLDER)
    return int(record["epoch"]) if record else 0


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


class EpochLog(keras.callbacks.Callback):
    """A log line per epoch, so epochs reach the run's ``log.txt`` as well as the console (Keras' own lines go to
    stdout only, and ``fit`` runs with ``verbose=0``): ``"epoch 3/20: loss 0.412 - val_loss 0.455 - learning_rate
    0.0001 (21 s; ETA 5 min 57 s)"``, the ETA being for the remaining epochs at the mean pace so far (early stopping
    may end sooner). Within an epoch, a line every :data:`~ml4ge.progress.LINE_INTERVAL_S` seconds with its batch and,
    once an epoch has ended (the datasets regroup skipped samples, so their length is known only once read), the
    epoch's ETA.

    Args:
        epochs: the run's last epoch (``--epochs``).
        clock: seconds, monotonic (the tests pass their own).
    """

    def __init__(self, epochs: int, clock=None):
        super().__init__()
        self.epochs, self.clock = int(epochs), clock or time.monotonic
        self.start = self.first_epoch = self.steps = None
        self.epoch = self.batches = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.batches = epoch, 0
        self.epoch_start = self.last_line = self.clock()
        if self.first_epoch is None:
            self.start, self.first_epoch = self.epoch_start, epoch

    def on_train_batch_end(self, batch, logs=None):
        self.batches = batch + 1
        now = self.clock()
        if now - self.last_line < LINE_INTERVAL_S:
            return
        self.last_line = now
        steps = (self.params or {}).get("steps") or self.steps
        eta = f", epoch ETA {duration((now - self.epoch_start) / self.batches * (steps - self.batches))}" \
            if steps and steps > self.batches else ""
        loss = float((logs or {}).get("loss", float("nan")))
        log.info("epoch %d/%d: batch %d%s, loss %.4g%s", self.epoch + 1, self.epochs, self.batches,
                 f"/{steps}" if steps else "", loss, eta)

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        self.steps = self.steps or self.batches or None
        finished = epoch + 1 - self.first_epoch
        eta = (now - self.start) / finished * (self.epochs - epoch - 1)
        metrics = " - ".join(f"{name} {float(value):.4g}" for name, value in (logs or {}).items())
        log.info("epoch %d/%d: %s (%s; ETA %s)", epoch + 1, self.epochs, metrics, duration(now - self.epoch_start),
                 duration(eta))
        self.last_epoch = epoch

    def on_train_end(self, logs=None):
        last = getattr(self, "last_epoch", None)
        if last is not None and last + 1 < self.epochs and self.model.stop_training:
            log.info("training stopped early after epoch %d of %d (%s in all)", last + 1, self.epochs,
                     duration(self.clock() - self.start))


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


def make_callbacks(folder: Path, settings, write_outputs: bool = True, extra=(),
                   resume: dict | None = None, validator=None) -> list[keras.callbacks.Callback]:
    """The NaN-loss guard, early stopping, the learning-rate schedule, best-weights checkpoint, CSV log, TensorBoard
    and the backup.

    Args:
        folder: the run folder (or a scratch folder for non-chief workers).
        settings: a :class:`~ml4ge.training_settings.TrainingSettings` (patience, schedule).
        write_outputs: False leaves out TensorBoard (non-chief workers in multi-worker training).
        extra: the family's own callbacks (a KL-weight schedule); they run before the logs are written.
        resume: the backup record to restore (:func:`~ml4ge.checkpoints.resume_record`), None for a fresh run.
        validator: a callback that writes the ``val_*`` logs itself (:class:`~ml4ge.precise_bn.PreciseBatchNorm`);
            it comes first, so that every other callback sees them.

    Returns:
        The callbacks, the validator and :class:`StopOnNonFiniteLoss` first and :class:`RunBackup` last.
    """
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    # verbose=0: Keras would print "Epoch N: early stopping" to stdout, outside log.txt; EpochLog logs the stop
    stopping = keras.callbacks.EarlyStopping(monitor=MONITOR, patience=settings.patience, verbose=0)
    plateau = settings.schedule_callback()
    best = BestCheckpoint(folder / BEST_WEIGHTS, monitor=MONITOR)
    csv_path = folder / TRAINING_LOG
    logger = keras.callbacks.CSVLogger(str(csv_path), append=True)
    first = [validator] if validator else []
    callbacks = [*first, StopOnNonFiniteLoss(), *extra, stopping, plateau, best, EpochLog(settings.epochs), logger]
    if write_outputs:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(folder / "tensorboard"), write_graph=False))
    callbacks.append(RunBackup(folder / BACKUP_FOLDER, stateful=[stopping, plateau, best], resume=resume))
    return callbacks


def fit(model, train, valid, folder: Path, settings, training_steps: int | None = None,
        validation_steps: int | None = None, write_outputs: bool = True, callbacks=(),
        calibration=None) -> keras.callbacks.History:
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
        calibration: a dataset of training batches that recompute the BatchNorm statistics before each validation
            (:class:`~ml4ge.precise_bn.PreciseBatchNorm`, which then validates); None: Keras' moving averages.

    Returns:
        The Keras History of this process's epochs (the CSV log has all of them across resumes).
    """
    training_steps, validation_steps = steps_or_none(training_steps), steps_or_none(validation_steps)
    if training_steps:
        train = train.repeat()
    if validation_steps:
        valid = valid.repeat()
    resume = resume_record(folder / BACKUP_FOLDER)
    initial_epoch = int(resume["epoch"]) if resume else 0
    discard_unreadable(folder / BEST_WEIGHTS)
    # Before CSVLogger opens the log: rows of epochs after the restored one are dropped, as they are redone.
    trim_csv_log(folder / TRAINING_LOG, initial_epoch)
    validator = None
    if calibration is not None:  # it validates after recalibrating: Keras' own validation would come first
        from ml4ge.precise_bn import PreciseBatchNorm

        validator = PreciseBatchNorm(calibration, valid, validation_steps)
    callbacks = make_callbacks(folder, settings, write_outputs, callbacks, resume, validator)
    # EpochLog writes the epoch lines; the datasets shuffle themselves (Keras would warn that its shuffle is ignored)
    with one_pass_datasets():
        return model.fit(train, validation_data=None if validator else valid, epochs=settings.epochs,
                         steps_per_epoch=training_steps,
                         validation_steps=validation_steps, callbacks=callbacks, verbose=0, shuffle=False,
                         initial_epoch=initial_epoch)


@contextmanager
def one_pass_datasets():
    """Silence Keras' "Your input ran out of data" for ml4ge's datasets, which end after one pass by design.

    Their number of batches is not known before a pass (a skipped sample's rows are regrouped), so they do not
    declare a cardinality (``assert_cardinality`` would fail the run on a skipped sample), and Keras warns, once per
    fit and evaluate, that a dataset of unknown length ended: here that is the end of an epoch, not a shortage.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
        yield


def load_best_weights(model, folder: Path) -> bool:
    """Load the best-validation weights saved during training into ``model``; False when none were saved or the
    file is unreadable (a warning says so; ``model`` keeps its weights)."""
    path = folder / BEST_WEIGHTS
    if not path.exists():
        return False
    problem = unreadable(path)
    if problem:
        log.warning("%s is unreadable (%s): treated as absent; the model keeps its last epoch's weights", path,
                    problem)
        return False
    model.load_weights(str(path))
    return True


def remove_checkpoints(folder: Path) -> None:
    """Delete ``checkpoints/`` of a finished run (the backup a rerun resumes from and the best weights, already in
    the saved model): most of a run folder's size. Called last, once the model and every output are written, so a
    run killed before it still resumes."""
    import shutil

    path = folder / CHECKPOINT_FOLDER
    if not path.exists():
        return
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    shutil.rmtree(path)
    log.info("removed %s (%.1f MB) of the finished run; --keep_checkpoints keeps it", path, size / 2**20)


def finished_earlier(folder: Path, model_file: Path) -> bool:
    """Whether the run in ``folder`` finished before and deleted its checkpoints: its model file exists and there
    is no backup to resume from (a run killed before the end still has its backup)."""
    return model_file.is_file() and not (folder / CHECKPOINT_FOLDER).exists()


def evaluate(model, test, test_steps: int | None = None) -> dict[str, float]:
    """Evaluate on ``test`` batch by batch (the split is streamed, never held in memory at once)."""
    steps = steps_or_none(test_steps)
    if steps:
        test = test.repeat()
    with one_pass_datasets():
        results = model.evaluate(test, steps=steps, return_dict=True, verbose=0)
    return {name: float(value) for name, value in results.items()}


def write_metrics(metrics: dict[str, float], path: Path) -> Path:
    """A two-column TSV (``metric``, ``value``), written atomically."""
    lines = ["metric\tvalue"] + [f"{name}\t{value:.6g}" for name, value in metrics.items()]
    write_text(path, "\n".join(lines) + "\n")
    return path
