"""The input pipeline for Keras ``fit``/``predict``/``evaluate``: batches of HD5 samples as a ``tf.data.Dataset``.

Files are read by worker processes (:mod:`ml4ge.workers`) that start on the first pass and are reused for every
later one; each reads a whole batch and returns it as one array per tensor. The main process decides the order
(seeded shuffle per epoch), regroups rows into full batches when bad samples were skipped, records the skipped
samples, and optionally keeps decoded samples in memory after the first pass.

Example:
    >>> with TensorDataset(paths, [t1], [t1], batch_size=4, skipped=SkippedSamples(run_folder)) as data:
    ...     model.fit(data.dataset(), epochs=10)
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from ml4ge.batch_reading import Batch, read_sample, target_shape
from ml4ge.skipped import NoUsableSamplesError, SampleError, SkippedSamples
from ml4ge.workers import DEFAULT_CONTEXT, WorkerPool

__all__ = [
    "NoUsableSamplesError", "SampleError", "SkippedSamples", "TensorDataset", "iterate_batches", "make_dataset",
    "pipeline_errors",
    "read_sample", "target_shape",
]


class TensorDataset:
    """One split's samples as batches ``({input_name: float32[B, ...]}, {output_name: float32[B, ...]})``.

    Args:
        paths: the split's ``.hd5`` files.
        input_tmaps, output_tmaps: TensorMaps of the model's inputs and outputs.
        batch_size: rows per batch.
        shuffle: a different order each pass; pass ``e`` uses ``seed + e``.
        augment: apply the TensorMaps' augmentations (training only).
        num_workers: reading processes (0 reads in this process).
        cache: keep decoded samples in memory after the first complete pass.
        seed: seed of the order and of augmentations.
        skipped: where skipped samples are recorded; written to its TSV at the end of each pass.
        drop_remainder: drop the last, smaller batch (every batch then has exactly ``batch_size`` rows).
        prefetch: batches read ahead (default ``2 x num_workers``); memory is bounded by batch size x prefetch.
        context: multiprocessing start method of the workers.
        min_rows: a last batch with fewer rows joins the batch before it. A distribution strategy splits each
            batch over its replicas, and a replica given no row fails (oneDNN convolutions); pass the replica count.
        optional: names of maps a sample may lack. A sample missing one is kept: the map reads as zeros, inputs
            get its presence flag ``tm.presence_name`` (``[B, 1]``, 1 present), and :meth:`dataset` yields
            per-output sample weights that are 0 where the output's map is absent. Missing required maps still
            skip the sample.

    Raises:
        ValueError: for an empty split, a batch size below 1, or ``cache`` with ``augment`` (cached samples
            would repeat their first augmentation).
    """

    def __init__(
        self, paths: Sequence, input_tmaps, output_tmaps, batch_size: int, *, shuffle: bool = True,
        augment: bool = False, num_workers: int = 2, cache: bool = False, seed: int = 0,
        skipped: SkippedSamples | None = None, drop_remainder: bool = False, prefetch: int | None = None,
        context: str = DEFAULT_CONTEXT, min_rows: int = 1, optional=(), sampler=None,
    ):
        if not paths:
            raise ValueError("no .hd5 files in this split; check --tensors and the split ratios or CSVs.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if cache and augment:
            raise ValueError("cache=True with augment=True would repeat each sample's first augmentation; "
                             "turn one of them off.")
        self.paths = [str(p) for p in paths]
        self.input_tmaps, self.output_tmaps = tuple(input_tmaps), tuple(output_tmaps)
        self.batch_size, self.shuffle, self.augment = int(batch_size), shuffle, augment
        self.cache, self.seed, self.skipped, self.drop_remainder = cache, int(seed), skipped, drop_remainder
        self.min_rows = int(min_rows)
        self.prefetch = prefetch or max(2 * num_workers, 1)
        self.optional = frozenset(optional)
        self.sampler = sampler
        # The inputs the model takes: its maps, and the presence flags of its optional input maps.
        self.model_inputs = [tm.input_name for tm in self.input_tmaps]
        self.model_inputs += [tm.presence_name for tm in self.input_tmaps if tm.name in self.optional]
        self.pool = WorkerPool(self.input_tmaps, self.output_tmaps, num_workers, self.batch_size, self.prefetch,
                               context, self.optional)
        self._cached: dict[int, tuple[str, dict, dict]] = {}
        self._bad: dict[int, str] = {}  # cohort position -> reason
        self._passes = itertools.count()  # next() is atomic: passes started from two threads get two epochs

    # Passes --------------------------------------------------------------------------------------------
    def order(self, epoch: int) -> np.ndarray:
        """Cohort positions in the order pass ``epoch`` reads them."""
        if not self.shuffle:
            return np.arange(len(self.paths))
        if self.sampler is not None:
            return np.asarray(self.sampler(epoch))
        return np.random.default_rng(self.seed + epoch).permutation(len(self.paths))

    def batches(self, epoch: int | None = None) -> Iterator[Batch]:
        """One pass over the split as :class:`~ml4ge.batch_reading.Batch` es (sample ids aligned with rows).

        Args:
            epoch: which pass (drives the shuffle); by default the next one.

        Raises:
            NoUsableSamplesError: if no sample of the pass could be read.
        """
        if epoch is None:
            epoch = next(self._passes)
        order = [int(p) for p in self.order(epoch)]
        reasons: Counter = Counter()
        chunks = self._from_cache(order) if self._cache_complete() else self._from_workers(order, epoch, reasons)
        usable = []
        batches = rebatch(_counted(chunks, usable), self.batch_size, self.drop_remainder)
        yield from (join_short_tail(batches, self.min_rows) if self.min_rows > 1 else batches)
        if self.skipped is not None:
            self.skipped.write()
        if not usable:
            reasons = reasons or Counter(self._bad.values())
            raise NoUsableSamplesError.from_reasons(reasons, len(self.paths))
        if sum(usable) < self.batch_size and self.drop_remainder:
            raise ValueError(f"only {sum(usable)} usable samples, fewer than batch_size {self.batch_size} with "
                             "drop_remainder: lower the batch size.")

    def _from_workers(self, order: list[int], epoch: int, reasons: Counter) -> Iterator[Batch]:
        tasks = ([(p, self.paths[p]) for p in order[i: i + self.batch_size]]
                 for i in range(0, len(order), self.batch_size))
        for result in self.pool.read(tasks, self.augment, (self.seed, epoch)):
            for position, error in result.errors:
                reasons[error.reason] += 1
                self._bad[position] = error.reason
                if self.skipped is not None:
                    self.skipped.record_error(error)
            if self.cache:
                self._remember(result.batch)
            yield result.batch

    def _remember(self, batch: Batch) -> None:
        for row, (position, sample_id) in enumerate(zip(batch.positions, batch.ids)):
            inputs = {name: array[row] for name, array in batch.inputs.items()}
            outputs = {name: array[row] for name, array in batch.outputs.items()}
            self._cached[position] = (sample_id, inputs, outputs)

    def _cache_complete(self) -> bool:
        return self.cache and len(self._cached) + len(self._bad) == len(self.paths)

    def _from_cache(self, order: list[int]) -> Iterator[Batch]:
        usable = [p for p in order if p in self._cached]
        for i in range(0, len(usable), self.batch_size):
            positions = usable[i: i + self.batch_size]
            rows = [self._cached[p] for p in positions]
            yield Batch(
                positions, [r[0] for r in rows],
                {name: np.stack([r[1][name] for r in rows]) for name in rows[0][1]},
                {name: np.stack([r[2][name] for r in rows]) for name in rows[0][2]},
            )

    # tf.data -------------------------------------------------------------------------------------------
    def output_signature(self):
        """``(inputs, outputs)`` dicts of ``tf.TensorSpec`` (batch axis fixed only with ``drop_remainder``), and the
        sample weights' with optional maps."""
        import tensorflow as tf

        rows = self.batch_size if self.drop_remainder else None
        shapes = {tm.input_name: tm.shape for tm in self.input_tmaps}
        inputs = {name: tf.TensorSpec((rows, *shapes.get(name, (1,))), tf.float32) for name in self.model_inputs}
        outputs = {tm.output_name: tf.TensorSpec((rows, *target_shape(tm)), tf.float32) for tm in self.output_tmaps}
        if not self.optional:
            return inputs, outputs
        weights = {tm.output_name: tf.TensorSpec((rows,), tf.float32) for tm in self.output_tmaps}
        return inputs, outputs, weights

    def _generate(self):
        for batch in self.batches():
            yield self.model_batch(batch)

    def model_batch(self, batch: Batch) -> tuple:
        """``(inputs, outputs)`` of a batch as the model takes them; with optional maps also the per-output sample
        weights (the presence flag of the output's map, 1 for required maps)."""
        if not self.optional:
            return batch.inputs, batch.outputs
        inputs = {name: batch.inputs[name] for name in self.model_inputs}
        rows = len(batch)
        weights = {tm.output_name: (batch.inputs[tm.presence_name][:, 0] if tm.name in self.optional
                                    else np.ones(rows, np.float32)) for tm in self.output_tmaps}
        return inputs, batch.outputs, weights

    def dataset(self):
        """A finite ``tf.data.Dataset`` of one pass per iteration; each new iteration is the next epoch."""
        import tensorflow as tf

        return tf.data.Dataset.from_generator(self._generate, output_signature=self.output_signature()).prefetch(1)

    # Lifetime ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the worker processes (also done at exit and when this object is collected)."""
        self.pool.close()

    def __enter__(self) -> TensorDataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rebatch(chunks: Iterable[Batch], batch_size: int, drop_remainder: bool = False) -> Iterator[Batch]:
    """Regroup chunks (short where samples were skipped) into batches of ``batch_size`` rows, in order.

    A chunk that already is a full batch passes through without a copy.
    """
    buffer: list[Batch] = []
    buffered = 0
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        if buffered == 0 and len(chunk) == batch_size:
            yield chunk
            continue
        buffer.append(chunk)
        buffered += len(chunk)
        while buffered >= batch_size:
            merged = _concatenate(buffer)
            yield _rows(merged, slice(0, batch_size))
            rest = _rows(merged, slice(batch_size, None))
            buffer, buffered = ([rest], len(rest)) if len(rest) else ([], 0)
    if buffered and not drop_remainder:
        yield _concatenate(buffer)


def join_short_tail(batches: Iterable[Batch], min_rows: int) -> Iterator[Batch]:
    """The batches, with a last one of fewer than ``min_rows`` rows joined to the one before it.

    Raises:
        ValueError: if the only batch has fewer than ``min_rows`` rows.
    """
    held = None
    for batch in batches:
        if held is not None and len(batch) < min_rows:
            batch = _concatenate([held, batch])
        elif held is not None:
            yield held
        held = batch
    if held is not None and len(held) < min_rows:
        raise ValueError(f"only {len(held)} usable samples in this split, fewer than the {min_rows} replicas that "
                         "share each batch; give the split more samples or use fewer devices.")
    if held is not None:
        yield held


def _counted(chunks: Iterable[Batch], counts: list[int]) -> Iterator[Batch]:
    for chunk in chunks:
        if len(chunk):
            counts.append(len(chunk))
        yield chunk


def _concatenate(chunks: list[Batch]) -> Batch:
    if len(chunks) == 1:
        return chunks[0]
    first = chunks[0]
    return Batch(
        [p for c in chunks for p in c.positions], [i for c in chunks for i in c.ids],
        {name: np.concatenate([c.inputs[name] for c in chunks]) for name in first.inputs},
        {name: np.concatenate([c.outputs[name] for c in chunks]) for name in first.outputs},
    )


def _rows(batch: Batch, rows: slice) -> Batch:
    return Batch(
        batch.positions[rows], batch.ids[rows],
        {name: array[rows] for name, array in batch.inputs.items()},
        {name: array[rows] for name, array in batch.outputs.items()},
    )


def make_dataset(
    paths, input_tmaps, output_tmaps, batch_size: int, *, shuffle: bool = True, augment: bool = False,
    num_workers: int = 2, cache: bool = False, seed: int = 0, skipped: SkippedSamples | None = None,
    drop_remainder: bool = False, **options,
):
    """A ``tf.data.Dataset`` over ``paths``: one pass per iteration (see :class:`TensorDataset` for arguments).

    The workers stop at exit or when the dataset is collected; use :class:`TensorDataset` as a context manager
    to stop them earlier.
    """
    return TensorDataset(
        paths, input_tmaps, output_tmaps, batch_size, shuffle=shuffle, augment=augment, num_workers=num_workers,
        cache=cache, seed=seed, skipped=skipped, drop_remainder=drop_remainder, **options,
    ).dataset()


def iterate_batches(
    paths, input_tmaps, output_tmaps, batch_size: int, num_workers: int = 2,
    skipped: SkippedSamples | None = None, **options,
) -> Iterator[tuple[list[str], dict, dict]]:
    """Stream ``(sample_ids, inputs, outputs)`` in file order for inference and evaluation.

    Skipped samples are left out (and recorded), so ids always match rows. Workers stop when the generator ends
    or is closed.

    Raises:
        NoUsableSamplesError: if no sample could be read.
    """
    with TensorDataset(paths, input_tmaps, output_tmaps, batch_size, shuffle=False, num_workers=num_workers,
                       skipped=skipped, **options) as data:
        for batch in data.batches(0):
            yield batch.ids, batch.inputs, batch.outputs


def read_ahead(items: Iterator, depth: int = 2) -> Iterator:
    """Run the iterator ``items`` in a background thread, up to ``depth`` items ahead of the consumer.

    Reading (HDF5 decompression, normalisation, copies out of the workers' shared memory) then overlaps with
    what the consumer does with each item, e.g. a model's forward pass, which releases the GIL.

    An error raised by ``items`` is raised to the consumer; closing the returned generator (or leaving its loop)
    stops the thread and closes ``items``.
    """
    pending: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                pending.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            put((_END, error))
            return
        put((_END, None))

    thread = threading.Thread(target=produce, name="ml4ge-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = pending.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()


_END = object()


@contextmanager
def pipeline_errors():
    """Re-raise a :class:`NoUsableSamplesError` that TensorFlow wrapped while a ``tf.data`` dataset ran.

    Errors raised inside a dataset's generator reach Keras as ``tf.errors.OpError`` with the original text;
    recipes wrap ``fit``/``predict`` in this so that users see the pipeline's message as a ValueError.
    """
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as error:
        marker = f"{NoUsableSamplesError.__name__}: "
        if marker not in error.message:
            raise
        text = error.message.split(marker, 1)[1].split("\n", 1)[0]
        raise NoUsableSamplesError(text) from error
