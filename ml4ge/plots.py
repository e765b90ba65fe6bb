"""PNG plots of a run: learning curves from the CSV log, and inputs beside their reconstructions.

Matplotlib's non-interactive Agg canvas is used directly, so plotting never needs a display and never touches
pyplot's global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ml4ge.atomic import atomic_path


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, bbox_inches="tight")
    return path


def learning_curves(csv_log: Path, path: Path, title: str = "") -> Path:
    """One panel per metric with its training and validation curves over epochs.

    Args:
        csv_log: a Keras CSVLogger file (``epoch`` column, ``<metric>`` and ``val_<metric>`` columns).
        path: the PNG to write.
        title: figure title (the run id).

    Returns:
        ``path``.

    Raises:
        ValueError: if the log has no epochs.
    """
    history = pd.read_csv(csv_log)
    if history.empty:
        raise ValueError(f"{csv_log} lists no finished epochs; nothing to plot.")
    return _save(learning_curves_figure(history, title), path)


def learning_curves_figure(history: pd.DataFrame, title: str = "") -> Figure:
    """The figure of :func:`learning_curves`: one panel per metric (total loss first), epochs and metric labelled."""
    metrics = [c for c in history.columns if c != "epoch" and not c.startswith("val_") and c != "learning_rate"]
    metrics.sort(key=lambda name: name != "loss")  # the total loss first, then its terms
    figure = Figure(figsize=(max(4.5, 3.6 * len(metrics)), 3.4), layout="constrained")
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for axis, metric in zip(axes, metrics):
        axis.plot(history["epoch"] + 1, history[metric], "o-", label="train")
        if f"val_{metric}" in history:
            axis.plot(history["epoch"] + 1, history[f"val_{metric}"], "o-", label="validation")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
        axis.set_ylabel(metric)
        axis.legend(fontsize=8)
    figure.suptitle(f"{title}: training and validation per epoch" if title else "training and validation per epoch")
    return figure


def _panels(array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """2-D views of one sample (channels last): mid slices in three planes, an image, or a line (1-D)."""
    values = array[..., 0] if array.ndim > 1 else array
    if values.ndim == 3:
        x, y, z = (s // 2 for s in values.shape)
        return [("sagittal", values[x, :, :]), ("coronal", values[:, y, :]), ("axial", values[:, :, z])]
    if values.ndim == 2:
        return [("image", values)]
    return [("signal", values.reshape(-1))]


MASK_NOTE = "shown inside the brain mask only: the loss ignores voxels outside it"


def _mask_of(mask: np.ndarray | None, shape: tuple) -> np.ndarray | None:
    """The boolean mask of one sample (its first channel), or None when there is none or it hides nothing.

    Raises:
        ValueError: if the mask is not on the sample's grid.
    """
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim == len(shape):
        mask = mask[..., 0]
    if mask.shape != tuple(shape[:-1]):
        raise ValueError(f"the mask's shape {mask.shape} does not match the sample's grid {tuple(shape[:-1])}.")
    inside = mask != 0
    return None if inside.all() else inside


def loss_masks(targets: np.ndarray, predicted: np.ndarray) -> np.ndarray | None:
    """The masks a masked output's targets carry after their values (``TensorMap.target``), or None without."""
    targets, channels = np.asarray(targets), np.shape(predicted)[-1]
    return targets[..., channels:] if targets.shape[-1] == 2 * channels else None


def reconstruction(original: np.ndarray, reconstructed: np.ndarray, path: Path, title: str = "",
                   mask: np.ndarray | None = None, rows: tuple[str, str] = ("input", "reconstruction"),
                   affine: np.ndarray | None = None) -> Path:
    """The original (top row) above its reconstruction or decoding (bottom row) for one sample.

    Args:
        original, reconstructed: one sample each, channels last (``(x, y, z, c)``, ``(x, y, c)`` or ``(n, c)``);
            only the first channel is drawn (masked outputs carry the mask as extra channels).
        path: the PNG to write.
        title: figure title (sample id, maps).
        mask: the sample's loss mask (same grid, channels last); voxels outside it are drawn black in both rows
            and the figure says so, since the masked loss never asked the model to reproduce them.
        rows: the two rows' labels (a cross-decoding's top row is the target, not the model's input).
        affine: the volume's voxel-to-world affine; with it, each plane's edges get their anatomical letters.

    Returns:
        ``path``.

    Raises:
        ValueError: if ``mask`` is not on the sample's grid.
    """
    return _save(reconstruction_figure(original, reconstructed, title, mask, rows, affine), path)


OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}
PLANE_AXES = {"sagittal": (1, 2), "coronal": (0, 2), "axial": (0, 1)}  # the array axes across and up a drawn slice


def _mark_edges(axis, plane: str, codes: tuple[str, ...]) -> None:
    """Anatomical letters at the left, right and top edges of a drawn (rot90) slice of a volume with axis codes
    ``codes`` (nibabel's aff2axcodes: the direction each array axis increases towards)."""
    across, up = PLANE_AXES[plane]
    style = {"transform": axis.transAxes, "color": "white", "fontsize": 8, "fontweight": "bold",
             "bbox": {"facecolor": "black", "edgecolor": "none", "pad": 1}}
    axis.text(0.02, 0.5, OPPOSITE[codes[across]], ha="left", va="center", **style)
    axis.text(0.98, 0.5, codes[across], ha="right", va="center", **style)
    axis.text(0.5, 0.98, codes[up], ha="center", va="top", **style)


def reconstruction_figure(original: np.ndarray, reconstructed: np.ndarray, title: str = "",
                          mask: np.ndarray | None = None,
                          rows: tuple[str, str] = ("input", "reconstruction"),
                          affine: np.ndarray | None = None) -> Figure:
    """The figure of :func:`reconstruction`."""
    original = np.asarray(original, dtype=np.float32)
    inside = _mask_of(mask, original.shape)
    if inside is not None:
        hide = np.broadcast_to(~inside[..., None], original.shape)
        original = np.ma.masked_where(hide, original)
        reconstructed = np.ma.masked_where(hide[..., :1], np.asarray(reconstructed, np.float32)[..., :1])
    panels = [(rows[0], _panels(original)), (rows[1], _panels(np.ma.asarray(reconstructed, dtype=np.float32)))]
    columns = len(panels[0][1])
    figure = Figure(figsize=(3 * columns, 6.3), layout="constrained")
    grey = matplotlib.colormaps["gray"].with_extremes(bad="black")
    shown = np.ma.compressed(original[..., 0]) if original.ndim > 1 else np.ravel(original)
    low, high = np.percentile(shown, [0.5, 99.5]) if shown.size else (None, None)  # one grey scale for both rows
    for r, (row_name, views) in enumerate(panels):
        for c, (plane, values) in enumerate(views):
            axis = figure.add_subplot(2, columns, r * columns + c + 1)
            if values.ndim == 2:
                axis.imshow(np.rot90(values), cmap=grey, vmin=low, vmax=high)
                axis.axis("off")
                if affine is not None and plane in PLANE_AXES:
                    from nibabel import aff2axcodes  # nibabel only here: plots of tables do not import it

                    _mark_edges(axis, plane, aff2axcodes(affine))
            else:
                axis.plot(values)
            axis.set_title(f"{row_name}: {plane}", fontsize=9)
    figure.suptitle(title)
    if inside is not None:
        figure.supxlabel(MASK_NOTE, fontsize=8)
    return figure


def reconstructions(sample_ids: Sequence[str], originals: np.ndarray, reconstructed: np.ndarray, folder: Path,
                    name: str, masks: np.ndarray | None = None, rows: tuple[str, str] = ("input", "reconstruction"),
                    affines: Sequence[np.ndarray | None] | None = None) -> list[Path]:
    """One PNG per sample, ``<folder>/<sample_id>_<name>.png`` (``masks``: per-sample loss masks or None;
    ``affines``: per-sample grid affines or None)."""
    return [reconstruction(originals[i], reconstructed[i], folder / f"{sample_id}_{name}.png",
                           f"{sample_id}: {name}", None if masks is None else masks[i], rows,
                           None if affines is None else affines[i])
            for i, sample_id in enumerate(sample_ids)]


def volume_affine(tm, hd5_path) -> np.ndarray | None:
    """The affine of volume map ``tm``'s grid in one sample's HD5 file (:func:`ml4ge.grids.map_affine`), or None
    for a map that is not a 3-D volume or data stored without one."""
    import h5py

    from ml4ge.grids import map_affine

    if len(tm.shape) != 4:
        return None
    with h5py.File(hd5_path, "r") as hd5:
        return map_affine(tm, hd5)
