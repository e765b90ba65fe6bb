"""Reading samples into batches, in worker processes that live as long as their dataset.

h5py serialises every read behind one global lock, so parallel reading needs processes. Each worker reads a
whole batch of files and returns it as one numpy array per tensor, so the cost of moving data between processes
is paid per batch, not per sample. This module imports no TensorFlow: workers stay small and start fast.
"""

from __future__ import annotations

import multiprocessing
import pickle
import re
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple

import numpy as np

from ml4ge.hd5 import open_sample, sample_id_from_path
from ml4ge.skipped import FILE_TENSOR, SampleError
from ml4ge.tensormap import TensorMap

# Exceptions that mean "this sample's data is bad"; anything else is a bug and propagates.
DATA_ERRORS = (KeyError, ValueError, OSError, RuntimeError, IndexError)
DEFAULT_CONTEXT = "forkserver"


def target_shape(tm: TensorMap) -> tuple[int, ...]:
    """Shape of ``tm`` as a training target: a mask doubles the channels (values, then mask)."""
    return tm.shape if tm.mask is None else tm.shape[:-1] + (2 * tm.shape[-1],)


def failure_reason(error: BaseException, path) -> str:
    """``"<ErrorType>: <message>"`` without the file's path, so that equal causes give equal reasons."""
    args = getattr(error, "args", ())
    message = args[0] if len(args) == 1 and isinstance(args[0], str) else str(error)
    message = message.replace(repr(str(path)), "").replace(str(path), "").strip().rstrip(":").strip()
    opening = re.match(r"Unable to (?:synchronously )?open file \(([^:()]+)", message)
    if opening:  # h5py's message carries byte offsets that differ per file
        message = f"corrupt HDF5 file ({opening.group(1).strip()})"
    return f"{type(error).__name__}: {message}"


def read_sample(path, input_tmaps, output_tmaps, augment: bool = False, rng: np.random.Generator | None = None):
    """Read one sample's model inputs and training targets.

    A TensorMap that is both input and output (an autoencoder) is read once, so its target is its input.

    Args:
        path: the sample's ``.hd5`` file.
        input_tmaps, output_tmaps: TensorMaps to read.
        augment: apply the maps' augmentations (training only).
        rng: random generator for augmentations.

    Returns:
        ``(inputs, outputs)``: ``{tm.input_name: float32 array of tm.shape}`` and
        ``{tm.output_name: float32 array of target_shape(tm)}``.

    Raises:
        SampleError: for any bad sample, naming the tensor (``"(file)"`` for an unreadable file) and the reason.
    """
    sample_id = sample_id_from_path(path)
    try:
        hd5 = open_sample(path)
    except DATA_ERRORS as error:
        raise SampleError(sample_id, FILE_TENSOR, failure_reason(error, path)) from error
    read: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    with hd5:
        for tm in [*input_tmaps, *output_tmaps]:
            if tm.name not in read:
                read[tm.name] = _read_tensor(tm, hd5, sample_id, path, augment, rng)
    inputs = {tm.input_name: read[tm.name][0] for tm in input_tmaps}
    outputs = {tm.output_name: tm.target(*read[tm.name]).astype(np.float32, copy=False) for tm in output_tmaps}
    return inputs, outputs


def _read_tensor(tm: TensorMap, hd5, sample_id: str, path, augment: bool, rng):
    try:
        array, mask = tm.tensor(hd5, sample_id, augment=augment, rng=rng)
    except DATA_ERRORS as error:
        raise SampleError(sample_id, tm.name, failure_reason(error, path)) from error
    if array.shape != tm.shape:
        raise SampleError(sample_id, tm.name, f"ValueError: wrong shape {array.shape}, expected {tm.shape}")
    return array.astype(np.float32, copy=False), mask


class Batch(NamedTuple):
    """Rows read from a batch of files: cohort positions and sample ids of the good ones, their arrays."""

    positions: list[int]
    ids: list[str]
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)


class BatchResult(NamedTuple):
    batch: Batch
    errors: list[tuple[int, SampleError]]  # (cohort position, error) of each skipped sample


def read_batch(tasks: Sequence[tuple[int, str]], input_tmaps, output_tmaps, augment: bool, seed) -> BatchResult:
    """Read ``(position, path)`` tasks into one array per tensor; bad samples become errors, not rows.

    ``seed`` (with the position) seeds each sample's augmentation, so results do not depend on which worker
    read the sample.
    """
    shapes = {tm.input_name: tm.shape for tm in input_tmaps} | {tm.output_name: target_shape(tm) for tm in output_tmaps}
    arrays = {name: np.empty((len(tasks), *shape), np.float32) for name, shape in shapes.items()}
    positions, ids, errors = [], [], []
    for position, path in tasks:
        rng = np.random.default_rng([*seed, position]) if augment else None
        try:
            inputs, outputs = read_sample(path, input_tmaps, output_tmaps, augment, rng)
        except SampleError as error:
            errors.append((position, error))
            continue
        row = len(ids)
        for name, value in (inputs | outputs).items():
            arrays[name][row] = value
        positions.append(position)
        ids.append(sample_id_from_path(path))
    split = ({tm.input_name for tm in input_tmaps}, {tm.output_name for tm in output_tmaps})
    inputs = {name: arrays[name][: len(ids)] for name in split[0]}
    outputs = {name: arrays[name][: len(ids)] for name in split[1]}
    return BatchResult(Batch(positions, ids, inputs, outputs), errors)


# Worker processes -------------------------------------------------------------------------------------
_WORKER_MAPS: dict[str, tuple] = {}


def _init_worker(input_tmaps, output_tmaps) -> None:
    _WORKER_MAPS["maps"] = (input_tmaps, output_tmaps)


def _read_batch_in_worker(tasks, augment: bool, seed) -> BatchResult:
    input_tmaps, output_tmaps = _WORKER_MAPS["maps"]
    return read_batch(tasks, input_tmaps, output_tmaps, augment, seed)


class WorkerPool:
    """Worker processes, started on first use and reused for every later pass, that read batches.

    Args:
        input_tmaps, output_tmaps: TensorMaps the workers read; sent once, when the workers start.
        num_workers: processes; 0 reads in the calling process.
        context: multiprocessing start method; ``forkserver`` (default) and ``spawn`` are safe with TensorFlow
            loaded, ``fork`` also works with TensorMaps that cannot be pickled (lambdas).

    Raises:
        ValueError: if the TensorMaps cannot be sent to worker processes.
    """

    def __init__(self, input_tmaps, output_tmaps, num_workers: int, context: str = DEFAULT_CONTEXT):
        if num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {num_workers}")
        self.maps = (tuple(input_tmaps), tuple(output_tmaps))
        self.num_workers = num_workers
        self.context = context
        self._executor: ProcessPoolExecutor | None = None
        if num_workers and context != "fork":
            _check_picklable(self.maps)

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.num_workers, multiprocessing.get_context(self.context), _init_worker, self.maps
            )
            weakref.finalize(self, self._executor.shutdown, wait=True, cancel_futures=True)
        return self._executor

    def read(self, batches: Iterable[Sequence[tuple[int, str]]], augment: bool, seed, window: int) -> Iterator:
        """Yield a :class:`BatchResult` per batch of ``(position, path)`` tasks, in order.

        At most ``window`` batches are read ahead, so memory is bounded by batch size x window, not by cohort.
        A worker that dies (killed for memory, crashed) raises ``BrokenProcessPool`` here instead of hanging.
        """
        if self.num_workers == 0:
            for tasks in batches:
                yield read_batch(tasks, *self.maps, augment, seed)
            return
        executor, pending = self._start(), deque()
        try:
            for tasks in batches:
                pending.append(executor.submit(_read_batch_in_worker, list(tasks), augment, seed))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # an abandoned pass leaves no queued work behind
            for future in pending:
                future.cancel()

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _check_picklable(maps) -> None:
    try:
        pickle.dumps(maps)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise ValueError(
            f"the TensorMaps cannot be sent to worker processes ({error}). Define readers, validators and "
            "augmentations as module-level functions, or use num_workers=0 or the 'fork' context."
        ) from error
