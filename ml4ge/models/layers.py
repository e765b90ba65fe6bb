"""Layers of the pair merge (a pair-loss layer and DropFuse fusion) and the decoders' learned template, in
``keras.ops`` for every Keras backend.

Average and concatenation fusions are plain ``keras.layers.Average`` and ``keras.layers.Concatenate``.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ml4ge.models.losses import PAIR_LOSSES

# CLIP clamps its learnable temperature to this range (logit scale at most 100).
MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 100.0
# Pair losses that learn a temperature.
_TEMPERATURE_LOSSES = frozenset({"contrastive"})
# Pair losses that learn ml4h's unclamped log-scale of the logits (its "temperature" weight, starting at 0).
_LOG_SCALE_LOSSES = frozenset({"contrastive_ml4h"})


@keras.saving.register_keras_serializable(package="ml4ge")
class PairLoss(keras.layers.Layer):
    """Adds ``weight * loss(a, b)`` between two embeddings to the model's losses and returns them unchanged.

    The value (unweighted) is also tracked by a ``keras.metrics.Mean`` named ``"<loss>_pair_loss"`` so that it is
    logged as its own metric; Keras reports it when this layer sits directly in the trained model (metrics of
    layers inside a nested ``keras.Model`` are not collected by ``Model.metrics``). On the JAX backend there is no
    such metric (``tracker`` is None): Keras' JAX trainer runs the forward pass in a stateless scope that does not
    hold metric variables, so a metric updated in ``call`` fails (keras-team/keras#21639, #19402); the loss itself
    is still added and trained. With ``loss="contrastive"``
    the layer learns a log-temperature, clamped so that the temperature stays in [0.01, 100] as in CLIP.
    One instance shared by several pairs shares one temperature and one metric.

    Args:
        loss: name in :data:`ml4ge.models.losses.PAIR_LOSSES`: 'contrastive' (symmetric InfoNCE), 'cosine'
            (mean angle) or 'euclid' (mean distance).
        weight: factor of the pair loss in the total loss (ml4h's ``--pair_loss_weight``).
        initial_temperature: starting temperature of the contrastive loss (CLIP: 0.07).
        **kwargs: ``keras.layers.Layer`` arguments (name, dtype, ...).

    Raises:
        UnknownNameError: for an unknown ``loss``.
        ValueError: for a negative ``weight`` or an ``initial_temperature`` outside [0.01, 100].

    Example:
        >>> a, b = PairLoss("contrastive", weight=0.1)([embed_t1, embed_t2])
    """

    def __init__(self, loss="contrastive", weight=1.0, initial_temperature=0.07, **kwargs):
        super().__init__(**kwargs)
        self.loss_fn = PAIR_LOSSES.get(loss)
        if weight < 0:
            raise ValueError(f"PairLoss weight must be >= 0, received {weight}.")
        if not MIN_TEMPERATURE <= initial_temperature <= MAX_TEMPERATURE:
            raise ValueError(
                f"PairLoss initial_temperature must be in [{MIN_TEMPERATURE}, {MAX_TEMPERATURE}], "
                f"received {initial_temperature}."
            )
        self.loss = loss
        self.weight = float(weight)
        self.initial_temperature = float(initial_temperature)
        self.learns_temperature = loss in _TEMPERATURE_LOSSES
        self.tracker = keras.metrics.Mean(name=f"{loss}_pair_loss") if _layer_metrics_supported() else None

    def build(self, input_shape):
        _check_pair_shapes(input_shape)
        if self.learns_temperature:
            self.log_temperature = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(math.log(self.initial_temperature)),
                trainable=True,
                name="log_temperature",
            )
        if self.loss in _LOG_SCALE_LOSSES:
            self.log_scale = self.add_weight(shape=(), initializer="zeros", trainable=True, name="log_scale")

    @property
    def temperature(self):
        """The current (clamped) temperature of the contrastive loss; None for losses without one."""
        if not self.learns_temperature:
            return None
        log_t = ops.clip(self.log_temperature, math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE))
        return ops.exp(ops.cast(log_t, "float32"))

    def call(self, inputs, weights=None):
        a, b = inputs
        extra = {"temperature": self.temperature} if self.learns_temperature else {}
        if self.loss in _LOG_SCALE_LOSSES:
            extra["log_scale"] = self.log_scale
        value = self.loss_fn(a, b, weights=weights, **extra)
        self.add_loss(self.weight * value)
        if self.tracker is not None:
            self.tracker.update_state(value)
        return [a, b]

    def compute_output_shape(self, input_shape):
        return [tuple(shape) for shape in input_shape]

    def get_config(self):
        config = super().get_config()
        config.update(loss=self.loss, weight=self.weight, initial_temperature=self.initial_temperature)
        return config


def _layer_metrics_supported() -> bool:
    """Whether metrics updated inside ``Layer.call`` work in ``Model.fit`` on the current backend (not on JAX)."""
    return keras.backend.backend() != "jax"


def _check_pair_shapes(input_shape):
    """Raise ValueError unless ``input_shape`` is two equal ``[B, D]`` shapes."""
    shapes = [tuple(shape) for shape in input_shape] if isinstance(input_shape, (list, tuple)) else []
    if len(shapes) != 2 or len(shapes[0]) != 2 or shapes[0][1:] != shapes[1][1:]:
        raise ValueError(
            f"PairLoss expects two [batch, features] embeddings of equal width, received shapes {input_shape}. "
            f"Pair encoders must end in latents of the same size (--dense_layers)."
        )


@keras.saving.register_keras_serializable(package="ml4ge")
class DropFuse(keras.layers.Layer):
    """Fuses M modality embeddings: a random modality per coordinate in training, their mean at inference.

    Training: for every sample and every latent coordinate independently, the output takes the value of that
    coordinate from a uniformly drawn modality (draws are per sample and per coordinate). Inference
    (``training`` False or None): the deterministic mean of the M embeddings, which is the expectation of the
    training output.

    With ``presence`` (one ``[B, 1]`` flag per modality, 1 present and 0 absent) only present modalities take
    part: training draws among the present ones, inference averages them, so a subject with one modality gets
    that modality's embedding. A sample with none gives zeros.

    Args:
        seed: optional int for the ``keras.random.SeedGenerator`` (reproducible draws).
        **kwargs: ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: (at build) unless given at least one ``[B, D]`` embedding, all of the same width.

    Example:
        >>> fused = DropFuse()([embed_t1, embed_t2])
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        shapes = [tuple(shape) for shape in input_shape] if isinstance(input_shape, (list, tuple)) else []
        if not shapes or any(len(s) != 2 or s[1:] != shapes[0][1:] for s in shapes):
            raise ValueError(
                f"DropFuse expects a list of [batch, features] embeddings of equal width, received {input_shape}."
            )

    def call(self, inputs, presence=None, training=None):
        stacked = ops.stack(inputs, axis=-1)  # [B, D, M]
        if presence is None:
            if not training:
                return ops.mean(stacked, axis=-1)
            choice = keras.random.randint(ops.shape(stacked)[:2], 0, len(inputs), seed=self.seed_generator)
            return ops.sum(stacked * ops.one_hot(choice, len(inputs), dtype=stacked.dtype), axis=-1)
        present = _presence_matrix(presence, stacked.dtype)  # [B, 1, M]
        if not training:
            return _present_mean(stacked, present)
        # A random present modality per coordinate: the arg-max of uniform noise over the present ones.
        noise = keras.random.uniform(ops.shape(stacked), seed=self.seed_generator, dtype=stacked.dtype)
        choice = ops.argmax(noise * present + (present - 1.0), axis=-1)
        return ops.sum(stacked * ops.one_hot(choice, len(inputs), dtype=stacked.dtype), axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="ml4ge")
class DropFuseMl4h(keras.layers.Layer):
    """ml4h's DropFuse as the papers trained it (``--pair_merge dropout_ml4h``): one modality drawn per latent
    coordinate and shared by the whole batch, in training *and at inference* (random latents from the full model).

    ml4h's ``PairLossBlock`` between January 2022 and April 2025 (REFERENCE_ML4H.md 4.5), the DropFuse paper's and
    the registration paper's. ml4h's layer since May 2025 draws one whole modality per sample instead. ml4ge's own
    ``dropout`` (:class:`DropFuse`) draws per sample and per coordinate and takes the mean at inference.

    Args:
        seed: optional int for the ``keras.random.SeedGenerator``.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        stacked = ops.stack(inputs, axis=-1)  # [B, D, M]
        choice = keras.random.randint((stacked.shape[1],), 0, len(inputs), seed=self.seed_generator)
        return ops.sum(stacked * ops.one_hot(choice, len(inputs), dtype=stacked.dtype)[None], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def _presence_matrix(presence, dtype):
    """``[B, 1, M]`` flags from a list of M ``[B, 1]`` presence flags."""
    return ops.expand_dims(ops.concatenate([ops.cast(p, dtype) for p in presence], axis=-1), 1)


def _present_mean(stacked, present):
    """Mean over the present modalities of ``stacked`` ``[B, D, M]`` (zeros where none is present)."""
    return ops.sum(stacked * present, axis=-1) / ops.maximum(ops.sum(present, axis=-1), 1.0)


@keras.saving.register_keras_serializable(package="ml4ge")
class PresentMean(keras.layers.Layer):
    """The mean of the present modalities' embeddings (``presence``: one ``[B, 1]`` flag per modality)."""

    def call(self, inputs, presence):
        return _present_mean(ops.stack(inputs, axis=-1), _presence_matrix(presence, inputs[0].dtype))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="ml4ge")
class ZeroAbsent(keras.layers.Layer):
    """An optional modality's embedding times its ``[B, 1]`` presence flag: zeros for a sample that lacks it."""

    def call(self, inputs):
        embedding, present = inputs
        return embedding * ops.cast(present, embedding.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="ml4ge")
class Template(keras.layers.Layer):
    """Adds an image of its input's shape (one weight per voxel and channel) to its input.

    At a decoder's output it is learned, and the train recipe starts it at the training split's mean target
    (:func:`ml4ge.templates.initialize_templates`): the decoder starts at the cohort mean and draws only how a
    sample differs from it. Zeros until initialized. Encoders built before #20 item 12 hold it at their input,
    frozen (``trainable=False``) at minus that mean; encoders now centre with a stock ``keras.layers.Normalization``
    (:func:`ml4ge.models.conv.encoder_input`) so their files load without ml4ge. This class and
    :class:`~ml4ge.models.conv.CentralCropPad` stay registered so that older models load.
    """

    def build(self, input_shape):
        self.template = self.add_weight(name="template", shape=tuple(input_shape[1:]), initializer="zeros")

    def call(self, inputs):
        return inputs + ops.cast(self.template, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)
