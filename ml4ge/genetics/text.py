"""Tables of numbers as text at numpy speed: ``%.6g`` of whole float arrays, byte for byte what Python's
``'%.6g' % value`` writes, and rows joined from fixed-width byte fields. :mod:`ml4ge.genetics.compiled_text` writes
the same bytes about 12x faster once numba has started (about 0.6 s), so a scan uses it for many tables
(:func:`formatter`).

A value is rounded to six significant digits on its scaled magnitude ``s = |v| 10^(5 - e)`` (``e`` its decimal
exponent; ``s`` in [1e5, 1e6)): the digits are ``rint(s)``. The scaling is exact to a few units in the last place
(about 1e-10 of a digit), so that rounding is the correctly rounded one that Python's ``%`` does except where ``s``
lies within :data:`TIE_MARGIN` of a half-integer; those values (about two in a million) and magnitudes outside
[:data:`SMALLEST`, :data:`LARGEST`] are formatted by Python. ``%.6g`` then writes the digits in fixed notation when
``-4 <= exponent < 6`` and in scientific notation otherwise, without trailing zeros; a non-finite value is ``NA``
(PLINK2's missing value).

Each value's text is laid out in a field of :data:`WIDTH` bytes padded with NUL bytes, which :func:`join_rows` drops
when it joins the fields of a table into tab-separated lines. The layout of a field depends only on the notation,
the exponent and the number of digits kept, so it is one of a few dozen patterns (:func:`_patterns`), each a list
of positions in a small per-value table of characters (:func:`_characters`).

Example:
    >>> join_rows([g_fields(np.array([0.000123456789, -2.5, 1e6, np.nan]))])
    b'0.000123457\\n-2.5\\n1e+06\\nNA\\n'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from functools import cache
from types import ModuleType

import numpy as np

DIGITS = 6  # %.6g: six significant digits
WIDTH = 13  # the longest text: sign, "1.23457", "e", exponent sign, 3 exponent digits
TIE_MARGIN = 1e-6  # of a digit: far beyond the scaling's error, so rounding elsewhere is never ambiguous
SMALLEST, LARGEST = 1e-290, 1e290  # outside, Python formats the value (the table of powers of ten ends there)
FIXED_EXPONENTS = range(-4, DIGITS)  # %g writes these exponents in fixed notation
DIVISORS = 10.0 ** np.arange(DIGITS - 1, -1, -1)  # 1e5 ... 1: the leading digits of a 6-digit integer
# Columns of the per-value character table (_characters): the six digits, then these.
POINT, ZERO, E, EXPONENT_SIGN, HUNDREDS, TENS, UNITS, SIGN, N, A, NUL = range(DIGITS, DIGITS + 11)
CONSTANT_CHARACTERS = {POINT: ".", ZERO: "0", E: "e", N: "N", A: "A"}
NA_PATTERN, FIXED_START = 0, 1
SCIENTIFIC_START = FIXED_START + len(FIXED_EXPONENTS) * DIGITS
POWER_OFFSET = 300  # powers_of_ten()[k + POWER_OFFSET] = 10^k
# From this many numbers in a run, the compiled writer's start-up (numba's import and its cached code, about 0.6 s)
# costs less than the time it saves (about 0.18 us a number): about 20 phenotypes x 50,000 SNPs.
COMPILED_FROM = 4_000_000


def formatter(numbers: int, ready: bool = False) -> ModuleType:
    """The module whose ``text_column`` and ``table_text`` write a run's ``numbers`` numbers fastest: this one, or
    :mod:`ml4ge.genetics.compiled_text` (the same bytes) from :data:`COMPILED_FROM` on; ``ready``: its compiled
    code loaded too (numba loads it at the first call)."""
    module = importlib.import_module("ml4ge.genetics.compiled_text" if numbers >= COMPILED_FROM else __name__)
    if ready:
        module.table_text(np.zeros((1, 1)))
    return module


def text_column(texts: Sequence[str]) -> np.ndarray:
    """A column of texts for :func:`table_text` (build it once for columns that many tables share)."""
    return string_fields(texts)


def table_text(numbers: np.ndarray, prefix: np.ndarray | None = None, suffix: np.ndarray | None = None,
               replace: Mapping[tuple[int, int], str] | None = None) -> bytes:
    """Tab-separated lines ``prefix[i], numbers[i, 0], ..., numbers[i, -1], suffix[i]``, each number as
    ``'%.6g' % value`` (``NA`` when not finite) unless ``replace`` gives its text (at most :data:`WIDTH` bytes) by
    (row, column).

    Example:
        >>> table_text(np.array([[0.25], [7e-9]]), suffix=text_column([".", "X"]), replace={(1, 0): "2.5e-412"})
        b'0.25\\t.\\n2.5e-412\\tX\\n'
    """
    numbers = table_numbers(numbers, prefix, suffix)
    if not len(numbers):
        return b""
    fields = g_fields(numbers.ravel()).reshape(*numbers.shape, WIDTH).transpose(1, 0, 2)
    for (row, column), text in (replace or {}).items():
        put_text(fields[column], row, text)
    return join_rows([column for column in (prefix, *fields, suffix) if column is not None])


def g_fields(values: np.ndarray) -> np.ndarray:
    """``'%.6g' % v`` of every value of a 1-D array as ``(len(values), WIDTH)`` NUL-padded ASCII bytes."""
    values = np.asarray(values, dtype=np.float64)
    digits, exponent, python = _round(values)
    characters = _characters(values, digits, exponent)
    kept = DIGITS - np.argmax(characters[:, DIGITS - 1::-1] != ord("0"), axis=1)  # trailing zeros dropped
    code = _pattern_code(values, exponent, np.where(digits == 0, 1, kept))
    offsets = np.arange(0, characters.size, characters.shape[1])[:, None]  # each value's row of the table
    fields = np.take(characters.ravel(), _patterns()[code] + offsets)
    for i in np.flatnonzero(python):
        put_text(fields, i, f"{values[i]:.6g}")
    return fields


def put_text(fields: np.ndarray, row: int, text: str) -> None:
    """Write ``text`` (at most the field's width) into field ``row`` of a NUL-padded byte-field array."""
    encoded = text.encode()
    fields[row] = 0
    fields[row, :len(encoded)] = np.frombuffer(encoded, dtype=np.uint8)


def string_fields(texts) -> np.ndarray:
    """Strings (UTF-8) as ``(n, longest)`` NUL-padded bytes."""
    encoded = np.array([text.encode() for text in texts], dtype=bytes)
    return encoded.view(np.uint8).reshape(len(encoded), -1) if len(encoded) else np.zeros((0, 1), np.uint8)


def join_rows(columns: list[np.ndarray]) -> bytes:
    """The rows of equal-length byte-field arrays as tab-separated lines, NUL padding dropped."""
    if not len(columns[0]):
        return b""
    tab = np.full((len(columns[0]), 1), ord("\t"), dtype=np.uint8)
    parts = [part for column in columns for part in (column, tab)]
    parts[-1] = np.full_like(tab, ord("\n"))
    table = np.concatenate(parts, axis=1).ravel()
    return table[table != 0].tobytes()


def table_numbers(numbers: np.ndarray, prefix=None, suffix=None) -> np.ndarray:
    """``numbers`` as a C-ordered 2-D float64 table (a 1-D array is one column), checked against the rows of the
    text columns beside it (either writer's)."""
    numbers = np.asarray(numbers, dtype=np.float64)
    numbers = np.ascontiguousarray(numbers[:, None] if numbers.ndim == 1 else numbers)
    for name, column in (("prefix", prefix), ("suffix", suffix)):
        if column is not None and len(column) != len(numbers):
            raise ValueError(f"the {name} column has {len(column)} rows, the numbers {len(numbers)}.")
    return numbers


def _round(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(digits, exponent, python)``: each value rounded to six significant digits as a float holding an integer
    in [1e5, 1e6) (0 for zero), its decimal exponent, and where Python must format the value instead (a near-tie,
    or a magnitude out of range; non-finite values are ``NA``, not these)."""
    magnitude = np.abs(values)
    finite = np.isfinite(magnitude)
    ordinary = finite & (magnitude >= SMALLEST) & (magnitude <= LARGEST)
    magnitude = np.where(ordinary, magnitude, 0.0)
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log10(magnitude, where=ordinary, out=np.zeros_like(magnitude))).astype(np.int64)
    scaled = magnitude * powers_of_ten()[DIGITS - 1 - exponent + POWER_OFFSET]  # a few ulps off: see TIE_MARGIN
    off = np.flatnonzero((scaled < 10.0 ** (DIGITS - 1)) & ordinary | (scaled >= 10.0 ** DIGITS))
    if len(off):  # log10 one off near a power of ten
        exponent[off] += np.where(scaled[off] >= 10.0 ** DIGITS, 1, -1)
        scaled[off] = magnitude[off] * powers_of_ten()[DIGITS - 1 - exponent[off] + POWER_OFFSET]
    python = ordinary & (np.abs(scaled - np.floor(scaled) - 0.5) < TIE_MARGIN)
    python |= finite & (values != 0) & ~ordinary
    digits = np.rint(scaled)
    carried = digits == 10.0 ** DIGITS  # 999999.5 and up round to the next power of ten
    digits[carried] = 10.0 ** (DIGITS - 1)
    exponent += carried
    return digits, exponent, python


@cache
def powers_of_ten() -> np.ndarray:
    """10^k for k in [-POWER_OFFSET, POWER_OFFSET] (entries beyond the double range are 0 or inf, never used)."""
    with np.errstate(over="ignore"):
        return 10.0 ** np.arange(-POWER_OFFSET, POWER_OFFSET + 1, dtype=np.float64)


def _characters(values: np.ndarray, digits: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """``(n, NUL + 1)`` characters each value's text is drawn from (see the column names above)."""
    table = np.empty((len(values), NUL + 1), dtype=np.uint8)
    table[:] = _constant_row()
    leading = np.floor(digits / DIVISORS[:, None])  # (6, n): exact, integers divided by exact powers of ten
    digit = np.empty(leading.shape, dtype=np.uint8)
    digit[0], digit[1:] = leading[0], leading[1:] - 10 * leading[:-1]
    table[:, :DIGITS] = digit.T + ord("0")
    table[:, EXPONENT_SIGN:UNITS + 1] = _exponent_texts()[exponent + POWER_OFFSET]
    table[:, SIGN] = np.signbit(values) * ord("-")
    return table


@cache
def _exponent_texts() -> np.ndarray:
    """``(sign, hundreds, tens, units)`` characters of every exponent in [-POWER_OFFSET, POWER_OFFSET]."""
    exponents = np.arange(-POWER_OFFSET, POWER_OFFSET + 1)
    texts = [f"{e:+04d}" for e in exponents]  # "-005", "+123"
    return np.frombuffer("".join(texts).encode(), dtype=np.uint8).reshape(len(texts), 4)


@cache
def _constant_row() -> np.ndarray:
    row = np.zeros(NUL + 1, dtype=np.uint8)
    for column, character in CONSTANT_CHARACTERS.items():
        row[column] = ord(character)
    return row


def _pattern_code(values: np.ndarray, exponent: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Each value's row of :func:`_patterns`."""
    fixed = (exponent >= FIXED_EXPONENTS.start) & (exponent < FIXED_EXPONENTS.stop)
    code = np.where(fixed, FIXED_START + (exponent - FIXED_EXPONENTS.start) * DIGITS + kept - 1,
                    SCIENTIFIC_START + (kept - 1) * 2 + (np.abs(exponent) >= 100))
    return np.where(np.isfinite(values), code, NA_PATTERN)


@cache
def _patterns() -> np.ndarray:
    """``(patterns, WIDTH)`` columns of :func:`_characters` spelling each layout, NUL-padded: ``NA``; fixed
    notation for each exponent and number of digits kept; scientific notation for each number of digits kept with
    a two- or three-digit exponent."""
    layouts = [[N, A]]
    for exponent in FIXED_EXPONENTS:
        for kept in range(1, DIGITS + 1):
            if exponent >= 0:
                whole, fraction = list(range(exponent + 1)), list(range(exponent + 1, kept))
            else:
                whole, fraction = [ZERO], [ZERO] * (-exponent - 1) + list(range(kept))
            layouts.append([SIGN, *whole, *([POINT, *fraction] if fraction else [])])
    for kept in range(1, DIGITS + 1):
        for three_digits in (False, True):
            mantissa = [0, *([POINT, *range(1, kept)] if kept > 1 else [])]
            layouts.append([SIGN, *mantissa, E, EXPONENT_SIGN, *([HUNDREDS] if three_digits else []), TENS, UNITS])
    return np.array([layout + [NUL] * (WIDTH - len(layout)) for layout in layouts], dtype=np.intp)
