"""Phenotype and covariate files that PLINK2 (``--pheno``/``--covar``) and REGENIE (``--phenoFile``/``--covarFile``)
read as they are: tab-separated, ``FID IID`` header first, ``NA`` for missing, and never the value -9 (PLINK's
missing-phenotype code; a value that would print as -9 is written as -8.9999999 and counted in the log).
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ml4ge.atomic import write_text
from ml4ge.genetics.inputs import Space

log = logging.getLogger(__name__)

PLINK_MISSING = -9.0
FLOAT_FORMAT = "%.8g"
NOT_MISSING = -8.9999999  # the nearest value that FLOAT_FORMAT does not print as -9


def genetics_table(values: pd.DataFrame, family_ids: Mapping[str, str]) -> pd.DataFrame:
    """``values`` (indexed by IID) with ``FID IID`` columns first and no value that prints as -9."""
    numbers = values.to_numpy(dtype=np.float64, copy=True)
    minus_nine = np.abs(numbers - PLINK_MISSING) < 5e-7
    if minus_nine.any():
        log.warning("%d values would be written as -9, PLINK's missing code; written as %s instead.",
                    int(minus_nine.sum()), NOT_MISSING)
        numbers[minus_nine] = NOT_MISSING
    table = pd.DataFrame(numbers, columns=[str(c) for c in values.columns])
    iids = [str(i) for i in values.index]
    table.insert(0, "IID", iids)
    table.insert(0, "FID", [family_ids.get(i, i) for i in iids])
    return table


def write_exports(folder: Path, spaces: Mapping[str, Space], family_ids: Mapping[str, str],
                  genotypes: Path) -> dict[str, Path]:
    """``<space>.pheno.tsv`` per space, ``covariates.tsv`` (union of samples) and ``commands.sh`` in ``folder``.

    Returns:
        name -> path of every file written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, space in spaces.items():
        written[name] = _write(genetics_table(space.phenotypes, family_ids), folder / f"{name}.pheno.tsv")
    covariates = pd.concat([space.covariates for space in spaces.values()])
    covariates = covariates[~covariates.index.duplicated()]
    if covariates.shape[1]:
        written["covariates"] = _write(genetics_table(covariates, family_ids), folder / "covariates.tsv")
    written["commands"] = write_text(folder / "commands.sh", _commands(spaces, genotypes, covariates.shape[1] > 0))
    return written


def _write(table: pd.DataFrame, path: Path) -> Path:
    text = table.to_csv(sep="\t", index=False, na_rep="NA", float_format=FLOAT_FORMAT)
    return write_text(path, text)


def _commands(spaces: Mapping[str, Space], genotypes: Path, has_covariates: bool) -> str:
    """Example PLINK2 and REGENIE command lines for these files, runnable from any folder: the genotypes by
    absolute path, the exported files and the outputs in the script's own folder; every value is shell-quoted."""
    lines = ["#!/usr/bin/env bash", "# Mixed-model or reference GWAS of the exported latent dimensions.",
             "# Inputs and outputs are in this script's folder, whatever the working directory.", "set -euo pipefail",
             'HERE="$(cd "$(dirname "$0")" && pwd)"', ""]
    bfile = shlex.quote(str(Path(genotypes).resolve()))

    def here(name: str) -> str:
        return f'"$HERE"/{shlex.quote(name)}'

    for name in spaces:
        pheno = here(f"{name}.pheno.tsv")
        covar = f" --covar {here('covariates.tsv')}" if has_covariates else ""
        regenie_covar = f" --covarFile {here('covariates.tsv')}" if has_covariates else ""
        lines += [f"# {name}: PLINK2 OLS, the statistics and columns ml4ge associate writes",
                  f"plink2 --bfile {bfile} --pheno {pheno}{covar} "
                  f"--glm omit-ref hide-covar allow-no-covars cols=+a1freq --out {here(name)}",
                  f"# {name}: REGENIE step 1 and 2",
                  f"regenie --step 1 --bed {bfile} --phenoFile {pheno}{regenie_covar} --qt "
                  f"--bsize 1000 --out {here(f'{name}_step1')}",
                  f"regenie --step 2 --bed {bfile} --phenoFile {pheno}{regenie_covar} --qt "
                  f"--bsize 400 --pred {here(f'{name}_step1_pred.list')} "
                  f"--out {here(f'{name}_step2')}", ""]
    return "\n".join(lines)
