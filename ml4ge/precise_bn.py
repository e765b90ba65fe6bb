"""Precise BatchNorm: the moving statistics recomputed at the current weights before each validation.

Keras' BatchNormalization keeps exponential moving averages of batch statistics taken while the weights change, so
at inference it normalises with statistics of older weights. With few steps per epoch and a deep network the lag
compounds from layer to layer: the demo's predictor, trained with batch statistics to r 0.6 with age, predicted
a near-constant age in inference mode (SD 0.5 years, r -0.6) until its statistics were recomputed (r 0.6 again;
README, "Predictors"). :func:`recalibrate_batchnorm` sets every moving mean and variance to the average of the
batch statistics over a few training batches at the current weights (Wu & Johnson, "Rethinking 'Batch' in
BatchNorm", 2021), with dropout off, as at inference. :class:`PreciseBatchNorm` does it at the end of every epoch
and then validates, so early stopping, the schedule and the best checkpoint see the model as inference runs it.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import keras
import numpy as np

log = logging.getLogger(__name__)


def _layers(model, kind) -> list:
    """Every layer of ``model`` of class ``kind``, nested models included."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True) if isinstance(layer, kind)]


def batchnorm_layers(model) -> list:
    """Every trainable BatchNormalization layer of ``model``, nested models included."""
    return [layer for layer in _layers(model, keras.layers.BatchNormalization) if layer.trainable]


def precise_bn_batches(model, settings, replicas: int = 1) -> int:
    """How many training batches recalibrate ``model`` each epoch: ``settings.precise_bn`` (``--precise_bn``) or,
    when not given, the model family's ``precise_bn_batches``; 0 for a model without BatchNorm.

    Raises:
        ValueError: ``--precise_bn`` above 0 with several replicas (recalibration runs the model on one device).
    """
    batches = settings.precise_bn
    if batches is None:
        batches = getattr(model, "precise_bn_batches", 0)
        if batches and replicas > 1:
            log.warning("precise BatchNorm is off: it runs the model on one device and this run has %d replicas; "
                        "inference uses Keras' moving averages", replicas)
            return 0
    elif batches and replicas > 1:
        raise ValueError(f"--precise_bn {batches} recomputes the BatchNorm statistics on one device, and this run has "
                         f"{replicas} replicas: use --precise_bn 0 or --strategy default.")
    return int(batches) if batches and batchnorm_layers(model) else 0


def calibration_subset(model, settings, train_paths: list, batch_size: int, seed: int, replicas: int = 1) -> list:
    """The training samples whose batches recalibrate ``model`` each epoch (:func:`precise_bn_batches` batches'
    worth, a seeded draw kept in cohort order); [] when precise BatchNorm is off."""
    batches = precise_bn_batches(model, settings, replicas)
    if not batches:
        return []
    count = min(len(train_paths), batches * batch_size)
    chosen = np.random.default_rng([seed, 2021]).choice(len(train_paths), count, replace=False)
    log.info("precise BatchNorm: the moving statistics are recomputed from %d training samples before each "
             "validation", count)
    return [train_paths[i] for i in sorted(chosen)]


@contextmanager
def _dropout_off(model):
    """Dropout layers pass their input through (rate 0) inside the block, as at inference."""
    layers = _layers(model, keras.layers.Dropout)
    rates = [layer.rate for layer in layers]
    for layer in layers:
        layer.rate = 0.0
    try:
        yield
    finally:
        for layer, rate in zip(layers, rates):
            layer.rate = rate


def recalibrate_batchnorm(model, batches) -> int:
    """Set the moving statistics of ``model``'s BatchNorm layers to the mean of their batch statistics over
    ``batches`` (an iterable of ``(inputs, ...)``), each layer seeing its input as the recalibrated layers before
    it produce it. The weights are not changed.

    A layer's update with momentum ``i / (i + 1)`` at the ``i``-th batch is the running mean of the batches'
    statistics. (A :class:`~ml4ge.models.predictor_layers.PresenceBatchNorm` skips batches without a present row, so
    the batches after one weigh a little less for it.)

    Returns:
        The number of batches used (0: nothing changed).
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    count = 0
    try:
        with _dropout_off(model):
            for count, batch in enumerate(batches, start=1):
                for layer in layers:
                    layer.momentum = (count - 1) / count
                model(batch[0], training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return count


class PreciseBatchNorm(keras.callbacks.Callback):
    """At the end of each epoch: recalibrate the BatchNorm statistics on ``calibration`` (a dataset of training
    batches, one pass per iteration), then evaluate ``valid`` and put its ``val_*`` metrics in the epoch's logs
    (the fit runs without validation data).

    Must come before the callbacks that read ``val_loss`` (early stopping, schedule, checkpoint, log).
    """

    def __init__(self, calibration, valid, validation_steps: int | None = None):
        super().__init__()
        self.calibration, self.valid, self.validation_steps = calibration, valid, validation_steps

    def on_epoch_end(self, epoch, logs=None):
        used = recalibrate_batchnorm(self.model, self.calibration)
        log.debug("epoch %d: BatchNorm statistics recomputed on %d training batches", epoch + 1, used)
        metrics = self.model.evaluate(self.valid, steps=self.validation_steps, verbose=0, return_dict=True)
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in metrics.items()})
