"""Summary statistics in PLINK2 ``--glm``'s format for a quantitative trait, written and read.

A table is what ``plink2 --glm omit-ref hide-covar cols=+a1freq`` writes: ``<prefix>.<phenotype>.glm.linear``
(gzipped here unless asked otherwise) with the columns ``#CHROM POS ID REF ALT A1 A1_FREQ TEST OBS_CT BETA SE
T_STAT P ERRCODE``; with ``log10`` (PLINK2's modifier of that name) ``LOG10_P`` takes ``P``'s place. A1 is the
counted allele, the .bim's fifth column (ALT; REF is the sixth). A SNP that passes the filters but cannot be
tested is written, as PLINK2 does, with ``NA`` statistics and an ERRCODE saying why. Tools that read PLINK2 output
(LDSC's munge_sumstats, FUMA, LocusZoom) take the tables as they are.

P is written from the exact -log10 P, so it keeps its digits below double precision's range (``1.2e-400``);
:func:`read_sumstats` reads it back the same way (as ``LOG10P``), from either tool's table.

Example:
    >>> format_p(np.array([1.30103, 400.5, np.nan])).tolist()
    ['0.05', '3.16228e-401', 'NA']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

P_COLUMN, LOG10_P_COLUMN = "P", "LOG10_P"
VARIANT_COLUMNS = ["#CHROM", "POS", "ID", "REF", "ALT", "A1", "A1_FREQ", "TEST", "OBS_CT"]
STATISTIC_COLUMNS = ["BETA", "SE", "T_STAT"]
TEST = "ADD"  # the additive dosage test
SMALLEST_FLOAT_P = 1e-300  # below this P is written from its -log10 (it may not be a double)


def columns(log10: bool = False) -> list[str]:
    """PLINK2's columns, in its order, with ``LOG10_P`` instead of ``P`` when ``log10``."""
    return [*VARIANT_COLUMNS, *STATISTIC_COLUMNS, LOG10_P_COLUMN if log10 else P_COLUMN, "ERRCODE"]


def file_name(prefix: str, phenotype: str, compressed: bool = True) -> str:
    """``<prefix>.<phenotype>.glm.linear.gz``: PLINK2's name, gzipped; ``<prefix>.<phenotype>.glm.linear``
    (PLINK2's default, uncompressed) when not ``compressed``."""
    return f"{prefix}.{phenotype}.glm.linear" + (".gz" if compressed else "")


def format_p(log10_p: np.ndarray) -> np.ndarray:
    """P as text (6 significant digits) from -log10 P, ``NA`` where it is NaN."""
    log10_p = np.asarray(log10_p, dtype=np.float64)
    out = np.full(log10_p.shape, "NA", dtype=object)
    finite = np.isfinite(log10_p)
    ordinary = finite & (log10_p <= -np.log10(SMALLEST_FLOAT_P))
    out[ordinary] = [f"{p:.6g}" for p in 10.0 ** -log10_p[ordinary]]
    for i in np.flatnonzero(finite & ~ordinary):
        exponent = int(np.floor(-log10_p.flat[i]))
        mantissa = 10.0 ** (-log10_p.flat[i] - exponent)
        text = f"{mantissa:.6g}"
        if text == "10":
            text, exponent = "1", exponent + 1
        out.flat[i] = f"{text}e{exponent:+04d}".replace("e+", "e")
    return out


def format_log10_p(log10_p: np.ndarray) -> np.ndarray:
    """-log10 P as text (6 significant digits), ``NA`` where it is NaN."""
    return np.array(["NA" if not np.isfinite(q) else f"{q:.6g}" for q in np.asarray(log10_p, np.float64).ravel()],
                    dtype=object).reshape(np.shape(log10_p))


def neg_log10(text: pd.Series) -> np.ndarray:
    """-log10 of P values given as text, exact below double precision (``1e-400`` is 400, not infinity).

    Example:
        >>> neg_log10(pd.Series(["0.01", "2e-400", "NA"])).round(4).tolist()
        [2.0, 399.699, nan]
    """
    text = text.astype(str).str.strip().str.lower()
    parts = text.str.split("e", n=1, expand=True).reindex(columns=[0, 1])
    mantissa = pd.to_numeric(parts[0], errors="coerce").to_numpy(dtype=np.float64)
    exponent = pd.to_numeric(parts[1], errors="coerce").fillna(0).to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -(np.log10(np.where(mantissa > 0, mantissa, np.nan)) + exponent)


def read_sumstats(path, usecols=None) -> pd.DataFrame:
    """A PLINK2 ``--glm`` table (ml4ge's or PLINK2's own, gzipped or not) with ``LOG10P`` (-log10 P, exact)
    added from its ``P`` or ``LOG10_P`` column; ``#CHROM`` and ``ID`` are read as text.

    Args:
        usecols: the columns wanted (``LOG10P`` may be among them); None for all.

    Raises:
        ValueError: if the table has neither ``P`` nor ``LOG10_P`` (not a PLINK2 --glm table).
    """
    table = pd.read_csv(path, sep="\t", dtype={"#CHROM": str, "ID": str, P_COLUMN: str}, na_values=["NA"],
                        keep_default_na=False)
    if P_COLUMN in table:
        table["LOG10P"] = neg_log10(table[P_COLUMN].fillna("NA"))
        table[P_COLUMN] = pd.to_numeric(table[P_COLUMN], errors="coerce")
    elif LOG10_P_COLUMN in table:
        table["LOG10P"] = table[LOG10_P_COLUMN].astype(np.float64)
    else:
        raise ValueError(f"{path} has no P or LOG10_P column (columns: {', '.join(table.columns[:8])}); it is not "
                         "a PLINK2 --glm table.")
    return table if usecols is None else table[list(usecols)]
