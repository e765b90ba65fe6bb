"""``--mode tensorize``: NIfTI volumes (``--manifest``) and phenotype values (``--phenotype_csv``) to one
``<sample_id>.hd5`` per subject in ``--tensors``.

Manifest: a CSV/TSV with columns ``sample_id``, ``tensor`` (a TensorMap name, resolved like ``--input_tensors``,
with ``--tensormap_prefix``), ``path`` (.nii/.nii.gz; relative paths are relative to the manifest's folder) and
optionally ``instance``. Each volume is stored at its TensorMap's key: as read (full resolution) by default,
so that downsampled maps resample it on read, or fitted to the map's shape with ``--resample``.

Phenotype CSV: a sample id column (``sample_id``, ``eid``, ... or the first column) and one column per scalar.
A column named like a catalogue TensorMap (``age``, ``sex``) is stored at that map's key (categorical maps
store the category index; labels such as ``male`` are accepted); any other column at
``phenotypes/<column>/instance_0``. Empty cells are not written.

Run one tensorize per subject set with both inputs: a subject's file is written whole, and existing files are
skipped (``--overwrite`` replaces them). The report ``tensorize_report.tsv`` (sample_id, tensor, path, status,
reason) goes in ``--tensors`` and in the run folder; the exit status is 1 if any subject failed, or if the disk
filled (the run stops there, and the report lists what was done).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.lookup import catalogue, module_tensormaps, resolve
from ml4ge.nifti import GridExpectation
from ml4ge.readers import read_table
from ml4ge.recipes.settings import RunSettings
from ml4ge.tensorize import (
    FAILED,
    INPUT_ERRORS,
    MAX_SAMPLE_ID_BYTES,
    REPORT_NAME,
    OutputError,
    ScalarInput,
    Subject,
    VolumeInput,
    commonest_reasons,
    describe,
    read_reference,
    status_counts,
    tensorize_subjects,
    write_report,
)
from ml4ge.tensormap import TensorMap

log = logging.getLogger(__name__)


@flag_settings
class TensorizeSettings(RunSettings):
    """The flags of ``--mode tensorize``: the inputs and the folder of HD5 files to write."""

    mode = "tensorize"
    tensors: str | None
    tensormap_prefix: str | None
    manifest: str | None
    phenotype_csv: str | None
    resample: bool
    register_to: tuple[str, ...]


Settings = TensorizeSettings

MANIFEST_COLUMNS = ("sample_id", "tensor", "path")
PHENOTYPE_GROUP = "phenotypes"


# Manifest -------------------------------------------------------------------------------------------------
def read_manifest(path) -> pd.DataFrame:
    """The manifest as strings, column names lower-cased, ``instance`` added (empty) when absent.

    Raises:
        ValueError: for missing columns, no rows, empty ids or paths, ids that cannot be file names,
            non-integer instances, or a (sample, tensor, instance) given twice.
    """
    separator = "\t" if str(path).endswith((".tsv", ".txt")) else ","
    frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"--manifest {path}: missing column(s) {', '.join(missing)}; it has "
                         f"{', '.join(frame.columns)}. Columns: sample_id, tensor, path[, instance].")
    if frame.empty:
        raise ValueError(f"--manifest {path} has no rows.")
    if "instance" not in frame.columns:
        frame["instance"] = ""
    frame = frame.apply(lambda column: column.str.strip())
    for column in MANIFEST_COLUMNS:
        if (frame[column] == "").any():
            raise ValueError(f"--manifest {path}: row {int((frame[column] == '').idxmax()) + 2} has no {column}.")
    _check_sample_ids(frame["sample_id"], f"--manifest {path}")
    bad = frame.loc[(frame["instance"] != "") & ~frame["instance"].str.fullmatch(r"\d+"), "instance"]
    if not bad.empty:
        raise ValueError(f"--manifest {path}: instance {bad.iloc[0]!r} is not a whole number >= 0 (or leave it empty).")
    given = frame[frame["instance"] != ""]
    twice = given[given.duplicated(["sample_id", "tensor", "instance"])]
    if not twice.empty:
        row = twice.iloc[0]
        raise ValueError(f"--manifest {path}: sample {row['sample_id']!r} has tensor {row['tensor']!r} instance "
                         f"{row['instance']} twice; keep one row.")
    return frame


def _check_sample_ids(ids: pd.Series, where: str) -> None:
    if ids.isna().any():  # an empty id cell reads as NaN
        raise ValueError(f"{where}: row {int(np.flatnonzero(ids.isna())[0]) + 2} has no sample id; give every row one.")
    ids = ids.astype(object).map(str)
    unusable = ids[ids.str.contains(r"[/\\\x00]") | ids.isin(["", ".", ".."])]
    if not unusable.empty:
        raise ValueError(f"{where}: sample id {unusable.iloc[0]!r} cannot be a file name; "
                         "use ids without slashes (or NUL).")
    long = ids[ids.map(lambda sample_id: len(sample_id.encode("utf-8", "surrogatepass"))) > MAX_SAMPLE_ID_BYTES]
    if not long.empty:
        raise ValueError(f"{where}: sample id {long.iloc[0][:40]!r}... is too long for a file name "
                         f"({len(long.iloc[0].encode('utf-8', 'surrogatepass'))} bytes); keep ids to "
                         f"{MAX_SAMPLE_ID_BYTES} bytes.")


def manifest_tensormaps(frame: pd.DataFrame, prefix: str | None) -> dict[str, TensorMap]:
    """The TensorMap of every tensor name in the manifest.

    Raises:
        UnknownNameError: for an unknown name, with the closest matches.
        ValueError: for maps that cannot hold a NIfTI volume (scalars, maps computed by a reader).
    """
    maps = {name: resolve(name, prefix, from_data=True) for name in sorted(frame["tensor"].unique())}
    for name, tm in maps.items():
        if tm.reader is not None:
            raise ValueError(f"--manifest: TensorMap {name!r} is computed on read by {tm.reader!r}; "
                             "tensorize the map it is computed from instead.")
        if tm.is_scalar:
            raise ValueError(f"--manifest: TensorMap {name!r} is a scalar of shape {tm.shape}; put scalars in "
                             "--phenotype_csv and volumes in the manifest.")
    return maps


def volume_inputs(manifest_path, prefix: str | None, resample: bool,
                  references: Mapping[str, str] | None = None) -> dict[str, list[VolumeInput]]:
    """Volume inputs per sample id, in manifest row order; ``references`` maps a manifest tensor to the
    template its volumes are registered to."""
    references = references or {}
    frame = read_manifest(manifest_path)
    maps = manifest_tensormaps(frame, prefix)
    grids = grid_expectations(maps, resample, prefix)
    base = Path(manifest_path).resolve().parent
    inputs: dict[str, list[VolumeInput]] = {}
    for row in frame.itertuples(index=False):
        tm = maps[row.tensor]
        path = Path(row.path) if Path(row.path).is_absolute() else base / row.path
        instance = int(row.instance) if row.instance else None
        inputs.setdefault(row.sample_id, []).append(
            VolumeInput(row.tensor, str(path), tm.key, tm.shape, instance, resample and tm.axial_slices is None,
                        references.get(row.tensor), tm.normalization, grids[row.tensor])
        )
    return inputs


def volume_alternatives(names, prefix: str | None) -> tuple[tuple[str, object], ...]:
    """``(name, voxel_mm)`` of the volume maps a refusal may suggest: the catalogue's and those of the modules the
    manifest's dotted names come from (already imported), named as a manifest would name them; voxel_mm None marks
    a map that resamples any grid."""
    found = dict(catalogue())
    for name in names:
        module_part = name.rpartition(".")[0]
        if module_part:
            module = importlib.import_module(f"{prefix}.{module_part}" if prefix else module_part)
            found.update({f"{module_part}.{attribute}": tm for attribute, tm in module_tensormaps(module).items()})
    return tuple((name, tm.voxel_mm) for name, tm in found.items()
                 if not tm.is_scalar and tm.reader is None and tm.axial_slices is None
                 and (tm.voxel_mm is not None or tm.resize))


def grid_expectations(maps: Mapping[str, TensorMap], resample: bool,
                      prefix: str | None = None) -> dict[str, GridExpectation]:
    """What each manifest map expects of its volumes' grids (see :class:`~ml4ge.nifti.GridExpectation`)."""
    alternatives = volume_alternatives(maps, prefix)
    expectations = {}
    for name, tm in maps.items():
        resamples = tm.resize or (resample and tm.axial_slices is None)
        if tm.voxel_mm is None and not resamples:
            log.warning("tensorize: TensorMap %s declares no voxel_mm, so its volumes' voxel sizes are not checked",
                        name)
        shape = () if tm.axial_slices is not None else tm.shape[:3]
        expectations[name] = GridExpectation(name, shape, tm.voxel_mm, resamples, alternatives)
    return expectations


def registration_templates(pairs, manifest: pd.DataFrame | None) -> dict[str, str]:
    """``--register_to TENSOR=TEMPLATE`` pairs as ``{tensor: template path}``.

    Raises:
        ValueError: for a pair without ``=``, a tensor given twice or not in the manifest, or a template that
            is missing or not a 3-D NIfTI.
    """
    templates: dict[str, str] = {}
    for pair in pairs:
        tensor, separator, path = str(pair).partition("=")
        if not separator or not tensor or not path:
            raise ValueError(f"--register_to {pair!r}: write TENSOR=TEMPLATE, e.g. t1=MNI152_T1_1mm_brain.nii.gz")
        if tensor in templates:
            raise ValueError(f"--register_to names {tensor!r} twice; give one template per tensor.")
        if manifest is None or tensor not in set(manifest["tensor"]):
            raise ValueError(f"--register_to {pair!r}: {tensor!r} is not a tensor of --manifest; "
                             "use a name from its tensor column.")
        if not Path(path).is_file():
            raise ValueError(f"--register_to {pair!r}: no template file {path!r}.")
        templates[tensor] = str(Path(path).resolve())
        _check_template(pair, templates[tensor])
    return templates


def _check_template(pair: str, path: str) -> None:
    """Read the template whole (and prepare it, once per process), so that a file that is not NIfTI, is
    truncated or is empty is refused here rather than blamed on every subject.

    Raises:
        ValueError: saying what is wrong with the template.
    """
    try:
        shape = nib.load(path).shape
        three_d = len([n for n in shape if n > 1]) == 3
        if three_d:
            read_reference(path)
    except INPUT_ERRORS as error:
        raise ValueError(f"--register_to {pair!r}: the template cannot be used: {describe(error)}. Give a whole "
                         "3-D NIfTI file (.nii or .nii.gz) of a skull-stripped brain.") from error
    if not three_d:
        raise ValueError(f"--register_to {pair!r}: the template has shape {shape}; give a 3-D volume.")


# Phenotypes -----------------------------------------------------------------------------------------------
def phenotype_targets(table: pd.DataFrame) -> dict[str, tuple[str, int, dict | None]]:
    """``column -> (key, instance, channel_map)``: a catalogue map's key, or ``phenotypes/<column>``.

    Raises:
        ValueError: for a column named like a catalogue volume, a column name with a slash, or a text column
            that is not a categorical map.
    """
    maps = catalogue()
    targets = {}
    for column in map(str, table.columns):
        if "/" in column:
            raise ValueError(f"--phenotype_csv column {column!r} contains '/'; rename it.")
        tm = maps.get(column)
        if tm is not None and not tm.is_scalar and tm.channel_map is None:
            raise ValueError(f"--phenotype_csv column {column!r} names the volume TensorMap {column!r}; rename it.")
        if tm is None:
            numbers = pd.to_numeric(table[column], errors="coerce")
            if table[column].notna().any() and numbers.isna().all():
                raise ValueError(f"--phenotype_csv column {column!r} holds text ({table[column].dropna().iloc[0]!r}); "
                                 "drop it or define a categorical TensorMap of that name.")
            targets[column] = (f"{PHENOTYPE_GROUP}/{column}", 0, None)
        else:
            instance = tm.instance if isinstance(tm.instance, int) else 0
            targets[column] = (tm.key, instance, dict(tm.channel_map) if tm.channel_map else None)
    return targets


def scalar_inputs(path) -> dict[str, list[ScalarInput]]:
    """Phenotype inputs per sample id; empty cells are left out."""
    table = read_table(str(path))
    _check_sample_ids(pd.Series(table.index.astype(str)), f"--phenotype_csv {path}")
    targets = phenotype_targets(table)
    inputs: dict[str, list[ScalarInput]] = {}
    for sample_id, row in table.iterrows():
        values = inputs.setdefault(str(sample_id), [])
        for column, (key, instance, channel_map) in targets.items():
            if pd.notna(row[column]):
                values.append(ScalarInput(column, key, row[column], str(path), instance, channel_map))
    return inputs


def build_subjects(args: TensorizeSettings) -> list[Subject]:
    """One :class:`Subject` per sample id found in the manifest or the phenotype CSV, sorted by id."""
    volumes = {}
    if args.manifest:
        references = registration_templates(args.register_to, read_manifest(args.manifest))
        volumes = volume_inputs(args.manifest, args.tensormap_prefix, args.resample, references)
    scalars = scalar_inputs(args.phenotype_csv) if args.phenotype_csv else {}
    source = str(args.phenotype_csv or "")
    return [
        Subject(sample_id, tuple(volumes.get(sample_id, ())), tuple(scalars.get(sample_id, ())), source)
        for sample_id in sorted(set(volumes) | set(scalars))
    ]


# Recipe ---------------------------------------------------------------------------------------------------
def validate(args: TensorizeSettings) -> None:
    """Check the flags and inputs before any work.

    Raises:
        ValueError: without --tensors, without any input, for a bad manifest or phenotype CSV (or one without rows).
        UnknownNameError: for an unknown TensorMap in the manifest, with the closest names.
    """
    if not args.tensors:
        raise ValueError("--mode tensorize needs --tensors, the folder to write <sample_id>.hd5 files into.")
    if not args.manifest and not args.phenotype_csv:
        raise ValueError("--mode tensorize needs --manifest (NIfTI volumes) and/or --phenotype_csv (scalars).")
    if args.num_workers < 0:
        raise ValueError(f"--num_workers {args.num_workers}: use 0 or more.")
    manifest = read_manifest(args.manifest) if args.manifest else None
    if manifest is not None:
        manifest_tensormaps(manifest, args.tensormap_prefix)
    registration_templates(args.register_to, manifest)
    if args.phenotype_csv:
        table = read_table(str(args.phenotype_csv))
        if len(table.index) == 0 or len(table.columns) == 0:
            raise ValueError(f"--phenotype_csv {args.phenotype_csv} has {len(table.index)} rows and "
                             f"{len(table.columns)} value columns; give one row per sample and a column per value.")
        _check_sample_ids(pd.Series(table.index.astype(str)), f"--phenotype_csv {args.phenotype_csv}")
        phenotype_targets(table)


def write_reports(rows, args: TensorizeSettings) -> Path:
    """The report in ``--tensors`` and in the run folder; returns the first."""
    write_report(rows, run_folder(args) / REPORT_NAME)
    return write_report(rows, Path(args.tensors) / REPORT_NAME)


def log_grid_notes(rows) -> None:
    """One line per map whose written volumes were on another grid than the map's (the report has each one): a
    note, not a warning, since the map takes them by design (it resamples, or crops and pads on read)."""
    noted = pd.DataFrame([(row.tensor, row.reason) for row in rows if row.status == "written" and row.reason
                          and row.tensor != "phenotypes"], columns=["tensor", "reason"])
    for tensor, notes in noted.groupby("tensor"):
        log.info("tensorize: %d %s volume(s) on another grid than the map's, e.g. %s (the report's reason column "
                 "has each)", len(notes), tensor, notes.reason.iloc[0])


def run(args: TensorizeSettings) -> int:
    """Tensorize every subject; write the report; 1 if any subject failed, else 0."""
    subjects = build_subjects(args)
    log.info("tensorize: %d subjects into %s with %d worker(s)", len(subjects), args.tensors, args.num_workers)
    try:
        rows = tensorize_subjects(subjects, args.tensors, overwrite=args.overwrite, num_workers=args.num_workers)
    except OutputError as error:  # a full disk: report what was done, then fail the run with the error
        log.error("tensorize stopped: %s", error)
        write_reports(error.rows, args)
        raise
    report = write_reports(rows, args)
    counts = status_counts(rows)
    log.info("tensorize: %d written, %d skipped (file exists), %d failed; report %s",
             counts["written"], counts["skipped_existing"], counts[FAILED], report)
    log_grid_notes(rows)
    if counts[FAILED]:
        for reason, count in commonest_reasons(rows):
            log.error("tensorize: %d input(s) failed: %s", count, reason)
        return 1
    return 0
