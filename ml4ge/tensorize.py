"""Write one ``<sample_id>.hd5`` per subject from NIfTI volumes and phenotype values.

Each subject is written under a temporary name (``<sample_id>.hd5.<pid>.tmp``) and renamed when complete, so a
folder never holds a half-written ``.hd5``: a subject is written whole or not at all. A subject whose file
exists is skipped unless ``overwrite`` is set. An unreadable input (missing, truncated, not NIfTI, NaN/Inf
values, a shape the TensorMap cannot take, a phenotype value that is not a number or category) fails only its
subject, and the reason goes in the report. A file that cannot be written (a full disk) is no subject's fault: it
stops the run with :class:`OutputError`, which carries the report rows of what was done.

Volumes are stored as read (full resolution) unless a target shape is given (``--resample``), in which case
they are resampled with one isotropic zoom factor and centred in that shape (:func:`ml4ge.arrays.fit_to_shape`),
and the stored affine and voxel size describe the resampled grid (:func:`ml4ge.grids.fitted_affine`).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ml4ge.arrays import fit_to_shape
from ml4ge.atomic import write_table
from ml4ge.grids import fitted_affine, voxel_size
from ml4ge.hd5 import HD5_SUFFIX, write_tensor
from ml4ge.nifti import INPUT_ERRORS, GridExpectation, read_nifti
from ml4ge.progress import progress
from ml4ge.registration import prepare_reference, register_to, resample_rigid

TEMPORARY_SUFFIX = ".tmp"
# A file name is at most 255 bytes (NAME_MAX on Linux and macOS file systems); the temporary name of
# ``<id>.hd5`` adds ``.<pid>.tmp`` (pids have at most 7 digits), so ids are kept to what leaves room for both.
NAME_MAX_BYTES = 255
MAX_SAMPLE_ID_BYTES = NAME_MAX_BYTES - len(".hd5") - len(".4194304") - len(TEMPORARY_SUFFIX)
REPORT_NAME = "tensorize_report.tsv"
REPORT_COLUMNS = ("sample_id", "tensor", "path", "status", "reason")
WRITTEN, SKIPPED_EXISTING, FAILED, NOT_WRITTEN = "written", "skipped_existing", "failed", "not_written"


@dataclass(frozen=True)
class VolumeInput:
    """One NIfTI file to store at ``key`` (plain data, so that it pickles to worker processes).

    Args:
        tensor: TensorMap name (for the report).
        path: the .nii/.nii.gz file.
        key: HD5 group path, the TensorMap's ``key``.
        instance: instance number, or None for the next free one.
        map_shape: the TensorMap's shape; the volume must be able to take it.
        resample: store the volume fitted to ``map_shape`` instead of as read.
        reference: a NIfTI template to register the volume to, rigidly, before anything else (the volume is
            then stored on the template's grid).
        normalization: the TensorMap's normalizer; a volume it refuses (a binary mask or constant image given
            where z-scoring needs spread) fails its subject here rather than every read later.
        grid: what the map expects of the volume's grid (voxel size, shape); None: not checked.
    """

    tensor: str
    path: str
    key: str
    map_shape: tuple[int, ...]
    instance: int | None = None
    resample: bool = False
    reference: str | None = None
    normalization: object | None = None
    grid: GridExpectation | None = None


@dataclass(frozen=True)
class ScalarInput:
    """One phenotype value to store at ``key``; ``channel_map`` turns a label into a category index."""

    tensor: str
    key: str
    value: object
    source: str
    instance: int | None = 0
    channel_map: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Subject:
    """Everything written into one sample's file."""

    sample_id: str
    volumes: tuple[VolumeInput, ...] = ()
    scalars: tuple[ScalarInput, ...] = ()
    scalar_source: str = ""


@dataclass(frozen=True)
class ReportRow:
    sample_id: str
    tensor: str
    path: str
    status: str
    reason: str = field(default="")


# Reading --------------------------------------------------------------------------------------------------
def prepare_volume(volume_input: VolumeInput) -> tuple[np.ndarray, dict]:
    """Read one NIfTI and bring it to what is stored: the array and its provenance attributes.

    Raises:
        The errors of :func:`read_nifti`; ValueError if the volume's rank cannot take the map's shape,
        (GridMismatchError) if its voxel size is not the map's, or (DegenerateSampleError) if the map's
        normalization refuses it.
    """
    volume, affine, zooms = read_nifti(volume_input.path)
    shape = volume_input.map_shape
    if volume.ndim not in (len(shape) - 1, len(shape)):
        raise ValueError(f"volume of shape {volume.shape} cannot take the TensorMap shape {shape}")
    attributes = {"source": str(volume_input.path), "source_shape": np.asarray(volume.shape), "resampled": False}
    if volume_input.reference:
        volume, affine, zooms, registration = register_to_reference(volume, affine, volume_input.reference)
        attributes.update(registration)
    if volume_input.grid is not None:  # raises GridMismatchError for a voxel size the map does not take
        attributes["grid_note"] = volume_input.grid.check(volume.shape, zooms)
    if volume_input.resample:
        spatial = volume.shape if volume.ndim == len(shape) - 1 else volume.shape[:-1]
        affine = fitted_affine(affine, spatial, shape[:-1])
        zooms = voxel_size(affine, len(zooms))
        volume = fit_to_shape(volume, shape, resize=True).astype(np.float32)
        attributes["resampled"] = True
    if volume_input.normalization is not None:
        volume_input.normalization.transform(volume)  # raises DegenerateSampleError for a volume without spread
    attributes.update(affine=affine, voxel_size=np.asarray(zooms))
    return volume, attributes


@functools.lru_cache(maxsize=4)
def read_reference(path: str):
    """A registration template's ``(shape, affine, voxel size, prepared reference)``, once per process."""
    volume, affine, zooms = read_nifti(path)
    return volume.shape, affine, zooms, prepare_reference(volume, affine)


def register_to_reference(volume: np.ndarray, affine: np.ndarray, reference_path: str):
    """``volume`` rigidly registered to the template at ``reference_path`` and resampled onto its grid.

    Returns:
        ``(volume, affine, voxel size, attributes)``; the attributes name the template and hold the fitted
        rotation vector (degrees) and translation (mm).

    Raises:
        ValueError: if the volume or the template is not 3-D, or the template is empty.
    """
    shape, reference_affine, zooms, reference = read_reference(str(reference_path))
    rigid = register_to(volume, affine, reference)
    registered = resample_rigid(volume, affine, rigid, shape, reference_affine)
    attributes = {"registered_to": str(reference_path), "rigid_parameters": rigid.parameters()}
    return registered, reference_affine, zooms, attributes


def scalar_value(scalar: ScalarInput) -> np.ndarray:
    """The stored value: a float, or a category index for maps with a channel map.

    Raises:
        ValueError: for a value that is not a finite number, or not a label or index of the channel map.
    """
    value = scalar.value
    if scalar.channel_map is not None:
        labels = {str(label): index for label, index in scalar.channel_map.items()}
        if str(value) in labels:
            return np.asarray([labels[str(value)]], dtype=np.int32)
        number = pd.to_numeric(value, errors="coerce")
        if pd.notna(number) and float(number).is_integer() and 0 <= int(number) < len(labels):
            return np.asarray([int(number)], dtype=np.int32)
        raise ValueError(
            f"{scalar.tensor}: value {value!r} is neither a label ({', '.join(labels)}) nor an index "
            f"0..{len(labels) - 1}"
        )
    number = pd.to_numeric(value, errors="coerce")
    if pd.isna(number) or not np.isfinite(float(number)):
        raise ValueError(f"{scalar.tensor}: value {value!r} is not a finite number")
    return np.asarray([number], dtype=np.float32)


# Writing --------------------------------------------------------------------------------------------------
def describe(error: BaseException) -> str:
    """A one-line reason for the report: the error type and message, without tabs or newlines."""
    return " ".join(f"{type(error).__name__}: {error}".split())


def subject_rows(subject: Subject, status: str, reason: str = "", failed: object = None,
                 notes: Mapping[int, str] | None = None) -> list[ReportRow]:
    """One report row per volume and one for the subject's phenotype values.

    ``failed`` is the index of the volume that failed, or ``"scalars"``; its row gets ``status`` and the others
    ``not_written`` (a subject is written whole or not at all). ``notes`` (by volume index) are the reasons of
    written volumes (a grid other than the map's).
    """
    rows = []
    for index, volume in enumerate(subject.volumes):
        own = failed is None or failed == index
        own_reason = (notes or {}).get(index, reason) if status == WRITTEN else reason
        rows.append(ReportRow(subject.sample_id, volume.tensor, volume.path, status if own else NOT_WRITTEN,
                              own_reason if own else f"another input of this subject failed: {reason}"))
    if subject.scalars:
        own = failed is None or failed == "scalars"
        scalar_reason = reason if own else f"another input of this subject failed: {reason}"
        if status == WRITTEN:
            scalar_reason = f"{len(subject.scalars)} values: {', '.join(s.tensor for s in subject.scalars)}"
        rows.append(ReportRow(subject.sample_id, "phenotypes", subject.scalar_source,
                              status if own else NOT_WRITTEN, scalar_reason))
    return rows


def _write_inputs(hd5: h5py.File, subject: Subject, notes: dict[int, str]) -> tuple[object, str] | None:
    """Write every input of ``subject``; on the first bad one return ``(which, reason)``, else None. The volumes'
    grid notes are added to ``notes``."""
    for index, volume in enumerate(subject.volumes):
        try:
            array, attributes = prepare_volume(volume)
            write_tensor(hd5, volume.key, array, volume.instance, attributes)
        except INPUT_ERRORS as error:
            return index, describe(error)
        if attributes.get("grid_note"):
            notes[index] = attributes["grid_note"]
    for scalar in subject.scalars:
        try:
            value = scalar_value(scalar)
            write_tensor(hd5, scalar.key, value, scalar.instance, {"source": scalar.source, "column": scalar.tensor})
        except INPUT_ERRORS as error:
            return "scalars", f"{scalar.tensor}: {describe(error)}"
    return None


def temporary_path(final: Path) -> Path:
    """``<id>.hd5.<pid>.tmp``: each process writes its own file (two runs on one folder shared ``<id>.hd5.tmp`` and
    deleted or truncated each other's), under a name that readers, which list ``*.hd5``, never take for a sample."""
    return final.with_name(f"{final.name}.{os.getpid()}{TEMPORARY_SUFFIX}")


def _check_complete(temporary: Path, subject: Subject) -> None:
    """Reopen the written file and check that it holds every input, so that no incomplete file is renamed into place.

    Raises:
        OutputError: if the file lacks an input.
    """
    with h5py.File(temporary, "r") as hd5:
        missing = [item.key for item in (*subject.volumes, *subject.scalars) if item.key not in hd5]
    if missing:
        raise OutputError(f"{temporary} is incomplete after writing (no {', '.join(missing)}); it was not kept")


class OutputError(OSError):
    """The output folder cannot take a file (disk full, quota, file size limit): no subject's fault, so the run
    stops. ``rows`` holds the report rows of the subjects finished before it (set by :func:`tensorize_subjects`)."""

    rows: list = []


def _file_image(subject: Subject, name: Path, notes: dict[int, str]) -> tuple[bytes | None, tuple[object, str] | None]:
    """``(bytes of the subject's HD5 file, None)``, or ``(None, (which, reason))`` for its first bad input; the
    volumes' grid notes go in ``notes``.

    The file is built in memory so that the HDF5 library never meets a failing disk write: after one (a full disk)
    h5py could not close the file and the interpreter crashed at exit (exit 139, no report).
    """
    with h5py.File(name, "w", driver="core", backing_store=False) as hd5:
        failure = _write_inputs(hd5, subject, notes)
        hd5.flush()
        return (None, failure) if failure is not None else (hd5.id.get_file_image(), None)


def _write_bytes(path: Path, data: bytes, final: Path) -> None:
    """Write and fsync ``data`` to ``path``.

    Raises:
        OutputError: for any failed write, saying what to do.
    """
    try:
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise OutputError(f"cannot write {final}: {error.strerror or error}; free space on the disk of --tensors "
                          "(or raise its quota or file size limit) and rerun: the files written so far are kept "
                          "and skipped") from error


def write_subject(subject: Subject, folder, overwrite: bool = False) -> list[ReportRow]:
    """Write ``<folder>/<sample_id>.hd5`` atomically; return its report rows.

    Raises:
        OutputError: when the file cannot be written (a full disk stops the run); bad inputs are reported in the
            rows instead.
    """
    final = Path(folder) / f"{subject.sample_id}{HD5_SUFFIX}"
    if final.exists() and not overwrite:
        return subject_rows(subject, SKIPPED_EXISTING, "file exists; pass --overwrite to replace it")
    temporary = temporary_path(final)
    notes: dict[int, str] = {}
    image, failure = _file_image(subject, temporary, notes)
    if failure is not None:
        which, reason = failure
        return subject_rows(subject, FAILED, reason, failed=which)
    try:
        _write_bytes(temporary, image, final)
        _check_complete(temporary, subject)
        if final.exists() and not overwrite:  # another run finished it meanwhile
            return subject_rows(subject, SKIPPED_EXISTING, "file appeared while writing; kept the existing one")
        os.replace(temporary, final)
        return subject_rows(subject, WRITTEN, notes=notes)
    finally:
        temporary.unlink(missing_ok=True)


def tensorize_subjects(subjects: Sequence[Subject], folder, overwrite: bool = False,
                       num_workers: int = 0) -> list[ReportRow]:
    """Write every subject, in ``num_workers`` processes (0 or 1: in this process), with a progress bar.

    Subjects whose file exists are reported as skipped without being sent to a worker (unless ``overwrite``).

    Returns:
        Report rows sorted by sample id.

    Raises:
        OutputError: when a file cannot be written (a full disk); its ``rows`` are those of the subjects done.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[ReportRow] = []
    todo = []
    for subject in subjects:
        if not overwrite and (folder / f"{subject.sample_id}{HD5_SUFFIX}").exists():
            rows.extend(subject_rows(subject, SKIPPED_EXISTING, "file exists; pass --overwrite to replace it"))
        else:
            todo.append(subject)
    try:
        _write_all(todo, folder, overwrite, num_workers, rows)
    except OutputError as error:
        error.rows = _in_order(rows, subjects)  # the report keeps what was done before the disk failed
        raise
    return _in_order(rows, subjects)


def _write_all(todo: Sequence[Subject], folder: Path, overwrite: bool, num_workers: int,
               rows: list[ReportRow]) -> None:
    """Write ``todo``, adding each subject's rows to ``rows`` as it finishes; the first OutputError stops it."""
    with progress(total=len(todo), description="tensorize", unit="subject") as bar:
        if num_workers <= 1:
            for subject in todo:
                rows.extend(write_subject(subject, folder, overwrite))
                bar.update()
            return
        # spawn: workers start clean even when the parent has imported TensorFlow or holds threads.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=num_workers, mp_context=context) as pool:
            futures = [pool.submit(write_subject, subject, folder, overwrite) for subject in todo]
            try:
                for future in as_completed(futures):
                    rows.extend(future.result())
                    bar.update()
            except OutputError:
                for future in futures:
                    future.cancel()  # subjects not started stay unwritten; running ones finish
                raise


def _in_order(rows: Sequence[ReportRow], subjects: Sequence[Subject]) -> list[ReportRow]:
    order = {subject.sample_id: i for i, subject in enumerate(sorted(subjects, key=lambda s: s.sample_id))}
    return sorted(rows, key=lambda row: order[row.sample_id])


# Report ---------------------------------------------------------------------------------------------------
def write_report(rows: Sequence[ReportRow], path) -> Path:
    """Write the report TSV (``sample_id, tensor, path, status, reason``) atomically."""
    frame = pd.DataFrame([[getattr(row, c) for c in REPORT_COLUMNS] for row in rows], columns=list(REPORT_COLUMNS))
    return write_table(frame, path)


def status_counts(rows: Sequence[ReportRow]) -> Counter:
    """Number of subjects per outcome (written, skipped_existing, failed); a subject with a failed row failed."""
    statuses: dict[str, set[str]] = {}
    for row in rows:
        statuses.setdefault(row.sample_id, set()).add(row.status)
    outcome = Counter()
    for found in statuses.values():
        outcome[FAILED if found & {FAILED, NOT_WRITTEN} else SKIPPED_EXISTING if SKIPPED_EXISTING in found
                else WRITTEN] += 1
    return outcome


def commonest_reasons(rows: Sequence[ReportRow], n: int = 3) -> list[tuple[str, int]]:
    """The ``n`` commonest failure reasons with their counts."""
    return Counter(row.reason for row in rows if row.status == FAILED).most_common(n)
