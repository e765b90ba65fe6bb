"""Which latent space carries more signal: seeded, paired K-fold linear probes with error bars.

For every latent space and phenotype a linear probe is cross-validated on the samples present in every latent
table (and having the phenotype and the covariates). The folds are the same for every latent space, so the
fold-by-fold differences between two spaces are paired.

- Continuous targets: ``Pipeline(StandardScaler, RidgeCV)``; alpha is chosen per target by efficient
  leave-one-out (generalised cross-validation) inside the training fold; score R^2 on the held-out fold.
  Continuous targets observed on the same samples share their folds and are fitted as one multi-target ridge
  (one decomposition of the training matrix per fold instead of one per target).
- Binary targets (exactly two distinct values; the larger is the positive class): ``Pipeline(StandardScaler,
  LogisticRegressionCV)`` with C chosen by an inner stratified 3-fold CV (log loss); score ROC-AUC from the
  predicted probabilities of the held-out fold (not from hard labels).
- Covariates: added as features to every latent space (latent + covariates), and a ``covariates`` baseline
  space holding the covariates alone is scored on the same folds, so ``latent - covariates`` is what the
  latent space adds beyond them.
- Pairs ``(A, B)``: the mean fold-by-fold difference ``A - B`` with a t-interval on ``K - 1`` degrees of
  freedom using the Nadeau-Bengio corrected variance ``(1/K + n_test/n_train) * s^2``, which accounts for the
  overlap of training sets between folds (the plain t-interval is too narrow for CV scores).

The scaler and the penalty are fitted on the training fold only. Tables: ``scores`` has one row per space,
phenotype and fold (``penalty`` is the chosen ridge alpha or logistic C); ``summary`` the mean and SD over
folds; ``pair_differences`` one row per pair and phenotype. BLAS runs on one thread (see
:func:`compare_latent_spaces`).

Example:
    >>> spaces = {"t1": load_latents("hidden_t1.tsv"), "t2": load_latents("hidden_t2.tsv")}  # doctest: +SKIP
    >>> result = compare_latent_spaces(spaces, phenotypes, ["age", "sex"], pairs=[("t1", "t2")])  # doctest: +SKIP
    >>> result.summary  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ml4ge.defaults import DEFAULT_SEED
from ml4ge.latents import as_numeric, load_latents  # noqa: F401 (load_latents: ml4ge.compare's API)
from ml4ge.progress import progress as progress_bar

COVARIATES_SPACE = "covariates"
RIDGE_ALPHAS = np.logspace(-2, 6, 17)
LOGISTIC_CS = np.logspace(-3, 1, 5)
INNER_FOLDS = 3
BLAS_THREADS = 1
CONFIDENCE = 0.95
SCORE_COLUMNS = ["space", "phenotype", "kind", "metric", "fold", "score", "penalty", "n_train", "n_test"]
SUMMARY_COLUMNS = ["space", "phenotype", "kind", "metric", "n_samples", "folds", "mean", "sd"]
PAIR_COLUMNS = ["a", "b", "phenotype", "metric", "folds", "mean_a", "mean_b", "difference", "sd",
                "ci_low", "ci_high", "t", "p_value"]


@dataclass(frozen=True)
class ComparisonResult:
    """Every fold score, the per-space summary and the paired differences (see the module docstring)."""

    scores: pd.DataFrame
    summary: pd.DataFrame
    pair_differences: pd.DataFrame


@dataclass(frozen=True)
class _Task:
    """Targets fitted together: one binary target, or continuous targets observed on the same rows."""

    kind: str  # "continuous" or "binary"
    phenotypes: tuple[str, ...]
    rows: np.ndarray  # boolean mask over the common samples
    y: np.ndarray  # (n_rows, n_targets) for continuous, (n_rows,) of 0/1 for binary


def _by_string_id(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """``frame`` indexed by sample ids as strings (so 1001 and "1001" match), which must be unique."""
    frame = frame.set_axis(frame.index.astype(str))
    if frame.index.duplicated().any():
        raise ValueError(f"{what}: sample id {frame.index[frame.index.duplicated()][0]!r} appears more than once.")
    return frame


def _common_samples(latents: Mapping[str, pd.DataFrame], phenotypes: pd.DataFrame) -> pd.Index:
    if not latents:
        raise ValueError("compare needs at least one latent table.")
    common = None
    for name, frame in latents.items():
        common = frame.index if common is None else common.intersection(frame.index)
        if len(common) == 0:
            examples = {n: list(f.index[:3]) for n, f in latents.items()}
            raise ValueError(f"the latent tables share no sample ids (first ids: {examples}); "
                             f"they must come from the same cohort (stopped at {name!r}).")
    common = common.intersection(phenotypes.index)
    if len(common) == 0:
        raise ValueError(f"no sample id is both in the latent tables and in the phenotypes (latent ids like "
                         f"{list(next(iter(latents.values())).index[:3])}, phenotype ids like "
                         f"{list(phenotypes.index[:3])}).")
    return common.sort_values()


def _spaces(latents, covariates: pd.DataFrame, ids: pd.Index) -> dict[str, np.ndarray]:
    if COVARIATES_SPACE in latents and covariates.shape[1]:
        raise ValueError(f"a latent table is named {COVARIATES_SPACE!r}, the covariate baseline's name; rename it.")
    spaces = {}
    for name, frame in latents.items():
        features = frame.loc[ids].to_numpy(dtype=np.float64)
        spaces[name] = np.hstack([features, covariates.to_numpy()]) if covariates.shape[1] else features
    if covariates.shape[1]:
        spaces[COVARIATES_SPACE] = covariates.to_numpy()
    return spaces


def _tasks(frame: pd.DataFrame, targets: Sequence[str], covariates: pd.DataFrame, folds: int) -> list[_Task]:
    """Group targets into tasks and check each has enough samples for ``folds`` folds."""
    complete = covariates.notna().all(axis=1).to_numpy()
    continuous: dict[bytes, list[str]] = {}
    tasks = []
    for target in targets:
        if target not in frame.columns:
            raise ValueError(f"phenotype {target!r} not found; available: {', '.join(map(str, frame.columns))}.")
        values = as_numeric(frame[target], "phenotype")
        rows = complete & values.notna().to_numpy()
        distinct = np.unique(values[rows])
        if len(distinct) < 2 or rows.sum() < 2 * folds:
            raise ValueError(f"phenotype {target!r}: {rows.sum()} samples with {len(distinct)} distinct values in "
                             f"every latent table; {folds} folds need at least {2 * folds} samples and two values. "
                             "Lower --folds or drop this phenotype.")
        if len(distinct) == 2:
            y = (values[rows].to_numpy() == distinct[1]).astype(int)
            if min(y.sum(), len(y) - y.sum()) < folds:
                raise ValueError(f"binary phenotype {target!r} has only {min(y.sum(), len(y) - y.sum())} samples "
                                 f"in its smaller class; {folds} stratified folds need at least {folds}.")
            tasks.append(_Task("binary", (target,), rows, y))
        else:
            continuous.setdefault(rows.tobytes(), []).append(target)
    for key, names in continuous.items():
        rows = np.frombuffer(key, dtype=bool).copy()
        y = np.column_stack([as_numeric(frame[n], "phenotype").to_numpy()[rows] for n in names])
        tasks.append(_Task("continuous", tuple(names), rows, y))
    order = {name: i for i, name in enumerate(targets)}
    return sorted(tasks, key=lambda task: order[task.phenotypes[0]])


def _splits(task: _Task, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if task.kind == "binary":
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(task.y, task.y))
    return list(KFold(folds, shuffle=True, random_state=seed).split(task.y))


def _probe(kind: str, y_train: np.ndarray, seed: int) -> Pipeline:
    if kind == "continuous":
        ridge = RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True, gcv_mode="svd")  # one SVD, then O(n p) per alpha
        return Pipeline([("scale", StandardScaler()), ("ridge", ridge)])
    inner = min(INNER_FOLDS, int(min(y_train.sum(), len(y_train) - y_train.sum())))
    if inner < 2:
        raise ValueError("a training fold has fewer than 2 samples of one class; lower --folds or add samples.")
    logistic = LogisticRegressionCV(Cs=LOGISTIC_CS, cv=StratifiedKFold(inner, shuffle=True, random_state=seed),
                                    scoring="neg_log_loss", max_iter=1000)
    return Pipeline([("scale", StandardScaler()), ("logistic", logistic)])


def _fold_scores(task: _Task, features: np.ndarray, train, test, seed: int) -> list[tuple[str, str, float, float]]:
    """``(phenotype, metric, score, penalty)`` for each target of ``task`` on one fold."""
    model = _probe(task.kind, task.y[train], seed)
    with warnings.catch_warnings():  # sklearn 1.8+ warns of LogisticRegressionCV default changes each fit
        warnings.simplefilter("ignore", FutureWarning)
        model.fit(features[train], task.y[train])
    if task.kind == "binary":
        probability = model.predict_proba(features[test])[:, 1]
        c = float(np.ravel(model[-1].C_)[0])
        return [(task.phenotypes[0], "roc_auc", roc_auc_score(task.y[test], probability), c)]
    predicted = model.predict(features[test]).reshape(len(test), -1)
    r2 = r2_score(task.y[test], predicted, multioutput="raw_values")
    alphas = np.broadcast_to(model[-1].alpha_, r2.shape)
    return [(name, "r2", float(r), float(a)) for name, r, a in zip(task.phenotypes, r2, alphas)]


def _score_task(task: _Task, spaces: Mapping[str, np.ndarray], folds: int, seed: int, pool, bar) -> list[tuple]:
    """Score rows of one task for every space; the (space, fold) fits run in ``pool``, results in order."""
    splits = _splits(task, folds, seed)
    selected = {name: features[task.rows] for name, features in spaces.items()}
    futures = {name: [pool.submit(_fold_scores, task, features, train, test, seed) for train, test in splits]
               for name, features in selected.items()}
    rows = []
    for name, fold_futures in futures.items():
        for fold, (future, (train, test)) in enumerate(zip(fold_futures, splits)):
            for phenotype, metric, score, penalty in future.result():
                rows.append((name, phenotype, task.kind, metric, fold, score, penalty, len(train), len(test)))
        bar.update(len(task.phenotypes))
    return rows


def compare_latent_spaces(
    latents: Mapping[str, pd.DataFrame],
    phenotypes: pd.DataFrame,
    targets: Sequence[str],
    covariates: Sequence[str] = (),
    folds: int = 5,
    seed: int = DEFAULT_SEED,
    pairs: Iterable[tuple[str, str]] = (),
    progress: bool | None = None,
    n_jobs: int = 1,
) -> ComparisonResult:
    """Cross-validate a linear probe for every latent space and target (see the module docstring for the method).

    Args:
        latents: name -> frame indexed by sample id (as from :func:`load_latents`).
        phenotypes: frame indexed by sample id holding the targets and covariates.
        targets: phenotype columns to predict; two distinct values make a target binary.
        covariates: phenotype columns added to every space, plus a ``covariates``-only baseline space.
        folds: number of outer folds K (>= 2).
        seed: seed of every fold split, so the same seed gives the same numbers.
        pairs: ``(A, B)`` space names whose fold-by-fold difference ``A - B`` is reported.
        progress: show a progress bar (None: only on a terminal).
        n_jobs: folds fitted at once in threads (each with one BLAS thread); results do not depend on it.

    Returns:
        A :class:`ComparisonResult`.

    Raises:
        ValueError: no shared samples, unknown targets/covariates/pair names, too few samples for ``folds``.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}.")
    latents = {name: _by_string_id(frame, f"latent table {name!r}") for name, frame in latents.items()}
    phenotypes = _by_string_id(phenotypes, "phenotypes")
    ids = _common_samples(latents, phenotypes)
    missing = [c for c in covariates if c not in phenotypes.columns]
    if missing:
        raise ValueError(f"covariates {missing} not in the phenotypes; available: {', '.join(phenotypes.columns)}.")
    frame = phenotypes.loc[ids]
    covariate_frame = pd.DataFrame({c: as_numeric(frame[c], "covariate") for c in covariates}, index=ids)
    spaces = _spaces(latents, covariate_frame, ids)
    pairs = [tuple(pair) for pair in pairs]
    unknown = sorted({name for pair in pairs for name in pair} - set(spaces))
    if unknown:
        raise ValueError(f"pair names {unknown} are not compared spaces; choose from {', '.join(spaces)}.")
    tasks = _tasks(frame, list(targets), covariate_frame, folds)
    disable = None if progress is None else not progress
    # One BLAS thread per fit: BLAS threads spinning on shared cores cost CPU time without speeding up these small
    # fits (docs/experiments.md); the cores are used by fitting folds in parallel threads instead.
    with progress_bar(total=len(spaces) * len(targets), description="compare", unit="probe", disable=disable) as bar, \
            threadpool_limits(BLAS_THREADS, user_api="blas"), ThreadPoolExecutor(max(1, n_jobs)) as pool:
        rows = [row for task in tasks for row in _score_task(task, spaces, folds, seed, pool, bar)]
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    return ComparisonResult(scores, summarise(scores), pair_differences(scores, pairs))


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean and SD (ddof 1) over folds per space and phenotype, in the order they were scored."""
    grouped = scores.groupby(["space", "phenotype", "kind", "metric"], sort=False)
    summary = grouped.agg(n_samples=("n_test", "sum"), folds=("fold", "count"), mean=("score", "mean"),
                          sd=("score", "std")).reset_index()
    return summary[SUMMARY_COLUMNS]


def corrected_t_interval(differences: np.ndarray, test_train_ratio: float, confidence: float = CONFIDENCE):
    """Nadeau-Bengio corrected resampled t-test of fold differences.

    Returns:
        ``(mean, sd, ci_low, ci_high, t, p_value)``; with zero spread the interval is the mean itself.
    """
    k = len(differences)
    mean, sd = float(np.mean(differences)), float(np.std(differences, ddof=1))
    standard_error = np.sqrt((1 / k + test_train_ratio) * sd**2)
    if standard_error == 0:
        return mean, sd, mean, mean, (0.0 if mean == 0 else np.copysign(np.inf, mean)), float(mean == 0)
    t = mean / standard_error
    half_width = stats.t.ppf(0.5 + confidence / 2, k - 1) * standard_error
    return mean, sd, mean - half_width, mean + half_width, t, float(2 * stats.t.sf(abs(t), k - 1))


def pair_differences(scores: pd.DataFrame, pairs: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """Fold-by-fold ``A - B`` per phenotype for each pair, with a corrected t-interval (see the module docstring)."""
    rows = []
    for a, b in pairs:
        left = scores[scores.space == a].set_index(["phenotype", "fold"])
        right = scores[scores.space == b].set_index(["phenotype", "fold"])
        for phenotype in left.index.get_level_values(0).unique():
            x, y = left.loc[phenotype], right.loc[phenotype]
            ratio = float(np.mean(x.n_test / x.n_train))
            statistics = corrected_t_interval((x.score - y.score).to_numpy(), ratio)
            rows.append((a, b, phenotype, x.metric.iloc[0], len(x), x.score.mean(), y.score.mean(), *statistics))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def all_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair of ``names``, in the given order."""
    return list(itertools.combinations(names, 2))


def plot_comparison(result: ComparisonResult, path, covariates: Sequence[str] = ()) -> None:
    """Bar chart of mean scores with SD error bars, written to ``path`` (see :mod:`ml4ge.plots_compare`)."""
    from ml4ge.plots_compare import plot_comparison as plot

    plot(result, path, covariates)


GENETIC_COLUMNS = ["space", "dimensions", "samples", "snps_tested", "threshold_p", "significant_pairs",
                   "significant_snps", "loci", "replicated_pairs", "replicated_loci",
                   # associate --multivariate: the omnibus (MOSTest) and min-P tests over the whole space
                   "omnibus_threshold_p", "omnibus_snps", "omnibus_loci", "minp_snps", "minp_loci"]


def genetic_signal(counts_paths: Sequence, spaces: Sequence[str]) -> pd.DataFrame:
    """The associate runs' headline counts (``associate_counts.tsv``) of the compared latent spaces, one row each.

    Columns are :data:`GENETIC_COLUMNS` (the replication ones are empty without a replication cohort, the omnibus
    ones without --multivariate); a space scanned in more than one run keeps the row of the last file.

    Raises:
        ValueError: if a file lacks the counts columns or none of its spaces is compared.
    """
    frames = []
    for path in counts_paths:
        frame = pd.read_csv(path, sep="\t", dtype={"space": str})
        missing = [c for c in ("space", "significant_pairs", "loci") if c not in frame.columns]
        if missing:
            raise ValueError(f"{path} has no {', '.join(missing)} column; give associate_counts.tsv of an "
                             "associate run.")
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=GENETIC_COLUMNS)
    counts = pd.concat(frames, ignore_index=True).drop_duplicates("space", keep="last")
    counts = counts[counts.space.isin(spaces)]
    if counts.empty:
        raise ValueError(f"the association counts name none of the compared latent spaces {list(spaces)}; name the "
                         "latent tables the same in associate and compare.")
    return counts.reindex(columns=GENETIC_COLUMNS).reset_index(drop=True)
