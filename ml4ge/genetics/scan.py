"""The streamed scan: every latent space against every SNP, one chunk of SNPs in memory at a time.

For each chunk the dosages of every sample needed are read once; each space then gets its OLS statistics
(:mod:`ml4ge.genetics.glm`), the SNPs passing the MAF and missingness filters are appended to one gzip summary
table per latent dimension in PLINK2 ``--glm``'s format (:mod:`ml4ge.genetics.sumstats`; SNPs that cannot be
tested are written with NA statistics and an ERRCODE, as PLINK2 does), and only the small things are kept: hits
above the threshold, the best -log10 P per SNP (for the Manhattan plot) and full rows for SNPs named in ``lookup``
(for replication). Memory is bounded by the chunk and the hits, not by the number of SNPs (the per-SNP best P is 8
bytes per SNP). Tables are formatted and compressed in background threads while the next chunk is computed (the
formatters of :mod:`ml4ge.genetics.text`, igzip and BLAS release the GIL): each thread owns a fixed share of the
tables, so each table's rows stay in order, and at most one chunk per thread waits to be written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
from isal import igzip

from ml4ge.atomic import atomic_path
from ml4ge.genetics.genotypes import VARIANT_COLUMNS, GenotypeFile
from ml4ge.genetics.glm import ChunkStatistics, Workspace, associate_chunk, prepare_phenotypes
from ml4ge.genetics.inputs import Space
from ml4ge.genetics.multivariate import chunk_results, omnibus_columns, omnibus_file_name, omnibus_text, permuted_nulls
from ml4ge.genetics.omnibus import EIGEN_FLOOR, OmnibusNull
from ml4ge.genetics.sumstats import SMALLEST_FLOAT_P, TEST, columns, file_name, format_p
from ml4ge.genetics.text import formatter
from ml4ge.progress import progress

log = logging.getLogger(__name__)

# The rows ml4ge keeps in memory and in its own tables (hits, look-ups): A1 counted, A2 the other allele, N the
# samples in the model; the summary-statistics files have PLINK2's columns instead (ml4ge.genetics.sumstats).
RESULT_COLUMNS = [*VARIANT_COLUMNS, "A1_FREQ", "N", "BETA", "SE", "T_STAT", "LOG10P"]
HIT_COLUMNS = ["space", "dimension", *RESULT_COLUMNS]
# ISA-L's gzip (igzip) at level 1: the tables are written once and read rarely; it writes 3x faster than zlib's level 1
# and 6 % fewer bytes, a standard gzip stream (docs/experiments.md)
GZIP_LEVEL = 1
# Writer threads share the tables of many dimensions (128 phenotypes: 1.6x faster formatting with 2 than with 1);
# beyond a few they only compete with the scan for the cores.
MOST_WRITERS = 4


@dataclass(frozen=True)
class ScanSettings:
    """Filters and options of a scan (PLINK2 equivalents in brackets).

    Attributes:
        maf: minimum minor-allele frequency among a space's samples [--maf].
        geno: maximum fraction of a space's samples missing the SNP [--geno].
        impute: mean-impute missing dosages instead of dropping the samples per SNP.
        chunk: SNPs per chunk.
        threads: bed-reader decoding threads, and the most writer threads (None: the CPU count; at most
            :data:`MOST_WRITERS`).
        log10: write ``LOG10_P`` instead of ``P`` in the summary statistics [--glm log10].
        compress: gzip the summary statistics (level 1) [--glm zs compresses with zstd; plink2's default is none].
        multivariate: also the omnibus and min-P tests per space of two or more dimensions
            (:mod:`ml4ge.genetics.multivariate`).
        permuted_snps: SNPs of the permuted-genotype null those tests are calibrated on.
        omnibus_log10: their hit threshold (-log10 P).
        eigen_floor: the omnibus test's regularisation (:data:`ml4ge.genetics.omnibus.EIGEN_FLOOR`).
    """

    maf: float = 0.01
    geno: float = 0.1
    impute: bool = False
    chunk: int = 10_000
    threads: int | None = None
    log10: bool = False
    compress: bool = True
    multivariate: bool = False
    permuted_snps: int = 20_000
    omnibus_log10: float = -np.log10(5e-8)
    eigen_floor: float = EIGEN_FLOOR


@dataclass
class SpaceResult:
    """What a scan keeps of one space (see the module docstring)."""

    hits: list[pd.DataFrame] = field(default_factory=list)
    best: list[pd.DataFrame] = field(default_factory=list)
    lookup: list[pd.DataFrame] = field(default_factory=list)
    omnibus_hits: list[pd.DataFrame] = field(default_factory=list)
    omnibus_best: list[pd.DataFrame] = field(default_factory=list)
    null: OmnibusNull | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"snps_tested": 0, "snps_maf_filtered": 0,
                                                             "snps_missing_filtered": 0, "snps_untestable": 0})

    def table(self, name: str, columns: list[str]) -> pd.DataFrame:
        parts = [part for part in getattr(self, name) if len(part)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def sumstats_path(folder: Path, space: str, dimension: str, compressed: bool = True) -> Path:
    return Path(folder) / file_name(space, dimension, compressed)


def scan(genotypes: GenotypeFile, spaces: Mapping[str, Space], settings: ScanSettings, threshold_log10: float,
         sumstats_folder: Path | None = None, lookup: Collection[str] = ()) -> dict[str, SpaceResult]:
    """Scan every space against every SNP of ``genotypes``.

    Args:
        genotypes: an open :class:`GenotypeFile`.
        spaces: name -> :class:`Space` (samples must be .fam IIDs).
        settings: filters and chunking.
        threshold_log10: hits have ``LOG10P >= threshold_log10``.
        sumstats_folder: where the per-dimension gzip tables go (None: not written).
        lookup: SNP ids whose rows are kept for every dimension (replication look-ups).

    Returns:
        name -> :class:`SpaceResult` with ``hits``, ``best`` (CHROM POS ID LOG10P per tested SNP) and ``lookup``.
    """
    volume = 4 * genotypes.snp_count * sum(len(space.dimensions) for space in spaces.values())
    starting = ThreadPoolExecutor(1)  # loads the table formatter (numba for a large scan) beside the first chunk
    text = starting.submit(formatter, volume, True)
    starting.shutdown(wait=False)
    index = {sample: i for i, sample in enumerate(genotypes.sample_ids)}
    needed = sorted({index[s] for space in spaces.values() for s in space.phenotypes.index})
    position = {row: i for i, row in enumerate(needed)}
    rows = {name: np.asarray([position[index[s]] for s in space.phenotypes.index]) for name, space in spaces.items()}
    prepared = {name: prepare_phenotypes(space.phenotypes.to_numpy(), space.covariates.to_numpy(),
                                         tuple(space.covariates.columns)) for name, space in spaces.items()}
    results = {name: SpaceResult() for name in spaces}
    workspaces = {name: Workspace() for name in spaces}
    if settings.multivariate:
        several = {name: rows[name] for name, space in spaces.items() if len(space.dimensions) > 1}  # not directions
        nulls = permuted_nulls(genotypes, several, np.asarray(needed), prepared, settings, settings.permuted_snps)
        for name, null in nulls.items():
            results[name].null = null
            log.info("%s omnibus null from %d permuted SNPs: df %d, gamma shape %.3g scale %.3g (chi-square: %.3g, "
                     "2), lambda_GC %.3f; min-P effective dimensions %.1f of %d", name, null.permuted_snps,
                     null.rank, null.shape, null.scale, null.rank / 2, null.lambda_gc, null.effective_dimensions,
                     len(spaces[name].dimensions))
    lookup = set(lookup)
    with ExitStack() as stack:
        writers = _open_writers(stack, spaces, sumstats_folder, settings)
        omnibus_writers = _open_omnibus_writers(stack, spaces, sumstats_folder, settings)
        bar = stack.enter_context(progress(total=genotypes.snp_count, description="associate", unit="SNP"))
        lanes = min(MOST_WRITERS, settings.threads or os.cpu_count() or 1,
                    max((len(space.dimensions) for space in spaces.values()), default=1))
        writer = _BackgroundWriter([stack.enter_context(ThreadPoolExecutor(1)) for _ in range(lanes)], text)
        for start, stop, dosages in genotypes.chunks(np.asarray(needed), settings.chunk):
            variants = genotypes.variants(start, stop)
            wanted = variants.ID.isin(lookup).to_numpy() if lookup else None
            for name, space in spaces.items():
                omnibus = results[name].null is not None
                statistics = associate_chunk(prepared[name], _samples_of(dosages, rows[name]), settings.impute,
                                             workspaces[name], lanes, imputed_correlations=omnibus)
                _scan_chunk(space, statistics, variants, settings, threshold_log10,
                            (writers.get(name), omnibus_writers.get(name)), wanted, results[name], writer)
            bar.update(stop - start)
        writer.wait()
    return results


def _samples_of(dosages: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One space's rows of a chunk: the chunk itself when they are all its rows in order (no copy), else a copy
    that keeps bed-reader's column-major layout (a row gather in that layout is several times slower)."""
    if len(rows) == len(dosages) and (rows == np.arange(len(rows))).all():
        return dosages
    return dosages.T[:, rows].T


class _BackgroundWriter:
    """Writes chunks' tables in one thread per pool (a lane); submitting a lane's next job waits for its previous
    one (bounded memory) and re-raises its error. A table always goes to the same lane, so its rows stay in order."""

    def __init__(self, pools: list[ThreadPoolExecutor], text: Future):
        self.pools = pools
        self.text = text  # the table formatter (ml4ge.genetics.text.formatter), being loaded
        self.pending = [None] * len(pools)

    def submit(self, *args, function=None, lane: int = 0) -> None:
        self._wait(lane)
        self.pending[lane] = self.pools[lane].submit(function or _write_rows, *args)

    def submit_rows(self, writers: list, kept: pd.DataFrame, values: dict[str, np.ndarray], errcode: np.ndarray,
                    log10: bool) -> None:
        """A chunk's rows of every dimension's table, the dimensions dealt to the lanes in turn."""
        lanes = len(self.pools)
        prefix = _prefix(kept, TEST)  # the variant columns, formatted once for every lane
        for lane in range(min(lanes, len(writers))):
            share = {name: array[:, lane::lanes] for name, array in values.items()}
            self.submit(writers[lane::lanes], prefix, share, errcode, log10, self.text.result(), lane=lane)

    def wait(self) -> None:
        for lane in range(len(self.pools)):
            self._wait(lane)

    def _wait(self, lane: int) -> None:
        if self.pending[lane] is not None:
            self.pending[lane].result()
            self.pending[lane] = None


def _open_writers(stack: ExitStack, spaces: Mapping[str, Space], folder: Path | None,
                  settings: ScanSettings) -> dict[str, list]:
    """One binary handle (gzip unless not ``settings.compress``) per space and dimension, each under a temporary
    name renamed when the scan succeeds."""
    if folder is None:
        return {}
    Path(folder).mkdir(parents=True, exist_ok=True)
    writers = {}
    header = ("\t".join(columns(settings.log10)) + "\n").encode()
    for name, space in spaces.items():
        handles = []
        for dimension in space.dimensions:
            temporary = stack.enter_context(atomic_path(sumstats_path(folder, name, dimension, settings.compress)))
            handle = stack.enter_context(_open(temporary, "wb", settings.compress))
            handle.write(header)
            handles.append(handle)
        writers[name] = handles
    return writers


def _open(path: Path, mode: str, compress: bool):
    """``path`` opened for writing, through igzip at :data:`GZIP_LEVEL` when ``compress``."""
    return igzip.open(path, mode, compresslevel=GZIP_LEVEL) if compress else open(path, mode)


def _open_omnibus_writers(stack: ExitStack, spaces: Mapping[str, Space], folder: Path | None,
                          settings: ScanSettings) -> dict:
    """One text handle per space for the omnibus table (``settings.multivariate`` only)."""
    if folder is None or not settings.multivariate:
        return {}
    Path(folder).mkdir(parents=True, exist_ok=True)
    handles = {}
    for name in spaces:
        temporary = stack.enter_context(atomic_path(Path(folder) / omnibus_file_name(name, settings.compress)))
        handles[name] = stack.enter_context(_open(temporary, "wt", settings.compress))
        handles[name].write("\t".join(omnibus_columns(settings.log10)) + "\n")
    return handles


def _scan_chunk(space: Space, statistics: ChunkStatistics, variants: pd.DataFrame, settings: ScanSettings,
                threshold_log10: float, handles, wanted, result: SpaceResult, writer: _BackgroundWriter) -> None:
    """Queue one space's rows of a chunk for writing and keep its hits, best P and look-ups."""
    writers, omnibus_writer = handles
    tested, written = _filter(statistics, settings, result.counts)
    if writers is not None and written.any():
        rows, row_values = _rows(variants, statistics, written)
        writer.submit_rows(writers, rows, row_values, statistics.errcode[written], settings.log10)
    if result.null is not None:
        _omnibus_chunk(space, statistics, variants, tested, written, settings, omnibus_writer, result, writer)
    if not tested.any():
        return
    kept, values = _rows(variants, statistics, tested)
    log10_p = values["LOG10P"]
    best = kept[["CHROM", "POS", "ID"]].assign(LOG10P=np.nanmax(log10_p, axis=1))
    result.best.append(best)
    snp, dimension = np.nonzero(log10_p >= threshold_log10)
    result.hits.append(_long_rows(space, kept, values, snp, dimension))
    if wanted is not None and wanted[tested].any():
        snp, dimension = np.nonzero(np.broadcast_to(wanted[tested][:, None], log10_p.shape))
        result.lookup.append(_long_rows(space, kept, values, snp, dimension))


def _omnibus_chunk(space, statistics, variants, tested, written, settings, handle, result, writer) -> None:
    """The omnibus statistics, table rows, hits and best P of one chunk's SNPs."""
    kept, _ = _rows(variants, statistics, tested)
    combined, best, hits = chunk_results(space, statistics, result.null, kept, tested, settings.omnibus_log10)
    result.omnibus_best.append(best)
    result.omnibus_hits.append(hits)
    if handle is not None and written.any():
        rows, _ = _rows(variants, statistics, written)
        text = omnibus_text(_prefix(rows, "OMNIBUS"), combined, written, result.null.rank, space.dimensions,
                            statistics.errcode[written], settings.log10)
        writer.submit(handle, text, function=_write_text)


def _write_text(handle, text: str) -> None:
    handle.write(text)


def _prefix(kept: pd.DataFrame, test: str) -> list[str]:
    """PLINK2's variant columns of each row, formatted once: REF is A2, ALT and A1 the counted allele."""
    # as lists: iterating pandas' string columns took twice as long
    columns = (kept[name].tolist() for name in ("CHROM", "POS", "ID", "A1", "A2", "A1_FREQ", "N"))
    return [f"{c}\t{p}\t{i}\t{a2}\t{a1}\t{a1}\t{f:.6g}\t{test}\t{n}" for c, p, i, a1, a2, f, n in zip(*columns)]


def _rows(variants: pd.DataFrame, statistics: ChunkStatistics, which: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """The variant columns (RESULT_COLUMNS' first ones) and the statistics of the SNPs ``which``."""
    every = which.all()  # the usual case: no copies
    kept = (variants if every else variants[which]).reset_index(drop=True)
    kept.insert(5, "A1_FREQ", statistics.a1_freq[which])
    kept.insert(6, "N", statistics.n[which])
    values = {name: getattr(statistics, attribute) if every else getattr(statistics, attribute)[which]
              for name, attribute in (("BETA", "beta"), ("SE", "se"), ("T_STAT", "t_stat"), ("LOG10P", "log10_p"))}
    return kept, values


def _filter(statistics: ChunkStatistics, settings: ScanSettings, counts: dict[str, int]) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """``(tested, written)``: SNPs passing the missingness and MAF filters that have statistics, and those plus
    the ones that pass but cannot be tested (written with NA statistics, as PLINK2 does); the counts are updated."""
    frequency = np.nan_to_num(statistics.a1_freq, nan=0.0)
    too_missing = statistics.missing_rate > settings.geno
    too_rare = ~too_missing & (np.minimum(frequency, 1 - frequency) < settings.maf)
    untestable = ~too_missing & ~too_rare & ~np.isfinite(statistics.beta).any(axis=1)
    tested = ~(too_missing | too_rare | untestable)
    counts["snps_missing_filtered"] += int(too_missing.sum())
    counts["snps_maf_filtered"] += int(too_rare.sum())
    counts["snps_untestable"] += int(untestable.sum())
    counts["snps_tested"] += int(tested.sum())
    return tested, tested | untestable


def _long_rows(space: Space, kept: pd.DataFrame, values: dict[str, np.ndarray], snp, dimension) -> pd.DataFrame:
    """One row per (SNP, dimension) pair in the hit-table layout."""
    rows = kept.iloc[snp].reset_index(drop=True)
    rows.insert(0, "dimension", np.asarray(space.dimensions, dtype=object)[dimension])
    rows.insert(0, "space", space.name)
    for name, array in values.items():
        rows[name] = array[snp, dimension]
    return rows[HIT_COLUMNS]


def _write_rows(writers: list, variants: list[str], values: dict[str, np.ndarray], errcode: np.ndarray,
                log10: bool, text: ModuleType) -> None:
    """Append the chunk's rows to every dimension's table in PLINK2's columns, after ``variants`` (each row's
    variant columns, :func:`_prefix`; encoded once for all the tables): P from the exact -log10 P; NA statistics
    with their ERRCODE.
    The numbers are formatted as ``%.6g`` by ``text`` (:func:`ml4ge.genetics.text.formatter`), outside the GIL."""
    prefix, errors = text.text_column(variants), text.text_column(errcode)
    log10_p = values["LOG10P"]
    numbers = np.empty((len(writers), len(variants), 4))  # each table's numbers together: one transposing copy
    for column, name in enumerate(("BETA", "SE", "T_STAT")):
        numbers[:, :, column] = values[name].T
    with np.errstate(over="ignore"):
        numbers[:, :, 3] = (log10_p if log10 else 10.0 ** -log10_p).T
    replace = [{} for _ in writers]
    if not log10:  # P below double precision's range: written from its -log10 (a few rows at most)
        for row, d in zip(*np.nonzero(log10_p > -np.log10(SMALLEST_FLOAT_P))):
            replace[d][int(row), 3] = format_p(log10_p[row, d])[()]
    for d, handle in enumerate(writers):
        handle.write(text.table_text(numbers[d], prefix, errors, replace[d]))
