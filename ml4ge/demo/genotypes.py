"""Simulated genotypes in linkage blocks, written as PLINK 1 files with bed-reader.

Each chromosome is cut into blocks of consecutive SNPs. Within a block every haplotype carries a latent
Gaussian that drifts from SNP to SNP as an AR(1) chain (correlation ``rho`` per step), and an allele is
present where the latent value falls below the quantile of the SNP's allele frequency: neighbouring SNPs
are in linkage disequilibrium, blocks are independent. A weak shared ancestry axis shifts every SNP's
frequency a little per subject, so that the leading genotype PCs mean something (population structure).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri

MAF_RANGE = (0.05, 0.5)
CAUSAL_MAF_RANGE = (0.3, 0.45)
BLOCK_SIZE_RANGE = (5, 40)
RHO_RANGE = (0.75, 0.97)
ANCESTRY_SHIFT = 0.08  # latent-threshold shift per SD of ancestry
MEAN_GAP_BP = 5_000
CHROMOSOMES = 4
ALLELE_PAIRS = (("A", "G"), ("G", "A"), ("C", "T"), ("T", "C"), ("A", "C"), ("G", "T"))


@dataclass(frozen=True)
class Genotypes:
    """Allele counts (subjects x SNPs) and the SNP table.

    Attributes:
        dosages: float32 allele-1 counts 0/1/2 with NaN where missing (what the .bed holds).
        complete: int8 counts before missingness (what the planted effects act on).
        snps: DataFrame ``chrom, id, cm, pos, allele_1, allele_2, maf, block``.
    """

    dosages: np.ndarray
    complete: np.ndarray
    snps: pd.DataFrame


def min_snps(chromosomes: int = CHROMOSOMES) -> int:
    """The fewest SNPs that fill every chromosome with at least one full-sized block."""
    return chromosomes * BLOCK_SIZE_RANGE[1]


def layout_snps(snps: int, chromosomes: int, rng: np.random.Generator) -> pd.DataFrame:
    """Chromosome, block, position, alleles and allele frequency of every SNP.

    Raises:
        ValueError: if ``snps`` is below :func:`min_snps`.
    """
    if snps < min_snps(chromosomes):
        raise ValueError(f"snps={snps} is too few for {chromosomes} chromosomes; use at least "
                         f"{min_snps(chromosomes)}")
    rows, block = [], 0
    for chrom, count in enumerate(np.array_split(np.arange(snps), chromosomes), start=1):
        position = int(rng.integers(1_000_000, 2_000_000))
        left = len(count)
        while left > 0:
            size = min(int(rng.integers(*BLOCK_SIZE_RANGE)), left)
            left -= size
            for _ in range(size):
                position += int(rng.integers(MEAN_GAP_BP // 5, 2 * MEAN_GAP_BP))
                rows.append((chrom, block, position))
            position += 200_000  # recombination hot spot between blocks
            block += 1
    frame = pd.DataFrame(rows, columns=["chrom", "block", "pos"])
    frame["id"] = [f"rs{100000 + i}" for i in range(len(frame))]
    frame["cm"] = frame["pos"] / 1e6
    pairs = rng.integers(0, len(ALLELE_PAIRS), len(frame))
    frame["allele_1"] = [ALLELE_PAIRS[p][0] for p in pairs]
    frame["allele_2"] = [ALLELE_PAIRS[p][1] for p in pairs]
    frame["maf"] = rng.uniform(*MAF_RANGE, len(frame))
    return frame[["chrom", "id", "cm", "pos", "allele_1", "allele_2", "maf", "block"]]


def choose_causal(snps: pd.DataFrame, count: int, rng: np.random.Generator) -> list[int]:
    """Row indices of ``count`` causal SNPs: the middle SNP of a block, on chromosomes in turn; their
    frequency is set into ``CAUSAL_MAF_RANGE`` (in place) so that the planted effects are detectable."""
    chromosomes = sorted(snps["chrom"].unique())
    chosen = []
    for k in range(count):
        chrom = chromosomes[k % len(chromosomes)]
        blocks = snps.loc[snps["chrom"] == chrom, "block"].unique()
        block = blocks[(k // len(chromosomes) * 3 + len(blocks) // 2) % len(blocks)]
        members = np.flatnonzero(snps["block"].to_numpy() == block)
        chosen.append(int(members[len(members) // 2]))
    snps.loc[chosen, "maf"] = rng.uniform(*CAUSAL_MAF_RANGE, len(chosen))
    return chosen


def simulate_haplotype_counts(snps: pd.DataFrame, ancestry: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Allele-1 counts (subjects x SNPs, int8) from two AR(1) latent haplotypes per subject and block."""
    subjects = len(ancestry)
    counts = np.zeros((subjects, len(snps)), dtype=np.int8)
    thresholds = ndtri(snps["maf"].to_numpy())
    shift = (ANCESTRY_SHIFT * ancestry)[:, None]
    for block in snps["block"].unique():
        columns = np.flatnonzero(snps["block"].to_numpy() == block)
        rho = rng.uniform(*RHO_RANGE)
        latent = rng.standard_normal((2, subjects, len(columns)))
        for j in range(1, len(columns)):
            latent[:, :, j] = rho * latent[:, :, j - 1] + np.sqrt(1 - rho * rho) * latent[:, :, j]
        alleles = latent < (thresholds[columns][None, None, :] + shift[None])
        counts[:, columns] = alleles.sum(axis=0)
    return counts


def simulate_genotypes(subjects: int, snps: int, rng: np.random.Generator, chromosomes: int = CHROMOSOMES,
                       causal: int = 4, missing_rate: float = 0.01) -> tuple[Genotypes, list[int]]:
    """Simulate a cohort's genotypes.

    Returns:
        ``(genotypes, causal row indices)``.
    """
    table = layout_snps(snps, chromosomes, rng)
    causal_rows = choose_causal(table, causal, rng)
    ancestry = rng.standard_normal(subjects)
    complete = simulate_haplotype_counts(table, ancestry, rng)
    dosages = complete.astype(np.float32)
    dosages[rng.random(dosages.shape) < missing_rate] = np.nan
    observed = np.nanmean(dosages, axis=0, dtype=np.float64) / 2.0
    table["maf"] = np.minimum(observed, 1.0 - observed).round(4)
    return Genotypes(dosages=dosages, complete=complete, snps=table), causal_rows


def principal_components(dosages: np.ndarray, count: int = 4) -> np.ndarray:
    """Top ``count`` PCs (subjects x count) of mean-imputed, standardised dosages; sign fixed so that each
    component's largest-magnitude score is positive (deterministic across platforms)."""
    mean = np.nanmean(dosages, axis=0)
    centred = np.where(np.isnan(dosages), mean, dosages) - mean
    scale = centred.std(axis=0)
    standardised = centred[:, scale > 0] / scale[scale > 0]
    left, singular, _ = np.linalg.svd(standardised, full_matrices=False)
    scores = left[:, :count] * singular[:count]
    signs = np.sign(scores[np.argmax(np.abs(scores), axis=0), np.arange(scores.shape[1])])
    return scores * np.where(signs == 0, 1.0, signs)


def write_plink(bed_path, genotypes: Genotypes, sample_ids, sexes) -> Path:
    """Write ``.bed/.bim/.fam`` (FID = IID = sample id; sex 1 male / 2 female) with bed-reader, atomically:
    under temporary names first, the ``.bed`` renamed last.

    Args:
        sexes: 0 female / 1 male per subject.
    """
    from bed_reader import to_bed

    bed_path = Path(bed_path)
    temporary = bed_path.with_name(f"{bed_path.stem}.tmp.bed")
    snps = genotypes.snps
    properties = {
        "fid": list(sample_ids), "iid": list(sample_ids), "sex": [1 if s == 1 else 2 for s in sexes],
        "chromosome": [str(c) for c in snps["chrom"]], "sid": list(snps["id"]), "cm_position": list(snps["cm"]),
        "bp_position": list(snps["pos"]), "allele_1": list(snps["allele_1"]), "allele_2": list(snps["allele_2"]),
    }
    try:
        to_bed(temporary, genotypes.dosages, properties=properties, count_A1=True)
        for suffix in (".fam", ".bim", ".bed"):
            os.replace(temporary.with_suffix(suffix), bed_path.with_suffix(suffix))
    finally:
        for suffix in (".fam", ".bim", ".bed"):
            temporary.with_suffix(suffix).unlink(missing_ok=True)
    return bed_path
