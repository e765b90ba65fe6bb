"""Test-split metrics of a predictor, as the seed reports them (REFERENCE_SEEDS.md D.3), computed with NumPy and
SciPy and equal to scikit-learn's (tests/test_predictor_metrics.py checks each).

Classification: balanced accuracy, ROC-AUC from the probabilities (binary: of the second class; more classes:
one-vs-rest, macro average), macro F1. Regression: R^2, Pearson r and MAE, in the target's original units.
A degenerate case (one class in the test split, a constant target or prediction) gives NaN, never a confident
number.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

CLASSIFICATION = ("balanced_accuracy", "roc_auc", "macro_f1")
REGRESSION = ("r2", "pearson_r", "mae")


def balanced_accuracy(labels, predicted) -> float:
    """Mean recall over the classes present in ``labels``."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    recalls = [np.mean(predicted[labels == c] == c) for c in np.unique(labels)]
    return float(np.mean(recalls)) if recalls else float("nan")


def binary_auc(positive, scores) -> float:
    """ROC-AUC of ``scores`` for boolean ``positive`` (Mann-Whitney U with tied ranks); NaN with one class."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(labels, probabilities) -> float:
    """Binary: the AUC of the second class's probability; more classes: one-vs-rest AUCs averaged."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    if probabilities.shape[1] == 2:
        return binary_auc(labels == 1, probabilities[:, 1])
    return float(np.mean([binary_auc(labels == c, probabilities[:, c]) for c in range(probabilities.shape[1])]))


def macro_f1(labels, predicted, classes: int) -> float:
    """F1 per class (0 where a class is neither true nor predicted, as scikit-learn's zero_division), averaged over
    the classes found in either."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    scores = []
    for c in np.union1d(np.unique(labels), np.unique(predicted)):
        tp = np.sum((labels == c) & (predicted == c))
        denominator = np.sum(labels == c) + np.sum(predicted == c)
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores)) if scores else float("nan")


def r2(y, predicted) -> float:
    y, predicted = np.asarray(y, np.float64), np.asarray(predicted, np.float64)
    total = np.sum((y - y.mean()) ** 2)
    return float(1 - np.sum((y - predicted) ** 2) / total) if total > 0 else float("nan")


def pearson_r(y, predicted) -> float:
    y, predicted = np.asarray(y, np.float64), np.asarray(predicted, np.float64)
    if y.size < 2 or y.std() == 0 or predicted.std() == 0:
        return float("nan")
    return float(np.corrcoef(y, predicted)[0, 1])


def mae(y, predicted) -> float:
    return float(np.mean(np.abs(np.asarray(y, np.float64) - np.asarray(predicted, np.float64))))


def classification_metrics(one_hot, probabilities) -> dict[str, float]:
    """The classification metrics of one-hot targets and predicted probabilities ``[N, classes]``."""
    labels, predicted = np.argmax(one_hot, axis=1), np.argmax(probabilities, axis=1)
    return {"balanced_accuracy": balanced_accuracy(labels, predicted), "roc_auc": roc_auc(labels, probabilities),
            "macro_f1": macro_f1(labels, predicted, probabilities.shape[1])}


def regression_metrics(y, predicted) -> dict[str, float]:
    """The regression metrics of targets and predictions in original units."""
    y, predicted = np.asarray(y).reshape(-1), np.asarray(predicted).reshape(-1)
    return {"r2": r2(y, predicted), "pearson_r": pearson_r(y, predicted), "mae": mae(y, predicted)}
