"""One PerDI study: a decoder, the latents of N subjects, the map grid, mask and atlas, and the loop writing
every dimension's map, lightbox and region ranking."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ml4ge.atomic import write_table
from ml4ge.interpret.grid import onto_grid
from ml4ge.interpret.outputs import lightbox, write_nifti
from ml4ge.interpret.perturb import dimensions_per_pass, direction_shifts, latent_shifts, perdi_statistics
from ml4ge.interpret.regions import Atlas, merge_hemispheres, rank_regions, read_label_table
from ml4ge.interpret.voxel_stats import abs_t_map
from ml4ge.tensormap import keras_safe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PerdiOptions:
    """The knobs of a study (flags of the interpret recipe)."""

    dimensions: tuple[int, ...] = ()  # empty: all, unless directions are given
    perturb_sd: float = 1.0
    smooth_sigma: float = 3.0
    batch_size: int = 10
    memory_mb: float = 2048.0
    lightbox_slices: int = 8
    top_regions: int = 10
    directions: dict = field(default_factory=dict)  # name -> (D,) weights (associate's directions/<name>.tsv)


def decoder_function(decoder, batch_size: int):
    """``z [b, D] -> volumes [b, ...]`` in inference mode; short batches are padded to ``batch_size`` so that
    the predict function is traced once."""

    def decode(latents: np.ndarray) -> np.ndarray:
        count = len(latents)
        if count < batch_size:
            padding = np.zeros((batch_size - count, latents.shape[1]), dtype=latents.dtype)
            latents = np.concatenate([latents, padding])
        return np.asarray(decoder.predict_on_batch(latents))[:count]

    return decode


@dataclass
class PerdiStudy:
    """Everything needed to interpret the dimensions of one decoder.

    Attributes:
        tm: the decoded TensorMap (one-channel 3-D volume).
        decode: ``latents -> reconstructions [b, *tm.shape]``.
        sample_ids, latents: the interpreted subjects and their ``[N, D]`` latents.
        affine: the map grid's affine; mask: boolean brain mask on that grid; atlas: regions on that grid or None.
        folder: the run folder.
    """

    tm: object
    decode: object
    sample_ids: list[str]
    latents: np.ndarray
    affine: np.ndarray
    mask: np.ndarray
    folder: Path
    atlas: Atlas | None = None
    options: PerdiOptions = field(default_factory=PerdiOptions)

    @property
    def maps_folder(self) -> Path:
        return self.folder / f"perdi_{keras_safe(self.tm.name)}"

    def run(self) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """Interpret every chosen dimension; returns the summary and (with an atlas) the top-regions table."""
        options = self.options
        dimensions = list(options.dimensions) or ([] if options.directions else list(range(self.latents.shape[1])))
        shifts = {**latent_shifts(self.latents, dimensions, options.perturb_sd),
                  **direction_shifts(self.latents, options.directions, options.perturb_sd)}
        mean = np.zeros(self.tm.shape, dtype=np.float64)
        per_pass = dimensions_per_pass(mean.size, len(shifts), options.memory_mb * 2**20)
        log.info("PerDI on %s: %d dimensions, %d subjects, %d dimensions per pass", self.tm.name, len(shifts),
                 len(self.latents), per_pass)
        rows, tops = [], []
        for d, stats in perdi_statistics(self.decode, self.latents, shifts, options.batch_size, per_pass, mean):
            shift = shifts[d] if isinstance(d, int) else options.perturb_sd * float(
                (self.latents @ options.directions[d]).std())  # the projection's shift
            row, top = self.write_dimension(d, shift, stats.t()[..., 0], mean[..., 0])
            rows.append(row)
            if top is not None:
                tops.append(top)
            log.info("dimension %s: max |t| %.3g, top region %s", d, row["max_abs_t"], row.get("top_region_ks"))
        write_nifti(mean[..., 0], self.affine, self.maps_folder / "mean_reconstruction.nii.gz")
        write_nifti(self.mask.astype(np.float32), self.affine, self.maps_folder / "mask.nii.gz")
        return pd.DataFrame(rows), (pd.concat(tops, ignore_index=True) if tops else None)

    def write_dimension(self, d: int | str, shift: float, t: np.ndarray, mean: np.ndarray
                        ) -> tuple[dict, pd.DataFrame]:
        """Write dimension ``d``'s (or direction ``d``'s) map, lightbox and ranking; return its summary row and top
        regions."""
        options = self.options
        result = abs_t_map(t, self.mask, options.smooth_sigma)
        stem = self.maps_folder / (f"dim_{d}" if isinstance(d, int) else f"direction_{d}")
        write_nifti(result.values, self.affine, stem.with_name(f"{stem.name}.nii.gz"))
        what = f"latent {d}" if isinstance(d, int) else f"direction {d}"
        lightbox(result.values, mean, self.mask, self.affine, stem.with_name(f"{stem.name}.png"),
                 options.lightbox_slices, title=f"{self.tm.name} {what}: |t| of +{options.perturb_sd:g} SD")
        inside = result.values[self.mask]
        row = {"dimension": d, "shift": shift, "subjects": len(self.latents), "max_abs_t": float(result.values.max()),
               "mean_abs_t_in_mask": float(inside.mean()) if inside.size else 0.0,
               "max_abs_t_unsmoothed": result.unsmoothed_max, "capped_voxels": result.capped_voxels}
        if self.atlas is None:
            return row, None
        ranking = rank_regions(result.values, self.atlas)
        write_table(ranking, stem.with_name(f"{stem.name}_regions.tsv"))
        row["top_region_ks"] = ranking["region"].iloc[0]
        row["top_region_mean"] = ranking.sort_values("mean_rank", kind="stable")["region"].iloc[0]
        top = ranking.head(options.top_regions).assign(dimension=d)
        return row, top[["dimension", *ranking.columns]]


def load_atlas(atlas_path, labels_path, shape, affine, merge: bool) -> Atlas:
    """The atlas on the map grid (nearest neighbour when it lies elsewhere), hemispheres merged if asked."""
    labels = onto_grid(nib.load(str(atlas_path)), shape, affine)
    atlas = Atlas(labels=np.rint(labels).astype(np.int32), table=read_label_table(labels_path))
    return merge_hemispheres(atlas) if merge else atlas
