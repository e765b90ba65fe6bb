"""Experiment: how far any omnibus test over a latent space could reach for the demo's planted SNPs.

``--multivariate`` keeps the leading eigen-directions of a space's correlation (``--eigen_floor``). This script asks
whether another choice of directions would find more planted SNPs, on the latent tables of a finished demo run:

- **leading k**: the exact multivariate test of the SNP on the space's k leading principal directions (after the
  covariates): the F test of ``R^2(g ~ directions)`` with (k, n - covariates - k) degrees of freedom, which holds at
  any k < n (no chi-square approximation), for k from 3 to every direction;
- **shrinkage**: ``sum_i (v_i' z)^2 / (w_i + lambda)`` over all directions (``R + lambda I`` instead of a
  truncated ``R``), calibrated on the same SNPs with the samples permuted (a gamma fitted to the permuted values,
  as ``--multivariate`` does), for lambda from 1e-3 to 1 of the largest eigenvalue.

It prints -log10 P of each planted SNP beside the largest value of any other SNP, and for the leading-k tests the
cohort size at which each planted SNP's statistic would reach the threshold (:func:`subjects_needed`).
``--multivariate``'s threshold in the demo is 8.7 (5e-8 over its latent tables); a test that cannot reach it for any
k or lambda cannot find that SNP.

    python benchmarks/omnibus_ceiling.py demo_output/demo
    python benchmarks/omnibus_ceiling.py demo_output/demo --extra pca=/path/to/pca_scores.tsv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from bed_reader import open_bed
from scipy import optimize, stats

from ml4ge.genetics.glm import prepare_phenotypes
from ml4ge.genetics.omnibus import fit_gamma, log10_gamma_sf

SPACES = {"ae_t1": "ae_t1/hidden_t1_3mm_ae_t1.tsv", "ae_t2": "ae_t2/hidden_t2_3mm_ae_t2.tsv",
          "dropfuse_t1": "dropfuse/hidden_t1_3mm_dropfuse.tsv", "dropfuse_t2": "dropfuse/hidden_t2_3mm_dropfuse.tsv",
          "ae_deep": "ae_deep/hidden_t1_deep_3mm_ae_deep.tsv"}
LEADING = (3, 5, 10, 20, 40, 80)  # and then every direction
THRESHOLD_LOG10 = 8.7  # --multivariate's hit threshold in the demo (5e-8 over its latent tables)
SHRINKAGE = (1e-3, 1e-2, 1e-1, 1.0)


def space_inputs(table: Path, genotypes, covariates: pd.DataFrame):
    """``(left singular vectors and singular values of the standardised latent residuals, unit-norm genotype
    residuals, intercept + covariates)`` after the covariates, for the samples both files hold."""
    latents = pd.read_csv(table, sep="\t").set_index("sample_id")
    ids = latents.index.intersection(covariates.index)
    rows = pd.Index(genotypes.iid).get_indexer(ids)
    dosages = genotypes.read(dtype="float64", index=np.s_[rows, :])
    dosages = np.where(np.isnan(dosages), np.nanmean(dosages, axis=0), dosages)
    prepared = prepare_phenotypes(latents.loc[ids].to_numpy(), covariates.loc[ids].to_numpy(float))
    y = prepared.residuals / prepared.residuals.std(axis=0)
    g = dosages - prepared.q @ (prepared.q.T @ dosages)
    u, s, _ = np.linalg.svd(y, full_matrices=False)  # once: every test below uses the same directions
    return u, s, g / np.linalg.norm(g, axis=0), prepared.predictors


def leading_k(u: np.ndarray, g: np.ndarray, covariates: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """-log10 P and F of the exact F test of each SNP on the k leading principal directions ``u``."""
    r2 = ((u[:, :k].T @ g) ** 2).sum(axis=0)  # orthonormal directions: R^2 is a sum of squares
    dfd = len(u) - covariates - k
    f = r2 / k / ((1 - r2) / dfd)
    return -stats.f.logsf(f, k, dfd) / np.log(10), f


def subjects_needed(f: float, k: int, samples: int, covariates: int) -> float:
    """The cohort size at which the median of the leading-k F statistic would reach :data:`THRESHOLD_LOG10`, if the
    space carried the SNP as it does here: the noncentrality per subject is estimated from the observed F (its
    excess over k, as ``k F`` is about ``k + noncentrality``). The estimate is noisy (one SNP's statistic) and
    optimistic where k is the best of several."""
    per_subject = (k * f - k) / samples
    if not per_subject > 0:
        return np.inf

    def margin(n: float) -> float:  # the median F at n subjects over the F that the threshold asks
        dfd = n - covariates - k
        return stats.ncf.median(k, dfd, n * per_subject) - stats.f.isf(10.0**-THRESHOLD_LOG10, k, dfd)

    low = high = covariates + k + 2.0
    while margin(high) < 0:
        low, high = high, 2 * high
    return high if low == high else optimize.brentq(margin, low, high)


def shrinkage(u: np.ndarray, singular: np.ndarray, g: np.ndarray, fraction: float,
              rng: np.random.Generator) -> np.ndarray:
    """-log10 P of the shrinkage-whitened statistic, calibrated by a gamma fitted to its permuted values."""
    # z = y'g per dimension (y standardised, g of unit norm), so z' (R + lambda I)^-1 z with R = y'y / n is
    # n sum_i e_i / (e_i + lambda) (u_i' g)^2 over the eigenvalues e_i and left singular vectors u_i of y.
    eigen = singular**2 / len(u)
    weights = len(u) * eigen / (eigen + fraction * eigen[0])
    observed = (weights * (u.T @ g).T ** 2).sum(axis=1)
    permuted = (weights * (u.T @ g[rng.permutation(len(g))]).T ** 2).sum(axis=1)
    return log10_gamma_sf(observed, *fit_gamma(permuted))


def tests(u: np.ndarray, singular: np.ndarray, g: np.ndarray, covariate_count: int):
    """(label, -log10 P of every SNP, F or None, k or None) of each test of one space."""
    for k in (*LEADING, u.shape[1]):
        if k <= u.shape[1]:
            yield f"leading {k}", *leading_k(u, g, covariate_count, k), k
    for fraction in SHRINKAGE:
        yield f"shrinkage {fraction:g}", shrinkage(u, singular, g, fraction, np.random.default_rng(0)), None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", type=Path, help="a demo run's folder (with data/ and latents/)")
    parser.add_argument("--extra", nargs="*", default=[], help="more latent tables as name=path")
    args = parser.parse_args()
    truth = json.loads((args.demo / "data/truth.json").read_text())["snps"]
    genotypes = open_bed(args.demo / "data/genotypes.bed")
    covariates = pd.read_csv(args.demo / "data/covariates.tsv", sep="\t").set_index("sample_id")
    planted = pd.Index(genotypes.sid).get_indexer([snp["id"] for snp in truth])
    tables = {name: args.demo / "latents" / path for name, path in SPACES.items()}
    tables.update(dict(extra.split("=", 1) for extra in args.extra))
    print("-log10 P of the planted SNPs (" + ", ".join(snp["trait"] for snp in truth) + ") | largest other SNP "
          "(their LD neighbours included)")
    for name, table in tables.items():
        u, singular, g, covariate_count = space_inputs(Path(table), genotypes, covariates)
        print(f"{name}: {len(u)} samples, {u.shape[1]} dimensions")
        for label, log10p, f, k in tests(u, singular, g, covariate_count):
            others = np.delete(log10p, planted)
            needed = "" if k is None else " | subjects needed: " + " ".join(
                f"{subjects_needed(f[i], k, len(u), covariate_count):7,.0f}" for i in planted)
            print(f"  {label:>15}: " + " ".join(f"{log10p[i]:5.1f}" for i in planted) + f" | {others.max():5.1f}"
                  + needed)


if __name__ == "__main__":
    main()
