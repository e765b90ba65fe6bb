"""What the ``predictor`` family takes from the data: target scales, class weights and unbuilt inputs from the
training split (:func:`prepare_predictor`), balanced epochs (:class:`BalancedSampler`) and the test split's
predictions and metrics (:func:`write_test_report`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ml4ge.atomic import write_table
from ml4ge.nifti import INPUT_ERRORS
from ml4ge.predictor_metrics import classification_metrics, regression_metrics
from ml4ge.tensormap import Interpretation

log = logging.getLogger(__name__)
PREDICTIONS, PERFORMANCE = "test_predictions.tsv", "test_performance.tsv"


def read_values(paths, tm) -> list[np.ndarray | None]:
    """``tm``'s array of each sample, None where it is missing or unreadable (such samples are skipped in training
    anyway, or are absent optional inputs)."""
    found = []
    for path in paths:
        try:
            with h5py.File(path, "r") as hd5:
                found.append(tm.tensor(hd5, Path(path).stem)[0])
        except (KeyError, *INPUT_ERRORS):
            found.append(None)
    return found


def has_any(paths, tm) -> bool:
    """Whether any sample of ``paths`` has ``tm`` (stops at the first)."""
    for path in paths:
        try:
            with h5py.File(path, "r") as hd5:
                tm.read_raw(hd5, Path(path).stem)
            return True
        except (KeyError, *INPUT_ERRORS):
            continue
    return False


def class_labels(paths, tm) -> np.ndarray:
    """The class index of each sample (-1 where the target cannot be read)."""
    return np.array([-1 if value is None else int(np.argmax(value)) for value in read_values(paths, tm)])


def class_counts(paths, tm) -> np.ndarray:
    """Training samples per class of a categorical ``tm``.

    Raises:
        ValueError: when a class has no training sample (it could not be learned, nor balanced).
    """
    labels = class_labels(paths, tm)
    counts = np.bincount(labels[labels >= 0], minlength=tm.shape[-1])
    if np.any(counts == 0):
        raise ValueError(f"target {tm.name!r} has no training sample of class(es) "
                         f"{np.flatnonzero(counts == 0).tolist()} (counts {counts.tolist()}); check the split.")
    return counts


def prepare_predictor(prepared, train_paths, input_tmaps, output_tmaps, optional):
    """``prepared`` (a :class:`~ml4ge.models.predictor.PreparedPredictor`) with what the training split says."""
    scales, weights = {}, {}
    from ml4ge.models.predictor_config import TargetScale

    for tm in output_tmaps:
        if tm.interpretation == Interpretation.CONTINUOUS:
            values = [v for v in read_values(train_paths, tm) if v is not None]
            scales[tm.name] = TargetScale.fit(np.concatenate(values) if values else [], tm.name).to_dict()
            continue
        counts = class_counts(train_paths, tm)
        if prepared.config.balance == "class_weights":
            weights[tm.name] = (counts.sum() / (len(counts) * counts)).tolist()
        log.info("target %s: training samples per class %s", tm.name, counts.tolist())
    unbuilt = tuple(tm.name for tm in input_tmaps if tm.name in set(optional) and not has_any(train_paths, tm))
    for name in unbuilt:
        log.warning("input %s: no training sample has it; its branch is not built", name)
    return replace(prepared, scales=scales, class_weights=weights, unbuilt=unbuilt)


class BalancedSampler:
    """Each epoch, every sample of the smallest class and as many of each other class, drawn anew, shuffled (the
    seed's undersampling of the majority class). Samples whose class cannot be read are left out."""

    def __init__(self, labels, seed: int):
        self.labels, self.seed = np.asarray(labels), int(seed)
        known = self.labels[self.labels >= 0]
        if known.size == 0:
            raise ValueError("no training sample has a readable class: nothing to balance.")
        counts = np.bincount(known)
        self.size = int(counts[counts > 0].min())

    @classmethod
    def of_paths(cls, paths, tm, seed: int) -> BalancedSampler:
        return cls(class_labels(paths, tm), seed)

    def __call__(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        chosen = [rng.choice(np.flatnonzero(self.labels == c), self.size, replace=False)
                  for c in np.unique(self.labels[self.labels >= 0])]
        return rng.permutation(np.concatenate(chosen))


def predictions(model, dataset) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(sample ids, {output name: targets}, {output name: predictions})`` over one pass of ``dataset``."""
    ids, truth, predicted = [], {}, {}
    for batch in dataset.batches():
        inputs = {name: value for name, value in batch.inputs.items() if name in model.input}
        outputs = model.predict_on_batch(inputs)
        ids += batch.ids
        for tm in model.output_maps:
            truth.setdefault(tm.output_name, []).append(batch.outputs[tm.output_name])
            predicted.setdefault(tm.output_name, []).append(np.asarray(outputs[tm.output_name]))
    return ids, {k: np.concatenate(v) for k, v in truth.items()}, {k: np.concatenate(v) for k, v in predicted.items()}


def test_metrics(model, truth: dict, predicted: dict) -> dict[str, dict[str, float]]:
    """``{target: {metric: value}}`` in original units."""
    found = {}
    for tm in model.output_maps:
        y, p = truth[tm.output_name], predicted[tm.output_name]
        found[tm.name] = (classification_metrics(y, p) if tm.interpretation == Interpretation.CATEGORICAL
                          else regression_metrics(y, p))
    return found


def write_test_report(model, dataset, folder) -> dict[str, dict[str, float]]:
    """``test_predictions.tsv`` (per sample and target) and ``test_performance.tsv`` (target, metric, value, n)."""
    ids, truth, predicted = predictions(model, dataset)
    rows = []
    for tm in model.output_maps:
        y, p = truth[tm.output_name], predicted[tm.output_name]
        for index, sample in enumerate(ids):
            true_value = int(np.argmax(y[index])) if tm.interpretation == Interpretation.CATEGORICAL else y[index, 0]
            rows.append({"sample_id": sample, "target": tm.name, "true": true_value,
                         "predicted": p[index, -1] if p.shape[1] <= 2 else int(np.argmax(p[index]))})
    write_table(pd.DataFrame(rows), Path(folder) / PREDICTIONS)
    metrics = test_metrics(model, truth, predicted)
    table = [{"target": target, "metric": name, "value": value, "n": len(ids)}
             for target, values in metrics.items() for name, value in values.items()]
    write_table(pd.DataFrame(table), Path(folder) / PERFORMANCE)
    log.info("test performance: %s", metrics)
    return metrics
