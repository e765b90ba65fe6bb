"""An optional "ageing" SNP in the demo cohort: each effect allele makes a subject's anatomy look older.

With ``ageing_years = k > 0`` (:func:`ml4ge.demo.cohort.write_demo_cohort`), one common SNP that is none of the
planted SNPs is chosen, and every subject's age-dependent anatomy (the ventricles' age term and the cortical grey
matter loss) follows an apparent age ``age + k * dose`` instead of the chronological age, which stays the recorded
one: a brain-age model should then read each allele as k years of brain-age gap. The other planted SNPs' effects
and every other draw are untouched.

The SNP is chosen from its own stream ``default_rng([seed, AGEING_STREAM])``, apart from the cohort's draws, and
``k = 0`` (the default) writes exactly the cohort it always did.
"""

from __future__ import annotations

import numpy as np

AGEING_STREAM = 17_003  # the ageing SNP's own random stream (issue 17)
AGEING_MIN_MAF = 0.3  # a common SNP, so that a few hundred subjects carry enough of each genotype
# The phenotypes that carry anatomical age; the truth record measures the SNP's effect on each.
AGEING_TRAITS = ("cortical_gm_volume", "ventricle_volume")


def check_ageing(years: float) -> None:
    """Raises ValueError unless ``0 <= years <= 10`` (a few years per allele is the planted effect's scale)."""
    if not 0.0 <= float(years) <= 10.0:
        raise ValueError(f"ageing_years must be in [0, 10] years per allele, got {years}.")


def choose_ageing_snp(snps, causal_rows, seed: int) -> int:
    """The row of a common SNP (MAF >= 0.3) that is none of ``causal_rows``, drawn from the ageing stream.

    Raises:
        ValueError: when no SNP qualifies.
    """
    rng = np.random.default_rng([seed, AGEING_STREAM])
    maf = snps["maf"].to_numpy()
    candidates = np.setdiff1d(np.flatnonzero(maf >= AGEING_MIN_MAF), np.asarray(causal_rows))
    if candidates.size == 0:
        raise ValueError(f"no SNP with MAF >= {AGEING_MIN_MAF} is left for the ageing SNP; simulate more SNPs.")
    return int(rng.choice(candidates))


def apparent_age_shift(complete: np.ndarray, row: int, years: float) -> np.ndarray:
    """Years each subject's anatomy looks older: ``years`` per effect allele (allele 1, the counted one)."""
    return float(years) * complete[:, row].astype(np.float64)
