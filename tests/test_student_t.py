"""ml4ge.genetics.student_t: the tabulated -log10 P of a scan's chunk agrees with the exact incomplete beta function,
and values beyond the table, non-finite ones and rows of other degrees of freedom are the exact ones."""

import numpy as np
import pytest

from ml4ge.genetics.student_t import TABLE_FROM, _table, chunk_neg_log10_p, neg_log10_p


@pytest.mark.parametrize("df", [5.0, 30.0, 397.0, 1993.0])
def test_the_table_matches_the_exact_p_values(df):
    limit = _table(df).limit
    t = np.random.default_rng(int(df)).uniform(-1.2 * limit, 1.2 * limit, (20_000, 3))
    degrees = np.full((len(t), 1), df)
    exact, tabulated = neg_log10_p(t, degrees), chunk_neg_log10_p(t, degrees)
    assert np.abs(tabulated - exact).max() < 1e-7  # P near 1: the exact one rounds df / (df + t^2)
    away = exact > 0.3
    assert np.abs(np.expm1((exact[away] - tabulated[away]) * np.log(10))).max() < 1e-11  # P, relative
    beyond = np.abs(t) > limit
    assert beyond.any() and (tabulated[beyond] == exact[beyond]).all()


def test_missing_values_and_other_degrees_of_freedom_are_exact():
    rng = np.random.default_rng(2)
    t = rng.standard_normal((TABLE_FROM, 2)) * 3
    t[5, 1], t[9, 0] = np.nan, np.inf
    degrees = np.full((len(t), 1), 397.0)
    degrees[::7] = rng.integers(300, 396, len(degrees[::7]))[:, None]  # SNPs with missing calls
    degrees[3] = 0.0  # too few samples
    tabulated, exact = chunk_neg_log10_p(t, degrees, threads=3), neg_log10_p(t, degrees)
    assert np.isnan(tabulated[5, 1]) and np.isnan(tabulated[3]).all()
    assert np.isnan(tabulated[9, 0]) and np.isnan(exact[9, 0])  # an infinite t is not a statistic
    other = degrees[:, 0] != 397.0
    np.testing.assert_array_equal(tabulated[other], exact[other])
    np.testing.assert_allclose(tabulated[~other], exact[~other], rtol=1e-9, atol=1e-7)
    np.testing.assert_array_equal(chunk_neg_log10_p(t, degrees, threads=1), tabulated)
