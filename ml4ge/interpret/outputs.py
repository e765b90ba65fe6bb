"""PerDI's files: |t| maps as NIfTI on the data's grid and lightbox PNGs (nilearn) of the map over the mean image."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ml4ge.atomic import atomic_path

OVERLAY_FRACTION = 0.2  # the lightbox colours |t| above this fraction of the map's maximum; the NIfTI keeps all


def write_nifti(volume: np.ndarray, affine: np.ndarray, path) -> Path:
    """Write a float32 3-D volume with ``affine`` (so it overlays the data in FSLeyes or nilearn), atomically.

    Raises:
        ValueError: for a volume that is not 3-D.
    """
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"a NIfTI map must be 3-D, got shape {volume.shape}.")
    image = nib.Nifti1Image(volume, np.asarray(affine, dtype=np.float64))
    image.header.set_xyzt_units("mm")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = image.to_bytes()  # the temporary name (x.nii.tmp.gz) hides the format from nibabel: encode here
    with atomic_path(path) as temporary:
        temporary.write_bytes(gzip.compress(payload, compresslevel=6) if path.suffix == ".gz" else payload)
    return path


def lightbox_cuts(mask: np.ndarray, affine: np.ndarray, count: int) -> list[float]:
    """``count`` evenly spaced axial cuts through the mask's extent (the whole grid without one), as world z in mm
    at voxel centres, so each cut shows one slice of the data rather than a blend of two."""
    mask = np.asarray(mask) != 0
    voxels = np.argwhere(mask) if mask.any() else np.argwhere(np.ones(mask.shape, dtype=bool))
    z = np.unique(nib.affines.apply_affine(np.asarray(affine, dtype=np.float64), voxels)[:, 2].round(3))
    chosen = np.rint(np.linspace(0, len(z) - 1, count + 2)[1:-1]).astype(int) if len(z) > count else range(len(z))
    return sorted({float(z[i]) for i in chosen})


def lightbox_figure(abs_t: np.ndarray, background: np.ndarray, mask: np.ndarray, affine: np.ndarray,
                    count: int = 8, title: str = "") -> Figure:
    """Axial cuts drawn by ``nilearn.plotting.plot_stat_map``: ``abs_t`` above ``OVERLAY_FRACTION`` of its
    maximum over ``background`` (the mean reconstruction, black outside the mask, where the decoder's output
    means nothing), at mm cut coordinates with L/R marks, and one colour bar marking the threshold.

    Rows of at most four cuts share one colour scale (0 to the map's maximum).
    """
    from nilearn import plotting

    inside = np.asarray(mask) != 0
    top = float(np.max(abs_t)) or 1.0
    threshold = OVERLAY_FRACTION * top
    stat = nib.Nifti1Image(np.where(inside, abs_t, 0).astype(np.float32), affine)
    shown = np.where(inside, background, 0).astype(np.float32)
    cuts = lightbox_cuts(inside, affine, count)
    rows = [cuts[i:i + 4] for i in range(0, len(cuts), 4)]
    figure = Figure(figsize=(2.2 * min(len(cuts), 4) + 1.4, 2.4 * len(rows) + 0.5), facecolor="black")
    FigureCanvasAgg(figure)
    for r, row in enumerate(rows):
        axis = figure.add_axes((0.0, 1 - (r + 1) * 0.92 / len(rows) - 0.06, 0.86 * len(row) / len(rows[0]),
                                0.92 / len(rows)))
        plotting.plot_stat_map(stat, bg_img=nib.Nifti1Image(shown, affine), display_mode="z", cut_coords=row,
                               figure=figure, axes=axis, threshold=threshold, vmin=0, vmax=top, cmap="hot",
                               symmetric_cbar=False, colorbar=False, black_bg=True, draw_cross=False, annotate=True,
                               dim=0, resampling_interpolation="nearest")
    _threshold_colorbar(figure, top, threshold)
    figure.suptitle(title, color="white")
    return figure


def _threshold_colorbar(figure: Figure, top: float, threshold: float) -> None:
    """A colour bar from 0 to ``top`` greyed below ``threshold`` (not drawn), with the threshold as a tick."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    axis = figure.add_axes((0.89, 0.12, 0.025, 0.7))
    bar = figure.colorbar(ScalarMappable(Normalize(0, top), "hot"), cax=axis)
    axis.axhspan(0, threshold, color="grey", alpha=0.9)
    bar.set_ticks(sorted({*np.linspace(0, top, 5).round(1), round(threshold, 1)}))
    bar.set_label(f"|t| (smoothed); shown above {threshold:.3g} ({OVERLAY_FRACTION:.0%} of max)", color="white")
    axis.tick_params(colors="white")


def lightbox(abs_t: np.ndarray, background: np.ndarray, mask: np.ndarray, affine: np.ndarray, path,
             count: int = 8, title: str = "") -> Path:
    """Write :func:`lightbox_figure` as a PNG, atomically.

    Args:
        abs_t: the |t| map (3-D).
        background: the mean image on the same grid (3-D).
        mask: brain mask choosing which slices to show.
        affine: the grid's voxel-to-world affine (mm).
        path: the PNG to write.
        count: number of axial cuts.
        title: figure title.

    Returns:
        ``path``.
    """
    figure = lightbox_figure(abs_t, background, mask, affine, count, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=80, facecolor="black")
    return path
