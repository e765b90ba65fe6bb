"""Reading samples into batches, in worker processes that live as long as their dataset.

h5py serialises every read behind one global lock, so parallel reading needs processes. Each worker reads a
whole batch of files and returns it as one numpy array per tensor, so the cost of moving data between processes
is paid per batch, not per sample. This module imports no TensorFlow: workers stay small and start fast.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import re
import shutil
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from ml4ge.hd5 import open_sample, sample_id_from_path
from ml4ge.skipped import FILE_TENSOR, SampleError, shorten
from ml4ge.tensormap import TensorMap
from ml4ge.watchdog import watch_run

# Any Exception raised while reading one sample is that sample's error: h5py alone raises KeyError, ValueError,
# OSError, RuntimeError, IndexError and TypeError (compound dtypes, a group where a dataset should be) for bad
# files, and normalizers and validators raise their own. Only errors of the run itself stop it: these, and what is
# not an Exception (KeyboardInterrupt, SystemExit). Maps whose code fails for every sample fail every sample, and a
# pass in which every sample failed stops with NoUsableSamplesError naming the commonest reasons.
RUN_ERRORS = (MemoryError,)
DEFAULT_CONTEXT = "forkserver"
SHM_FOLDER = "/dev/shm"
# Imported once by the fork server, so each worker forked from it starts with numpy, h5py and the TensorMap
# code loaded: a pool then starts several times faster, which small cohorts notice (docs/experiments.md).
FORKSERVER_PRELOAD = ["ml4ge.workers"]


def target_shape(tm: TensorMap) -> tuple[int, ...]:
    """Shape of ``tm`` as a training target: a mask doubles the channels (values, then mask)."""
    return tm.shape if tm.mask is None else tm.shape[:-1] + (2 * tm.shape[-1],)


def failure_reason(error: BaseException, path) -> str:
    """``"<ErrorType>: <message>"`` without the file's path, so that equal causes give equal reasons, and cut to
    :data:`~ml4ge.skipped.MAX_REASON` characters (a message may quote a huge value from the file)."""
    args = getattr(error, "args", ())
    message = args[0] if len(args) == 1 and isinstance(args[0], str) else str(error)
    message = message.replace(repr(str(path)), "").replace(str(path), "").strip().rstrip(":").strip()
    opening = re.match(r"Unable to (?:synchronously )?open file \(([^:()]+)", message)
    if opening:  # h5py's message carries byte offsets that differ per file
        message = f"corrupt HDF5 file ({opening.group(1).strip()})"
    return shorten(f"{type(error).__name__}: {message}")


@contextmanager
def sample_errors(sample_id: str, tensor: str, path):
    """Turn any exception raised inside into ``SampleError(sample_id, tensor, reason)``, except run errors.

    Example:
        >>> with sample_errors("1001", "t1", path):
        ...     affine = stored_affine(hd5)
    """
    try:
        yield
    except (SampleError, *RUN_ERRORS):
        raise
    except Exception as error:
        raise SampleError(sample_id, tensor, failure_reason(error, path)) from error


class MissingTensor(SampleError):
    """A sample's file lacks the dataset of a map (as opposed to holding a bad one)."""


def read_sample(path, input_tmaps, output_tmaps, augment: bool = False, rng: np.random.Generator | None = None,
                optional=frozenset()):
    """Read one sample's model inputs and training targets.

    A TensorMap that is both input and output (an autoencoder) is read once, so its target is its input.

    Args:
        path: the sample's ``.hd5`` file.
        input_tmaps, output_tmaps: TensorMaps to read.
        augment: apply the maps' augmentations (training only).
        rng: random generator for augmentations.
        optional: names of maps the sample may lack: a missing one reads as zeros (its target too) and
            ``inputs[tm.presence_name]`` is ``[0.]`` (``[1.]`` when present). A map that is there but bad still
            fails the sample.

    Returns:
        ``(inputs, outputs)``: ``{tm.input_name: float32 array of tm.shape}`` (plus the presence flags of optional
        maps) and ``{tm.output_name: float32 array of target_shape(tm)}``.

    Raises:
        SampleError: for any bad sample, naming the tensor (``"(file)"`` for an unreadable file) and the reason.
    """
    sample_id = sample_id_from_path(path)
    try:
        hd5 = open_sample(path)
    except RUN_ERRORS:
        raise
    except Exception as error:
        raise SampleError(sample_id, FILE_TENSOR, failure_reason(error, path)) from error
    read: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    absent: set[str] = set()
    with hd5:
        for tm in [*input_tmaps, *output_tmaps]:
            if tm.name in read:
                continue
            try:
                read[tm.name] = _read_tensor(tm, hd5, sample_id, path, augment, rng)
            except MissingTensor:
                if tm.name not in optional:
                    raise
                absent.add(tm.name)
                read[tm.name] = _absent(tm)
    presence = {tm.presence_name: np.float32([tm.name not in absent])
                for tm in optional_maps(input_tmaps, output_tmaps, optional)}
    inputs = {tm.input_name: read[tm.name][0] for tm in input_tmaps} | presence
    outputs = {tm.output_name: tm.target(*read[tm.name]).astype(np.float32, copy=False) for tm in output_tmaps}
    return inputs, outputs


def _absent(tm: TensorMap) -> tuple[np.ndarray, np.ndarray | None]:
    """Zeros for an optional map a sample lacks (a masked map gets an all-zero mask, so no voxel is scored)."""
    zeros = np.zeros(tm.shape, np.float32)
    return zeros, (zeros if tm.mask is not None else None)


def _read_tensor(tm: TensorMap, hd5, sample_id: str, path, augment: bool, rng):
    try:
        array, mask = tm.tensor(hd5, sample_id, augment=augment, rng=rng)
    except KeyError as error:
        raise MissingTensor(sample_id, tm.name, failure_reason(error, path)) from error
    except RUN_ERRORS:
        raise
    except Exception as error:
        raise SampleError(sample_id, tm.name, failure_reason(error, path)) from error
    if array.shape != tm.shape:
        raise SampleError(sample_id, tm.name, f"ValueError: wrong shape {array.shape}, expected {tm.shape}")
    if mask is not None and mask.shape != tm.shape:
        raise SampleError(sample_id, tm.name, f"ValueError: mask of shape {mask.shape}, expected {tm.shape}")
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):  # finite stored values can overflow float32, or a normalizer's division
        raise SampleError(sample_id, tm.name, "ValueError: NaN or Inf after reading (float32 overflow or "
                          "normalization)")
    return array, mask


@dataclass(frozen=True)
class Batch:
    """Rows read from a batch of files: cohort positions and sample ids of the good ones, their arrays."""

    positions: list[int]
    ids: list[str]
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class BatchResult:
    batch: Batch
    errors: list[tuple[int, SampleError]]  # (cohort position, error) of each skipped sample


def optional_maps(input_tmaps, output_tmaps, optional) -> list[TensorMap]:
    """The optional maps among the inputs and outputs, each once."""
    maps = {tm.name: tm for tm in [*input_tmaps, *output_tmaps]}
    return [tm for tm in maps.values() if tm.name in optional]


def presence_names(input_tmaps, output_tmaps, optional) -> list[str]:
    """Presence-flag names of the optional maps among the inputs and outputs."""
    return [tm.presence_name for tm in optional_maps(input_tmaps, output_tmaps, optional)]


def batch_shapes(input_tmaps, output_tmaps, rows: int, optional=()) -> dict[str, tuple[int, ...]]:
    """``{input_name, presence_name or output_name: (rows, *shape)}`` of one batch."""
    shapes = {tm.input_name: tm.shape for tm in input_tmaps}
    shapes |= dict.fromkeys(presence_names(input_tmaps, output_tmaps, optional), (1,))
    shapes |= {tm.output_name: target_shape(tm) for tm in output_tmaps}
    return {name: (rows, *shape) for name, shape in shapes.items()}


def read_batch(tasks: Sequence[tuple[int, str]], input_tmaps, output_tmaps, augment: bool, seed,
               out: dict[str, np.ndarray] | None = None, optional=frozenset()) -> BatchResult:
    """Read ``(position, path)`` tasks into one array per tensor; bad samples become errors, not rows.

    Args:
        tasks: cohort positions and paths.
        input_tmaps, output_tmaps: what to read.
        augment: apply augmentations; ``seed`` (with the position) seeds each sample's, so results do not depend
            on which worker read the sample.
        out: arrays of at least ``len(tasks)`` rows to fill (shared memory); new arrays when None.
        optional: names of maps a sample may lack (see :func:`read_sample`).

    Returns:
        The good rows (first ``len(batch)`` rows of each array) and the errors.
    """
    arrays = out or {name: np.empty(shape, np.float32)
                     for name, shape in batch_shapes(input_tmaps, output_tmaps, len(tasks), optional).items()}
    positions, ids, errors = [], [], []
    for position, path in tasks:
        rng = np.random.default_rng([*seed, position]) if augment else None
        try:
            inputs, outputs = read_sample(path, input_tmaps, output_tmaps, augment, rng, optional)
        except SampleError as error:
            errors.append((position, error))
            continue
        row = len(ids)
        for name, value in (inputs | outputs).items():
            arrays[name][row] = value
        positions.append(position)
        ids.append(sample_id_from_path(path))
    input_names = [tm.input_name for tm in input_tmaps] + presence_names(input_tmaps, output_tmaps, optional)
    inputs = {name: arrays[name][: len(ids)] for name in input_names}
    outputs = {tm.output_name: arrays[tm.output_name][: len(ids)] for tm in output_tmaps}
    return BatchResult(Batch(positions, ids, inputs, outputs), errors)


class Slots:
    """Shared-memory batch slots: a worker writes a batch straight into a slot, the main process copies it out.

    This replaces pickling each batch through a pipe (about 10 ms per 96^3 volume here) by one memory copy.
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], count: int, name: str | None = None):
        self.shapes, self.count = shapes, count
        self.slot_bytes = sum(4 * int(np.prod(shape)) for shape in shapes.values())
        size = max(self.slot_bytes * count, 1)
        self.memory = SharedMemory(name, create=name is None, size=size if name is None else 0)

    @classmethod
    def fits(cls, shapes: dict[str, tuple[int, ...]], count: int) -> bool:
        """Whether ``count`` slots fit in the shared-memory file system (Docker's default is only 64 MiB)."""
        needed = count * sum(4 * int(np.prod(shape)) for shape in shapes.values())
        return not os.path.isdir(SHM_FOLDER) or shutil.disk_usage(SHM_FOLDER).free > 2 * needed

    def arrays(self, slot: int) -> dict[str, np.ndarray]:
        """Views of slot ``slot``, one float32 array per tensor."""
        views, offset = {}, slot * self.slot_bytes
        for name, shape in self.shapes.items():
            views[name] = np.ndarray(shape, np.float32, buffer=self.memory.buf, offset=offset)
            offset += 4 * int(np.prod(shape))
        return views

    def copy_out(self, slot: int, batch: Batch) -> Batch:
        """The batch's rows copied out of ``slot`` into arrays of their own."""
        views, rows = self.arrays(slot), len(batch)
        return replace(batch, inputs={name: views[name][:rows].copy() for name in batch.inputs},
                              outputs={name: views[name][:rows].copy() for name in batch.outputs})

    def release(self, unlink: bool) -> None:
        self.memory.close()
        if unlink:
            self.memory.unlink()


# Worker processes -------------------------------------------------------------------------------------
_WORKER: dict[str, object] = {}


def _init_worker(input_tmaps, output_tmaps, optional, shapes, slots_name, run_pid: int) -> None:
    watch_run(run_pid)  # the worker exits when the run is gone, even SIGKILLed
    _WORKER["maps"] = (input_tmaps, output_tmaps, optional)
    _WORKER["slots"] = Slots(shapes, 0, slots_name) if slots_name else None


def _read_batch_in_worker(tasks, augment: bool, seed, slot: int | None) -> BatchResult:
    input_tmaps, output_tmaps, optional = _WORKER["maps"]
    if slot is None:
        return read_batch(tasks, input_tmaps, output_tmaps, augment, seed, optional=optional)
    result = read_batch(tasks, input_tmaps, output_tmaps, augment, seed, out=_WORKER["slots"].arrays(slot),
                        optional=optional)
    batch = result.batch  # the rows stay in shared memory; only ids and tensor names travel back
    names_only = replace(batch, inputs=dict.fromkeys(batch.inputs), outputs=dict.fromkeys(batch.outputs))
    return replace(result, batch=names_only)


class WorkerPool:
    """Worker processes, started on first use and reused for every later pass, that read batches.

    Args:
        input_tmaps, output_tmaps: TensorMaps the workers read; sent once, when the workers start.
        num_workers: processes; 0 reads in the calling process.
        batch_size: most rows of a batch (sizes the shared-memory slots).
        window: batches read ahead; memory is bounded by batch size x window, not by cohort size.
        context: multiprocessing start method; ``forkserver`` (default) and ``spawn`` are safe with TensorFlow
            loaded, ``fork`` also works with TensorMaps that cannot be pickled (lambdas).
        optional: names of maps a sample may lack (see :func:`read_sample`).

    Raises:
        ValueError: if the TensorMaps cannot be sent to worker processes.
    """

    def __init__(self, input_tmaps, output_tmaps, num_workers: int, batch_size: int, window: int,
                 context: str = DEFAULT_CONTEXT, optional=frozenset()):
        if num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {num_workers}")
        self.maps = (tuple(input_tmaps), tuple(output_tmaps))
        self.optional = frozenset(optional)
        self.num_workers, self.window, self.context = num_workers, max(window, 1), context
        self.shapes = batch_shapes(*self.maps, batch_size, self.optional)
        self._executor: ProcessPoolExecutor | None = None
        self._slots: Slots | None = None
        self._free: deque[int] = deque()  # slots no task is using (appends and pops are thread-safe)
        if num_workers and context != "fork":
            _check_picklable(self.maps)

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            if Slots.fits(self.shapes, self.window):
                self._slots = Slots(self.shapes, self.window)
                self._free.extend(range(self.window))
            name = self._slots.memory.name if self._slots else None
            self._executor = ProcessPoolExecutor(self.num_workers, start_context(self.context), _init_worker,
                                                 (*self.maps, self.optional, self.shapes, name, os.getpid()))
            self._finalizer = weakref.finalize(self, _stop, self._executor, self._slots)
            _RUNNING.add(self)
        return self._executor

    def read(self, batches: Iterable[Sequence[tuple[int, str]]], augment: bool, seed) -> Iterator[BatchResult]:
        """Yield a :class:`BatchResult` per batch of ``(position, path)`` tasks, in order.

        A worker that dies (killed for memory, crashed) raises ``BrokenProcessPool`` here instead of hanging.
        """
        if self.num_workers == 0:
            for tasks in batches:
                yield read_batch(tasks, *self.maps, augment, seed, optional=self.optional)
            return
        executor, pending = self._start(), deque()
        try:
            for tasks in batches:
                # Without a free slot (another pass still holds them) the batch travels pickled instead.
                slot = self._free.popleft() if self._free else None
                pending.append((slot, executor.submit(_read_batch_in_worker, list(tasks), augment, seed, slot)))
                if len(pending) >= self.window:
                    yield self._receive(*pending.popleft())
            while pending:
                yield self._receive(*pending.popleft())
        finally:  # an abandoned pass leaves no queued work behind, and frees its slots once workers are done
            for slot, future in pending:
                if slot is not None:
                    future.add_done_callback(lambda _, slot=slot: self._free.append(slot))
                future.cancel()

    def _receive(self, slot, future) -> BatchResult:
        result = future.result()
        if slot is None:
            return result
        batch = self._slots.copy_out(slot, result.batch)
        self._free.append(slot)
        return replace(result, batch=batch)

    def close(self) -> None:
        """Stop the workers and free the shared memory (idempotent)."""
        if self._executor is not None:
            self._finalizer()
            self._executor, self._slots = None, None
            self._free.clear()
            _RUNNING.discard(self)


# The pools whose workers run. A pool left to the garbage collector while tf.data's prefetch thread waits on it can
# deadlock the collection: TensorFlow's iterator destructor waits for that thread, which waits for the pool's manager
# thread, which needs the GIL that the collecting thread holds. A harness that ends with datasets still open (the
# test session) stops them first with stop_pools().
_RUNNING: weakref.WeakSet = weakref.WeakSet()


def stop_pools() -> int:
    """Stop the workers of every pool still running (they stop at exit anyway); returns how many were."""
    pools = list(_RUNNING)
    for pool in pools:
        pool.close()
    return len(pools)


def start_context(name: str):
    """The multiprocessing context ``name``; a fork server preloads :data:`FORKSERVER_PRELOAD` (the setting only
    applies when the server starts, once per process)."""
    context = multiprocessing.get_context(name)
    if name == "forkserver":
        context.set_forkserver_preload(FORKSERVER_PRELOAD)
    return context


def _stop(executor: ProcessPoolExecutor, slots: Slots | None) -> None:
    executor.shutdown(wait=True, cancel_futures=True)
    if slots is not None:
        slots.release(unlink=True)


def _check_picklable(maps) -> None:
    try:
        pickle.dumps(maps)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise ValueError(
            f"the TensorMaps cannot be sent to worker processes ({error}). Define readers, validators and "
            "augmentations as module-level functions, or use num_workers=0 or the 'fork' context."
        ) from error
