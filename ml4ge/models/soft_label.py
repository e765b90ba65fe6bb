"""The ``soft_label`` head of SFCN: bins of age, Gaussian soft labels, a KL loss and the expectation readout.

SFCN (REFERENCE_SEEDS.md section C.1) predicts a distribution over age bins: a 1x1 projection (a dense layer on the
pooled embedding) to K bins and a log-softmax. Its target is N(age, sigma) integrated over each bin (differences of
the Gaussian CDF at the bin edges); its loss the KL divergence ``sum_k t_k (log(t_k + 1e-16) - log p_k)`` per
sample, averaged over the batch (the seed's ``KLDivLoss(reduction="sum") / batch``); its prediction the expectation
``sum_k p_k c_k`` over the bin centres. The bins (range, width) and sigma are the head's settings
(:class:`~ml4ge.models.sfcn_config.SoftLabelConfig`), kept in the model's spec.

The output map is a scalar age (``age``, shape ``(1,)``, in years, not normalised); the model's output for it is the
``[B, K]`` log-probabilities (the block's :meth:`SoftLabelHead.output_shape`), and the block gives the loss and
metric it trains with (:meth:`SoftLabelHead.training_loss`, :meth:`SoftLabelHead.training_metrics`). Read ages with
:func:`expected_value` or the :class:`BinExpectation` layer.

Example:
    >>> config = SoftLabelConfig(42, 82, 1, 1)
    >>> soft_labels(np.array([60.2]), config).sum()  # about 1
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops
from scipy.stats import norm

from ml4ge.models.losses import LOSSES
from ml4ge.models.registries import DECODERS
from ml4ge.models.sfcn_config import SoftLabelConfig
from ml4ge.tensormap import Interpretation, TensorMap, keras_safe

# Added to the target inside the log (the seed's), so that empty bins contribute 0, not NaN.
TARGET_EPSILON = 1e-16


def soft_labels(ages, config: SoftLabelConfig) -> np.ndarray:
    """``[N, K]`` bin probabilities of N(age, sigma): differences of the Gaussian CDF at the bin edges (float64).

    Rows sum to 1 less the mass outside ``[start, stop)`` (none for ages a few sigma inside the range).
    """
    ages = np.asarray(ages, dtype=np.float64).reshape(-1, 1)
    return np.diff(norm.cdf((config.edges()[None, :] - ages) / config.sigma), axis=1)


def expected_value(log_probs, centres) -> np.ndarray:
    """``[N]`` expectations ``sum_k exp(log p_k) c_k`` of ``[N, K]`` log-probabilities over the bin centres."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    if log_probs.ndim != 2 or log_probs.shape[1] != centres.size:
        raise ValueError(f"expected [N, {centres.size}] log-probabilities (one per bin), got shape "
                         f"{log_probs.shape}; is this a soft_label head of these bins?")
    return np.exp(log_probs) @ centres


def _gaussian_bin_masses(ages, edges, sigma: float):
    """``[B, K]`` masses of N(age, sigma) in the bins of ``edges`` (``keras.ops``)."""
    z = (ops.reshape(edges, (1, -1)) - ops.reshape(ages, (-1, 1))) / (sigma * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + ops.erf(z))
    return cdf[:, 1:] - cdf[:, :-1]


def _settings(start, stop, width, sigma) -> SoftLabelConfig:
    return SoftLabelConfig(float(start), float(stop), float(width), float(sigma))


@keras.saving.register_keras_serializable(package="ml4ge")
class SoftLabelKL(keras.losses.Loss):
    """KL divergence of the predicted bin log-probabilities from the Gaussian soft labels of the true age.

    ``y_true``: ``[B, 1]`` ages in years; ``y_pred``: ``[B, K]`` log-probabilities. Per sample
    ``sum_k t_k (log(t_k + 1e-16) - y_pred_k)``; the default reduction averages over the batch.

    Args:
        start, stop, width, sigma: the bins and label width (:class:`SoftLabelConfig`).
    """

    def __init__(self, start=42.0, stop=82.0, width=1.0, sigma=1.0, name="soft_label_kl",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.bins = _settings(start, stop, width, sigma)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        edges = ops.convert_to_tensor(self.bins.edges().astype(np.float32))
        target = _gaussian_bin_masses(ops.cast(y_true, "float32"), edges, self.bins.sigma)
        return ops.sum(target * (ops.log(target + TARGET_EPSILON) - y_pred), axis=-1)

    def get_config(self):
        b = self.bins
        return {**super().get_config(), "start": b.start, "stop": b.stop, "width": b.width, "sigma": b.sigma}


def _expectation(log_probs, centres):
    return ops.sum(ops.exp(ops.cast(log_probs, "float32")) * ops.reshape(centres, (1, -1)), axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="ml4ge")
class BinExpectation(keras.layers.Layer):
    """``[B, K]`` log-probabilities -> ``[B, 1]`` expectation over the bin centres (the predicted age).

    Example:
        >>> BinExpectation(centres=[42.5, 43.5])(np.log([[0.0, 1.0]]))  # [[43.5]]
    """

    def __init__(self, centres, **kwargs):
        super().__init__(**kwargs)
        self.centres = [float(c) for c in centres]

    def call(self, log_probs):
        return _expectation(log_probs, ops.convert_to_tensor(np.asarray(self.centres, np.float32)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return {**super().get_config(), "centres": self.centres}


@keras.saving.register_keras_serializable(package="ml4ge")
class SoftLabelMAE(keras.metrics.MeanMetricWrapper):
    """Mean absolute error in years of the expectation readout against the true age (``y_true`` ``[B, 1]``)."""

    def __init__(self, start=42.0, stop=82.0, width=1.0, sigma=1.0, name="age_mae", dtype=None):
        self.bins = _settings(start, stop, width, sigma)
        centres = self.bins.centres().astype(np.float32)
        super().__init__(fn=lambda y_true, y_pred: ops.abs(
            ops.reshape(ops.cast(y_true, "float32"), (-1,))
            - ops.reshape(_expectation(y_pred, ops.convert_to_tensor(centres)), (-1,))), name=name, dtype=dtype)

    def get_config(self):
        b = self.bins
        return {"name": self.name, "dtype": self.dtype, "start": b.start, "stop": b.stop, "width": b.width,
                "sigma": b.sigma}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@DECODERS.register("soft_label")
class SoftLabelHead:
    """SFCN's head for a scalar continuous map (age): dense to the K bins of ``config.soft_label``, log-softmax.

    Trains with :class:`SoftLabelKL` (its :meth:`training_loss`) and reports :class:`SoftLabelMAE` in years.
    """

    def __init__(self, bins: SoftLabelConfig):
        self.bins = bins

    @classmethod
    def from_config(cls, config) -> SoftLabelHead:
        return cls(config.soft_label)

    def can_apply(self, tm: TensorMap) -> bool:
        return tuple(tm.shape) == (1,) and str(tm.interpretation) == str(Interpretation.CONTINUOUS)

    def output_shape(self, tm: TensorMap) -> tuple[int, ...]:
        """The model's output for ``tm``: one log-probability per bin."""
        return (self.bins.bins,)

    def training_loss(self, tm: TensorMap) -> SoftLabelKL:
        b = self.bins
        return SoftLabelKL(b.start, b.stop, b.width, b.sigma)

    def training_metrics(self, tm: TensorMap) -> tuple:
        b = self.bins
        return (SoftLabelMAE(b.start, b.stop, b.width, b.sigma),)

    def __call__(self, latent, tm: TensorMap):
        prefix = f"decode_{keras_safe(tm.name)}"
        x = keras.layers.Dense(self.bins.bins, name=f"{prefix}_bins")(latent)
        return keras.layers.Activation("log_softmax", dtype="float32", name=f"{prefix}_output")(x)


LOSSES.register("soft_label_kl", SoftLabelKL)
