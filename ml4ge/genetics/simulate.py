"""A simulated association cohort for tests and benchmarks: PLINK 1 genotypes with missing calls, a latent table
with planted SNP effects, covariates that also move the latents, and the truth.

Genotypes are drawn per SNP from Hardy-Weinberg proportions with allele frequencies in [0.05, 0.5]; a fraction of
calls is missing. Latent ``d`` of each planted pair ``(snp, d)`` gets ``effect`` standard deviations per allele;
every latent gets age and sex effects and unit Gaussian noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ml4ge.atomic import write_table


@dataclass(frozen=True)
class SimulatedCohort:
    """Paths of a simulated cohort and the planted ``(snp_id, latent column, effect)`` triples."""

    genotypes: Path
    latents: Path
    covariates: Path
    planted: tuple[tuple[str, str, float], ...]


def simulate_dosages(rng: np.random.Generator, samples: int, snps: int, missing: float) -> np.ndarray:
    """(samples, snps) float32 allele counts with NaN for a ``missing`` fraction of calls."""
    frequency = rng.uniform(0.05, 0.5, snps).astype(np.float32)
    dosages = (rng.random((samples, snps), dtype=np.float32) < frequency).astype(np.float32)
    dosages += rng.random((samples, snps), dtype=np.float32) < frequency
    if missing > 0:
        dosages[rng.random((samples, snps), dtype=np.float32) < missing] = np.nan
    return dosages


def write_simulated_cohort(folder, samples: int = 500, snps: int = 1000, dimensions: int = 4,
                           planted: tuple[tuple[int, int, float], ...] = ((10, 0, 0.5), (500, 2, 0.4)),
                           missing: float = 0.02, chromosomes: int = 2, seed: int = 0,
                           chunk: int = 10_000) -> SimulatedCohort:
    """Write ``genotypes.bed/.bim/.fam``, ``latents.tsv`` and ``covariates.tsv`` into ``folder``.

    Genotypes are drawn and written ``chunk`` SNPs at a time, so memory does not grow with ``snps``.

    Args:
        planted: ``(snp index, latent index, effect in SD per allele)`` triples.

    Returns:
        A :class:`SimulatedCohort`.
    """
    from bed_reader import create_bed

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"sub{i:05d}" for i in range(samples)]
    per_chromosome = -(-snps // chromosomes)
    snp_ids = [f"rs{i + 1}" for i in range(snps)]
    properties = {"fid": ids, "iid": ids, "sid": snp_ids,
                  "chromosome": np.repeat(np.arange(1, chromosomes + 1), per_chromosome)[:snps].astype(str),
                  "bp_position": 10_000 + 1_000 * (np.arange(snps) % per_chromosome),
                  "allele_1": rng.choice(["A", "C"], snps), "allele_2": rng.choice(["G", "T"], snps)}
    age = rng.uniform(45, 80, samples)
    sex = rng.integers(0, 2, samples)
    pcs = rng.standard_normal((samples, 2))
    latents = rng.standard_normal((samples, dimensions)) + 0.03 * (age - 60)[:, None] + 0.3 * sex[:, None]
    with create_bed(folder / "genotypes.bed", samples, snps, properties=properties) as bed:
        for start in range(0, snps, chunk):
            dosages = simulate_dosages(rng, samples, min(chunk, snps - start), missing)
            for column in dosages.T:
                bed.write(column)
            for snp, dimension, effect in planted:
                if start <= snp < start + len(dosages.T):
                    dosage = dosages[:, snp - start]
                    dosage = np.nan_to_num(dosage, nan=float(np.nanmean(dosage)))
                    latents[:, dimension] += effect * (dosage - dosage.mean())
    table = pd.DataFrame(latents, columns=[f"latent_{d}" for d in range(dimensions)])
    table.insert(0, "sample_id", ids)
    write_table(table, folder / "latents.tsv")
    covariates = pd.DataFrame({"sample_id": ids, "age": age, "sex": sex, "PC1": pcs[:, 0], "PC2": pcs[:, 1]})
    write_table(covariates, folder / "covariates.tsv")
    truth = tuple((snp_ids[s], f"latent_{d}", float(e)) for s, d, e in planted)
    return SimulatedCohort(folder / "genotypes", folder / "latents.tsv", folder / "covariates.tsv", truth)
