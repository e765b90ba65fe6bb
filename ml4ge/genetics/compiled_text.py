"""Tables of numbers as text, compiled: the same bytes as :mod:`ml4ge.genetics.text` (``%.6g``, byte for byte
Python's ``'%.6g' % value``, between text columns) about 12x faster, for runs that write millions of numbers (a latent
space's summary statistics); numba's start-up (its import and loading the cached machine code, about 0.6 s in all)
makes it slower for small ones (:func:`ml4ge.genetics.text.formatter` chooses).

Rounding is :mod:`ml4ge.genetics.text`'s: a value is rounded to six significant digits on its scaled magnitude
``s = |v| 10^(5 - e)`` (``e`` its decimal exponent; ``s`` in [1e5, 1e6)), the digits are ``rint(s)``, and values
within :data:`TIE_MARGIN` of a half-integer (about two in a million) or of magnitude outside [:data:`SMALLEST`,
:data:`LARGEST`] are formatted by Python. The loops are compiled on the first run and cached on disk beside this
file, and release the GIL, so the threads that write a scan's tables run in parallel.

Example:
    >>> table_text(np.array([[0.000123456789, -2.5], [1e6, np.nan]]), prefix=text_column(["a", "b"]))
    b'a\\t0.000123457\\t-2.5\\nb\\t1e+06\\tNA\\n'
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ml4ge.genetics.text import DIGITS, LARGEST, POWER_OFFSET, SMALLEST, TIE_MARGIN, WIDTH, powers_of_ten, table_numbers

POWERS = powers_of_ten()  # a global of the compiled loops: numba freezes it into their code
LOG10_2 = math.log10(2.0)


def _words(texts: Sequence[str]) -> np.ndarray:
    """Texts of at most eight ASCII bytes as little-endian words (the first byte lowest), NUL-padded."""
    return np.array([int.from_bytes(text.encode().ljust(8, b"\0"), "little") for text in texts], dtype=np.uint64)


# Globals of the compiled loops (numba freezes them into their code), as words written with one store each:
THREE_DIGITS = _words([f"{k:03d}" for k in range(1000)])  # "000" ... "999"
TRAILING_ZEROS = np.array([3] + [len(f"{k:03d}") - len(f"{k:03d}".rstrip("0")) for k in range(1, 1000)], np.int64)
EXPONENT_TEXTS = _words([f"e{e:+03d}" for e in range(-POWER_OFFSET, POWER_OFFSET + 1)])  # "e-05", "e+123"
LEADING_ZEROS = _words(["0.000"])[0]  # the start of a fixed-notation number below 1
THOUSAND = np.uint64(1000)
NUMBER, MISSING, PYTHON = 0, 1, 2  # how a value is written: from its digits, as NA, or as Python's text
TAB, NEWLINE = ord("\t"), ord("\n")


_BUFFERS = threading.local()


@dataclass(frozen=True)
class TextColumn:
    """One text per row, encoded (UTF-8) end to end: row ``i`` is ``data[ends[i - 1]:ends[i]]``."""

    data: np.ndarray  # uint8
    ends: np.ndarray  # int64, cumulative

    def __len__(self) -> int:
        return len(self.ends)


NO_TEXT = TextColumn(np.zeros(0, np.uint8), np.zeros(0, np.int64))


def text_column(texts: Sequence[str]) -> TextColumn:
    """A :class:`TextColumn` of ``texts`` (build it once for columns that many tables share)."""
    encoded = [text.encode() for text in texts]
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return TextColumn(data, np.cumsum([len(text) for text in encoded], dtype=np.int64))


def table_text(numbers: np.ndarray, prefix: TextColumn | None = None, suffix: TextColumn | None = None,
               replace: Mapping[tuple[int, int], str] | None = None) -> bytes:
    """Tab-separated lines ``prefix[i], numbers[i, 0], ..., numbers[i, -1], suffix[i]``, each number as
    ``'%.6g' % value`` (``NA`` when not finite) unless ``replace`` gives its text by (row, column).

    Example:
        >>> table_text(np.array([[0.25], [7e-9]]), suffix=text_column([".", "X"]), replace={(1, 0): "2.5e-412"})
        b'0.25\\t.\\n2.5e-412\\tX\\n'
    """
    numbers = table_numbers(numbers, prefix, suffix)
    rows = len(numbers)
    digits, exponents, status, python = _rounded(numbers)
    texts = dict(replace or {})
    if python:  # near-ties and extreme magnitudes: about 1 in 500,000
        for row, column in zip(*np.nonzero(status == PYTHON)):
            texts.setdefault((int(row), int(column)), f"{numbers[row, column]:.6g}")
    places = sorted(texts)
    replaced = text_column([texts[place] for place in places]) if places else NO_TEXT
    where = np.asarray(places, dtype=np.int64).reshape(-1, 2)
    has_prefix, has_suffix = prefix is not None, suffix is not None
    prefix, suffix = prefix or NO_TEXT, suffix or NO_TEXT
    out = _buffer(len(prefix.data) + len(suffix.data) + len(replaced.data) + WIDTH
                  + rows * (numbers.shape[1] * (WIDTH + 1) + 2))
    size = _write_table(numbers, digits, exponents, status, prefix.data, prefix.ends, has_prefix, suffix.data,
                        suffix.ends, has_suffix, where, replaced.data, replaced.ends, out)
    return out[:size].tobytes()


def _buffer(size: int) -> np.ndarray:
    """A byte buffer of at least ``size`` bytes, this thread's own, kept for its next call (a fresh one per table
    cost more in page faults than the formatting of a small table)."""
    buffer = getattr(_BUFFERS, "bytes", None)
    if buffer is None or len(buffer) < size:
        buffer = _BUFFERS.bytes = np.empty(size, dtype=np.uint8)
    return buffer


@njit(cache=True, nogil=True)
def _round(value: float) -> tuple[int, int, int]:
    """``(digits, exponent, how)``: ``value`` rounded to six significant digits as an integer in [1e5, 1e6) (0
    for zero) and its decimal exponent; ``how`` is NUMBER, MISSING (not finite) or PYTHON (a near-tie, or a
    magnitude out of range)."""
    magnitude = abs(value)
    if not np.isfinite(magnitude):
        return 0, 0, MISSING
    if magnitude == 0.0:
        return 0, 0, NUMBER
    if magnitude < SMALLEST or magnitude > LARGEST:
        return 0, 0, PYTHON
    # floor(log10): from the binary exponent (log10(2) (e - 1) is it or one less), 3x cheaper than log10
    exponent = int(np.floor((math.frexp(magnitude)[1] - 1) * LOG10_2))
    exponent += magnitude >= POWERS[exponent + 1 + POWER_OFFSET]
    scaled = magnitude * POWERS[DIGITS - 1 - exponent + POWER_OFFSET]  # a few ulps off: see TIE_MARGIN
    if scaled < 10.0 ** (DIGITS - 1) or scaled >= 10.0 ** DIGITS:  # log10 one off near a power of ten
        exponent += 1 if scaled >= 10.0 ** DIGITS else -1
        scaled = magnitude * POWERS[DIGITS - 1 - exponent + POWER_OFFSET]
    if abs(scaled - np.floor(scaled) - 0.5) < TIE_MARGIN:
        return 0, 0, PYTHON
    digits = int(np.rint(scaled))
    if digits == 10 ** DIGITS:  # 999999.5 and up round to the next power of ten
        return 10 ** (DIGITS - 1), exponent + 1, NUMBER
    return digits, exponent, NUMBER


@njit(cache=True, nogil=True)
def _rounded(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """:func:`_round` of every value of a 2-D array, and how many Python must format."""
    digits = np.empty(numbers.shape, dtype=np.uint64)
    exponents = np.empty(numbers.shape, dtype=np.int64)
    status = np.empty(numbers.shape, dtype=np.int8)
    python = 0
    for i in range(numbers.shape[0]):
        for j in range(numbers.shape[1]):
            digits[i, j], exponents[i, j], status[i, j] = _round(numbers[i, j])
            python += status[i, j] == PYTHON
    return digits, exponents, status, python


@intrinsic
def _copy_bytes(typing_context, out, at, data, start, count):
    """``out[at:at + count] = data[start:start + count]`` as one memcpy, without bounds checks (the callers size
    ``out``). A byte loop cost 20 times as much: the variant columns are most of a table's bytes."""
    signature = types.void(out, at, data, start, count)

    def generate(context, builder, signature, arguments):
        out_array = context.make_array(signature.args[0])(context, builder, arguments[0])
        data_array = context.make_array(signature.args[2])(context, builder, arguments[2])
        target = builder.gep(out_array.data, [arguments[1]])
        source = builder.gep(data_array.data, [arguments[3]])
        cgutils.raw_memcpy(builder, target, source, arguments[4], 1)
        return context.get_dummy_value()

    return signature, generate


@njit(cache=True, nogil=True)
def _put(out: np.ndarray, at: int, data: np.ndarray, start: int, stop: int) -> int:
    """``data[start:stop]`` at ``out[at]``; returns the position after it."""
    _copy_bytes(out, at, data, start, stop - start)
    return at + stop - start


@intrinsic
def _store_word(typing_context, out, at, word):
    """The eight bytes of ``word`` (little-endian: its lowest byte first) at ``out[at]``, one unaligned store, no
    bounds check (the callers leave room)."""
    signature = types.void(out, at, word)

    def generate(context, builder, signature, arguments):
        out_array = context.make_array(signature.args[0])(context, builder, arguments[0])
        target = builder.bitcast(builder.gep(out_array.data, [arguments[1]]), ir.IntType(64).as_pointer())
        builder.store(arguments[2], target, align=1)
        return context.get_dummy_value()

    return signature, generate


@njit(cache=True, nogil=True)
def _with_point(word, place: int):
    """The digits of ``word`` with a decimal point (``.``) inserted before digit ``place`` (0 = the leading one)."""
    low = (np.uint64(1) << np.uint64(8 * place)) - np.uint64(1)
    return (word & low) | (np.uint64(46) << np.uint64(8 * place)) | ((word & ~low) << np.uint64(8))


@njit(cache=True, nogil=True)
def _put_g(out: np.ndarray, at: int, digits, exponent: int, negative: bool) -> int:
    """``%.6g`` of the rounded value (digits, exponent) at ``out[at]``; returns the position after it.

    The six digits are looked up three at a time (:data:`THREE_DIGITS`) into one word, the decimal point is shifted
    in, and the word is stored at once; the text's length then drops the trailing zeros. No branch depends on the
    digits (random digits mispredict them). It may write up to :data:`WIDTH` bytes past the text (the next text
    overwrites them)."""
    high, low = digits // THOUSAND, digits % THOUSAND
    word = THREE_DIGITS[high] | (THREE_DIGITS[low] << np.uint64(24))
    kept = DIGITS - (TRAILING_ZEROS[low] if low else 3 + TRAILING_ZEROS[high])
    kept = max(kept, 1)  # zero: "0"
    out[at] = 45  # "-", kept when negative
    at += negative
    if -4 <= exponent < 0:  # "0.000ddd"
        lead = 1 - exponent
        _store_word(out, at, LEADING_ZEROS)
        _store_word(out, at + lead, word)
        return at + lead + kept
    if 0 <= exponent < DIGITS:  # "ddd.ddd", or "ddd000" (no point) when the kept digits end before it
        whole = exponent + 1
        _store_word(out, at, _with_point(word, whole))
        return at + (whole if kept <= whole else kept + 1)
    _store_word(out, at, _with_point(word, 1))  # "d.ddddde-XX"
    at += 1 if kept == 1 else kept + 1
    _store_word(out, at, EXPONENT_TEXTS[exponent + POWER_OFFSET])
    return at + (5 if abs(exponent) >= 100 else 4)


@njit(cache=True, nogil=True)
def _write_table(numbers, digits, exponents, status, prefix, prefix_ends, has_prefix, suffix, suffix_ends,
                 has_suffix, where, replaced, replaced_ends, out) -> int:
    """The lines of :func:`table_text` into ``out``; returns their length. ``where`` lists the replaced values'
    (row, column) in order, ``replaced`` their texts."""
    at, next_replaced = 0, 0
    for i in range(numbers.shape[0]):
        if has_prefix:
            at = _put(out, at, prefix, prefix_ends[i - 1] if i else 0, prefix_ends[i])
            out[at] = TAB
            at += 1
        for j in range(numbers.shape[1]):
            if next_replaced < len(where) and where[next_replaced, 0] == i and where[next_replaced, 1] == j:
                start = replaced_ends[next_replaced - 1] if next_replaced else 0
                at = _put(out, at, replaced, start, replaced_ends[next_replaced])
                next_replaced += 1
            elif status[i, j] == MISSING:
                out[at], out[at + 1] = 78, 65  # "NA"
                at += 2
            else:
                at = _put_g(out, at, digits[i, j], exponents[i, j], np.signbit(numbers[i, j]))
            out[at] = TAB
            at += 1
        if has_suffix:
            at = _put(out, at, suffix, suffix_ends[i - 1] if i else 0, suffix_ends[i])
        else:
            at -= 1  # no tab after the last number
        out[at] = NEWLINE
        at += 1
    return at
