"""Manhattan and Miami plots (PNG) of a scan: the best -log10 P over latent dimensions per SNP.

Drawn on a bare Agg ``Figure`` (no display, no pyplot state) and written atomically through :func:`ml4ge.plots._save`.
matplotlib is imported when a figure is drawn, not with this module (it costs a scan's start-up a few tenths of a
second).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLOURS = ("#1f4e79", "#6fa8dc")
MAX_LABELS = 15


def _chromosome_key(name: str):
    """1, 2, ..., 22, then X, Y, MT (text after numbers)."""
    return (0, int(name), "") if str(name).isdigit() else (1, 0, str(name))


def genome_axis(best: pd.DataFrame, reference: pd.DataFrame | None = None) -> tuple[np.ndarray, list[float], list[str]]:
    """Cumulative x coordinates of the SNPs of ``best``, and tick positions and labels at the chromosome centres.

    Chromosome lengths come from ``reference`` (default ``best``), so two frames can share one axis.
    """
    reference = best if reference is None else reference
    chromosomes = sorted(reference.CHROM.astype(str).unique(), key=_chromosome_key)
    offsets, start, ticks = {}, 0.0, []
    for chromosome in chromosomes:
        positions = reference.POS[reference.CHROM.astype(str) == chromosome]
        span = float(positions.max()) if len(positions) else 0.0
        offsets[chromosome] = start
        ticks.append(start + span / 2)
        start += span * 1.02 + 1
    x = best.CHROM.astype(str).map(offsets).to_numpy(dtype=float) + best.POS.to_numpy(dtype=float)
    return x, ticks, chromosomes


def _draw(axis, best: pd.DataFrame, x: np.ndarray, sign: float, chromosomes: list[str]) -> None:
    for i, chromosome in enumerate(chromosomes):
        rows = (best.CHROM.astype(str) == chromosome).to_numpy()
        axis.scatter(x[rows], sign * best.LOG10P.to_numpy()[rows], s=3, color=COLOURS[i % 2], rasterized=True,
                     linewidths=0)


def _label(axis, best: pd.DataFrame, x: np.ndarray, loci: pd.DataFrame | None, sign: float) -> None:
    if loci is None or loci.empty:
        return
    where = dict(zip(best.ID, x))
    for row in loci.sort_values("LOG10P", ascending=False).head(MAX_LABELS).itertuples(index=False):
        if row.ID in where:
            axis.annotate(f"{row.ID}\n{row.dimension}", (where[row.ID], sign * row.LOG10P), fontsize=7,
                          ha="center", va="bottom" if sign > 0 else "top", xytext=(0, 3 * sign),
                          textcoords="offset points")


def _threshold(axis, log10_p: float, sign: float, what: str) -> None:
    """The dashed threshold line, named with its P value in the legend (the reader needs the number)."""
    axis.axhline(sign * log10_p, color="#c00000", linewidth=0.8, linestyle="--" if sign > 0 else ":",
                 label=f"{what} threshold P = {10 ** -log10_p:.2g}")


def manhattan(best: pd.DataFrame, threshold_log10: float, path: Path, loci: pd.DataFrame | None = None,
              title: str = "") -> Path:
    """Manhattan plot of ``best`` (CHROM POS ID LOG10P per SNP) with the threshold line and labelled lead SNPs."""
    from ml4ge.plots import _save

    return _save(manhattan_figure(best, threshold_log10, loci, title), Path(path))


def manhattan_figure(best: pd.DataFrame, threshold_log10: float, loci: pd.DataFrame | None = None,
                     title: str = "") -> Figure:
    """The figure of :func:`manhattan`."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.5))
    axis = figure.add_subplot()
    x, ticks, chromosomes = genome_axis(best)
    _draw(axis, best, x, 1.0, chromosomes)
    _threshold(axis, threshold_log10, 1.0, "significance")
    _label(axis, best, x, loci, 1.0)
    axis.set_xticks(ticks, chromosomes)
    axis.set_xlabel("chromosome")
    axis.set_ylabel("-log$_{10}$ P (smallest P over latent dimensions)")
    axis.set_ylim(0, max(threshold_log10, float(np.nanmax(best.LOG10P, initial=1.0))) * 1.12)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # outside: never over a SNP
    axis.set_title(title)
    return figure


def miami(discovery: pd.DataFrame, replication: pd.DataFrame, threshold_log10: float,
          replication_threshold_log10: float, path: Path, loci: pd.DataFrame | None = None,
          title: str = "") -> Path:
    """Miami plot: discovery above the axis, replication (same SNP positions) below, each with its threshold."""
    from ml4ge.plots import _save

    return _save(miami_figure(discovery, replication, threshold_log10, replication_threshold_log10, loci, title),
                 Path(path))


def miami_figure(discovery: pd.DataFrame, replication: pd.DataFrame, threshold_log10: float,
                 replication_threshold_log10: float, loci: pd.DataFrame | None = None, title: str = "") -> Figure:
    """The figure of :func:`miami`."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 6))
    axis = figure.add_subplot()
    both = pd.concat([discovery[["CHROM", "POS"]], replication[["CHROM", "POS"]]])
    for frame, sign, line, what in ((discovery, 1.0, threshold_log10, "discovery"),
                                    (replication, -1.0, replication_threshold_log10, "replication")):
        x, ticks, chromosomes = genome_axis(frame, both)
        _draw(axis, frame, x, sign, chromosomes)
        _threshold(axis, line, sign, what)
        if sign > 0:
            _label(axis, frame, x, loci, sign)
    axis.set_xticks(ticks, chromosomes)
    axis.axhline(0, color="black", linewidth=0.6)
    top = max(threshold_log10, float(np.nanmax(discovery.LOG10P, initial=1.0))) * 1.12
    bottom = max(replication_threshold_log10, float(np.nanmax(replication.LOG10P, initial=1.0))) * 1.12
    axis.set_ylim(-bottom, top)
    axis.set_xlabel("chromosome")
    axis.set_ylabel("-log$_{10}$ P: discovery (up), replication (down)")
    axis.yaxis.set_major_formatter(lambda value, _: f"{abs(value):g}")  # both halves count -log10 P upwards
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # outside: never over a SNP
    axis.set_title(title)
    return figure
