"""The predictor's test metrics equal scikit-learn's, and degenerate cases give NaN."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, mean_absolute_error, r2_score, roc_auc_score

from ml4ge.predictor_metrics import classification_metrics, regression_metrics


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("classes", [2, 3])
def test_classification_metrics_equal_scikit_learns(seed, classes):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, 60)
    probabilities = rng.dirichlet(np.ones(classes), 60)
    probabilities[labels == 0, 0] += 0.3  # some signal, and ties in neither
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    probabilities[:5] = np.round(probabilities[:5], 1)  # a few tied scores
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    found = classification_metrics(np.eye(classes)[labels], probabilities)
    predicted = probabilities.argmax(axis=1)
    assert found["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted))
    assert found["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro", zero_division=0))
    expected_auc = (roc_auc_score(labels, probabilities[:, 1]) if classes == 2
                    else roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))
    assert found["roc_auc"] == pytest.approx(expected_auc)


@pytest.mark.parametrize("seed", range(5))
def test_regression_metrics_equal_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(60, 8, 50)
    predicted = y + rng.normal(0, 5, 50)
    found = regression_metrics(y, predicted)
    assert found["r2"] == pytest.approx(r2_score(y, predicted))
    assert found["mae"] == pytest.approx(mean_absolute_error(y, predicted))
    assert found["pearson_r"] == pytest.approx(np.corrcoef(y, predicted)[0, 1])


def test_degenerate_cases_give_nan():
    one_class = classification_metrics(np.eye(2)[[1, 1, 1]], np.float64([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]))
    assert np.isnan(one_class["roc_auc"])
    constant = regression_metrics(np.full(5, 3.0), np.arange(5.0))
    assert np.isnan(constant["r2"]) and np.isnan(constant["pearson_r"])
    assert np.isnan(regression_metrics(np.arange(5.0), np.full(5, 2.0))["pearson_r"])
