"""Reading batches (:mod:`ml4ge.batch_reading`) in worker processes that live as long as their dataset.

h5py serialises every read behind one global lock, so parallel reading needs processes. Each worker reads a
whole batch of files and returns it as one numpy array per tensor, so the cost of moving data between processes
is paid per batch, not per sample. This module imports no TensorFlow: workers stay small and start fast.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from ml4ge.batch_reading import Batch, BatchResult, batch_shapes, read_batch
from ml4ge.watchdog import watch_run

DEFAULT_CONTEXT = "forkserver"
SHM_FOLDER = "/dev/shm"
# Imported once by the fork server, so each worker forked from it starts with numpy, h5py and the TensorMap
# code loaded: a pool then starts several times faster, which small cohorts notice (docs/experiments.md).
FORKSERVER_PRELOAD = ["ml4ge.workers"]


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
