"""Layers and losses of the ``predictor`` family, in ``keras.ops`` for every Keras backend.

- :class:`PresenceBatchNorm`: batch normalization whose training statistics come from the samples that have the
  branch's input only, so that an absent sample's zeros never shift a present sample's output.
- :class:`Gate`: a branch's output times the sample's presence flag (zeros of the branch width when absent).
- :class:`MeanSquareL2`: the seed's L2 penalty ``scale * mean(W^2)`` (not Keras' ``sum``).
- :class:`Unscale`: a regression head's output in [-1, 1] back to the target's original units.
- :class:`ScaledTargetMSE`: the MSE on the scaled target (the seed's), computed from original units.
- :class:`ClassWeightedCrossentropy`: categorical cross-entropy weighted per sample by its class.
"""

from __future__ import annotations

import keras
from keras import ops


def _rows(presence, like):
    """``presence`` ``[B, 1]`` reshaped to broadcast over ``like`` ``[B, ...]``."""
    return ops.reshape(ops.cast(presence, like.dtype), (-1,) + (1,) * (len(like.shape) - 1))


@keras.saving.register_keras_serializable(package="ml4ge")
class PresenceBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization over the last axis whose batch statistics (and moving averages) use present samples only.

    Called as ``layer(x)`` it is Keras' BatchNormalization; as ``layer(x, presence=flags)`` (``[B, 1]``, 1
    present) the mean and variance in training are taken over the present rows, and a batch with no present row
    leaves the moving statistics as they are (its outputs are gated to zeros downstream anyway).
    """

    def call(self, inputs, presence=None, training=None, mask=None):
        if presence is None or not (training and self.trainable):
            return super().call(inputs, training=training)
        x = inputs
        x = ops.cast(x, "float32")
        weight = _rows(presence, x)
        axes = tuple(range(len(x.shape) - 1))
        count = ops.sum(weight * ops.ones_like(x[..., :1]))
        present = ops.cast(count > 0, x.dtype)
        mean = ops.sum(x * weight, axis=axes) / ops.maximum(count, 1.0)
        variance = ops.sum(ops.square(x - mean) * weight, axis=axes) / ops.maximum(count, 1.0)
        moving_mean, moving_variance = ops.cast(self.moving_mean, x.dtype), ops.cast(self.moving_variance, x.dtype)
        momentum = 1.0 - (1.0 - self.momentum) * present  # 1 (no update) when no row is present
        self.moving_mean.assign(moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(moving_variance * momentum + variance * (1.0 - momentum))
        mean = present * mean + (1.0 - present) * moving_mean
        variance = present * variance + (1.0 - present) * moving_variance
        outputs = ops.batch_normalization(x, mean, variance, axis=-1, offset=self.beta if self.center else None,
                                          scale=self.gamma if self.scale else None, epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="ml4ge")
class Gate(keras.layers.Layer):
    """``[x, presence] -> x * presence``: the branch output of an absent sample is zeros of the branch width."""

    def call(self, inputs):
        x, presence = inputs
        return x * _rows(presence, x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="ml4ge")
class AnyPresent(keras.layers.Layer):
    """``[flags...] -> [B, 1]``: 1 where any of the flags is 1 (the imaging CNN runs when any contrast is there)."""

    def call(self, inputs):
        return ops.max(ops.concatenate(list(inputs), axis=-1), axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)


@keras.saving.register_keras_serializable(package="ml4ge")
class MeanSquareL2(keras.regularizers.Regularizer):
    """``scale * mean(W^2)``: the seed's penalty on every weight matrix (independent of the matrix's size)."""

    def __init__(self, scale: float = 1e-4):
        self.scale = float(scale)

    def __call__(self, weights):
        return self.scale * ops.mean(ops.square(weights))

    def get_config(self):
        return {"scale": self.scale}


@keras.saving.register_keras_serializable(package="ml4ge")
class Unscale(keras.layers.Layer):
    """``s -> ((s + 1) / 2 * (high - low) + low) * sd + mean``: a scaled prediction in the target's own units.

    ``mean``, ``sd`` (z-score of the clamped training target) and ``low``, ``high`` (the z-scores' range, mapped to
    -1 and 1) are fixed when the model is built from the training split (:mod:`ml4ge.models.predictor_config`).
    """

    def __init__(self, mean: float = 0.0, sd: float = 1.0, low: float = -1.0, high: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.sd, self.low, self.high = float(mean), float(sd), float(low), float(high)

    def call(self, scaled):
        return ((scaled + 1.0) / 2.0 * (self.high - self.low) + self.low) * self.sd + self.mean

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "sd": self.sd, "low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package="ml4ge")
class ScaledTargetMSE(keras.losses.Loss):
    """The seed's regression loss: MSE between the scaled prediction and the scaled target, the target clamped to
    ``[clamp_low, clamp_high]`` (the training split's 0.5/99.5 percentiles) first.

    Predictions and targets arrive in original units; the scaling is affine with slope ``factor``
    (``2 / ((high - low) * sd)``), so the scaled MSE is ``factor^2`` times the MSE in original units.
    """

    def __init__(self, factor: float = 1.0, clamp_low: float = -1e30, clamp_high: float = 1e30, name=None,
                 **kwargs):
        super().__init__(name=name or "scaled_target_mse", **kwargs)
        self.factor, self.clamp_low, self.clamp_high = float(factor), float(clamp_low), float(clamp_high)

    def call(self, y_true, y_pred):
        y_true = ops.clip(ops.cast(y_true, "float32"), self.clamp_low, self.clamp_high)
        return ops.mean(ops.square(self.factor * (ops.cast(y_pred, "float32") - y_true)), axis=-1)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "clamp_low": self.clamp_low,
                "clamp_high": self.clamp_high}


@keras.saving.register_keras_serializable(package="ml4ge")
class ClassWeightedCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy of probabilities, each sample weighted by its class's weight."""

    def __init__(self, class_weights=(1.0, 1.0), name=None, **kwargs):
        super().__init__(name=name or "class_weighted_crossentropy", **kwargs)
        self.class_weights = [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        weights = ops.sum(y_true * ops.convert_to_tensor(self.class_weights, "float32"), axis=-1)
        return weights * keras.losses.categorical_crossentropy(y_true, ops.cast(y_pred, "float32"))

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}
