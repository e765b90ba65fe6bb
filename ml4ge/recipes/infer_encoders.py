"""``--mode infer_encoders``: latent tables ``hidden_<tmap>_<id>.tsv`` from a trained model's encoders.

Each input TensorMap's encoder (``encoder_<tmap>.keras`` beside ``--model_file``, or the family model's own
:meth:`encode` of that map for a family that writes no part files) is run alone over every sample
of ``--tensors`` (filtered by ``--sample_csv``), batch by batch: memory does not grow with the cohort. Each
modality is read on its own, so a sample missing one modality still gets its other latents; samples that fail
to load are listed in ``skipped_samples.tsv``. Tables are written to a temporary name and renamed when whole.
With ``--shard i/n`` only the i-th of n disjoint shards is inferred (``hidden_<tmap>_<id>.shard_i_of_n.tsv``,
``skipped_samples.shard_i_of_n.tsv``); ``--mode merge_shards`` joins them.

Encoders are used alone, so a DropFuse merge plays no part and latents are deterministic. When
``--input_tensors`` are all the inputs of a model that fuses several, the fused latent is written too
(``hidden_fused_<id>.tsv``): the model's merge at inference (DropFuse: the mean of the present modalities). Maps
named by ``--optional_tensors`` (and those the model was trained with as optional) may be missing there: a
subject with T1 alone gets the fused latent of T1 alone, so that table has a row for every subject that has the
required maps. A family may have other codes of a map (a VAE's log-variances, a cVAE's background means): each is
written as ``hidden_<tmap>_<name>_<id>.tsv``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.latents import LatentTableWriter, cohort_paths, parse_shard, table_name
from ml4ge.lookup import resolve_all, tensormap_names
from ml4ge.progress import progress
from ml4ge.recipes.settings import RunSettings

log = logging.getLogger(__name__)
SKIPPED_STEM = "skipped_samples"
FUSED = "fused"  # the latent table of the fused latent: hidden_fused_<id>.tsv


@flag_settings
class InferEncodersSettings(RunSettings):
    """The flags of ``--mode infer_encoders``; shards of one table may run with one ``--id``."""

    mode = "infer_encoders"
    rerun_may_change = RunSettings.rerun_may_change | {"shard"}
    tensors: str | None
    input_tensors: tuple[str, ...]
    optional_tensors: tuple[str, ...]
    tensormap_prefix: str | None
    sample_csv: str | None
    model_file: str | None
    batch_size: int
    tsv_style: str
    shard: str | None


Settings = InferEncodersSettings


def check_model_file(args: argparse.Namespace) -> None:
    """A trained model is required: never write latents from random weights.

    Raises:
        ValueError: without ``--model_file``.
        FileNotFoundError: if it does not exist.
    """
    if not args.model_file:
        raise ValueError(f"--mode {args.mode} needs --model_file <output_folder>/<train id>/<train id>.keras of a "
                         "trained model (latents of an untrained model would be random).")
    if not Path(args.model_file).is_file():
        raise FileNotFoundError(f"--model_file {args.model_file!r} does not exist.")


def validate(args: InferEncodersSettings) -> None:
    """Checks before any work: model file and encoders, tensors folder, TensorMaps, shard.

    Raises:
        ValueError, FileNotFoundError, KeyError: with what to change.
    """
    check_model_file(args)
    if not args.input_tensors:
        raise ValueError("--mode infer_encoders needs --input_tensors: the TensorMaps whose encoders to run.")
    if not args.tensors:
        raise ValueError("--mode infer_encoders needs --tensors, the folder of <sample_id>.hd5 files.")
    parse_shard(args.shard)
    cohort_paths(args.tensors, args.sample_csv)
    from ml4ge.models.artifacts import missing_parts, saved_spec, saves_parts

    input_tmaps = resolve_all(args.input_tensors, args.tensormap_prefix)
    check_maps(args.model_file, input_tmaps)
    if not saves_parts(saved_spec(args.model_file)):
        return  # the family model's own encoders: check_maps covered them
    missing = missing_parts(args.model_file, "encoder", input_tmaps)
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing: --model_file's folder has no encoder for these maps; "
                                "copy the whole model folder that --mode train wrote.")
    check_encoder_files(args.model_file, input_tmaps)


def check_maps(model_file, input_tmaps, output_tmaps=(), every_input: bool = False) -> None:
    """Refuse maps the saved model was not trained with, or that read another shape than it was trained on.

    Args:
        every_input: also refuse ``input_tmaps`` that lack one of the model's inputs (a whole model needs all).

    Raises:
        ValueError: naming the run's map and what the model takes, with what to change.
    """
    from ml4ge.models.artifacts import saved_spec

    spec = saved_spec(model_file)
    _check_against(spec["inputs"], input_tmaps, "--input_tensors", "takes", model_file)
    _check_against(spec["outputs"], output_tmaps, "--output_tensors", "gives", model_file)
    lacking = [m["name"] for m in spec["inputs"] if m["name"] not in {tm.name for tm in input_tmaps}]
    if every_input and lacking:
        raise ValueError(f"--input_tensors lacks {', '.join(lacking)}: the model {str(model_file)!r} takes "
                         f"{', '.join(m['name'] for m in spec['inputs'])}; give all of them.")


def _check_against(saved: list[dict], tmaps, flag: str, verb: str, model_file) -> None:
    shapes = {m["name"]: tuple(m["shape"]) for m in saved}
    for tm in tmaps:
        if tm.name not in shapes:
            raise ValueError(f"{flag} {tm.name}: the model {str(model_file)!r} {verb} {', '.join(shapes)}; give maps "
                             "it was trained with.")
        if shapes[tm.name] != tm.shape:
            raise ValueError(f"{flag} {tm.name} reads shape {tm.shape}, but the model was trained on {tm.name} of "
                             f"shape {shapes[tm.name]}; use the TensorMaps (--tensormap_prefix) it was trained with.")


def check_encoder_files(model_file, input_tmaps) -> None:
    """Refuse an ``encoder_<tm>.keras`` whose input is not ``tm``'s (a file of another map or model).

    Raises:
        ValueError: naming the file's input and the run's map, with their shapes.
    """
    from ml4ge.models.layout import folder_of, part_path

    for tm in input_tmaps:
        path = part_path(folder_of(model_file), "encoder", tm)
        inputs = saved_inputs(path)
        if inputs != {tm.input_name: tm.shape}:
            taken = ", ".join(f"{name} {shape}" for name, shape in inputs.items())
            raise ValueError(f"{path.name} takes {taken}, but --input_tensors reads {tm.name} as {tm.input_name} "
                             f"{tm.shape}: the file belongs to another map or model; copy the whole model folder "
                             "that --mode train wrote.")


def saved_inputs(path) -> dict[str, tuple]:
    """``{input name: shape without the batch axis}`` of a saved Functional ``.keras`` file, read from its config.

    Raises:
        ValueError: if the file holds no readable model config.
    """
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            layers = json.loads(archive.read("config.json"))["config"]["layers"]
        return {layer["config"]["name"]: tuple(layer["config"]["batch_shape"][1:]) for layer in layers
                if layer["class_name"] == "InputLayer"}
    except (zipfile.BadZipFile, KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} holds no model config that names its inputs ({type(error).__name__}: "
                         f"{error}); copy the whole model folder that --mode train wrote.") from None


def write_extra_codes(args, input_tmaps, paths, shard, folder: Path, skipped) -> None:
    """The family's other codes of each map (:meth:`~ml4ge.models.family.FamilyModel.extra_encoders_of`: a VAE's
    log-variances, a cVAE's background means) as ``hidden_<tm>_<name>_<id>.tsv``; none for a family that writes
    its encoders as files."""
    from ml4ge.models.artifacts import saved_spec, saves_parts

    if saves_parts(saved_spec(args.model_file)):
        return
    model = load_model(args.model_file)
    for tm in input_tmaps:
        for name, encoder in model.extra_encoders_of(tm).items():
            path = folder / table_name(f"{tm.name}_{name}", args.id, shard)
            rows = write_latents(encoder, tm, paths, path, args.batch_size, args.num_workers, args.tsv_style,
                                 skipped)
            log.info("%s %s: %d of %d samples written to %s", tm.name, name, rows, len(paths), path)


def skipped_name(shard) -> str:
    return f"{SKIPPED_STEM}.tsv" if shard is None else f"{SKIPPED_STEM}.shard_{shard[0]}_of_{shard[1]}.tsv"


def run(args: InferEncodersSettings) -> int:
    """Write one latent table per input TensorMap. Returns 0."""
    from ml4ge.pipeline import SkippedSamples

    folder = run_folder(args)
    shard = parse_shard(args.shard)
    paths = cohort_paths(args.tensors, args.sample_csv, shard)
    skipped = SkippedSamples(folder / skipped_name(shard))
    input_tmaps = resolve_all(args.input_tensors, args.tensormap_prefix)
    encoders = load_encoders(args.model_file, input_tmaps)
    for tm in input_tmaps:
        path = folder / table_name(tm.name, args.id, shard)
        rows = write_latents(encoders[tm.name], tm, paths, path, args.batch_size, args.num_workers,
                             args.tsv_style, skipped)
        log.info("%s: %d of %d samples written to %s", tm.name, rows, len(paths), path)
    write_extra_codes(args, input_tmaps, paths, shard, folder, skipped)
    if fuses_all(args.model_file, input_tmaps):
        model = load_model(args.model_file)
        optional = set(model.optional) | set(optional_tensors(args, input_tmaps))
        path = folder / table_name(FUSED, args.id, shard)
        rows = write_fused(model, input_tmaps, paths, path, args.batch_size, args.num_workers, args.tsv_style,
                           skipped, optional)
        log.info("fused latent: %d of %d samples written to %s", rows, len(paths), path)
    skipped.write()
    if skipped.count:
        log.warning("%d sample/tensor pairs skipped; see %s", skipped.count, skipped.path)
    return 0


def load_encoders(model_file, input_tmaps) -> dict:
    """``{tm.name: encoder Model}`` of the trained model (see :func:`ml4ge.models.artifacts.load_encoders`)."""
    from ml4ge.models.artifacts import load_encoders as load

    return load(model_file, input_tmaps)


def load_model(model_file):
    """The trained family model (safe mode, not compiled); its :meth:`encode` gives the latents (for a VAE: the
    means)."""
    from ml4ge.models.artifacts import load_model as load

    return load(model_file, compile=False)


def fuses_all(model_file, input_tmaps) -> bool:
    """Whether the model fuses several inputs and ``input_tmaps`` are exactly those inputs."""
    from ml4ge.models.artifacts import saved_spec

    inputs = [m["name"] for m in saved_spec(model_file)["inputs"]]
    return len(inputs) > 1 and sorted(inputs) == sorted(tm.name for tm in input_tmaps)


def optional_tensors(args: argparse.Namespace, input_tmaps) -> list[str]:
    """TensorMap names of ``--optional_tensors`` (command-line names or TensorMap names of the inputs)."""
    return list(tensormap_names(args.optional_tensors, args.input_tensors, input_tmaps).values())


def write_fused(model, input_tmaps, paths, path: Path, batch_size: int, num_workers: int,
                tsv_style: str = "standard", skipped=None, optional=()) -> int:
    """Stream ``paths`` through the model's encoders and merge into the latent table ``path``; returns the rows.

    Raises:
        NoUsableSamplesError: if no sample could be read.
    """
    from ml4ge.pipeline import iterate_batches, read_ahead

    batches = read_ahead(iterate_batches(paths, input_tmaps, [], batch_size, num_workers=num_workers,
                                         skipped=skipped, optional=optional))
    with LatentTableWriter(path, model.latent_size, tsv_style) as table:
        for sample_ids, inputs, _ in batches:
            table.write(sample_ids, np.asarray(model.latent(inputs)))
    return table.rows


def write_latents(encoder, tm, paths, path: Path, batch_size: int, num_workers: int, tsv_style: str = "standard",
                  skipped=None, show_progress: bool | None = None) -> int:
    """Stream ``paths`` through ``encoder`` into the latent table ``path``; returns the number of rows.

    Raises:
        NoUsableSamplesError: if no sample could be read.
        ValueError: if the encoder gives non-finite latents.
    """
    from ml4ge.pipeline import iterate_batches, read_ahead

    dimension = int(np.prod(encoder.output.shape[1:]))
    batches = read_ahead(iterate_batches(paths, [tm], [], batch_size, num_workers=num_workers, skipped=skipped))
    bar = progress(total=len(paths), description=f"infer_encoders {tm.name}", unit="sample",
                   disable=None if show_progress is None else not show_progress)
    with LatentTableWriter(path, dimension, tsv_style) as table, bar:
        for sample_ids, inputs, _ in batches:
            table.write(sample_ids, encoder.predict_on_batch(inputs[tm.input_name]))
            bar.update(len(sample_ids))
    return table.rows
