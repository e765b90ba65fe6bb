"""Bar chart of a latent space comparison: one panel per metric, phenotypes along x, one bar per space.

Each panel is as wide as its number of bars (a one-phenotype AUC panel is narrow beside a five-phenotype R^2
panel), bars rise from chance (R^2 0, AUC 0.5) so the axis shows the differences between spaces, and the legend
sits outside the panels. Drawn on a bare ``matplotlib.figure.Figure`` (Agg canvas), so it needs no display and
leaves pyplot's global state alone; written to a temporary name and renamed, so the PNG is whole or absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml4ge.atomic import atomic_path

METRIC_NAMES = {"r2": "R$^2$", "roc_auc": "ROC AUC"}
CHANCE = {"r2": 0.0, "roc_auc": 0.5}
INCHES_PER_BAR = 0.2  # figure width per bar, plus INCHES_PER_GROUP per phenotype and a margin per panel
INCHES_PER_GROUP = 0.35
PANEL_MARGIN = 1.0
LEGEND_WIDTH = 1.8


def bar_panel(axis, rows, metric: str, spaces: list[str]) -> None:
    """Bars of ``rows`` (one metric: phenotype, space, mean, sd) grouped by phenotype, rising from chance.

    The y axis starts at chance (0.5 for AUC) unless a bar or its error bar goes below it.
    """
    chance = CHANCE.get(metric, 0.0)
    phenotypes = list(dict.fromkeys(rows.phenotype))
    width = 0.8 / len(spaces)
    positions = np.arange(len(phenotypes))
    lowest, highest = chance, chance
    for i, space in enumerate(spaces):
        values = rows[rows.space == space].set_index("phenotype").reindex(phenotypes)
        mean, sd = values["mean"].to_numpy(float), values["sd"].fillna(0).to_numpy(float)
        axis.bar(positions + (i - (len(spaces) - 1) / 2) * width, mean - chance, width, bottom=chance, yerr=sd,
                 capsize=2, label=space, color=f"C{i % 10}")
        lowest, highest = np.nanmin([lowest, *(mean - sd)]), np.nanmax([highest, *(mean + sd)])
    axis.axhline(chance, color="grey", linewidth=0.8, linestyle="--")
    span = max(highest - lowest, 0.05)
    axis.set_ylim(lowest - 0.05 * span if lowest < chance else chance, highest + 0.05 * span)
    axis.set_xticks(positions, phenotypes, rotation=30, ha="right")
    axis.set_xlim(-0.5, len(phenotypes) - 0.5)
    axis.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} on held-out folds")
    axis.set_title(METRIC_NAMES.get(metric, metric))


def bar_figure(summary, figure) -> list:
    """Draw every metric of ``summary`` into ``figure`` (widths by number of bars, one legend on the right)."""
    metrics = list(dict.fromkeys(summary.metric))
    spaces = list(dict.fromkeys(summary.space))
    counts = [summary[summary.metric == m].phenotype.nunique() for m in metrics]
    axes = figure.subplots(1, len(metrics), squeeze=False, width_ratios=counts)[0]
    for axis, metric in zip(axes, metrics):
        bar_panel(axis, summary[summary.metric == metric], metric, spaces)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, title="latent space", fontsize="small", loc="outside right upper")
    return list(axes)


def figure_width(summary) -> float:
    """Inches: each panel's bars and groups, its margin, and the legend."""
    spaces = summary.space.nunique()
    counts = [summary[summary.metric == m].phenotype.nunique() for m in dict.fromkeys(summary.metric)]
    return sum(n * (spaces * INCHES_PER_BAR + INCHES_PER_GROUP) + PANEL_MARGIN for n in counts) + LEGEND_WIDTH


def comparison_figure(summary, covariates=()):
    """The bar chart of a comparison summary (columns metric, phenotype, space, mean, sd) as a drawn Figure; the
    title names the ``covariates`` every space was fitted with.

    Raises:
        ValueError: if the summary holds no scores.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if summary.empty:
        raise ValueError("the comparison holds no scores to plot.")
    figure = Figure(figsize=(figure_width(summary), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    bar_figure(summary, figure)
    title = "What each latent space predicts: mean ± SD over folds"
    if len(covariates):
        title += f"\n(every space with the covariates {', '.join(covariates)}; 'covariates': those alone)"
    figure.suptitle(title)
    return figure


def plot_comparison(result, path, covariates=()) -> Path:
    """Write the bar chart of ``result.summary`` (mean with SD error bars) as a PNG.

    Args:
        result: a :class:`ml4ge.compare.ComparisonResult`.
        path: where the PNG goes.
        covariates: the covariates every space was fitted with (named in the title).

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: if the result holds no scores.
    """
    figure = comparison_figure(result.summary, covariates)
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    return path
