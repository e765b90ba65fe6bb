"""PerDI's files: |t| maps as NIfTI on the data's grid and lightbox PNGs of the map over the mean image."""

from __future__ import annotations

import gzip
from pathlib import Path

import matplotlib
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


def lightbox_slices(mask: np.ndarray, count: int) -> list[int]:
    """``count`` evenly spaced axial (last axis) slices through the mask's extent (the whole volume without one)."""
    occupied = np.flatnonzero(np.asarray(mask).any(axis=(0, 1)))
    low, high = (occupied[0], occupied[-1]) if occupied.size else (0, mask.shape[2] - 1)
    return sorted(set(int(round(z)) for z in np.linspace(low, high, count + 2)[1:-1])) or [int((low + high) // 2)]


def lightbox(abs_t: np.ndarray, background: np.ndarray, mask: np.ndarray, path, count: int = 8,
             title: str = "") -> Path:
    """A row-wrapped grid of axial slices: ``background`` in grey inside the mask (black outside) with ``abs_t``
    in colour above ``OVERLAY_FRACTION`` of its maximum; anterior up, the array's first axis left to right.

    Args:
        abs_t: the |t| map (3-D).
        background: the mean image on the same grid (3-D).
        mask: brain mask choosing which slices to show.
        path: the PNG to write.
        count: number of slices.
        title: figure title.

    Returns:
        ``path``.
    """
    slices = lightbox_slices(mask, count)
    columns = min(len(slices), 4)
    rows = int(np.ceil(len(slices) / columns))
    figure = Figure(figsize=(3 * columns, 3 * rows + 0.6))
    top = float(abs_t.max()) or 1.0
    inside = np.asarray(mask) != 0
    low, high = (np.percentile(background[inside], [1, 99]) if inside.any() else (background.min(), background.max()))
    grey = matplotlib.colormaps["gray"].with_extremes(bad="black")
    image = None
    for index, z in enumerate(slices):
        axis = figure.add_subplot(rows, columns, index + 1)
        brain = np.ma.masked_where(~np.rot90(inside[:, :, z]), np.rot90(background[:, :, z]))
        axis.imshow(brain, cmap=grey, vmin=low, vmax=high)  # outside the mask the decoder's output means nothing
        overlay = np.ma.masked_where(np.rot90(abs_t[:, :, z]) <= OVERLAY_FRACTION * top, np.rot90(abs_t[:, :, z]))
        image = axis.imshow(overlay, cmap="hot", vmin=0, vmax=top, alpha=0.8)
        axis.set_title(f"z = {z}", fontsize=8)
        axis.axis("off")
    if image is not None:
        figure.colorbar(image, ax=figure.axes, shrink=0.6, label="|t| (smoothed)")
    figure.suptitle(title)
    FigureCanvasAgg(figure)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=80)
    return path
