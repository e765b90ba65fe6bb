"""How well latent spaces separate known groups: silhouette, GMM-cluster NMI and a 2-D embedding plot.

The metrics of the contrastive-VAE seed (Aglinskas et al.; ``shared/REFERENCE_SEEDS.md`` C.6), with scikit-learn:

- **Silhouette** of the group labels in the latent space (Euclidean, on the latent values as written: a space
  collapsed to a point scores 0, as the seed's M0 did).
- **NMI** between the labels and the clusters of a Gaussian mixture (``components`` clusters, by default one per
  group; full covariances), averaged over ``fits`` fits with seeds ``seed, seed + 1, ...`` (the seed: 100 fits).
  ``nmi_sd`` is their SD. ``nmi_chance`` scores the same clusterings against a permutation of the labels (one per
  fit): the level a space with no group signal reaches at this sample size (about 0.02 in the seed).
- **Embedding**: a scatter of the samples on 2 axes per registered method, coloured by group: PCA always, UMAP
  when ``umap-learn`` is installed (display only, as in the seed).

Example:
    >>> tables = {"salient": load_latents("hidden_t1_run.tsv")}  # doctest: +SKIP
    >>> score_tables(tables, labels, fits=100, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score, silhouette_score
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from ml4ge.atomic import atomic_path
from ml4ge.registry import Registry

METRIC_COLUMNS = ["table", "n_samples", "n_groups", "groups", "dimensions", "silhouette", "gmm_components",
                  "gmm_fits", "nmi_mean", "nmi_sd", "nmi_chance", "gmm_unconverged"]
BLAS_THREADS = 1  # many small fits: threads per fit only contend on a shared machine


@dataclass(frozen=True)
class GroupScores:
    """One table's scores (the columns of :data:`METRIC_COLUMNS`)."""

    table: str
    n_samples: int
    n_groups: int
    groups: str
    dimensions: int
    silhouette: float
    gmm_components: int
    gmm_fits: int
    nmi_mean: float
    nmi_sd: float
    nmi_chance: float
    gmm_unconverged: int


def group_labels(table: pd.DataFrame, column: str, keep: tuple[str, ...] = ()) -> pd.Series:
    """The labels of ``column`` (as strings) by sample id, restricted to the values ``keep`` (all when empty).

    Rows with an empty label are dropped: they belong to no group.

    Raises:
        KeyError: without ``column``; ValueError: when ``keep`` names a value the column lacks, or fewer than 2
        groups remain.
    """
    if column not in table.columns:
        raise KeyError(f"no group column {column!r}; the table has {', '.join(map(str, table.columns))}.")
    labels = table[column].dropna().astype(str)
    missing = sorted(set(keep) - set(labels))
    if missing:
        raise ValueError(f"group column {column!r} has no value {', '.join(missing)}; it has "
                         f"{', '.join(sorted(set(labels)))}.")
    labels = labels[labels.isin(keep)] if keep else labels
    if labels.nunique() < 2:
        raise ValueError(f"group column {column!r} holds {labels.nunique()} group(s) after selection; scoring needs "
                         "at least 2.")
    return labels


def silhouette(values: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of ``labels`` (Euclidean); 0 for a space collapsed to one point."""
    if np.ptp(values, axis=0).max(initial=0.0) == 0:
        return 0.0  # every distance is 0: no structure at all (sklearn would divide 0 by 0).
    return float(silhouette_score(values, labels))


def gmm_clusterings(values: np.ndarray, components: int, fits: int, seed: int) -> tuple[list[np.ndarray], int]:
    """Cluster labels of ``fits`` Gaussian mixtures with seeds ``seed + i``, and how many did not converge."""
    clusterings, unconverged = [], 0
    for i in range(fits):
        mixture = GaussianMixture(components, random_state=seed + i)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clusterings.append(mixture.fit_predict(values))
        unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return clusterings, unconverged


def score_table(name: str, values: np.ndarray, labels: np.ndarray, components: int = 0, fits: int = 100,
                seed: int = 0) -> GroupScores:
    """Silhouette and mean GMM NMI (and its chance level) of one table; ``components`` 0: one per group."""
    groups = sorted(set(labels))
    components = components or len(groups)
    if len(labels) <= max(components, len(groups)):
        raise ValueError(f"{name}: {len(labels)} samples cannot be scored with {len(groups)} groups and "
                         f"{components} GMM components; give more samples.")
    with threadpool_limits(BLAS_THREADS):
        clusterings, unconverged = gmm_clusterings(values, components, fits, seed)
    permute = np.random.default_rng(seed)
    nmi = [normalized_mutual_info_score(labels, clusters) for clusters in clusterings]
    chance = [normalized_mutual_info_score(permute.permutation(labels), clusters) for clusters in clusterings]
    return GroupScores(name, len(labels), len(groups), ",".join(groups), values.shape[1], silhouette(values, labels),
                       components, fits, float(np.mean(nmi)), float(np.std(nmi)), float(np.mean(chance)),
                       unconverged)


def common_samples(tables: Mapping[str, pd.DataFrame], labels: pd.Series) -> pd.Index:
    """The labelled samples present in every table, in the labels' order."""
    ids = labels.index
    for frame in tables.values():
        ids = ids[ids.isin(frame.index)]
    return ids


def score_tables(tables: Mapping[str, pd.DataFrame], labels: pd.Series, components: int = 0, fits: int = 100,
                 seed: int = 0) -> pd.DataFrame:
    """One row of scores per table (:data:`METRIC_COLUMNS`), every table on the same samples.

    Raises:
        ValueError: when fewer than 2 groups have samples in every table.
    """
    ids = common_samples(tables, labels)
    if labels[ids].nunique() < 2:
        raise ValueError(f"only {labels[ids].nunique()} group(s) have samples in every latent table; check that the "
                         "sample ids of the labels and the tables match.")
    rows = [score_table(name, frame.loc[ids].to_numpy(float), labels[ids].to_numpy(), components, fits, seed)
            for name, frame in tables.items()]
    return pd.DataFrame([row.__dict__ for row in rows], columns=METRIC_COLUMNS)


@dataclass(frozen=True)
class Embedding:
    """A 2-D embedding method: ``available()`` says whether it can run here, ``embed(values, seed)`` -> (n, 2)."""

    available: Callable[[], bool]
    embed: Callable[[np.ndarray, int], np.ndarray]


def _pca(values: np.ndarray, seed: int) -> np.ndarray:
    embedded = PCA(min(2, *values.shape), random_state=seed).fit_transform(values)
    return np.pad(embedded, ((0, 0), (0, 2 - embedded.shape[1])))  # a 1-D table is drawn on its one axis


def _umap(values: np.ndarray, seed: int) -> np.ndarray:
    import umap  # optional dependency: umap-learn

    return umap.UMAP(n_components=2, random_state=seed).fit_transform(values)


EMBEDDINGS: Registry[Embedding] = Registry("embedding")
EMBEDDINGS.register("pca", Embedding(lambda: True, _pca))
EMBEDDINGS.register("umap", Embedding(lambda: importlib.util.find_spec("umap") is not None, _umap))


def available_embeddings() -> list[str]:
    """The registered embeddings that can run in this Python (PCA always; UMAP with umap-learn)."""
    return [name for name in EMBEDDINGS.names() if EMBEDDINGS.get(name).available()]


def plot_groups(name: str, values: np.ndarray, labels: np.ndarray, scores: GroupScores, path, seed: int = 0) -> Path:
    """A PNG with one scatter per available embedding, samples coloured by group, the scores in the title."""
    figure = groups_figure(name, values, labels, scores, seed)
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    return path


def groups_figure(name: str, values: np.ndarray, labels: np.ndarray, scores: GroupScores, seed: int = 0):
    """The figure of :func:`plot_groups` (its group legend outside the scatters)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = available_embeddings()
    figure = Figure(figsize=(4.6 * len(methods), 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(methods), squeeze=False)[0]
    for axis, method in zip(axes, methods):
        embedded = EMBEDDINGS.get(method).embed(values, seed)
        for group in sorted(set(labels)):
            rows = labels == group
            axis.scatter(embedded[rows, 0], embedded[rows, 1], s=14, alpha=0.75, label=f"{group} ({rows.sum()})")
        axis.set_xlabel(f"{method.upper()} 1")
        axis.set_ylabel(f"{method.upper()} 2")
        axis.set_title(method.upper(), fontsize="medium")
    handles, names = axes[0].get_legend_handles_labels()
    figure.legend(handles, names, title="group", fontsize="small", loc="outside right center")  # off the title
    figure.suptitle(f"{name}: silhouette {scores.silhouette:.3f}\nGMM NMI {scores.nmi_mean:.3f} ± {scores.nmi_sd:.3f}"
                    f" (chance {scores.nmi_chance:.3f})", fontsize="medium")  # two lines: one panel is narrow
    return figure
