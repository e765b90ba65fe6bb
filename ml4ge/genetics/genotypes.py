"""PLINK 1 genotypes (.bed/.bim/.fam) read with bed-reader in chunks of SNPs, and sample matching by id.

Dosages count the .bim's fifth-column allele (``A1``; PLINK2 calls it ALT and counts it with ``--glm omit-ref``),
as float32 0/1/2 with NaN for a missing call. Samples are matched on the .fam's IID, which is the sample id of the
latent and covariate tables (``sample_id`` or ``IID`` column).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SUFFIXES = (".bed", ".bim", ".fam")
VARIANT_COLUMNS = ["CHROM", "POS", "ID", "A1", "A2"]


def genotype_prefix(path) -> Path:
    """``data/genotypes`` from ``data/genotypes`` or ``data/genotypes.bed``.

    Raises:
        FileNotFoundError: naming the missing .bed/.bim/.fam files.
    """
    path = Path(path)
    prefix = path.with_suffix("") if path.suffix in SUFFIXES else path
    missing = [str(prefix) + suffix for suffix in SUFFIXES if not Path(str(prefix) + suffix).is_file()]
    if missing:
        raise FileNotFoundError(f"genotypes {str(path)!r}: missing {', '.join(missing)}; give the PLINK 1 prefix "
                                "of a .bed/.bim/.fam trio.")
    return prefix


class GenotypeFile:
    """A PLINK 1 file set opened with bed-reader; use as a context manager.

    Args:
        path: the prefix (or the .bed path).
        num_threads: bed-reader decoding threads (None: bed-reader's default).

    Example:
        >>> with GenotypeFile("genotypes") as bed:  # doctest: +SKIP
        ...     for start, stop, dosages in bed.chunks(np.arange(len(bed.sample_ids)), 10_000):
        ...         pass
    """

    def __init__(self, path, num_threads: int | None = None):
        self.prefix = genotype_prefix(path)
        self.num_threads = num_threads
        self._bed = None

    def __enter__(self) -> GenotypeFile:
        from bed_reader import open_bed

        self._bed = open_bed(str(self.prefix) + ".bed", count_A1=True, num_threads=self.num_threads)
        return self

    def __exit__(self, *exc) -> None:
        self._bed.__exit__(*exc)

    @property
    def sample_ids(self) -> np.ndarray:
        """The .fam IIDs as strings."""
        return np.asarray(self._bed.iid, dtype=str)

    @property
    def family_ids(self) -> np.ndarray:
        return np.asarray(self._bed.fid, dtype=str)

    @property
    def snp_count(self) -> int:
        return int(self._bed.sid_count)

    def variants(self, start: int = 0, stop: int | None = None) -> pd.DataFrame:
        """``CHROM POS ID A1 A2`` of SNPs ``start:stop`` (A1 is the counted allele)."""
        window = slice(start, stop)
        return pd.DataFrame({
            "CHROM": np.asarray(self._bed.chromosome[window], dtype=str),
            "POS": np.asarray(self._bed.bp_position[window], dtype=np.int64),
            "ID": np.asarray(self._bed.sid[window], dtype=str),
            "A1": np.asarray(self._bed.allele_1[window], dtype=str),
            "A2": np.asarray(self._bed.allele_2[window], dtype=str),
        })

    def read(self, samples: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Dosages (len(samples), stop - start) as float32, NaN where missing."""
        return self._bed.read(index=np.s_[samples, start:stop], dtype="float32", order="F",
                              num_threads=self.num_threads)

    def chunks(self, samples: np.ndarray, size: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, dosages)`` for consecutive chunks of ``size`` SNPs; memory is one chunk at a time."""
        if size < 1:
            raise ValueError(f"the SNP chunk size must be positive, got {size}.")
        for start in range(0, self.snp_count, size):
            stop = min(start + size, self.snp_count)
            yield start, stop, self.read(samples, start, stop)


def match_samples(wanted: Sequence[str], available: Sequence[str], what: str, where: str) -> np.ndarray:
    """The sample ids of ``wanted`` that are in ``available`` (in ``available``'s order).

    Args:
        wanted: ids of one table (e.g. a latent table).
        available: ids of the other (e.g. the .fam IIDs).
        what, where: names of the two, for messages.

    Returns:
        The shared ids, as strings.

    Raises:
        ValueError: if no id is shared (with examples of both, so a FID/IID or prefix mix-up shows).
    """
    wanted_set = {str(i) for i in wanted}
    shared = np.asarray([str(i) for i in available if str(i) in wanted_set], dtype=object)
    if len(shared) == 0:
        raise ValueError(f"no sample id of {what} (e.g. {list(wanted)[:3]}) is in {where} (e.g. "
                         f"{list(available)[:3]}); the ids must be the same (the .fam IID is the sample id).")
    if len(shared) < len(wanted_set):
        log.warning("%s: %d of %d samples are in %s; %d are left out.", what, len(shared), len(wanted_set), where,
                    len(wanted_set) - len(shared))
    return shared
