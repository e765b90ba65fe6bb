"""Bar chart of a latent space comparison: one panel per metric, phenotypes along x, one bar per space.

Drawn on a bare ``matplotlib.figure.Figure`` (Agg canvas), so it needs no display and leaves pyplot's global
state alone; written to a temporary name and renamed, so the PNG is whole or absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml4ge.atomic import atomic_path

METRIC_NAMES = {"r2": "R$^2$", "roc_auc": "ROC AUC"}
CHANCE = {"r2": 0.0, "roc_auc": 0.5}


def _panel(axis, summary, metric: str, spaces: list[str]) -> None:
    rows = summary[summary.metric == metric]
    phenotypes = list(dict.fromkeys(rows.phenotype))
    width = 0.8 / len(spaces)
    positions = np.arange(len(phenotypes))
    for i, space in enumerate(spaces):
        values = rows[rows.space == space].set_index("phenotype").reindex(phenotypes)
        axis.bar(positions + (i - (len(spaces) - 1) / 2) * width, values["mean"], width, yerr=values["sd"].fillna(0),
                 capsize=3, label=space)
    axis.axhline(CHANCE.get(metric, 0.0), color="grey", linewidth=0.8, linestyle="--")
    axis.set_xticks(positions, phenotypes, rotation=30, ha="right")
    axis.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} on held-out folds")
    axis.set_title(f"{METRIC_NAMES.get(metric, metric)}: mean ± SD over folds")


def plot_comparison(result, path) -> Path:
    """Write the bar chart of ``result.summary`` (mean with SD error bars) as a PNG.

    Args:
        result: a :class:`ml4ge.compare.ComparisonResult`.
        path: where the PNG goes.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: if the result holds no scores.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summary = result.summary
    if summary.empty:
        raise ValueError("the comparison holds no scores to plot.")
    metrics = list(dict.fromkeys(summary.metric))
    spaces = list(dict.fromkeys(summary.space))
    most = max(summary[summary.metric == m].phenotype.nunique() for m in metrics)
    figure = Figure(figsize=(max(4.0, 1.0 + most * 0.45 * len(spaces)) * len(metrics), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for axis, metric in zip(axes, metrics):
        _panel(axis, summary, metric, spaces)
    axes[0].legend(title="latent space", fontsize="small")
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    return path
