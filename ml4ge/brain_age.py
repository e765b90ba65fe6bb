"""Brain age from a trained model: linear bias correction, brain-age gap (BAG), per-split summaries and plots.

Brain-age models regress towards the cohort mean (the young look older, the old younger). The correction of
Smith et al. (2019) / de Lange & Cole (2020), as the seed applies it (REFERENCE_SEEDS.md section C.1): on a
correction set of healthy controls fit ``predicted = a + b * age`` by least squares, then for every sample
``corrected = (predicted - a) / b`` and ``BAG = corrected - age``. The coefficients are fitted on the correction set
only and applied to the other (evaluated) samples; :func:`fit_bias_correction` refuses a correction set that
shares a sample with the evaluated ones, so an evaluated BAG never comes from its own fit. On the correction set
itself BAG is uncorrelated with age by construction (the least-squares residuals are orthogonal to age).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

# A slope below this (years of prediction per year of age) means the predictions do not follow age: dividing by it
# would blow every BAG up, so the correction is refused instead of giving confident-looking nonsense.
MIN_SLOPE = 0.05
MIN_CORRECTION_SAMPLES = 3
SUMMARY_COLUMNS = ["split", "n", "mae", "r2", "pearson_r", "mae_corrected", "bag_mean", "bag_sd",
                   "corr_bag_age_before", "corr_bag_age_after"]


class LeakError(ValueError):
    """The correction set shares samples with the samples it is evaluated on."""


class NotLearntError(ValueError):
    """The model's predictions do not follow age on the correction set: there is no brain age to correct."""


@dataclass(frozen=True)
class BiasCorrection:
    """``predicted = intercept + slope * age`` fitted on ``n`` correction samples."""

    intercept: float
    slope: float
    n: int

    def correct(self, predicted) -> np.ndarray:
        """Corrected brain age ``(predicted - intercept) / slope``."""
        return (np.asarray(predicted, dtype=np.float64) - self.intercept) / self.slope

    def as_dict(self) -> dict:
        return asdict(self)


def fit_bias_correction(predicted: pd.Series, age: pd.Series, evaluated=()) -> BiasCorrection:
    """Least-squares ``predicted ~ a + b * age`` over the samples of ``predicted`` (indexed by sample id).

    Args:
        predicted, age: raw predictions and chronological ages of the correction set, indexed by sample id.
        evaluated: ids of the samples the correction will be evaluated on; none may be in the correction set.

    Raises:
        LeakError: when the correction set holds an evaluated sample.
        ValueError: for fewer than 3 samples, non-finite values, ages without spread, or a slope below 0.05 (the
            predictions do not follow age; a correction would divide by almost zero).
    """
    shared = sorted(set(predicted.index) & set(map(str, evaluated)))
    if shared:
        raise LeakError(f"the bias-correction set holds {len(shared)} of the evaluated samples (e.g. {shared[:3]}); "
                        "fit the correction on other samples (--bias_correction_csv) or leave them out of "
                        "--sample_csv.")
    x, y = age.reindex(predicted.index).to_numpy(np.float64), predicted.to_numpy(np.float64)
    if len(y) < MIN_CORRECTION_SAMPLES or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"the bias correction needs at least {MIN_CORRECTION_SAMPLES} samples with finite ages and "
                         f"predictions; got {len(y)} ({int(np.sum(~np.isfinite(x)))} without an age).")
    if np.ptp(x) <= 0:
        raise ValueError("the bias-correction samples all have the same age; a slope cannot be fitted.")
    slope, intercept = np.polyfit(x, y, 1)
    if slope < MIN_SLOPE:
        raise NotLearntError(f"the predictions of the bias-correction samples do not follow age (slope {slope:.3g} < "
                         f"{MIN_SLOPE}); the model has not learnt age, and correcting would divide by ~0.")
    return BiasCorrection(float(intercept), float(slope), len(y))


def brain_age_table(predicted: pd.Series, age: pd.Series, correction: BiasCorrection) -> pd.DataFrame:
    """``age, brain_age_raw, brain_age, bag`` per sample (index: sample id)."""
    corrected = correction.correct(predicted.to_numpy())
    age = age.reindex(predicted.index).to_numpy(np.float64)
    return pd.DataFrame({"age": age, "brain_age_raw": predicted.to_numpy(np.float64), "brain_age": corrected,
                         "bag": corrected - age}, index=predicted.index)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r, NaN (not 0) when either side has no spread or there are fewer than 3 samples."""
    if len(a) < 3 or np.ptp(a) <= 0 or np.ptp(b) <= 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def summary_row(name: str, rows: pd.DataFrame) -> dict:
    """MAE, R^2, r of the raw predictions, MAE of the corrected ones, BAG mean/SD and corr(BAG, age) before
    (raw prediction - age) and after the correction, of one group of samples (NaN where undefined)."""
    age, raw, bag = (rows[c].to_numpy(np.float64) for c in ("age", "brain_age_raw", "bag"))
    spread = np.sum((age - age.mean()) ** 2) if len(age) else 0.0
    r2 = float(1 - np.sum((raw - age) ** 2) / spread) if len(age) >= 2 and spread > 0 else float("nan")
    nan = float("nan")
    return {"split": name, "n": len(rows), "mae": float(np.mean(np.abs(raw - age))) if len(rows) else nan, "r2": r2,
            "pearson_r": _correlation(raw, age), "mae_corrected": float(np.mean(np.abs(bag))) if len(rows) else nan,
            "bag_mean": float(np.mean(bag)) if len(rows) else nan,
            "bag_sd": float(np.std(bag, ddof=1)) if len(rows) >= 2 else nan,
            "corr_bag_age_before": _correlation(raw - age, age), "corr_bag_age_after": _correlation(bag, age)}


def split_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One :func:`summary_row` per value of ``table.split``, then the correction set and all samples."""
    rows = [summary_row(str(name), group) for name, group in table.groupby("split", sort=True)]
    rows.append(summary_row("correction_set", table[table.correction_set]))
    rows.append(summary_row("all", table))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def plot_brain_age(table: pd.DataFrame, path, title: str = ""):
    """Two panels: predicted (raw and corrected) against true age with the identity line; BAG against age."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ml4ge.atomic import atomic_path

    figure = Figure(figsize=(10, 4.5))
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    ages = table["age"].to_numpy()
    left.scatter(ages, table["brain_age_raw"], s=8, alpha=0.5, label="raw")
    left.scatter(ages, table["brain_age"], s=8, alpha=0.5, label="bias-corrected")
    low, high = float(np.nanmin(ages)), float(np.nanmax(ages))
    left.plot([low, high], [low, high], "k--", linewidth=1, label="identity")
    left.set(xlabel="age (years)", ylabel="brain age (years)", title=title or "predicted against true age")
    left.legend(fontsize=8)
    for name, group in table.groupby("split"):
        right.scatter(group["age"], group["bag"], s=8, alpha=0.6, label=str(name))
    right.axhline(0.0, color="k", linewidth=1)
    right.set(xlabel="age (years)", ylabel="brain-age gap (years)", title="BAG against age")
    right.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return path
