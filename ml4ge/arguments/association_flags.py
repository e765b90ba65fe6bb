"""The flags of the genetic association scan (associate): genotypes, quality control, the tests and their
outputs; ``genetic association (associate)`` in ``--help``.
"""

from __future__ import annotations

from ml4ge.arguments.flag import ASSOCIATION, AT_LEAST_0, AT_LEAST_1, OPEN_UNIT, Bounds, Flag

ASSOCIATION_FLAGS: dict[str, Flag] = {
    "genotypes": Flag(ASSOCIATION, None, "associate: PLINK 1 prefix of a .bed/.bim/.fam trio (IID = sample id)."),
    "covariates_file": Flag(ASSOCIATION, None, "associate: CSV/TSV of covariates keyed by sample id; --covariates "
                                               "picks columns (default: all)."),
    "replication_genotypes": Flag(ASSOCIATION, None, "associate: PLINK 1 prefix of a replication cohort."),
    "replication_samples": Flag(ASSOCIATION, None, "associate: CSV of sample ids held out of discovery to "
                                                   "replicate the hits in."),
    "maf": Flag(ASSOCIATION, 0.01, "associate: minimum minor-allele frequency.",
                bounds=Bounds(0, 0.5, open_high=True)),
    "geno": Flag(ASSOCIATION, 0.1, "associate: maximum missing-call rate per SNP.", bounds=Bounds(0, 1)),
    "rint": Flag(ASSOCIATION, False, "associate: rank-inverse-normal transform latents."),
    "impute": Flag(ASSOCIATION, False, "associate: mean-impute missing calls (default: drop the sample for that "
                                       "SNP, as PLINK)."),
    "log10_p": Flag(ASSOCIATION, False, "associate: write LOG10_P (-log10 P) instead of P in the summary "
                                        "statistics, as plink2 --glm log10."),
    "uncompressed_sumstats": Flag(ASSOCIATION, False, "associate: write the summary statistics uncompressed, as "
                                                      "plink2 does (<space>.<dimension>.glm.linear, no .gz): "
                                                      "about 2.7x the disk space, and a scan of many dimensions "
                                                      "spends a third less time (gzip is a third of it)."),
    "no_plots": Flag(ASSOCIATION, False, "associate: draw no Manhattan or Miami plot (PNG); the tables are the same. "
                                         "A plot costs a scan about half a second (matplotlib's import and "
                                         "drawing), which matters only for a small scan."),
    "snp_chunk": Flag(ASSOCIATION, 10_000, "associate: SNPs read and tested at once.", bounds=AT_LEAST_1),
    "clump_kb": Flag(ASSOCIATION, 250.0, "associate: half-width of a locus (kb).", bounds=AT_LEAST_0),
    "significance": Flag(ASSOCIATION, None, "associate: P threshold of a hit (default 5e-8 / number of latent "
                                            "dimensions).", type=float, bounds=OPEN_UNIT),
    "multivariate": Flag(ASSOCIATION, False, "associate: also the omnibus (MOSTest) and min-P test of each SNP over "
                                             "each whole latent space, calibrated on permuted genotypes."),
    "permuted_snps": Flag(ASSOCIATION, 20_000, "associate --multivariate: SNPs (spread over the genome) with permuted "
                                               "genotypes that calibrate the omnibus and min-P tests.",
                          bounds=Bounds(200)),
    "eigen_floor": Flag(ASSOCIATION, 1e-4, "associate --multivariate: eigenvalues of the dimensions' null "
                                           "correlation below this fraction of the largest are left out of the "
                                           "omnibus test (its regularisation).", bounds=OPEN_UNIT),
    "direction_traits": Flag(ASSOCIATION, (), "associate: --phenotypes columns whose direction in each latent space "
                                               "(cross-fitted ridge projection) gets its own GWAS."),
    "association_counts": Flag(ASSOCIATION, (), "compare: associate_counts.tsv of associate runs, to add their hit "
                                                "and locus counts."),
}
