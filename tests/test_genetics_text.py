"""ml4ge.genetics.text writes exactly Python's '%.6g' (the summary statistics' numbers) and joins rows."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ml4ge.genetics.text import g_fields, join_rows, put_text, string_fields


def python_text(values) -> list[str]:
    return ["NA" if not np.isfinite(v) else f"{v:.6g}" for v in np.asarray(values, dtype=np.float64).tolist()]


def ours(values) -> list[str]:
    return join_rows([g_fields(np.asarray(values, dtype=np.float64))]).decode().split("\n")[:-1]


def test_edge_cases_match_python_byte_for_byte():
    powers = 10.0 ** np.arange(-300, 301)
    edges = [0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, 1e-320, 1.7e308, 0.5, 1.5, 2.5, 1234565.0, 1234575.0,
             0.1234565, 999999.5, 9999995.0, 0.00009999995, 1e-5, 1e-4, 99999.95, 100000.0, 999999.0, 1e16, 1e22,
             1e23, -3.0e-7, 123456789012.0]
    values = np.concatenate([edges, powers, np.nextafter(powers, 0), np.nextafter(powers, np.inf), 0.5 * powers,
                             9.999995 * powers, -9.999995 * powers, np.nextafter(9.999995 * powers, 0)])
    assert ours(values) == python_text(values)


def test_random_values_of_every_scale_match_python():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.standard_normal(100_000), 10.0 ** rng.uniform(-320, 308, 100_000),
                             -(10.0 ** rng.uniform(-8, 8, 100_000)),
                             np.round(rng.uniform(0, 2e6, 50_000)) / 10.0 ** rng.integers(0, 12, 50_000)])
    assert ours(values) == python_text(values)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=50))
def test_any_double_matches_python(values):
    assert ours(values) == python_text(values)


def test_rows_join_fields_with_tabs_and_text_replaces_a_field():
    prefix = string_fields(["1\t100\trs1", "X\t2\tné"])  # UTF-8 passes through
    numbers = g_fields(np.array([0.25, -1e-7]))
    put_text(numbers, 1, "2.5e-412")
    assert join_rows([prefix, numbers, string_fields([".", "CORR_TOO_HIGH"])]).decode() == (
        "1\t100\trs1\t0.25\t.\nX\t2\tné\t2.5e-412\tCORR_TOO_HIGH\n")
