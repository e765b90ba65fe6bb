"""The input-combination performance grid of ``--mode sweep``: the table of every cell's metrics (mean and SD over
repeats) and a heatmap of one headline metric per target with the best combination marked (the legibility seed's
figure).

Headline metrics: balanced accuracy for a categorical target (higher is better), MAE in original units for a
continuous one (lower is better). Colours are per row (each target's own range), so targets on other scales share
one figure; the numbers are printed in the cells.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ml4ge.atomic import atomic_path

HEADLINE = {"balanced_accuracy": True, "mae": False}  # metric -> higher is better
GRID_COLUMNS = ["target", "inputs", "metric", "mean", "sd", "repeats"]


def grid_table(cells: pd.DataFrame) -> pd.DataFrame:
    """``target, inputs, metric, mean, sd, repeats`` from one row per cell, repeat and metric (``target, inputs,
    repeat, metric, value``); SD is NaN with one repeat."""
    grouped = cells.groupby(["target", "inputs", "metric"], sort=False)["value"]
    table = grouped.agg(mean="mean", sd="std", repeats="count").reset_index()
    return table[GRID_COLUMNS]


def best_inputs(grid: pd.DataFrame) -> dict[str, str]:
    """``{target: the combination with the best headline mean}`` (targets whose headline is all NaN left out)."""
    best = {}
    for target, rows in headline_rows(grid).groupby("target", sort=False):
        rows = rows.dropna(subset=["mean"])
        if rows.empty:
            continue
        higher = HEADLINE[rows["metric"].iloc[0]]
        best[target] = rows.loc[rows["mean"].idxmax() if higher else rows["mean"].idxmin(), "inputs"]
    return best


def headline_rows(grid: pd.DataFrame) -> pd.DataFrame:
    return grid[grid["metric"].isin(list(HEADLINE))]


def plot_grid(grid: pd.DataFrame, path: Path, combinations: list[str]) -> Path:
    """The heatmap: targets x combinations, the headline mean (+- SD) in each cell, the best outlined."""
    rows = headline_rows(grid)
    targets = list(dict.fromkeys(rows["target"]))
    means = rows.pivot(index="target", columns="inputs", values="mean").reindex(index=targets, columns=combinations)
    sds = rows.pivot(index="target", columns="inputs", values="sd").reindex(index=targets, columns=combinations)
    metric = rows.groupby("target", sort=False)["metric"].first()
    shade = np.full(means.shape, np.nan)
    for i, target in enumerate(targets):
        values = means.loc[target].to_numpy(float)
        spread = np.nanmax(values) - np.nanmin(values) if np.isfinite(values).any() else 0.0
        goodness = values if HEADLINE[metric[target]] else -values
        shade[i] = (goodness - np.nanmin(goodness)) / spread if spread > 0 else 0.5
    figure = Figure(figsize=(1.6 + 1.3 * len(combinations), 1.2 + 0.6 * len(targets)))
    axis = figure.add_subplot(1, 1, 1)
    axis.imshow(np.ma.masked_invalid(shade), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    best = best_inputs(grid)
    for i, target in enumerate(targets):
        for j, combination in enumerate(combinations):
            mean, sd = means.loc[target, combination], sds.loc[target, combination]
            text = "n/a" if pd.isna(mean) else f"{mean:.3g}" + ("" if pd.isna(sd) else f"\n±{sd:.2g}")
            axis.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if shade[i, j] < 0.6 else "k")
            if best.get(target) == combination:
                axis.add_patch(_outline(j, i))
    axis.set_xticks(range(len(combinations)), combinations, rotation=30, ha="right")
    axis.set_yticks(range(len(targets)), [f"{t} ({metric[t]})" for t in targets])
    axis.set_title("test split, mean over repeats; best outlined")
    return _save(figure, path)


def _outline(column: int, row: int):
    from matplotlib.patches import Rectangle

    return Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5)


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, bbox_inches="tight", format="png")
    return path
