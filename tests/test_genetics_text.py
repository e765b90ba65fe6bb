"""ml4ge.genetics.text and its compiled twin write exactly Python's '%.6g' (the summary statistics' numbers) between
text columns, the same bytes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml4ge.genetics import compiled_text, text

WRITERS = pytest.mark.parametrize("writer", [text, compiled_text], ids=["numpy", "compiled"])


def python_text(values) -> list[str]:
    return ["NA" if not np.isfinite(v) else f"{v:.6g}" for v in np.asarray(values, dtype=np.float64).tolist()]


def ours(writer, values) -> list[str]:
    return writer.table_text(np.asarray(values, dtype=np.float64)[:, None]).decode().split("\n")[:-1]


@WRITERS
def test_edge_cases_match_python_byte_for_byte(writer):
    powers = 10.0 ** np.arange(-300, 301)
    edges = [0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, 1e-320, 1.7e308, 0.5, 1.5, 2.5, 1234565.0, 1234575.0,
             0.1234565, 999999.5, 9999995.0, 0.00009999995, 1e-5, 1e-4, 99999.95, 100000.0, 999999.0, 1e16, 1e22,
             1e23, -3.0e-7, 123456789012.0]
    values = np.concatenate([edges, powers, np.nextafter(powers, 0), np.nextafter(powers, np.inf), 0.5 * powers,
                             9.999995 * powers, -9.999995 * powers, np.nextafter(9.999995 * powers, 0)])
    assert ours(writer, values) == python_text(values)


@WRITERS
def test_random_values_of_every_scale_match_python(writer):
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.standard_normal(100_000), 10.0 ** rng.uniform(-320, 308, 100_000),
                             -(10.0 ** rng.uniform(-8, 8, 100_000)),
                             np.round(rng.uniform(0, 2e6, 50_000)) / 10.0 ** rng.integers(0, 12, 50_000)])
    assert ours(writer, values) == python_text(values)


@WRITERS
@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=50))
def test_any_double_matches_python(writer, values):
    assert ours(writer, values) == python_text(values)


@WRITERS
def test_rows_hold_text_columns_numbers_and_replaced_texts(writer):
    numbers = np.array([[0.25, 3.0], [-1e-7, np.nan]])
    lines = writer.table_text(numbers, prefix=writer.text_column(["1\t100\trs1", "X\t2\tné"]),  # UTF-8 as is
                              suffix=writer.text_column([".", "CORR_TOO_HIGH"]), replace={(1, 0): "2.5e-412"})
    assert lines.decode() == "1\t100\trs1\t0.25\t3\t.\nX\t2\tné\t2.5e-412\tNA\tCORR_TOO_HIGH\n"


@WRITERS
def test_many_columns_in_one_table_match_python_row_by_row(writer):
    values = np.random.default_rng(5).standard_normal((1000, 7)) * 10.0 ** np.arange(-6, 8)[:7]
    lines = writer.table_text(values).decode().split("\n")[:-1]
    assert lines == ["\t".join(f"{v:.6g}" for v in row) for row in values.tolist()]
    assert writer.table_text(np.zeros((0, 3))) == b""


@WRITERS
def test_a_column_of_the_wrong_length_is_refused(writer):
    with pytest.raises(ValueError, match="the prefix column has 1 rows, the numbers 2"):
        writer.table_text(np.zeros((2, 1)), prefix=writer.text_column(["a"]))


def test_a_run_of_many_numbers_gets_the_compiled_writer():
    assert text.formatter(text.COMPILED_FROM - 1) is text
    assert text.formatter(text.COMPILED_FROM) is compiled_text


def test_both_writers_write_the_same_bytes_for_a_whole_table():
    rng = np.random.default_rng(11)
    numbers = np.column_stack([rng.normal(0, 0.05, 20_000), rng.gamma(2, 0.01, 20_000), rng.standard_t(5, 20_000),
                               10.0 ** -rng.exponential(3, 20_000)])
    numbers[::997] = np.nan
    replace = {(5, 3): "3.2e-401", (19_999, 0): "x"}
    prefix = [f"{c}\t{p}\trs{p}\tA\tG\tG\t{f:.6g}\tADD\t400" for c, p, f in
              zip(rng.integers(1, 23, 20_000), rng.integers(1, 10**8, 20_000), rng.uniform(0, 1, 20_000))]
    suffix = rng.choice([".", "CONST_OMITTED_ALLELE"], 20_000)
    tables = [writer.table_text(numbers, writer.text_column(prefix), writer.text_column(suffix), replace)
              for writer in (text, compiled_text)]
    assert tables[0] == tables[1]
    assert tables[0].count(b"\n") == 20_000 and b"\t3.2e-401\t" in tables[0]
