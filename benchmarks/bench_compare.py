"""Wall time of ``compare`` on 20,000 samples x 256 latent dimensions x 10 phenotypes x 5 folds (target: < 60 s).

Two latent spaces (one informative, one noise), half the phenotypes continuous and half binary, as in a
t1-vs-t2 comparison. ``--baseline`` also times the textbook loop (one ``cross_val_score`` per space and
phenotype, default BLAS threads, no shared decompositions) on the same data, side by side, and prints the ratio.

Usage:
    python benchmarks/bench_compare.py            # the issue's configuration
    python benchmarks/bench_compare.py --quick    # 2,000 x 64 x 4 x 5, a few seconds
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd

from ml4ge.compare import LOGISTIC_CS, RIDGE_ALPHAS, compare_latent_spaces

TARGET_SECONDS = 60.0


def synthetic(samples: int, dims: int, phenotypes: int, seed: int = 0):
    """Two latent spaces and a phenotype table; the informative space drives every phenotype."""
    rng = np.random.default_rng(seed)
    ids = [f"sample_{i}" for i in range(samples)]
    informative = rng.standard_normal((samples, dims)).astype(np.float32)
    noise = rng.standard_normal((samples, dims)).astype(np.float32)
    columns = {}
    for p in range(phenotypes):
        weights = rng.standard_normal(8)
        value = informative[:, p : p + 8] @ weights + rng.standard_normal(samples) * 2
        columns[f"phenotype_{p}"] = value if p % 2 == 0 else (value > np.median(value)).astype(int)
    latents = {"informative": pd.DataFrame(informative, index=ids), "noise": pd.DataFrame(noise, index=ids)}
    return latents, pd.DataFrame(columns, index=ids)


def textbook(latents, phenotypes: pd.DataFrame, folds: int) -> None:
    """One sklearn ``cross_val_score`` per space and phenotype, nothing shared (the comparison point)."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    for frame in latents.values():
        for column in phenotypes.columns:
            y = phenotypes[column].to_numpy()
            if len(np.unique(y)) == 2:
                model = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=LOGISTIC_CS, cv=3, max_iter=1000))
                cv, scoring = StratifiedKFold(folds, shuffle=True, random_state=0), "roc_auc"
            else:
                model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
                cv, scoring = KFold(folds, shuffle=True, random_state=0), "r2"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                cross_val_score(model, frame.to_numpy(), y, cv=cv, scoring=scoring)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 samples x 64 dims x 4 phenotypes.")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--phenotypes", type=int, default=10)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="Folds fitted at once (threads).")
    parser.add_argument("--baseline", action="store_true", help="Also time the textbook loop for a ratio.")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.dims, args.phenotypes = 2_000, 64, 4
    latents, phenotypes = synthetic(args.samples, args.dims, args.phenotypes)
    print(f"compare: {args.samples} samples x {args.dims} dims x {args.phenotypes} phenotypes x {args.folds} folds "
          f"x {len(latents)} spaces, {args.jobs} jobs on {os.cpu_count()} CPUs "
          "(shared with other jobs: figures are noisy)")
    start, cpu = time.perf_counter(), time.process_time()
    result = compare_latent_spaces(latents, phenotypes, list(phenotypes.columns), folds=args.folds,
                                   pairs=[("informative", "noise")], progress=False, n_jobs=args.jobs)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(result.summary.groupby(["space", "metric"])["mean"].mean().round(3).to_string())
    print(f"ml4ge compare: {wall:.1f} s = {wall / TARGET_SECONDS:.2f} of the {TARGET_SECONDS:.0f} s target "
          f"({'PASS' if wall < TARGET_SECONDS else 'FAIL'}); CPU time {cpu:.1f} s (wall above CPU = waiting for "
          "the shared cores)")
    if args.baseline:
        start, cpu_start = time.perf_counter(), time.process_time()
        textbook(latents, phenotypes, args.folds)
        baseline, baseline_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        print(f"textbook cross_val_score loop: {baseline:.1f} s wall, {baseline_cpu:.1f} s CPU; ml4ge is "
              f"{baseline / wall:.2f}x faster in wall time, {baseline_cpu / cpu:.2f}x in CPU time")


if __name__ == "__main__":
    main()
