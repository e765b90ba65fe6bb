"""``--mode infer_encoders``: latent tables ``hidden_<tmap>_<id>.tsv`` from a trained model's encoders.

Each input TensorMap's encoder (``encoder_<tmap>.keras`` beside ``--model_file``) is run alone over every sample
of ``--tensors`` (filtered by ``--sample_csv``), batch by batch: memory does not grow with the cohort. Each
modality is read on its own, so a sample missing one modality still gets its other latents; samples that fail
to load are listed in ``skipped_samples.tsv``. Tables are written to a temporary name and renamed when whole.
With ``--shard i/n`` only the i-th of n disjoint shards is inferred (``hidden_<tmap>_<id>.shard_i_of_n.tsv``,
``skipped_samples.shard_i_of_n.tsv``); ``--mode merge_shards`` joins them.

Encoders are used alone, so a DropFuse merge plays no part and latents are deterministic.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.latents import LatentTableWriter, cohort_paths, parse_shard, table_name
from ml4ge.lookup import resolve_all
from ml4ge.progress import progress
from ml4ge.recipes.settings import RunSettings

log = logging.getLogger(__name__)
SKIPPED_STEM = "skipped_samples"


@flag_settings
class InferEncodersSettings(RunSettings):
    """The flags of ``--mode infer_encoders``; shards of one table may run with one ``--id``."""

    mode = "infer_encoders"
    rerun_may_change = RunSettings.rerun_may_change | {"shard"}
    tensors: str | None
    input_tensors: tuple[str, ...]
    tensormap_prefix: str | None
    sample_csv: str | None
    model_file: str | None
    batch_size: int
    tsv_style: str
    shard: str | None


Settings = InferEncodersSettings


def encoder_path(model_file, tm) -> Path:
    """``encoder_<tmap>.keras`` in the folder of ``model_file``."""
    from ml4ge.tensormap import keras_safe

    return Path(model_file).parent / f"encoder_{keras_safe(tm.name)}.keras"


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
    for tm in resolve_all(args.input_tensors, args.tensormap_prefix):
        if not encoder_path(args.model_file, tm).is_file():
            raise FileNotFoundError(f"{encoder_path(args.model_file, tm)} is missing: --model_file's folder has no "
                                    f"encoder for {tm.name!r}; was it among the training --input_tensors?")


def skipped_name(shard) -> str:
    return f"{SKIPPED_STEM}.tsv" if shard is None else f"{SKIPPED_STEM}.shard_{shard[0]}_of_{shard[1]}.tsv"


def run(args: InferEncodersSettings) -> int:
    """Write one latent table per input TensorMap. Returns 0."""
    from ml4ge.pipeline import SkippedSamples

    folder = run_folder(args)
    shard = parse_shard(args.shard)
    paths = cohort_paths(args.tensors, args.sample_csv, shard)
    skipped = SkippedSamples(folder / skipped_name(shard))
    for tm in resolve_all(args.input_tensors, args.tensormap_prefix):
        encoder = load_encoder(encoder_path(args.model_file, tm))
        path = folder / table_name(tm.name, args.id, shard)
        rows = write_latents(encoder, tm, paths, path, args.batch_size, args.num_workers, args.tsv_style, skipped)
        log.info("%s: %d of %d samples written to %s", tm.name, rows, len(paths), path)
    skipped.write()
    if skipped.count:
        log.warning("%d sample/tensor pairs skipped; see %s", skipped.count, skipped.path)
    return 0


def load_encoder(path: Path):
    """A saved encoder (safe mode, not compiled)."""
    from ml4ge.models.saving import load_keras

    return load_keras(path)


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
