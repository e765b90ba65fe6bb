"""Reading one sample, and a batch of samples, from per-subject HD5 files into numpy arrays.

A bad sample is never a crash: whatever one file raises becomes a :class:`~ml4ge.skipped.SampleError` naming the
sample, the tensor and the reason, and the batch goes on without its row. :mod:`ml4ge.workers` runs these readers in
worker processes; this module imports no TensorFlow either.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ml4ge.hd5 import open_sample, sample_id_from_path
from ml4ge.skipped import FILE_TENSOR, SampleError, shorten
from ml4ge.tensormap import TensorMap

# Any Exception raised while reading one sample is that sample's error: h5py alone raises KeyError, ValueError,
# OSError, RuntimeError, IndexError and TypeError (compound dtypes, a group where a dataset should be) for bad
# files, and normalizers and validators raise their own. Only errors of the run itself stop it: these, and what is
# not an Exception (KeyboardInterrupt, SystemExit). Maps whose code fails for every sample fail every sample, and a
# pass in which every sample failed stops with NoUsableSamplesError naming the commonest reasons.
RUN_ERRORS = (MemoryError,)


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
