"""Atlas regions ranked for a |t| map: PerDI's KS-style enrichment statistic and the mean |t|.

Enrichment (REFERENCE_SEEDS.md A.5): within the labelled voxels, sort voxels by |t| descending and walk down
the list with a running sum that adds ``1/N_region - 1/N_total`` at a voxel of the region and ``-1/N_total``
elsewhere; the statistic is the maximum of that sum. ``N_total`` is the number of labelled voxels of the atlas
on the map's grid (the seed code hard-coded it for its 1 mm atlases). A region whose voxels hold the largest
|t| values scores near 1; a region whose voxels are spread evenly scores near 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

HEMISPHERES = ("left", "right", "both")
SIDE_WORDS = re.compile(r"(?i)(?:^|(?<=[\s_\-]))(?:left|right|lh|rh)(?=$|[\s_\-])")


@dataclass(frozen=True)
class Atlas:
    """An integer label volume and its table.

    Attributes:
        labels: integer array; 0 (or any value not in the table) is unlabelled.
        table: ``label`` (int), ``name``, ``hemisphere`` (left, right or both), one row per region.
    """

    labels: np.ndarray
    table: pd.DataFrame


def read_label_table(path) -> pd.DataFrame:
    """``label, name[, hemisphere]`` rows from a TSV (or CSV); hemisphere defaults to the side named in ``name``.

    Raises:
        ValueError: for missing columns, labels that are not positive integers, repeated labels, or a hemisphere
            other than left, right, both.
    """
    separator = "," if str(path).endswith(".csv") else "\t"
    table = pd.read_csv(path, sep=separator)
    missing = [c for c in ("label", "name") if c not in table.columns]
    if missing:
        raise ValueError(f"--atlas_labels {str(path)!r} lacks columns {missing}; it needs label and name "
                         f"(and optionally hemisphere); found {list(table.columns)}.")
    labels = pd.to_numeric(table["label"], errors="coerce")
    if labels.isna().any() or (labels % 1 != 0).any() or (labels <= 0).any():
        raise ValueError(f"--atlas_labels {str(path)!r}: labels must be positive integers (0 is background); "
                         f"found {table['label'].tolist()[:10]}.")
    if labels.duplicated().any():
        raise ValueError(f"--atlas_labels {str(path)!r}: label {int(labels[labels.duplicated()].iloc[0])} appears "
                         "more than once.")
    table = table.assign(label=labels.astype(int), name=table["name"].astype(str))
    if "hemisphere" not in table.columns:
        table["hemisphere"] = [side_of(name) for name in table["name"]]
    table["hemisphere"] = table["hemisphere"].fillna("both").astype(str).str.lower()
    bad = sorted(set(table["hemisphere"]) - set(HEMISPHERES))
    if bad:
        raise ValueError(f"--atlas_labels {str(path)!r}: hemisphere values {bad} are not one of {HEMISPHERES}.")
    return table[["label", "name", "hemisphere"]].reset_index(drop=True)


def side_of(name: str) -> str:
    """``left``/``right`` when ``name`` says so (``Left Putamen``, ``putamen_R`` is not recognised), else ``both``."""
    words = {w.lower() for w in re.split(r"[\s_\-]+", name)}
    if words & {"left", "lh"}:
        return "left"
    if words & {"right", "rh"}:
        return "right"
    return "both"


def without_side(name: str) -> str:
    """``name`` with its side words removed: ``Left Lateral Ventricle`` -> ``Lateral Ventricle``."""
    stripped = SIDE_WORDS.sub("", name)
    stripped = re.sub(r"[\s_\-]{2,}", lambda m: m.group(0)[0], stripped).strip(" _-")
    return stripped or name


def merge_hemispheres(atlas: Atlas) -> Atlas:
    """One region per structure: left and right labels with the same name once the side is removed are joined.

    The merged regions are numbered 1..K in the order of their first label; ``hemisphere`` becomes ``both``.
    """
    table = atlas.table.assign(merged=[without_side(n) if h != "both" else n
                                       for n, h in zip(atlas.table["name"], atlas.table["hemisphere"])])
    names = list(dict.fromkeys(table.sort_values("label")["merged"]))
    new_label = {name: i + 1 for i, name in enumerate(names)}
    lookup = np.zeros(int(max(table["label"].max(), atlas.labels.max(initial=0))) + 1, dtype=np.int32)
    for old, merged in zip(table["label"], table["merged"]):
        lookup[old] = new_label[merged]
    labels = np.asarray(atlas.labels).astype(np.int64)
    merged_labels = np.where((labels > 0) & (labels < len(lookup)), lookup[np.clip(labels, 0, len(lookup) - 1)], 0)
    merged_table = pd.DataFrame({"label": [new_label[n] for n in names], "name": names, "hemisphere": "both"})
    return Atlas(labels=merged_labels.astype(np.int32), table=merged_table)


def tie_group_ends(descending: np.ndarray) -> np.ndarray:
    """For each position of a sorted array, the last position holding the same value."""
    is_end = np.r_[descending[1:] != descending[:-1], True]
    ends = np.flatnonzero(is_end)
    return ends[np.searchsorted(ends, np.arange(descending.size), side="left")]


def enrichment_scores(abs_t: np.ndarray, labels: np.ndarray, region_labels) -> np.ndarray:
    """The KS-style enrichment statistic of each region in ``region_labels`` (NaN for a region with no voxel).

    Voxels with equal |t| (above all the zeros of a masked map) have no order among them, so the running sum is
    read only at the end of each group of ties: the statistic does not depend on how ties are ordered. Without
    ties this is exactly PerDI's maximum over every step.

    Args:
        abs_t: |t| map.
        labels: integer label volume of the same shape.
        region_labels: the regions to score; voxels whose label is not among them are not labelled.
    """
    region_labels = np.asarray(list(region_labels), dtype=np.int64)
    labelled = np.isin(labels, region_labels)
    values, voxel_labels = np.asarray(abs_t)[labelled], np.asarray(labels)[labelled].astype(np.int64)
    total = values.size
    order = np.argsort(-values, kind="stable")
    ranked_labels, group_end = voxel_labels[order], tie_group_ends(values[order])
    grouped = np.argsort(ranked_labels, kind="stable")  # rank positions grouped by label, ascending in each
    starts = np.searchsorted(ranked_labels[grouped], region_labels, side="left")
    ends = np.searchsorted(ranked_labels[grouped], region_labels, side="right")
    scores = np.full(len(region_labels), np.nan)
    for index, (start, end) in enumerate(zip(starts, ends)):
        if end == start:
            continue
        positions = grouped[start:end]
        steps = group_end[positions]  # the sum rises only at the region's voxels: read it where their ties end
        running = np.searchsorted(positions, steps, side="right") / (end - start) - (steps + 1) / total
        scores[index] = max(float(running.max()), 0.0)  # the sum ends at 0 after the last voxel
    return scores


def rank_regions(abs_t: np.ndarray, atlas: Atlas) -> pd.DataFrame:
    """One row per region, ranked by enrichment, with the mean-|t| ranking beside it.

    Returns:
        Columns ``ks_rank, region, label, hemisphere, voxels, ks_enrichment, mean_abs_t, mean_rank, max_abs_t``,
        sorted by ``ks_rank`` (regions without voxels on the grid last, with NaN scores).

    Raises:
        ValueError: if the map and the atlas have different shapes.
    """
    abs_t = np.asarray(abs_t)
    if abs_t.shape != atlas.labels.shape:
        raise ValueError(f"the |t| map has shape {abs_t.shape} but the atlas {atlas.labels.shape}; resample the "
                         "atlas onto the map's grid first.")
    table = atlas.table.reset_index(drop=True)
    flat_labels, flat_t = atlas.labels.reshape(-1), abs_t.reshape(-1)
    counts = np.bincount(flat_labels.clip(0), minlength=int(table["label"].max()) + 1)
    sums = np.bincount(flat_labels.clip(0), weights=flat_t, minlength=len(counts))
    maxima = np.zeros(len(counts))
    np.maximum.at(maxima, flat_labels.clip(0), flat_t)
    voxels = counts[table["label"]]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(voxels > 0, sums[table["label"]] / voxels, np.nan)
    frame = pd.DataFrame({
        "region": table["name"], "label": table["label"], "hemisphere": table["hemisphere"], "voxels": voxels,
        "ks_enrichment": enrichment_scores(abs_t, atlas.labels, table["label"]), "mean_abs_t": mean,
        "max_abs_t": np.where(voxels > 0, maxima[table["label"]], np.nan),
    })
    frame["ks_rank"] = frame["ks_enrichment"].rank(ascending=False, method="min", na_option="bottom").astype(int)
    frame["mean_rank"] = frame["mean_abs_t"].rank(ascending=False, method="min", na_option="bottom").astype(int)
    columns = ["ks_rank", "region", "label", "hemisphere", "voxels", "ks_enrichment", "mean_abs_t", "mean_rank",
               "max_abs_t"]
    return frame.sort_values(["ks_rank", "mean_rank"], kind="stable")[columns].reset_index(drop=True)

