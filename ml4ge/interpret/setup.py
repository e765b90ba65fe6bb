"""Turning the interpret recipe's flags into a study's inputs: decoder, latents, grid, mask and atlas."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from ml4ge.interpret.grid import map_affine, onto_grid
from ml4ge.interpret.study import PerdiOptions, PerdiStudy, decoder_function, load_atlas

log = logging.getLogger(__name__)


def decoder_path(model_file, tm) -> Path:
    """``--model_file`` itself when it is a ``decoder_*.keras`` file, else the model folder's decoder of ``tm``."""
    from ml4ge.models.layout import decoder_path as folder_decoder
    from ml4ge.models.layout import folder_of

    model_file = Path(model_file)
    if model_file.name.startswith("decoder_"):
        return model_file
    return folder_decoder(folder_of(model_file), tm)


def _load_decoder(args, tm):
    from ml4ge.models.artifacts import load_keras

    decoder = load_keras(decoder_path(args.model_file, tm))
    if tuple(decoder.output.shape[1:]) != tuple(tm.shape):
        raise ValueError(f"{decoder_path(args.model_file, tm)} outputs {tuple(decoder.output.shape[1:])}, but "
                         f"--output_tensors {tm.name!r} has shape {tm.shape}; pass the decoder of that map.")
    return decoder


def _latents(args, cohort, skipped):
    """``(sample_ids, latents)``: the first ``--interpret_samples`` rows of the latent table, or encoded."""
    from ml4ge.interpret.sources import encoded_latents, table_latents, table_path
    from ml4ge.lookup import resolve_all
    from ml4ge.splits import read_ids

    count = args.interpret_samples
    if args.latent_tables:
        wanted = read_ids(args.sample_csv) if args.sample_csv else None
        return table_latents(table_path(args.latent_tables), count, wanted)
    input_tmaps = resolve_all(args.input_tensors, args.tensormap_prefix)
    return encoded_latents(args.model_file, input_tmaps, cohort[:count], args.batch_size, args.num_workers,
                           skipped)


def _cohort(args) -> list:
    from ml4ge.latents import cohort_paths

    return cohort_paths(args.tensors, args.sample_csv) if args.tensors else []


def grid_affine(args, tm, cohort) -> np.ndarray:
    """The affine of the decoded grid: from the data (HD5 attributes), else from the mask or atlas NIfTI when it
    lies on a grid of the map's shape.

    Raises:
        ValueError: when neither gives one.
    """
    from ml4ge.hd5 import open_sample

    spatial = tuple(tm.shape[:-1])
    if cohort:
        with open_sample(cohort[0]) as hd5:
            affine = map_affine(tm, hd5)
        if affine is not None:
            return affine
    for flag in ("interpret_mask", "atlas"):
        path = getattr(args, flag)
        if path and tuple(nib.load(str(path)).shape[:3]) == spatial:
            log.info("affine of the maps taken from --%s %s", flag, path)
            return np.asarray(nib.load(str(path)).affine, dtype=np.float64)
    raise ValueError(f"no affine for the {spatial} grid of {tm.name!r}: the HD5 files carry none (tensorize stores "
                     f"it) and neither --interpret_mask nor --atlas has that shape; give one on the map's grid.")


def options_from_args(args: argparse.Namespace) -> PerdiOptions:
    """The study's knobs from the interpret recipe's flags."""
    from ml4ge.interpret.sources import read_directions

    return PerdiOptions(tuple(args.interpret_dimensions), args.perturb_sd, args.smooth_sigma, args.batch_size,
                        args.interpret_memory_mb, args.lightbox_slices, args.interpret_top_regions,
                        read_directions(args.interpret_directions))


def study_from_args(args: argparse.Namespace, folder: Path) -> PerdiStudy:
    """The study the flags name, writing into the run folder ``folder``: decoder, latents, grid, mask and atlas;
    with the dimensions and directions ``--interpret_traits``/``--interpret_snps`` choose added (and listed in
    ``interpret_choices.tsv``)."""
    inputs = study_inputs(args, Path(folder))
    options = options_from_args(args)
    if args.interpret_traits or args.interpret_snps:
        options = _with_choices(args, inputs, options, Path(folder))
    return PerdiStudy(**inputs, folder=Path(folder), options=options)


def _with_choices(args, inputs: dict, options: PerdiOptions, folder: Path) -> PerdiOptions:
    import dataclasses

    import pandas as pd

    from ml4ge.atomic import write_table
    from ml4ge.interpret.choose import choices
    from ml4ge.readers import read_table

    latents = pd.DataFrame(inputs["latents"], index=pd.Index(inputs["sample_ids"], dtype=str),
                           columns=[f"latent_{i}" for i in range(inputs["latents"].shape[1])])
    phenotypes = read_table(str(args.phenotypes)) if args.interpret_traits else None
    table, directions = choices(latents, phenotypes, args.interpret_traits, tuple(args.covariates),
                                args.interpret_sumstats, args.interpret_snps)
    write_table(table, folder / "interpret_choices.tsv")
    chosen = {int(d) for d in table.dimension if str(d).isdigit()}
    log.info("chosen to map: dimensions %s, directions %s", sorted(chosen), sorted(directions))
    return dataclasses.replace(options, dimensions=tuple(sorted(set(options.dimensions) | chosen)),
                               directions={**options.directions, **directions})


def study_inputs(args: argparse.Namespace, folder: Path) -> dict:
    """``tm, decode, sample_ids, latents, affine, mask, atlas`` for :class:`ml4ge.interpret.study.PerdiStudy`;
    samples that cannot be read are listed in ``folder``.

    Raises:
        ValueError: when the latents do not fit the decoder, or no grid can be found.
    """
    from ml4ge.hd5 import sample_id_from_path
    from ml4ge.interpret.sources import data_mask
    from ml4ge.lookup import resolve_all
    from ml4ge.pipeline import SkippedSamples

    tm = resolve_all(args.output_tensors, args.tensormap_prefix)[0]
    decoder = _load_decoder(args, tm)
    cohort = _cohort(args)
    skipped = SkippedSamples(folder)
    sample_ids, latents = _latents(args, cohort, skipped)
    size = int(decoder.input.shape[-1])
    if latents.shape[1] != size:
        raise ValueError(f"the latents have {latents.shape[1]} dimensions but the decoder of {tm.name!r} takes "
                         f"{size}; give the latent table of the encoder of the decoded modality.")
    spatial = tuple(tm.shape[:-1])
    affine = grid_affine(args, tm, cohort)
    atlas = (load_atlas(args.atlas, args.atlas_labels, spatial, affine, args.merge_hemispheres)
             if args.atlas else None)
    if args.interpret_mask:
        mask = onto_grid(nib.load(str(args.interpret_mask)), spatial, affine) != 0
    elif atlas is not None:
        mask = np.isin(atlas.labels, atlas.table["label"])
    else:
        chosen = set(sample_ids)
        mask = data_mask(tm, [p for p in cohort if sample_id_from_path(p) in chosen], args.batch_size,
                         args.num_workers, skipped)
    skipped.write()
    if not mask.any():
        raise ValueError("the brain mask is empty on the map's grid; check --interpret_mask / --atlas and the data.")
    return {"tm": tm, "decode": decoder_function(decoder, args.batch_size), "sample_ids": sample_ids,
            "latents": latents, "affine": affine, "mask": mask, "atlas": atlas}
