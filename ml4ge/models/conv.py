"""``conv_encode`` / ``conv_decode``: one convolutional encoder and decoder for 1-D signals, 2-D images and 3-D volumes.

The rank comes from the TensorMap's shape (``(L, C)`` signal, ``(H, W, C)`` image, ``(H, W, D, C)`` volume).

Encoder: central zero-pad to a multiple of the total pooling factor, a stem of ``conv.layers`` convolutions,
then per stage width a pooling and ``conv.block_size`` convolutions (each conv -> norm -> activation ->
regularization), flatten, dense layers; the last dense layer is linear and is the embedding.

Decoder (the mirror): dense layers, a linear dense to the bottleneck, reshape, then per stage in reverse
``block_size`` convolutions at the width of the stage before and an upsampling (repeat, or a stride-``pool``
transposed convolution with no norm or activation), the stem's convolutions mirrored, a 1x1 convolution with
``tm.activation``, and a central crop back to ``tm.shape``.

Shapes the pooling does not divide are padded and cropped centrally. How these blocks differ from ml4h's:
``docs/ml4h_differences.md``.

That is the ``plain`` style (``--conv_style plain``: UDIP's preset and the demo). The default style ``ml4h`` builds
ml4h's structure from the same flags (:mod:`ml4ge.models.conv_ml4h`, registered in :data:`STYLES`).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ml4ge.models.blocks import DECODERS, ENCODERS, Namer, after_layer, check_layer_names
from ml4ge.models.dense import dense_stack, vector_dense
from ml4ge.models.layers import Template
from ml4ge.registry import Registry
from ml4ge.tensormap import TensorMap, keras_safe

# Conv styles other than plain: name -> object with encode(block, x, tm) and decode(block, latent, tm).
STYLES: Registry = Registry("conv style")

CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}
TRANSPOSE = {1: keras.layers.Conv1DTranspose, 2: keras.layers.Conv2DTranspose, 3: keras.layers.Conv3DTranspose}
UPSAMPLE = {1: keras.layers.UpSampling1D, 2: keras.layers.UpSampling2D, 3: keras.layers.UpSampling3D}
ZERO_PAD = {1: keras.layers.ZeroPadding1D, 2: keras.layers.ZeroPadding2D, 3: keras.layers.ZeroPadding3D}
CROP = {1: keras.layers.Cropping1D, 2: keras.layers.Cropping2D, 3: keras.layers.Cropping3D}
CENTRING = "center"  # the kind (name part) of an encoder's centring layer, found by ml4ge.templates
POOL = {
    "max": {1: keras.layers.MaxPooling1D, 2: keras.layers.MaxPooling2D, 3: keras.layers.MaxPooling3D},
    "average": {1: keras.layers.AveragePooling1D, 2: keras.layers.AveragePooling2D, 3: keras.layers.AveragePooling3D},
}


@keras.saving.register_keras_serializable(package="ml4ge")
class CentralCropPad(keras.layers.Layer):
    """Zero-pads or crops the spatial axes centrally to ``target`` (channels last, channels unchanged).

    An odd difference puts the extra voxel at the end, so padding then cropping by the same amounts is the identity.

    Args:
        target: spatial shape of the output, e.g. ``(192, 224, 192)``.

    Example:
        >>> CentralCropPad((4, 6))(keras.ops.ones((1, 3, 8, 2))).shape
        (1, 4, 6, 2)
    """

    def __init__(self, target, **kwargs):
        super().__init__(**kwargs)
        self.target = tuple(int(t) for t in target)

    def _check(self, input_shape):
        spatial = tuple(input_shape[1:-1])
        if len(spatial) != len(self.target) or any(s is None for s in spatial):
            raise ValueError(f"{self.name}: needs static spatial shape of rank {len(self.target)}, got {input_shape}")
        return spatial

    def call(self, x):
        spatial = self._check(x.shape)
        for axis, (size, target) in enumerate(zip(spatial, self.target), start=1):
            before = abs(target - size) // 2
            if target > size:
                x = _zero_pad_axis(x, axis, before, target - size - before)
            elif target < size:
                x = _crop_axis(x, axis, before, target)
        return x

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        return (input_shape[0], *self.target, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "target": list(self.target)}


def encoder_input(x, spatial: tuple[int, ...], target: tuple[int, ...], template: bool, namer: Namer):
    """Central zero-pad to ``target``, then (with a template, or after a pad) a frozen per-voxel centring.

    Stock Keras layers only, so that an encoder file loads without ml4ge. The centring is a
    ``keras.layers.Normalization`` (variance one) whose mean :func:`ml4ge.templates.initialize_templates` sets to
    the training split's mean, padded like the input: pad-then-subtract equals the old subtract-then-pad (it also
    stores a variance of ones, one more volume of float32 in the file). Without a template, a pad is followed by a
    per-channel Normalization (mean zero, variance one: the identity), named ``guard``: a ``ZeroPadding`` layer
    feeding a ``padding="same"`` convolution directly is fused wrongly by TensorFlow's oneDNN CPU build (see
    :func:`_zero_pad_axis`), and the subtraction between them prevents that. Models saved before used ml4ge's
    ``Template`` and ``CentralCropPad`` layers, which stay registered so that they still load.
    """
    rank = len(spatial)
    if target != spatial:
        x = ZERO_PAD[rank](_central_margins(spatial, target), name=namer("pad"))(x)
    if template:
        x = keras.layers.Normalization(axis=tuple(range(1, rank + 2)), name=namer(CENTRING))(x)
    elif target != spatial:
        x = keras.layers.Normalization(axis=-1, name=namer("guard"))(x)  # per channel: two numbers, not a volume
    return x


def _central_margins(small: tuple[int, ...], large: tuple[int, ...]):
    """Per axis ``(before, after)`` voxels between ``small`` centred in ``large`` (an odd extra one at the end, as
    :class:`CentralCropPad`), in the form Keras' ZeroPadding and Cropping layers take (a pair for rank 1)."""
    margins = tuple((extra // 2, extra - extra // 2) for extra in (big - s for s, big in zip(small, large)))
    return margins[0] if len(margins) == 1 else margins


def _zero_pad_axis(x, axis: int, before: int, after: int):
    """Zero-pad one axis by concatenation.

    Not ``ops.pad``: on TensorFlow's oneDNN CPU build (2.21) a pad followed by a ``padding="same"`` Conv3D is
    fused wrongly in inference graphs (the convolution then acts as "valid", ``predict`` fails on a shape error;
    ``keras.layers.ZeroPadding3D`` is affected too). Concatenation is not fused.
    """
    edge = ops.zeros_like(ops.take(x, [0], axis=axis))
    parts = [ops.repeat(edge, before, axis=axis)] if before else []
    parts.append(x)
    if after:
        parts.append(ops.repeat(edge, after, axis=axis))
    return ops.concatenate(parts, axis=axis)


def _crop_axis(x, axis: int, start: int, length: int):
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, start + length)
    return x[tuple(index)]


def padded_shape(spatial: tuple[int, ...], factors: tuple[int, ...]) -> tuple[int, ...]:
    """Each size rounded up to a multiple of its total pooling factor."""
    return tuple(math.ceil(s / f) * f for s, f in zip(spatial, factors))


def conv_rank(tm: TensorMap) -> int:
    """Spatial axes a convolution runs over: shape ``(L, C)`` -> 1, ``(H, W, C)`` -> 2, ``(H, W, D, C)`` -> 3."""
    return len(tm.shape) - 1


class _ConvBlock:
    def __init__(self, conv, dense):
        check_layer_names(conv.activation, conv.normalize, conv.regularize)
        check_layer_names(dense.activation, dense.normalize, dense.regularize)
        self.conv = conv
        self.dense = dense

    @classmethod
    def from_config(cls, config):
        return cls(config.conv, config.dense)

    def can_apply(self, tm: TensorMap) -> bool:
        return 2 <= len(tm.shape) <= 4

    def factors(self, rank: int) -> tuple[int, ...]:
        pool = self.conv.pool_size(rank)
        return tuple(p ** len(self.conv.stages) for p in pool)

    def convs(self, x, width: int, count: int, rank: int, namer: Namer, index: int):
        conv = self.conv
        for _ in range(count):
            x = CONV[rank](width, conv.kernel(rank, index), padding="same", name=namer("conv"))(x)
            x = after_layer(x, namer, rank, conv.activation, conv.normalize, conv.regularize, conv.regularize_rate)
            index += 1
        return x, index


@ENCODERS.register("conv_encode")
class ConvEncoder(_ConvBlock):
    """Convolutional encoder for signals, images and volumes; see the module docstring."""

    def __call__(self, x, tm: TensorMap):
        if self.conv.style != "plain":
            return STYLES.get(self.conv.style).encode(self, x, tm)
        rank, namer = conv_rank(tm), Namer(f"encode_{tm.name}")
        spatial = tuple(tm.shape[:-1])
        target = padded_shape(spatial, self.factors(rank))
        x = encoder_input(x, spatial, target, self.conv.template, namer)
        index = 0
        for width in self.conv.layers:
            x, index = self.convs(x, width, 1, rank, namer, index)
        for width in self.conv.stages:
            pool = self.conv.pool_size(rank)
            x = POOL[self.conv.pool_type][rank](pool, name=namer("pool"))(x)
            x, index = self.convs(x, width, self.conv.block_size, rank, namer, index)
        x = keras.layers.Flatten(name=namer("flatten"))(x)
        x = dense_stack(x, self.dense.hidden, self.dense, namer)
        return vector_dense(self.dense.latent_size, f"embed_{keras_safe(tm.name)}")(x)


@DECODERS.register("conv_decode")
class ConvDecoder(_ConvBlock):
    """Convolutional decoder mirroring :class:`ConvEncoder`; output shape always equals ``tm.shape``."""

    def __call__(self, latent, tm: TensorMap):
        if self.conv.style != "plain":
            return STYLES.get(self.conv.style).decode(self, latent, tm)
        rank, namer = conv_rank(tm), Namer(f"decode_{tm.name}")
        spatial = tuple(tm.shape[:-1])
        factors = self.factors(rank)
        padded = padded_shape(spatial, factors)
        widths = self.conv.widths(tm.shape[-1])
        bottleneck = (*(p // f for p, f in zip(padded, factors)), widths[-1])
        x = dense_stack(latent, self.dense.hidden[::-1], self.dense, namer)
        x = vector_dense(math.prod(bottleneck), namer("dense"))(x)
        x = keras.layers.Reshape(bottleneck, name=namer("reshape"))(x)
        index = 0
        for stage in reversed(range(len(self.conv.stages))):
            width = widths[stage]
            x, index = self.convs(x, width, self.conv.block_size, rank, namer, index)
            x = self.upsample(x, width, rank, namer)
        for width in self.conv.layers[::-1]:
            x, index = self.convs(x, width, 1, rank, namer, index)
        x = CONV[rank](tm.shape[-1], 1, activation=tm.activation, name=f"{namer.prefix}_output")(x)
        if padded != spatial:
            x = CROP[rank](_central_margins(spatial, padded), name=namer("crop"))(x)
        if self.conv.template:
            x = Template(name=namer("template"))(x)
        return x

    def upsample(self, x, width: int, rank: int, namer: Namer):
        pool = self.conv.pool_size(rank)
        if self.conv.upsample == "transpose":
            return TRANSPOSE[rank](width, pool, strides=pool, name=namer("upconv"))(x)
        return UPSAMPLE[rank](pool[0] if rank == 1 else pool, name=namer("upsample"))(x)
