"""Choosing what PerDI maps: the latent dimensions and directions a trait or a SNP selects.

- By trait: the dimension most correlated with the trait, both residualised on the adjustment covariates (the
  demo ages and scales every region, so age, sex and brain volume would otherwise pick a global dimension), and the
  trait's direction (:mod:`ml4ge.genetics.directions`, fitted on the interpreted subjects), named ``trait_<trait>``.
- By SNP: the dimension with the smallest association P of the SNP in an ``associate`` run's summary statistics of
  this latent space (the seed studies' SNP -> endophenotype -> region route).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CHOICE_COLUMNS = ["route", "target", "dimension", "abs_r", "log10p"]


def dimension_index(name) -> int:
    """``latent_7`` (or ``7``) -> 7."""
    return int(str(name).split("_")[-1])


def residualised(frame: pd.DataFrame, covariates: pd.DataFrame) -> pd.DataFrame:
    """Columns of ``frame`` minus their least-squares fit on ``covariates`` (with an intercept)."""
    design = np.column_stack([np.ones(len(covariates)), covariates.to_numpy(dtype=float)])
    coefficients, *_ = np.linalg.lstsq(design, frame.to_numpy(dtype=float), rcond=None)
    return pd.DataFrame(frame.to_numpy(dtype=float) - design @ coefficients, index=frame.index, columns=frame.columns)


def top_dimensions(latents: pd.DataFrame, phenotypes: pd.DataFrame, traits, count: int = 1,
                   adjust=("age", "sex")) -> pd.DataFrame:
    """``trait, dimension, abs_r`` for the ``count`` dimensions most correlated with each trait (``adjust``
    columns removed from both; subjects lacking the trait or a covariate left out).

    Raises:
        ValueError: when a trait or covariate is not a column of ``phenotypes``, or fewer than 3 subjects remain.
    """
    missing = [c for c in [*traits, *adjust] if c not in phenotypes.columns]
    if missing:
        raise ValueError(f"{missing} are not columns of the phenotypes ({', '.join(map(str, phenotypes.columns))}).")
    rows = []
    for trait in traits:
        joined = latents.join(phenotypes[[trait, *adjust]], how="inner").dropna()
        if len(joined) < 3:
            raise ValueError(f"only {len(joined)} interpreted subjects have {trait!r} and the covariates.")
        covariates = joined[list(adjust)]
        z = residualised(joined[latents.columns], covariates)
        y = residualised(joined[[trait]], covariates)[trait]
        r = z.apply(lambda column, y=y: np.corrcoef(column, y)[0, 1]).abs().fillna(0).sort_values(ascending=False)
        rows += [{"trait": trait, "dimension": dimension_index(name), "abs_r": round(float(value), 3)}
                 for name, value in r.head(count).items()]
    return pd.DataFrame(rows, columns=["trait", "dimension", "abs_r"])


def trait_directions(latents: pd.DataFrame, phenotypes: pd.DataFrame, traits, adjust=()) -> dict[str, np.ndarray]:
    """``{trait_<trait>: weights}``: each trait's direction fitted on the subjects having it (adjusted for
    ``adjust``)."""
    from ml4ge.genetics.directions import direction

    found = {}
    for trait in traits:
        joined = latents.join(phenotypes[[trait, *adjust]], how="inner").dropna()
        found[f"trait_{trait}"] = direction(joined[latents.columns].to_numpy(), joined[trait].to_numpy(),
                                            joined[list(adjust)].to_numpy()).weights
    return found


def best_dimensions(prefix, snps) -> pd.DataFrame:
    """``snp, dimension, log10p``: the dimension with the smallest P of each SNP among the summary statistics
    ``<prefix>.latent_<d>.glm.linear.gz`` (one ``associate`` space; or ``.glm.linear``, uncompressed).

    Raises:
        FileNotFoundError: when no table matches ``prefix``.
        ValueError: naming SNPs no table holds.
    """
    from ml4ge.genetics.sumstats import read_sumstats

    prefix = Path(prefix)
    paths = sorted(path for suffix in (".glm.linear.gz", ".glm.linear")
                   for path in prefix.parent.glob(f"{prefix.name}.latent_*{suffix}"))
    if not paths:
        raise FileNotFoundError(f"no {prefix}.latent_<d>.glm.linear.gz: give --interpret_sumstats as "
                                "<associate run>/sumstats/<space> of this latent space.")
    wanted, frames = set(snps), []
    for path in paths:
        table = read_sumstats(path, usecols=["ID", "LOG10P"])
        dimension = dimension_index(path.name.removesuffix(".gz").removesuffix(".glm.linear").rsplit(".", 1)[1])
        frames.append(table[table.ID.astype(str).isin(wanted)].assign(dimension=dimension))
    stats = pd.concat(frames, ignore_index=True).dropna(subset=["LOG10P"])
    absent = sorted(wanted - set(stats.ID.astype(str)))
    if absent:
        raise ValueError(f"SNPs {absent} have no statistics in {prefix}.*: check --interpret_snps.")
    best = stats.loc[stats.groupby("ID").LOG10P.idxmax()].set_index("ID").loc[list(snps)]
    return pd.DataFrame({"snp": best.index, "dimension": best.dimension.astype(int).to_numpy(),
                         "log10p": best.LOG10P.round(2).to_numpy()})


def choices(latents: pd.DataFrame, phenotypes: pd.DataFrame | None, traits, adjust, sumstats, snps
            ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """``(choice table, directions)``: the rows :data:`CHOICE_COLUMNS` of every trait's dimension and direction and
    every SNP's dimension, and the trait directions to map."""
    rows, directions = [], {}
    if traits:
        for row in top_dimensions(latents, phenotypes, traits, 1, adjust).itertuples():
            rows.append(("trait", row.trait, str(row.dimension), row.abs_r, np.nan))
        directions = trait_directions(latents, phenotypes, traits, adjust)
        rows += [("trait_direction", name.removeprefix("trait_"), name, np.nan, np.nan) for name in directions]
    if snps:
        rows += [("snp", row.snp, str(row.dimension), np.nan, row.log10p)
                 for row in best_dimensions(sumstats, snps).itertuples()]
    return pd.DataFrame(rows, columns=CHOICE_COLUMNS), directions
