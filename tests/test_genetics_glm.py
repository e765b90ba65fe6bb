"""The OLS scan against statsmodels, planted effects, null calibration, -log10 P far below underflow, bad inputs."""

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from ml4ge.genetics.glm import associate_chunk, prepare_phenotypes, untestable_phenotypes
from ml4ge.genetics.simulate import simulate_dosages
from ml4ge.genetics.student_t import neg_log10_p


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    n, m, p = 400, 60, 3
    dosages = simulate_dosages(rng, n, m, missing=0.05)
    covariates = np.column_stack([rng.uniform(40, 80, n), rng.integers(0, 2, n), rng.standard_normal(n)])
    phenotypes = rng.standard_normal((n, p)) + 0.02 * covariates[:, [0]]
    phenotypes[:, 1] += 0.8 * np.nan_to_num(dosages[:, 7], nan=1.0)
    return dosages, covariates, phenotypes


def _statsmodels(y, g, covariates):
    fit = sm.OLS(y, sm.add_constant(np.column_stack([g, covariates]))).fit()
    return fit.params[1], fit.bse[1], fit.tvalues[1], -np.log10(fit.pvalues[1])


@pytest.mark.parametrize("impute", [False, True])
def test_matches_statsmodels_per_snp_and_phenotype(data, impute):
    dosages, covariates, phenotypes = data
    result = associate_chunk(prepare_phenotypes(phenotypes, covariates), dosages, impute=impute)
    assert result.beta.shape == (60, 3)
    for snp in (0, 7, 33):
        g = dosages[:, snp].astype(np.float64)
        observed = ~np.isnan(g)
        assert observed.sum() < len(g)  # the case of interest: samples missing the SNP
        if impute:
            g, observed = np.where(observed, g, np.nanmean(g)), np.ones_like(observed)
        for d in range(3):
            expected = _statsmodels(phenotypes[observed, d], g[observed], covariates[observed])
            got = (result.beta[snp, d], result.se[snp, d], result.t_stat[snp, d], result.log10_p[snp, d])
            np.testing.assert_allclose(got, expected, rtol=1e-6)
        assert result.n[snp] == observed.sum()
        assert result.a1_freq[snp] == pytest.approx(np.nanmean(dosages[:, snp]) / 2, rel=1e-6)


def test_planted_effect_found_and_nulls_calibrated():
    rng = np.random.default_rng(2)
    n, m = 1000, 2000
    dosages = simulate_dosages(rng, n, m, missing=0.02)
    covariates = rng.standard_normal((n, 2))
    phenotypes = rng.standard_normal((n, 4)) + covariates[:, [0]]
    planted = np.nan_to_num(dosages[:, 100], nan=float(np.nanmean(dosages[:, 100])))
    phenotypes[:, 2] += 0.5 * planted
    result = associate_chunk(prepare_phenotypes(phenotypes, covariates), dosages)
    expected_t = 0.5 * np.sqrt(n * planted.var())  # noise SD 1: t ~ N(beta sqrt(n var g), 1)
    assert result.t_stat[100, 2] == pytest.approx(expected_t, abs=4)
    assert result.log10_p[100, 2] > -np.log10(5e-8 / 4)
    assert result.beta[100, 2] == pytest.approx(0.5, abs=0.1)
    null = np.delete(result.t_stat, 100, axis=0) ** 2
    assert np.median(null) == pytest.approx(stats.chi2.ppf(0.5, 1), abs=0.04)  # 0.455
    assert np.mean(np.delete(result.log10_p, 100, axis=0) > -np.log10(0.05)) == pytest.approx(0.05, abs=0.01)


def test_log10_p_stays_finite_far_below_double_range():
    t = np.array([2.0, 30.0, 40.0, 100.0, 1000.0])
    got = neg_log10_p(t, np.full(5, 1990.0))
    # reference values: scipy for the representable ones, mpmath (50 digits) for t = 100 and 1000
    np.testing.assert_allclose(got[:3], -np.log10(2 * stats.t.sf(t[:3], 1990)), rtol=1e-9)
    np.testing.assert_allclose(got[3:], [777.7744509754999, 2690.247369046074], rtol=1e-9)
    assert np.isnan(neg_log10_p(np.array([np.nan]), np.array([10.0]))[0])


def test_constant_and_all_missing_snps_get_no_statistics(data):
    dosages, covariates, phenotypes = data
    dosages = dosages[:, :3].copy()
    dosages[:, 0] = 1.0
    dosages[:, 1] = np.nan
    result = associate_chunk(prepare_phenotypes(phenotypes, covariates), dosages)
    assert np.isnan(result.beta[:2]).all() and np.isfinite(result.beta[2]).all()
    assert result.n[1] == 0 and result.missing_rate[1] == 1.0


def test_bad_phenotypes_and_covariates_are_refused(data):
    _, covariates, phenotypes = data
    with_nan = phenotypes.copy()
    with_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="phenotypes hold 1 missing"):
        prepare_phenotypes(with_nan, covariates)
    collinear = np.column_stack([covariates, 2 * covariates[:, 0]])
    with pytest.raises(ValueError, match=r"\['twice_age'\] are constant or collinear"):
        prepare_phenotypes(phenotypes, collinear, ("age", "sex", "pc", "twice_age"))
    with pytest.raises(ValueError, match="constant after the covariates"):
        prepare_phenotypes(np.column_stack([phenotypes[:, 0], covariates[:, 0]]), covariates)


@pytest.mark.parametrize("value", [0.0, 1.0, -3.7, 5e6, 1e-12])
def test_constant_phenotype_is_untestable_whatever_its_value(data, value):
    _, covariates, phenotypes = data
    columns = np.column_stack([phenotypes[:, 0], np.full(len(phenotypes), value)])
    assert untestable_phenotypes(columns, covariates) == {1: "constant (every sample has the same value)"}
    with pytest.raises(ValueError, match=r"phenotype columns \[1\] are constant"):
        prepare_phenotypes(columns, covariates)


@pytest.mark.parametrize("offset", [0.0, 2.0, 1e6])
def test_phenotype_that_the_covariates_explain_exactly_is_untestable(data, offset):
    _, covariates, phenotypes = data
    exact = offset + 0.03 * covariates[:, 0] - 0.5 * covariates[:, 1] + 1e-3 * covariates[:, 2]
    columns = np.column_stack([exact, phenotypes[:, 1], offset + phenotypes[:, 2]])
    assert untestable_phenotypes(columns, covariates) == {0: "constant after the covariates (an exact linear "
                                                            "function of them)"}
    with pytest.raises(ValueError, match=r"phenotype columns \[0\] are constant after the covariates"):
        prepare_phenotypes(columns, covariates)
    assert untestable_phenotypes(columns[:, 1:], covariates) == {}
