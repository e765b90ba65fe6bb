"""The phenotypes of a scan: latent tables matched to the genotyped samples, the covariates, the sample filter, and
the optional rank-based inverse normal transform.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml4ge.genetics.genotypes import match_samples
from ml4ge.genetics.glm import untestable_phenotypes
from ml4ge.latents import as_numeric

log = logging.getLogger(__name__)

BLOM_OFFSET = 3 / 8
SPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a file-name stem: no path, no shell syntax
ID_COLUMNS = ("sample_id", "FID", "IID")


@dataclass(frozen=True)
class Space:
    """One latent space ready to scan: phenotypes and covariates on the same samples (genotype file order).

    Attributes:
        name: the latent table's name.
        phenotypes: (n, D) frame indexed by sample id, one column per latent dimension.
        covariates: (n, c) numeric frame on the same index (c may be 0).
        untestable: dimensions left out of ``phenotypes`` -> why no SNP can be tested against them.
    """

    name: str
    phenotypes: pd.DataFrame
    covariates: pd.DataFrame
    untestable: Mapping[str, str] = field(default_factory=dict)

    @property
    def dimensions(self) -> list[str]:
        return list(map(str, self.phenotypes.columns))


def check_space_name(name: str) -> str:
    """``name`` if it can start the names of a scan's files (``sumstats/<name>.<dimension>...``, exports).

    Raises:
        ValueError: for a name that is empty, holds a path or a character other than letters, digits, ``.``,
            ``_`` and ``-``, or starts with ``.`` or ``-``.
    """
    if not SPACE_NAME.fullmatch(str(name)):
        raise ValueError(f"--latent_tables name {name!r} cannot name files: use letters, digits, '.', '_' and "
                         "'-', starting with a letter or digit (e.g. t1=hidden_t1.tsv).")
    return name


def rank_inverse_normal(values: np.ndarray) -> np.ndarray:
    """Rank-based inverse normal transform per column (Blom offset 3/8; ties get their average rank).

    Example:
        >>> np.round(rank_inverse_normal(np.array([[3.0], [1.0], [2.0]]))[:, 0], 3)
        array([ 0.869, -0.869,  0.   ])
    """
    from scipy import stats  # only --rint needs scipy.stats (slow to import)

    values = np.asarray(values, dtype=np.float64)
    ranks = stats.rankdata(values, axis=0)
    return stats.norm.ppf((ranks - BLOM_OFFSET) / (len(values) - 2 * BLOM_OFFSET + 1))


def covariate_frame(table: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Numeric covariates ``names`` of ``table`` (all non-id columns when empty); two-level text coded 0/1.

    Raises:
        ValueError: naming covariates the table lacks, covariates without any value (every sample would be left
            out), text columns with more than two levels, or ids that repeat once their spaces are stripped.
    """
    names = list(names) or [c for c in table.columns if c not in ID_COLUMNS]
    missing = [c for c in names if c not in table.columns]
    if missing:
        raise ValueError(f"covariates {missing} are not in the covariate table; it has "
                         f"{', '.join(map(str, table.columns))}.")
    frame = pd.DataFrame({c: as_numeric(table[c], "covariate") for c in names}, index=table.index)
    for name in frame.columns[frame.isna().all()]:
        raise ValueError(f"covariate {name!r} has no value for any sample (every cell is empty or NA); fill it "
                         "or leave it out of --covariates.")
    return stripped_ids(frame, "the covariate table")


def stripped_ids(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """``frame`` indexed by its sample ids as strings without surrounding spaces (as --sample_csv is read), so
    ``" 1001"`` in one table and ``1001`` in the .fam are one subject.

    Raises:
        ValueError: when two rows have the same id once stripped.
    """
    index = frame.index.astype(str).str.strip()
    if index.duplicated().any():
        raise ValueError(f"{what}: sample id {index[index.duplicated()][0]!r} appears more than once (surrounding "
                         "spaces do not count); keep one row per sample.")
    return frame.set_axis(index.rename(frame.index.name), axis=0)


def assemble_spaces(latents: Mapping[str, pd.DataFrame], covariates: pd.DataFrame, genotype_ids: Sequence[str],
                    keep: Sequence[str] | None = None, rint: bool = False) -> dict[str, Space]:
    """Match every latent table to the genotyped samples, the covariates and ``keep``.

    Samples lacking a covariate are dropped with a warning, as PLINK does; a partial overlap is logged with counts.

    Dimensions that are constant, or constant after the covariates, are left out of the space and listed in its
    ``untestable`` with the reason (no p-value can mean anything for them).

    Raises:
        ValueError: when a latent table shares no sample with the genotypes (or the filter), when fewer than
            10 samples remain, or when no dimension of a table can be tested.
    """
    available = list(genotype_ids)
    if keep is not None:
        available = list(match_samples(keep, available, "--sample_csv", "the genotypes"))
    complete = covariates.index[covariates.notna().all(axis=1)]
    if len(complete) < len(covariates):
        log.warning("%d of %d samples lack a covariate value and are left out.", len(covariates) - len(complete),
                    len(covariates))
    return {check_space_name(name): _space(name, stripped_ids(frame, f"latent table {name!r}"), available,
                                           complete, covariates, rint) for name, frame in latents.items()}


def _space(name: str, frame: pd.DataFrame, available: list[str], complete: pd.Index, covariates: pd.DataFrame,
           rint: bool) -> Space:
    """The :class:`Space` of one latent table on the genotyped samples with complete covariates."""
    ids = match_samples(frame.index, available, f"latent table {name!r}", "the genotypes (after --sample_csv)")
    if covariates.shape[1]:
        _check_covariates_cover(name, ids, covariates)
        ids = match_samples(ids, complete, f"latent table {name!r}", "the covariates (with complete rows)")
    wanted = set(ids)
    ids = [i for i in available if i in wanted]  # the genotype file's order
    if len(ids) < 10:
        raise ValueError(f"latent table {name!r}: only {len(ids)} samples have genotypes and covariates; an "
                         "association scan needs many more.")
    values = frame.loc[ids].to_numpy(dtype=np.float64)
    if rint:
        values = rank_inverse_normal(values)
    phenotypes = pd.DataFrame(values, index=pd.Index(ids, name="sample_id"), columns=frame.columns)
    return testable_space(Space(name, phenotypes, covariates.reindex(ids)))


def _check_covariates_cover(name: str, ids, covariates: pd.DataFrame) -> None:
    """Raise ValueError naming the covariates that have no value for any of ``ids`` (the true cause of an empty
    intersection, rather than "no sample id is in the covariates")."""
    empty = [str(c) for c in covariates.columns[covariates.reindex(ids).isna().all()]]
    if empty:
        raise ValueError(f"latent table {name!r}: covariates {empty} have no value for any of its {len(ids)} "
                         "genotyped samples; fill them or leave them out of --covariates.")


def testable_space(space: Space) -> Space:
    """``space`` without the dimensions no SNP can be tested against, which go to its ``untestable`` (logged).

    Raises:
        ValueError: when no dimension is left.
    """
    reasons = untestable_phenotypes(space.phenotypes.to_numpy(), space.covariates.to_numpy(),
                                    tuple(space.covariates.columns))
    untestable = {space.dimensions[column]: reason for column, reason in reasons.items()}
    if len(untestable) == len(space.dimensions):
        raise ValueError(f"no dimension of latent table {space.name!r} can be tested on its "
                         f"{len(space.phenotypes)} samples: {_listed(untestable)}; check the table and the model "
                         "that wrote it.")
    if untestable:
        log.warning("latent table %r: %d dimensions are not scanned: %s.", space.name, len(untestable),
                    _listed(untestable))
    kept = [c for c in space.phenotypes.columns if str(c) not in untestable]
    return Space(space.name, space.phenotypes[kept], space.covariates, untestable)


def _listed(untestable: Mapping[str, str]) -> str:
    return "; ".join(f"{dimension} is {reason}" for dimension, reason in untestable.items())
