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
BED_HEADER_BYTES = 3  # the magic number 0x6c 0x1b and the SNP-major mode byte
SAMPLES_PER_BYTE = 4  # two bits per genotype call
MISSING_CALL = -127  # bed-reader's int8 value of a missing call


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


def check_genotype_files(path) -> Path:
    """The prefix of ``path`` after checking that its .bed/.bim/.fam are one file set (cheap: no genotype is read).

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: for IIDs that repeat in the .fam (plink2 refuses them too: one subject's latents would meet
            another's genotypes), blank lines in the .fam, or a .fam or .bim whose row count does not fit the
            .bed's size (truncated, or from another file set), naming the file at fault where the sizes tell.
    """
    prefix = genotype_prefix(path)
    iids = fam_sample_ids(prefix)
    blank = _count_rows(Path(f"{prefix}.fam")) - len(iids)
    if blank:
        raise ValueError(f"{prefix}.fam has {blank} blank lines; remove them (bed-reader reads each line as a "
                         "sample, so the genotypes would be shifted or misread).")
    repeated = iids[iids.duplicated()].unique()
    if len(repeated):
        raise ValueError(f"{prefix}.fam: IIDs {sorted(repeated)[:10]} appear more than once ({len(repeated)} in "
                         "all); the IID is the sample id, so give every sample its own IID.")
    _check_bed_size(prefix, len(iids), _count_rows(Path(f"{prefix}.bim")))
    return prefix


def fam_sample_ids(prefix: Path) -> pd.Series:
    """The IIDs (second column) of ``<prefix>.fam`` as strings, in file order."""
    fam = pd.read_csv(f"{prefix}.fam", sep=r"\s+", header=None, dtype=str, usecols=[0, 1], keep_default_na=False)
    return fam[1].reset_index(drop=True)


def _count_rows(path: Path, block: int = 1 << 20) -> int:
    """Lines of a text file, blank ones included (as bed-reader counts rows), in blocks (a .bim may hold
    millions); a last line without a newline counts."""
    rows, last = 0, b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            rows += chunk.count(b"\n")
            last = chunk[-1:]
    return rows + (last != b"\n")


def _check_bed_size(prefix: Path, samples: int, snps: int) -> None:
    """Raise ValueError unless the .bed holds exactly ``snps`` x ``ceil(samples / 4)`` bytes after its header."""
    body = Path(f"{prefix}.bed").stat().st_size - BED_HEADER_BYTES
    per_snp = -(-samples // SAMPLES_PER_BYTE)
    if body == per_snp * snps:
        return
    causes = []
    if snps and body > 0 and body % snps == 0:
        fits = body // snps
        causes.append(f"the .fam lists {samples} samples, but the .bed's size fits {SAMPLES_PER_BYTE * fits - 3} "
                      f"to {SAMPLES_PER_BYTE * fits} samples for the .bim's {snps} SNPs")
    if per_snp and body > 0 and body % per_snp == 0:
        causes.append(f"the .bim lists {snps} SNPs, but the .bed holds {body // per_snp} SNPs of the .fam's "
                      f"{samples} samples")
    cause = " or ".join(causes) or (f"the .bed holds {body + BED_HEADER_BYTES} bytes, but {samples} samples and "
                                    f"{snps} SNPs need {BED_HEADER_BYTES + per_snp * snps}")
    raise ValueError(f"genotypes {str(prefix)!r}: {cause}; a file is truncated or comes from another file set: "
                     "use the .bed/.bim/.fam written together.")


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

        check_genotype_files(self.prefix)
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
        """Counted-allele counts (len(samples), stop - start), column-major int8, :data:`MISSING_CALL` where
        missing: a quarter of float32's bytes to write and read again (the OLS converts them once)."""
        return self._bed.read(index=np.s_[samples, start:stop], dtype="int8", order="F",
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
