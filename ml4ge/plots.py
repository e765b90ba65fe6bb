"""PNG plots of a run: learning curves from the CSV log, and inputs beside their reconstructions.

Matplotlib's non-interactive Agg canvas is used directly, so plotting never needs a display and never touches
pyplot's global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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
    metrics = [c for c in history.columns if c != "epoch" and not c.startswith("val_") and c != "learning_rate"]
    figure = Figure(figsize=(4 * len(metrics), 3.2))
    for i, metric in enumerate(metrics):
        axis = figure.add_subplot(1, len(metrics), i + 1)
        axis.plot(history["epoch"] + 1, history[metric], "o-", label="train")
        if f"val_{metric}" in history:
            axis.plot(history["epoch"] + 1, history[f"val_{metric}"], "o-", label="valid")
        axis.set_xlabel("epoch")
        axis.set_title(metric, fontsize=9)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    return _save(figure, path)


def _panels(array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """2-D views of one sample (channels last): mid slices in three planes, an image, or a line (1-D)."""
    values = array[..., 0] if array.ndim > 1 else array
    if values.ndim == 3:
        x, y, z = (s // 2 for s in values.shape)
        return [("sagittal", values[x, :, :]), ("coronal", values[:, y, :]), ("axial", values[:, :, z])]
    if values.ndim == 2:
        return [("image", values)]
    return [("signal", values.reshape(-1))]


def reconstruction(original: np.ndarray, reconstructed: np.ndarray, path: Path, title: str = "") -> Path:
    """Input (top row) beside its reconstruction (bottom row) for one sample.

    Args:
        original, reconstructed: one sample each, channels last (``(x, y, z, c)``, ``(x, y, c)`` or ``(n, c)``);
            only the first channel is drawn (masked outputs carry the mask as extra channels).
        path: the PNG to write.
        title: figure title (sample id, maps).

    Returns:
        ``path``.
    """
    rows = [("input", _panels(np.asarray(original, dtype=np.float32))),
            ("reconstruction", _panels(np.asarray(reconstructed, dtype=np.float32)))]
    columns = len(rows[0][1])
    figure = Figure(figsize=(3 * columns, 6))
    for r, (row_name, panels) in enumerate(rows):
        for c, (plane, values) in enumerate(panels):
            axis = figure.add_subplot(2, columns, r * columns + c + 1)
            if values.ndim == 2:
                axis.imshow(np.rot90(values), cmap="gray")
                axis.axis("off")
            else:
                axis.plot(values)
            axis.set_title(f"{row_name} {plane}", fontsize=9)
    figure.suptitle(title)
    return _save(figure, path)


def reconstructions(sample_ids: Sequence[str], originals: np.ndarray, reconstructed: np.ndarray, folder: Path,
                    name: str) -> list[Path]:
    """One PNG per sample, ``<folder>/<sample_id>_<name>.png``."""
    return [reconstruction(originals[i], reconstructed[i], folder / f"{sample_id}_{name}.png",
                           f"{sample_id}: {name}")
            for i, sample_id in enumerate(sample_ids)]
