"""``--mode infer``: predictions of a trained model for every sample of ``--tensors``.

Writes ``<output_folder>/<id>/inference_<id>.tsv`` with the id column(s) (``sample_id``, or ``FID IID`` with
``--tsv_style genetics``) then, per scalar output, ``<output>_prediction`` and ``<output>_actual`` (per channel,
``<output>_<label>_prediction``/``_actual``, for categorical outputs). Continuous predictions are mapped back to
the stored scale with the TensorMap's normalizer; actual values are the stored values, ``NA`` where a sample has
none (predictions need only the inputs). Volume and image outputs are written per sample as NIfTI
(``inferred/<sample_id>_<output>.nii.gz``, on the map's grid: the affine stored beside the source tensor carried
through the map's crop/pad or resampling, :mod:`ml4ge.grids`)
or, with ``--inference_format hd5``, as ``inferred/<sample_id>.hd5``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.atomic import atomic_path
from ml4ge.batch_reading import sample_errors
from ml4ge.grids import map_affine
from ml4ge.latents import cohort_paths, id_columns
from ml4ge.lookup import resolve_all
from ml4ge.progress import progress
from ml4ge.recipes.infer_encoders import check_maps, check_model_file
from ml4ge.recipes.settings import RunSettings
from ml4ge.skipped import FILE_TENSOR, SampleError

log = logging.getLogger(__name__)
FORMATS = ("nifti", "hd5")


@flag_settings
class InferSettings(RunSettings):
    """The flags of ``--mode infer``."""

    mode = "infer"
    tensors: str | None
    input_tensors: tuple[str, ...]
    output_tensors: tuple[str, ...]
    tensormap_prefix: str | None
    sample_csv: str | None
    model_file: str | None
    batch_size: int
    tsv_style: str
    inference_format: str


Settings = InferSettings


def validate(args: InferSettings) -> None:
    """Raises ValueError/FileNotFoundError/KeyError before any work, with what to change."""
    check_model_file(args)
    if not args.input_tensors or not args.output_tensors:
        raise ValueError("--mode infer needs the model's --input_tensors and --output_tensors.")
    if not args.tensors:
        raise ValueError("--mode infer needs --tensors, the folder of <sample_id>.hd5 files.")
    if getattr(args, "inference_format", "nifti") not in FORMATS:
        raise ValueError(f"--inference_format must be one of {FORMATS}, got {args.inference_format!r}.")
    cohort_paths(args.tensors, args.sample_csv)
    check_maps(args.model_file, resolve_all(args.input_tensors, args.tensormap_prefix),
               resolve_all(args.output_tensors, args.tensormap_prefix), every_input=True)
    _refuse_bin_heads(args)


def _refuse_bin_heads(args: InferSettings) -> None:
    """A ``soft_label`` head outputs one log-probability per age bin, not the map's value: its ages come from
    ``--mode brain_age`` (the expectation over the bins), not from a column per bin here."""
    from ml4ge.models.artifacts import saved_spec

    decoders = saved_spec(args.model_file).get("decoders", {})
    binned = [name for name, entry in decoders.items() if entry.get("block") == "soft_label"]
    if binned:
        raise ValueError(f"--model_file {args.model_file!r} predicts {', '.join(binned)} as soft-label bins; run "
                         "--mode brain_age for its ages (the expectation over the bins, with the bias correction).")


def columns(tm) -> list[str]:
    """Prediction and actual column names of a scalar output."""
    if tm.channel_map is not None:
        labels = sorted(tm.channel_map, key=tm.channel_map.get)
        return [f"{tm.name}_{label}_{kind}" for label in labels for kind in ("prediction", "actual")]
    if tm.shape[0] == 1:
        return [f"{tm.name}_prediction", f"{tm.name}_actual"]
    return [f"{tm.name}_{i}_{kind}" for i in range(tm.shape[0]) for kind in ("prediction", "actual")]


def actual(tm, hd5, sample_id: str) -> np.ndarray | None:
    """The stored value of a scalar output fitted to its shape, or None when the sample has none."""
    try:
        raw = tm.read_raw(hd5, sample_id)
        tm.validate(raw)
        return tm.fit_shape(raw).reshape(-1)
    except (KeyError, ValueError) as error:
        log.debug("%s has no usable %s: %s", sample_id, tm.name, error)
        return None


def descale(tm, prediction: np.ndarray) -> np.ndarray:
    """A continuous prediction on the stored scale (categorical probabilities are kept as they are)."""
    inverse = getattr(tm.normalization, "inverse_transform", None)
    if tm.channel_map is not None or inverse is None:
        return prediction
    return np.asarray(inverse(prediction), dtype=np.float64)


def affine_of(tm, hd5) -> np.ndarray:
    """The affine of ``tm``'s grid in one sample's file (:func:`ml4ge.grids.map_affine`: the stored affine carried
    through the map's crop/pad or resampling), else the identity (the data carries none).

    Raises:
        ValueError: if the stored attribute is not 16 finite numbers.
    """
    affine = map_affine(tm, hd5)
    if affine is None:
        log.debug("%s: no affine stored with its data; its NIfTI predictions get the identity", tm.name)
        return np.eye(4)
    return affine


def write_volume(tm, sample_id: str, prediction: np.ndarray, affine: np.ndarray, folder: Path, fmt: str) -> Path:
    """One sample's predicted volume/image as NIfTI (with ``affine``, its grid's) or into ``<sample_id>.hd5``."""
    folder.mkdir(parents=True, exist_ok=True)
    values = prediction[..., 0] if prediction.shape[-1] == 1 else prediction
    if fmt == "nifti":
        import nibabel as nib

        path = folder / f"{sample_id}_{tm.name}.nii.gz"
        temporary = folder / f".{sample_id}_{tm.name}.tmp.nii.gz"
        try:
            nib.save(nib.Nifti1Image(values.astype(np.float32), affine), temporary)
            os.replace(temporary, path)
        finally:  # a failed save leaves no temporary file
            temporary.unlink(missing_ok=True)
        return path
    import h5py

    from ml4ge.hd5 import write_tensor

    path = folder / f"{sample_id}.hd5"
    with h5py.File(path, "a") as out:
        if f"{tm.name}_prediction" in out:
            del out[f"{tm.name}_prediction"]
        write_tensor(out, f"{tm.name}_prediction", values, instance=0, attributes={"affine": affine})
    return path


def run(args: InferSettings) -> int:
    """Predict every sample; returns 0.

    A sample whose stored values cannot be read (inputs, actual values, a volume's affine) is skipped and listed
    in ``skipped_samples.tsv``; the table is written under a temporary name, removed if the run fails.

    Raises:
        NoUsableSamplesError: if no sample could be predicted.
    """
    from ml4ge.models.artifacts import load_model
    from ml4ge.pipeline import NoUsableSamplesError, SkippedSamples

    folder = run_folder(args)
    input_tmaps = resolve_all(args.input_tensors, args.tensormap_prefix)
    output_tmaps = resolve_all(args.output_tensors, args.tensormap_prefix)
    model = load_model(args.model_file, compile=False)
    paths = {Path(p).name[: -len(".hd5")]: p for p in cohort_paths(args.tensors, args.sample_csv)}
    skipped = SkippedSamples(folder)
    table = folder / f"inference_{args.id}.tsv"
    try:
        with atomic_path(table) as temporary:
            rows = _predict(model, args, input_tmaps, output_tmaps, paths, temporary, skipped)
            if not rows:
                raise NoUsableSamplesError.from_reasons(skipped.reasons(), len(paths))
    finally:
        skipped.write()
    log.info("predictions of %d samples written to %s", rows, table)
    return 0


def _predict(model, args, input_tmaps, output_tmaps, paths: dict, table: Path, skipped) -> int:
    """Write the predictions of every readable sample to ``table``; returns the rows written."""
    from ml4ge.pipeline import iterate_batches

    optional = getattr(model, "optional", ())  # a sample lacking an optional map is predicted from what it has
    scalars = [tm for tm in output_tmaps if tm.is_scalar]
    ids, rows = id_columns(args.tsv_style), 0
    with open(table, "w") as out, progress(total=len(paths), description="infer", unit="sample") as bar:
        out.write("\t".join([*ids, *(c for tm in scalars for c in columns(tm))]) + "\n")
        for sample_ids, inputs, _ in iterate_batches(list(paths.values()), input_tmaps, [], args.batch_size,
                                                     num_workers=args.num_workers, skipped=skipped,
                                                     optional=optional):
            predicted = model.predict_on_batch(inputs)
            for row, sample_id in enumerate(sample_ids):
                try:
                    cells, affines = _stored(scalars, output_tmaps, predicted, row, paths[sample_id], sample_id)
                except SampleError as error:
                    skipped.record_error(error)
                    continue
                for tm, affine in affines.items():
                    write_volume(tm, sample_id, np.asarray(predicted[tm.output_name][row], np.float32), affine,
                                 Path(table).parent / "inferred", getattr(args, "inference_format", "nifti"))
                out.write("\t".join([*[sample_id] * len(ids), *cells]) + "\n")
                rows += 1
            bar.update(len(sample_ids))
    return rows


def _stored(scalars, output_tmaps, predicted, row: int, path, sample_id: str) -> tuple[list[str], dict]:
    """What a sample's rows need from its file: the scalar cells and each volume output's affine.

    Raises:
        SampleError: naming the map whose stored values cannot be read.
    """
    from ml4ge.hd5 import open_sample

    with sample_errors(sample_id, FILE_TENSOR, path):
        hd5 = open_sample(path)
    with hd5:
        cells = []
        for tm in scalars:
            with sample_errors(sample_id, tm.name, path):
                cells += _scalar_cells(tm, predicted, row, hd5, sample_id)
        affines = {}
        for tm in output_tmaps:
            if not tm.is_scalar:
                with sample_errors(sample_id, tm.name, path):
                    affines[tm] = affine_of(tm, hd5)
    return cells, affines


def _scalar_cells(tm, predicted, row: int, hd5, sample_id: str) -> list[str]:
    prediction = descale(tm, np.asarray(predicted[tm.output_name][row], np.float64).reshape(-1))
    truth = actual(tm, hd5, sample_id)
    cells = []
    for i, value in enumerate(prediction):
        cells += [f"{value:.7g}", "NA" if truth is None else f"{float(truth[i]):.7g}"]
    return cells
