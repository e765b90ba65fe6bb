"""Trait directions in a latent space: the cross-fitted projection a direction GWAS tests, and the direction itself
for PerDI.

A trait carried by a latent space but spread over many of its dimensions is found by no single dimension's GWAS.
Its direction is the ridge regression of the trait on the latents (the probe ``compare`` fits: standardised latents,
``RidgeCV`` over ``RIDGE_ALPHAS`` by efficient leave-one-out), both residualised on the covariates first. The
**projection** of a subject is its latents, less their covariate part as fitted on the other folds' subjects, times
the direction fitted on those subjects only (``FOLDS``-fold cross-fitting, folds drawn from the sample ids' order and
a seed, never from the trait), so no subject's own trait value enters its projection and the GWAS of the projection
cannot be driven by the trait's own noise. The **direction** written for PerDI is the fit on every subject, in the
latents' own units, with the SD of the projection it defines (``interpret`` shifts the latents along it by
``--perturb_sd`` of that SD).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold

from ml4ge.compare import RIDGE_ALPHAS

FOLDS = 5
DIRECTION_COLUMNS = ["dimension", "weight"]


@dataclass(frozen=True)
class Direction:
    """A trait's direction in a latent space.

    Attributes:
        weights: (D,) in the latents' units: the projection is ``latents @ weights``.
        projection_sd: the SD of that projection over the fitted subjects.
        r2_cross_fitted: R^2 of the cross-fitted projection for the trait (both after the covariates).
        projection: (n,) the cross-fitted projection (:func:`cross_fitted_projection`) the GWAS scans.
    """

    weights: np.ndarray
    projection_sd: float
    r2_cross_fitted: float
    projection: np.ndarray


def _residualised(values: np.ndarray, covariates: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(coefficients, design)``: least squares of ``values`` on an intercept and ``covariates`` fitted on ``rows``."""
    design = np.column_stack([np.ones(len(values)), covariates])
    coefficients = np.linalg.lstsq(design[rows], values[rows], rcond=None)[0]
    return coefficients, design


def fit_direction(latents: np.ndarray, trait: np.ndarray, covariates: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(D,) ridge weights in the latents' units, fitted on ``rows`` only (latents and trait residualised on the
    covariates over those rows, latents standardised over them)."""
    return _fit(latents, trait, covariates, rows)[0]


def _fit(latents: np.ndarray, trait: np.ndarray, covariates: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """``(weights, latent_coefficients)``: :func:`fit_direction`'s weights and the covariate coefficients (intercept
    first) of the latents' residualisation over ``rows``, which a projection of other subjects must use too."""
    x_coefficients, design = _residualised(latents, covariates, rows)
    y_coefficients, _ = _residualised(trait, covariates, rows)
    x = latents[rows] - design[rows] @ x_coefficients
    y = trait[rows] - design[rows] @ y_coefficients
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    ridge = RidgeCV(alphas=RIDGE_ALPHAS, gcv_mode="svd").fit(x / scale, y)
    return ridge.coef_ / scale, x_coefficients


def cross_fitted_projection(latents: np.ndarray, trait: np.ndarray, covariates: np.ndarray,
                            seed: int = 0) -> np.ndarray:
    """(n,) each subject's latents projected on the direction fitted without its fold (see the module docstring).

    Raises:
        ValueError: for non-finite values or fewer than ``2 * FOLDS`` subjects.
    """
    latents, trait, covariates = _checked(latents, trait, covariates)
    projection = np.empty(len(latents))
    design = np.column_stack([np.ones(len(latents)), covariates])
    for train, test in KFold(FOLDS, shuffle=True, random_state=seed).split(latents):
        weights, x_coefficients = _fit(latents, trait, covariates, train)
        # the held-out latents residualised as the fold's were: a latent that the covariates mostly explain can get
        # a large weight on its small residual, and its covariate part, times a weight that differs between folds,
        # would swamp the projection (the covariates' own adjustment later removes one coefficient for all folds)
        projection[test] = (latents[test] - design[test] @ x_coefficients) @ weights
    return projection


def direction(latents: np.ndarray, trait: np.ndarray, covariates: np.ndarray, seed: int = 0) -> Direction:
    """The trait's :class:`Direction` fitted on every subject, with the cross-fitted projection and its R^2."""
    latents, trait, covariates = _checked(latents, trait, covariates)
    everyone = np.arange(len(latents))
    weights = fit_direction(latents, trait, covariates, everyone)
    projection = cross_fitted_projection(latents, trait, covariates, seed)
    y_coefficients, design = _residualised(trait, covariates, everyone)
    p_coefficients, _ = _residualised(projection, covariates, everyone)
    y, p = trait - design @ y_coefficients, projection - design @ p_coefficients
    r2 = float(np.corrcoef(y, p)[0, 1] ** 2) if p.std() > 0 else 0.0
    return Direction(weights, float((latents @ weights).std()), r2, projection)


def direction_table(dimensions, found: Direction) -> pd.DataFrame:
    """``dimension weight`` rows, with the projection SD and cross-fitted R^2 as the last rows' metadata columns."""
    return pd.DataFrame({"dimension": list(dimensions), "weight": found.weights}).assign(
        projection_sd=found.projection_sd, r2_cross_fitted=found.r2_cross_fitted)


def _checked(latents, trait, covariates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    latents = np.asarray(latents, dtype=np.float64)
    trait = np.asarray(trait, dtype=np.float64).ravel()
    covariates = np.asarray(covariates, dtype=np.float64).reshape(len(latents), -1)
    for what, values in (("latents", latents), ("trait", trait), ("covariates", covariates)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"the direction's {what} hold missing or infinite values; drop those samples first.")
    if len(latents) < 2 * FOLDS:
        raise ValueError(f"{len(latents)} subjects cannot cross-fit a direction over {FOLDS} folds.")
    if trait.std() == 0:
        raise ValueError("the trait is constant over these subjects; it has no direction.")
    return latents, trait, covariates


SUMMARY_COLUMNS = ["space", "trait", "direction_space", "samples", "r2_cross_fitted", "projection_sd"]


def direction_spaces(spaces, phenotypes: pd.DataFrame, traits, seed: int = 0):
    """One single-dimension space per latent space and trait: the cross-fitted projection, on the space's samples
    that have the trait, with the space's covariates.

    Args:
        spaces: name -> :class:`ml4ge.genetics.inputs.Space`; phenotypes: numeric traits indexed by sample id.

    Returns:
        ``(name -> Space, summary, name -> direction table)``; a space is named ``<space>-<trait>`` and its one
        dimension ``direction``.

    Raises:
        ValueError: when a space shares fewer than ``2 * FOLDS`` subjects with a trait.
    """
    from ml4ge.genetics.inputs import Space, check_space_name

    made, rows, tables = {}, [], {}
    for name, space in spaces.items():
        for trait in traits:
            values = phenotypes[trait].reindex(space.phenotypes.index)
            ids = values.index[values.notna()]
            label = check_space_name(f"{name}-{trait}")
            latents, covariates = space.phenotypes.loc[ids].to_numpy(), space.covariates.loc[ids].to_numpy()
            found = direction(latents, values[ids].to_numpy(), covariates, seed)
            made[label] = Space(label, pd.DataFrame({"direction": found.projection}, index=ids),
                                space.covariates.loc[ids])
            rows.append((name, trait, label, len(ids), found.r2_cross_fitted, found.projection_sd))
            tables[label] = direction_table(space.dimensions, found)
    return made, pd.DataFrame(rows, columns=SUMMARY_COLUMNS), tables
