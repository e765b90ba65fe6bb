"""``--mode interpret``: PerDI maps of latent dimensions: which brain regions each dimension changes.

For each chosen dimension ``d`` of a trained decoder's latent space (``--interpret_dimensions``, default all), and
each named direction (``--interpret_directions name=directions/<space>-<trait>.tsv`` from ``associate
--direction_traits``: shifted along by ``--perturb_sd`` SDs of its projection, maps ``direction_<name>.*``), the
latents of ``--interpret_samples`` subjects (default 500, from ``--latent_tables`` or computed from ``--tensors``
with the model's encoders) are decoded as they are and with ``d`` shifted by ``--perturb_sd`` standard deviations
(default +1). A paired t-test across subjects at every voxel (streaming: memory does not grow with the number of
subjects) gives |t|, masked to the brain, Gaussian-smoothed (``--smooth_sigma`` voxels, default 3). Outputs in
``<output_folder>/<id>/``:

- ``perdi_<tmap>/dim_<d>.nii.gz``: the |t| map on the data's grid (the affine the volumes came with);
- ``perdi_<tmap>/dim_<d>.png``: lightbox (nilearn, mm cuts, L/R marks, threshold on the colour bar) of the map over
  the mean original reconstruction;
- ``perdi_<tmap>/dim_<d>_regions.tsv`` with ``--atlas``/``--atlas_labels``: regions ranked by PerDI's enrichment
  statistic and by mean |t| (``--merge_hemispheres`` joins left and right);
- ``interpret_choices.tsv`` with ``--interpret_traits`` (the dimension most correlated with each trait after
  ``--covariates`` of ``--phenotypes``, and the trait's direction ``trait_<trait>``) or ``--interpret_snps`` (the
  dimension with the smallest P of each SNP in ``--interpret_sumstats``): ``route target dimension abs_r log10p``;
- ``perdi_<tmap>_summary.tsv`` (one row per dimension), ``perdi_<tmap>_top_regions.tsv`` (the
  ``--interpret_top_regions`` best regions of every dimension), ``perdi_<tmap>/mean_reconstruction.nii.gz``,
  ``perdi_<tmap>/mask.nii.gz``, ``interpreted_samples.tsv``.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import pandas as pd

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.atomic import write_table
from ml4ge.interpret.setup import decoder_path
from ml4ge.lookup import resolve_all
from ml4ge.models.artifacts import missing_parts
from ml4ge.recipes.infer_encoders import check_model_file
from ml4ge.recipes.settings import RunSettings
from ml4ge.tensormap import keras_safe

log = logging.getLogger(__name__)


@flag_settings
class InterpretSettings(RunSettings):
    """The flags of ``--mode interpret``: the model, where the latents come from, the maps and the atlas."""

    mode = "interpret"
    model_file: str | None
    tensors: str | None
    input_tensors: tuple[str, ...]
    output_tensors: tuple[str, ...]
    tensormap_prefix: str | None
    sample_csv: str | None
    latent_tables: tuple[str, ...]
    batch_size: int
    interpret_samples: int
    interpret_dimensions: tuple[int, ...]
    interpret_directions: tuple[str, ...]
    interpret_traits: tuple[str, ...]
    interpret_snps: tuple[str, ...]
    interpret_sumstats: str | None
    phenotypes: str | None
    covariates: tuple[str, ...]
    perturb_sd: float
    smooth_sigma: float
    atlas: str | None
    atlas_labels: str | None
    merge_hemispheres: bool
    interpret_mask: str | None
    lightbox_slices: int
    interpret_top_regions: int
    interpret_memory_mb: float


Settings = InterpretSettings


def _check_numbers(args: argparse.Namespace) -> None:
    """What the flags' bounds (``arguments.FLAGS``) cannot say: a shift of either sign but not 0, distinct
    dimensions."""
    checks = [
        (math.isfinite(args.perturb_sd) and args.perturb_sd != 0, f"--perturb_sd {args.perturb_sd} must be a "
                                                                   "nonzero number of SDs"),
        (all(d >= 0 for d in args.interpret_dimensions), f"--interpret_dimensions {args.interpret_dimensions} "
                                                         "must be 0-based latent indices"),
        (len(set(args.interpret_dimensions)) == len(args.interpret_dimensions),
         f"--interpret_dimensions {args.interpret_dimensions} repeats a dimension"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message + ".")


def _check_latent_source(args: argparse.Namespace) -> None:
    from ml4ge.interpret.sources import read_directions, table_dimension, table_path
    from ml4ge.latents import cohort_paths

    directions = read_directions(args.interpret_directions)
    if args.latent_tables:
        path = table_path(args.latent_tables)
        size = table_dimension(path)
        too_big = [d for d in args.interpret_dimensions if d >= size]
        if too_big:
            raise ValueError(f"--interpret_dimensions {too_big} outside the table's latent_0..latent_{size - 1}.")
        wrong = [name for name, weights in directions.items() if len(weights) != size]
        if wrong:
            raise ValueError(f"--interpret_directions {wrong} do not have the table's {size} dimensions; give the "
                             "directions of this latent space.")
        return
    if not args.tensors or not args.input_tensors:
        raise ValueError("--mode interpret needs latents: --latent_tables hidden_<tmap>_<id>.tsv, or --tensors and "
                         "--input_tensors to compute them with the model's encoders.")
    cohort_paths(args.tensors, args.sample_csv)
    missing = missing_parts(args.model_file, "encoder", resolve_all(args.input_tensors, args.tensormap_prefix))
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing: no encoder for these maps beside --model_file.")


def _check_images(args: argparse.Namespace) -> None:
    from ml4ge.interpret.regions import read_label_table

    if bool(args.atlas) != bool(args.atlas_labels):
        raise ValueError("--atlas (a NIfTI label image) and --atlas_labels (a label, name, hemisphere TSV) go "
                         f"together; got --atlas {args.atlas!r} and --atlas_labels {args.atlas_labels!r}.")
    for flag in ("atlas", "atlas_labels", "interpret_mask"):
        value = getattr(args, flag)
        if value and not Path(value).is_file():
            raise FileNotFoundError(f"--{flag} {value!r} does not exist.")
    if args.atlas_labels:
        read_label_table(args.atlas_labels)
    if not args.tensors and not (args.interpret_mask or args.atlas):
        raise ValueError("--mode interpret needs the data's grid (affine): give --tensors (HD5 files written by "
                         "tensorize), or --interpret_mask / --atlas on the decoded volume's grid.")


def validate(args: InterpretSettings) -> None:
    """Refuse a bad combination of flags before any work.

    Raises:
        ValueError, FileNotFoundError, KeyError: with what to change.
    """
    check_model_file(args)
    if len(args.output_tensors) != 1:
        raise ValueError(f"--mode interpret needs one --output_tensors (the decoded volume), got "
                         f"{args.output_tensors}.")
    tm = resolve_all(args.output_tensors, args.tensormap_prefix)[0]
    if len(tm.shape) != 4 or tm.shape[-1] != 1:
        raise ValueError(f"--output_tensors {tm.name!r} has shape {tm.shape}; interpret maps one-channel 3-D "
                         "volumes (x, y, z, 1).")
    if not decoder_path(args.model_file, tm).is_file():
        raise FileNotFoundError(f"{decoder_path(args.model_file, tm)} is missing: --model_file's folder has no "
                                f"decoder for {tm.name!r}; was it among the training --output_tensors?")
    _check_numbers(args)
    _check_latent_source(args)
    _check_images(args)
    _check_choices(args)


def _check_choices(args: argparse.Namespace) -> None:
    """--interpret_traits need --phenotypes holding them and the --covariates; --interpret_snps need
    --interpret_sumstats."""
    from ml4ge.interpret.choose import best_dimensions
    from ml4ge.readers import read_table

    if args.interpret_traits:
        if not args.phenotypes or not Path(args.phenotypes).is_file():
            raise FileNotFoundError(f"--interpret_traits needs --phenotypes, a CSV/TSV keyed by sample id; got "
                                    f"{args.phenotypes!r}.")
        columns = read_table(str(args.phenotypes)).columns
        missing = [c for c in [*args.interpret_traits, *args.covariates] if c not in columns]
        if missing:
            raise ValueError(f"--interpret_traits/--covariates {missing} are not columns of {args.phenotypes}.")
    if args.interpret_snps:
        if not args.interpret_sumstats:
            raise ValueError("--interpret_snps needs --interpret_sumstats <associate run>/sumstats/<space>.")
        best_dimensions(args.interpret_sumstats, args.interpret_snps)


def run(args: InterpretSettings) -> int:
    """Write PerDI maps, lightboxes and region rankings for every chosen dimension. Returns 0."""
    from ml4ge.interpret.setup import study_from_args

    study = study_from_args(args, run_folder(args))  # writes interpret_choices.tsv with --interpret_traits/snps
    summary, top = study.run()
    prefix = f"perdi_{keras_safe(study.tm.name)}"
    write_table(summary, study.folder / f"{prefix}_summary.tsv")
    if top is not None:
        write_table(top, study.folder / f"{prefix}_top_regions.tsv")
    write_table(pd.DataFrame({"sample_id": study.sample_ids}), study.folder / "interpreted_samples.tsv")
    log.info("interpreted %d dimensions of %s over %d subjects; maps in %s", len(summary), study.tm.name,
             len(study.sample_ids), study.maps_folder)
    return 0

