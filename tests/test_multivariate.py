"""The omnibus (MOSTest) and min-P tests over a latent space: the statistic, its calibration on null data, and
``--mode associate --multivariate`` end to end."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ml4ge.genetics.glm import associate_chunk, prepare_phenotypes
from ml4ge.genetics.omnibus import OmnibusNull, combine, fit_gamma, fit_null, whitening
from ml4ge.genetics.simulate import simulate_dosages

PERMUTED = 40_000


def _correlated(rng, samples, dimensions):
    """Latents correlated across dimensions (a random mixing, as encoders' dimensions are) plus covariates."""
    covariates = rng.standard_normal((samples, 2))
    mixing = rng.standard_normal((dimensions, dimensions)) + 2.0 * np.eye(dimensions)
    mixing[:, 0] += 1.5  # a shared factor: correlations up to ~0.8
    return rng.standard_normal((samples, dimensions)) @ mixing + covariates @ rng.standard_normal((2, dimensions)), \
        covariates


@pytest.mark.parametrize("shape, scale, count", [(0.2, 5.0, 300), (3.0, 2.0, 20_000), (21.0, 2.1, 5_000),
                                                 (200.0, 1.0, 2_000)])
def test_the_gamma_null_is_scipys_maximum_likelihood_fit(shape, scale, count):
    """The null's gamma fit (without importing scipy.stats) is scipy.stats.gamma.fit(floc=0) to round-off."""
    values = np.random.default_rng(count).gamma(shape, scale, count)
    expected_shape, _, expected_scale = stats.gamma.fit(values, floc=0)
    assert fit_gamma(values) == pytest.approx((expected_shape, expected_scale), rel=1e-10)


def test_equal_permuted_statistics_fit_no_gamma():
    with pytest.raises(ValueError, match="all equal"):
        fit_gamma(np.full(500, 3.0))


def _omnibus(prepared, dosages, null):
    """The omnibus and min-P statistics of ``dosages`` as the scan computes them."""
    return combine(associate_chunk(prepared, dosages, imputed_correlations=True), null)


def _direct_omnibus(latents, design, g):
    """Bartlett's chi-square of the SNP's joint test on every latent dimension, by numpy least squares: the SNP
    (missing calls replaced by its mean) regressed on the covariates, then on the covariates and the latents."""
    g = np.where(np.isnan(g), np.nanmean(g), g)
    covariates_only = g - design @ np.linalg.lstsq(design, g, rcond=None)[0]
    full = np.column_stack([design, latents])
    both = g - full @ np.linalg.lstsq(full, g, rcond=None)[0]
    r2 = 1 - both @ both / (covariates_only @ covariates_only)
    return -(len(g) - design.shape[1] - (latents.shape[1] + 2) / 2) * np.log(1 - r2)


@pytest.mark.parametrize("missing", [0.0, 0.05])
def test_the_omnibus_statistic_equals_a_direct_numpy_computation(missing):
    rng = np.random.default_rng(0)
    latents, covariates = _correlated(rng, 300, 5)
    dosages = simulate_dosages(rng, 300, 40, missing=missing)
    prepared = prepare_phenotypes(latents, covariates)
    null = OmnibusNull(whitening(prepared), 300 - 3, 2.5, 2.0, 5.0)
    ours = _omnibus(prepared, dosages, null)

    design = np.column_stack([np.ones(300), covariates])
    for snp in range(40):
        direct = _direct_omnibus(latents, design, dosages[:, snp])
        # (the direct R^2 is 1 minus a ratio of residual sums: about 1e-11 of round-off)
        assert ours.chisq[snp] == pytest.approx(direct, rel=1e-8, abs=1e-7)
        assert ours.log10_p_chisq[snp] == pytest.approx(-np.log10(stats.chi2.sf(direct, 5)), rel=1e-6, abs=1e-7)
        assert ours.log10_p[snp] == pytest.approx(-np.log10(stats.gamma.sf(direct, 2.5, scale=2.0)), rel=1e-6,
                                                  abs=1e-7)
        observed = ~np.isnan(dosages[:, snp])  # min-P: each dimension's own test, on the SNP's observed samples
        x = np.column_stack([design[observed], dosages[observed, snp]])
        coefficients, rss = np.linalg.lstsq(x, latents[observed], rcond=None)[:2]
        df = observed.sum() - 4
        t = coefficients[-1] / np.sqrt(rss / df * np.linalg.inv(x.T @ x)[-1, -1])
        assert ours.min_log10_p[snp] == pytest.approx(-np.log10(2 * stats.t.sf(np.abs(t), df).min()), rel=1e-8)


def test_collinear_dimensions_are_regularised_to_the_rank_of_the_space():
    rng = np.random.default_rng(1)
    latents, covariates = _correlated(rng, 200, 3)
    latents = np.column_stack([latents, latents[:, 0] + latents[:, 1]])  # a fourth that adds nothing
    prepared = prepare_phenotypes(latents, covariates)
    matrix = whitening(prepared)
    assert matrix.shape == (3, 4)
    correlation = np.corrcoef(prepared.residuals, rowvar=False)
    np.testing.assert_allclose(matrix @ correlation @ matrix.T, np.eye(3), atol=1e-8)  # R is the identity there


def test_a_space_with_eigenvalues_down_to_1e_9_keeps_a_calibrated_omnibus():
    """Latents like an autoencoder's (float32, a spectrum falling over nine decades) with every direction kept, 2 %
    missing calls, null SNPs. MOSTest's z' R^-1 z on per-dimension z-scores gave these a median chi-square 35 times
    its degrees of freedom, 97 % of them P < 1e-3 and -log10 P up to 19,490."""
    rng = np.random.default_rng(5)
    covariates = rng.standard_normal((300, 2))
    spread = 10.0 ** -np.linspace(0, 4.5, 24)  # standard deviations: eigenvalues from 1 to 1e-9
    rotation = np.linalg.qr(rng.standard_normal((24, 24)))[0]
    latents = (rng.standard_normal((300, 24)) * spread) @ rotation.T + covariates @ rng.standard_normal((2, 24))
    prepared = prepare_phenotypes(latents.astype(np.float32), covariates)
    null = OmnibusNull(whitening(prepared, floor=1e-12), 300 - 3)
    assert null.rank == 24
    ours = _omnibus(prepared, simulate_dosages(rng, 300, 20_000, 0.02), null)
    assert np.nanmedian(ours.chisq) == pytest.approx(stats.chi2.median(24), rel=0.05)
    hits = int(np.sum(ours.log10_p_chisq >= 3))
    assert abs(hits - 20) <= 4 * np.sqrt(20) + 1, hits
    assert np.nanmax(ours.log10_p_chisq) < 7


@pytest.fixture(scope="module")
def null_scan():
    """Omnibus and min-P -log10 P of 200,000 null SNPs (300 samples, 6 correlated latents), calibrated on 40,000
    other SNPs with permuted genotypes."""
    rng = np.random.default_rng(7)
    latents, covariates = _correlated(rng, 300, 6)
    prepared = prepare_phenotypes(latents, covariates)
    permutation = rng.permutation(300)
    permuted = [associate_chunk(prepared, simulate_dosages(rng, 300, 10_000, 0.0)[permutation],
                                imputed_correlations=True) for _ in range(4)]
    null = fit_null(whitening(prepared), 300 - 3, permuted)
    parts = [_omnibus(prepared, simulate_dosages(rng, 300, 20_000, 0.02), null) for _ in range(10)]
    return null, {name: np.concatenate([getattr(part, name) for part in parts])
                  for name in ("log10_p", "log10_p_chisq", "min_p_log10_p")}


@pytest.mark.parametrize("test", ["log10_p", "log10_p_chisq", "min_p_log10_p"])
@pytest.mark.parametrize("level", [5e-2, 1e-3, 1e-5])
def test_omnibus_and_min_p_are_calibrated_on_null_data(null_scan, test, level):
    _, log10_p = null_scan
    values = log10_p[test]
    hits = int(np.sum(values >= -np.log10(level)))
    assert np.isfinite(values).all()
    # sampling error: the counting error of the 200,000 tested SNPs and the error of the null fitted on 40,000
    expected = level * len(values)
    error = np.sqrt(expected * (1 - level) * (1 + len(values) / PERMUTED))
    assert abs(hits - expected) <= 4 * error + 1, (hits, expected, error)


def test_the_permuted_null_matches_the_chi_square_reference(null_scan):
    null, _ = null_scan
    assert null.rank == 6 and null.permuted_snps == PERMUTED
    assert null.shape == pytest.approx(3.0, rel=0.08) and null.scale == pytest.approx(2.0, rel=0.08)
    assert null.lambda_gc == pytest.approx(1.0, abs=0.05)
    assert 1.5 < null.effective_dimensions < 6  # correlated dimensions: fewer than 6 independent tests


def test_too_few_permuted_snps_are_refused():
    rng = np.random.default_rng(2)
    latents, covariates = _correlated(rng, 100, 3)
    prepared = prepare_phenotypes(latents, covariates)
    dosages = simulate_dosages(rng, 100, 50, 0.0)
    with pytest.raises(ValueError, match="--permuted_snps"):
        fit_null(whitening(prepared), 100 - 3, [associate_chunk(prepared, dosages, imputed_correlations=True)])


def _spread_cohort(folder):
    """A cohort whose SNP rs2200 (allele frequency 0.44) moves all 8 latents a little (no single one reaches
    genome-wide significance), and rs901 one latent strongly."""
    from ml4ge.genetics.simulate import write_simulated_cohort

    planted = tuple((2199, d, 0.11) for d in range(8)) + ((900, 1, 0.6),)
    return write_simulated_cohort(folder, samples=1500, snps=3000, dimensions=8, planted=planted, seed=11)


@pytest.mark.slow
def test_associate_multivariate_finds_a_snp_spread_over_the_dimensions(tmp_path):
    from ml4ge.cli import main
    from ml4ge.compare import genetic_signal
    from ml4ge.genetics.sumstats import read_sumstats

    cohort = _spread_cohort(tmp_path / "cohort")
    assert main(["--mode", "associate", "--latent_tables", f"t1={cohort.latents}", "--genotypes",
                 str(cohort.genotypes), "--covariates_file", str(cohort.covariates), "--output_folder",
                 str(tmp_path), "--id", "gwas", "--num_workers", "1", "--multivariate", "--permuted_snps",
                 "3000"]) == 0
    run = tmp_path / "gwas"
    per_dimension = pd.read_csv(run / "associate_hits.tsv", sep="\t")
    assert "rs2200" not in set(per_dimension.ID) and "rs901" in set(per_dimension.ID)
    omnibus = pd.read_csv(run / "associate_omnibus_hits.tsv", sep="\t")
    found = omnibus[omnibus.dimension == "omnibus"]
    assert {"rs2200", "rs901"} <= set(found.ID) and found.POS.between(0, 10**9).all()
    assert set(omnibus[omnibus.dimension == "minp"].ID) == {"rs901"}
    table = read_sumstats(run / "sumstats/t1.glm.omnibus.gz")
    assert list(table.columns[:14]) == ["#CHROM", "POS", "ID", "REF", "ALT", "A1", "A1_FREQ", "TEST", "OBS_CT",
                                        "CHISQ", "DF", "P_CHISQ", "P", "MINP_DIM"]
    assert len(table) == 3000 and (table.TEST == "OMNIBUS").all() and (table.DF == 8).all()
    null_log10p = table.LOG10P.drop(index=[900, 2199])
    assert np.median(null_log10p) == pytest.approx(np.log10(2), abs=0.06)  # uniform P: median 0.5
    counts = json.loads((run / "associate_counts.json").read_text())[0]
    loci = pd.read_csv(run / "associate_omnibus_loci.tsv", sep="\t")  # each test clumped on its own
    assert sorted(loci.dimension) == ["minp", "omnibus", "omnibus"] and set(loci.ID) == {"rs901", "rs2200"}
    assert counts["omnibus_snps"] == 2 and counts["omnibus_loci"] == 2 and counts["minp_loci"] == 1
    assert counts["omnibus_df"] == 8 and counts["permuted_snps"] == 3000
    assert (run / "manhattan_t1_omnibus.png").is_file()
    quoted = genetic_signal([run / "associate_counts.tsv"], ["t1"]).iloc[0]  # what compare's report shows
    assert quoted.omnibus_loci == 2 and quoted.minp_loci == 1 and quoted.loci == 1
