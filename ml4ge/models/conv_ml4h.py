"""ml4h's convolutional encoder and decoder (``--conv_style ml4h``, the default), with ml4ge's fixes kept.

The same flags as ml4h (ml4h ``ml4h/models/conv_blocks.py``; REFERENCE_ML4H.md section 4.3) build the same layers:

Encoder: a residual stem over ``--conv_layers`` (each conv -> activation -> norm -> regularization; from the
second convolution on, a 1x1 convolution of its output to the first width is added to the previous output); then
per ``--dense_blocks`` width a pooling and a DenseNet block of ``--block_size`` convolutions (conv -> activation ->
regularization -> norm, each output concatenated to the block's input and earlier outputs, the last not); flatten;
``--dense_layers`` dense layers (dense -> activation -> regularization -> norm). The last dense layer is named
``embed_<tm>`` and the embedding is its *activated* output, as in ml4h.

Decoder (ml4h's ``ConvDecoderBlock``): dense to the bottleneck -> activation -> norm -> reshape, then per
``--dense_blocks`` width (in the encoder's order, not reversed) an upsampling and a DenseNet block, and a 1x1
convolution with ``tm.activation``. No dense hidden layers.

Kernels: the i-th convolution of the encoder (stem first, then one kernel per stage) uses the i-th entry of
``--conv_x/y/z`` (``--conv_width`` for 1-D maps), cycling through a shorter list as ml4h does; the decoder's
stages use the first entries. ``--conv_width`` does nothing for images and volumes (nor in ml4h).

Kept from ml4ge: shapes the pooling does not divide are zero-padded centrally and the output cropped centrally
(ml4h fails or gives a wrong shape); every activation is a new layer (ml4h shares one PReLU/LeakyReLU instance);
layer names carry the block and TensorMap; the optional template centring and decoder template. A DenseNet
convolution of the concatenated block input and earlier outputs is computed as the sum of one convolution per piece
(:func:`conv_of_concatenation`): ml4h's function and parameter count without the concatenated copies, which
training would keep for the backward pass (a fifth of the peak memory at 64^3).
"""

from __future__ import annotations

import math

import keras

from ml4ge.models.blocks import ACTIVATIONS, NORMALIZATIONS, REGULARIZATIONS, Namer
from ml4ge.models.conv import (
    CONV,
    CROP,
    POOL,
    STYLES,
    UPSAMPLE,
    _central_margins,
    conv_rank,
    encoder_input,
    padded_shape,
)
from ml4ge.models.dense import vector_dense
from ml4ge.models.layers import Template
from ml4ge.tensormap import TensorMap, keras_safe

# After a convolution or dense layer: the order of activation (a), normalization (n) and regularization (r).
STEM_ORDER = "anr"  # ml4h's Residual
BLOCK_ORDER = "arn"  # ml4h's DenseConvolutional and FullyConnected


def post(x, namer: Namer, rank: int, config, order: str):
    """Activation, normalization and regularization of ``config`` (a ConvConfig or DenseConfig) in ``order``."""
    for step in order:
        if step == "a" and config.activation:
            x = ACTIVATIONS.get(config.activation)(namer("act"), rank)(x)
        elif step == "n" and config.normalize:
            x = NORMALIZATIONS.get(config.normalize)(namer("norm"), rank)(x)
        elif step == "r" and config.regularize and config.regularize_rate > 0:
            x = REGULARIZATIONS.get(config.regularize)(namer("reg"), rank, config.regularize_rate)(x)
    return x


def kernels(conv, rank: int, count: int) -> list[tuple[int, ...]]:
    """The kernels of ``count`` convolutions, cycling through each axis's list (ml4h's ``_repeat_dimension``)."""
    per_axis = (conv.kernel_1d,) if rank == 1 else (conv.kernel_x, conv.kernel_y, conv.kernel_z)[:rank]
    return [tuple(sizes[i % len(sizes)] for sizes in per_axis) for i in range(count)]


def residual_stem(x, conv, stem_kernels, rank: int, namer: Namer):
    """ml4h's ``Residual``: conv -> act -> norm -> reg; from the 2nd conv, add a 1x1 conv of it to the previous."""
    previous = x
    for index, (width, kernel) in enumerate(zip(conv.layers, stem_kernels)):
        x = CONV[rank](width, kernel, padding="same", name=namer("conv"))(previous)
        x = post(x, namer, rank, conv, STEM_ORDER)
        if index:
            shortcut = CONV[rank](conv.layers[0], 1, name=namer("residual"))(x)
            x = keras.layers.Add(name=namer("add"))([shortcut, previous])
        previous = x
    return x


def glorot_limit(kernel: tuple[int, ...], channels_in: int, width: int) -> float:
    """Glorot-uniform's bound for a ``kernel`` convolution from ``channels_in`` to ``width`` channels."""
    receptive = math.prod(kernel)
    return math.sqrt(6.0 / (receptive * channels_in + receptive * width))


def conv_of_concatenation(pieces, width: int, kernel: tuple[int, ...], rank: int, namer: Namer):
    """A convolution of the channel concatenation of ``pieces``, as a sum of one convolution per piece.

    conv(concat(p_1, ..., p_n), W) + b = conv(p_1, W_1) + b + ... + conv(p_n, W_n), W_i the kernel's rows of p_i:
    the same function, parameters and FLOPs as ml4h's concatenate-then-convolve, but no concatenated copy of the
    pieces is made, so training does not keep one per convolution for its backward pass (at 64^3 that was a fifth of
    the peak memory). Each piece's kernel draws from Glorot-uniform's bound of the whole kernel, as ml4h's one
    kernel does. The first convolution (named ``conv``, holding the bias) reads the block's input, the others
    (``conv_part``) the earlier outputs; stock Keras layers only, so that encoder files load without ml4ge.
    """
    if len(pieces) == 1:
        return CONV[rank](width, kernel, padding="same", name=namer("conv"))(pieces[0])
    limit = glorot_limit(kernel, sum(piece.shape[-1] for piece in pieces), width)
    parts = []
    for index, piece in enumerate(pieces):
        layer = CONV[rank](width, kernel, padding="same", use_bias=index == 0,
                           kernel_initializer=keras.initializers.RandomUniform(-limit, limit),
                           name=namer("conv_part" if index else "conv"))
        parts.append(layer(piece))
    return keras.layers.Add(name=namer("sum"))(parts)


def dense_conv_block(x, conv, width: int, kernel: tuple[int, ...], rank: int, namer: Namer):
    """ml4h's ``DenseConvolutional``: ``block_size`` convs, each reading the block's input and every earlier output
    but the last (ml4h concatenates them; :func:`conv_of_concatenation` computes the same without the copy)."""
    pieces = [x]
    for _ in range(conv.block_size):
        x = conv_of_concatenation(pieces, width, kernel, rank, namer)
        x = post(x, namer, rank, conv, BLOCK_ORDER)
        pieces.append(x)
    return x


def encode(block, x, tm: TensorMap):
    """The encoder of the module docstring; ``block`` is a :class:`ml4ge.models.conv.ConvEncoder`."""
    conv, dense = block.conv, block.dense
    rank, namer = conv_rank(tm), Namer(f"encode_{tm.name}")
    spatial = tuple(tm.shape[:-1])
    x = encoder_input(x, spatial, padded_shape(spatial, block.factors(rank)), conv.template, namer)
    all_kernels = kernels(conv, rank, len(conv.layers) + len(conv.stages))
    x = residual_stem(x, conv, all_kernels[:len(conv.layers)], rank, namer)
    for width, kernel in zip(conv.stages, all_kernels[len(conv.layers):]):
        x = POOL[conv.pool_type][rank](conv.pool_size(rank), name=namer("pool"))(x)
        x = dense_conv_block(x, conv, width, kernel, rank, namer)
    x = keras.layers.Flatten(name=namer("flatten"))(x)
    for width in dense.hidden:
        x = post(vector_dense(width, namer("dense"))(x), namer, 0, dense, BLOCK_ORDER)
    x = vector_dense(dense.latent_size, f"embed_{keras_safe(tm.name)}")(x)
    return post(x, namer, 0, dense, BLOCK_ORDER)


def decode(block, latent, tm: TensorMap):
    """ml4h's ``ConvDecoderBlock`` (module docstring); ``block`` is a :class:`ml4ge.models.conv.ConvDecoder`."""
    conv = block.conv
    rank, namer = conv_rank(tm), Namer(f"decode_{tm.name}")
    spatial = tuple(tm.shape[:-1])
    factors = block.factors(rank)
    padded = padded_shape(spatial, factors)
    start = (*(p // f for p, f in zip(padded, factors)), conv.widths(tm.shape[-1])[-1])
    x = vector_dense(math.prod(start), namer("dense"))(latent)
    x = post(x, namer, 0, conv, "an")  # ml4h's FlatToStructure: activation then norm, no regularization
    x = keras.layers.Reshape(start, name=namer("reshape"))(x)
    pool = conv.pool_size(rank)
    for width, kernel in zip(conv.stages, kernels(conv, rank, len(conv.stages))):
        x = UPSAMPLE[rank](pool[0] if rank == 1 else pool, name=namer("upsample"))(x)
        x = dense_conv_block(x, conv, width, kernel, rank, namer)
    x = CONV[rank](tm.shape[-1], 1, activation=tm.activation, name=f"{namer.prefix}_output")(x)
    if padded != spatial:
        x = CROP[rank](_central_margins(spatial, padded), name=namer("crop"))(x)
    if conv.template:
        x = Template(name=namer("template"))(x)
    return x


class _Ml4hStyle:
    encode = staticmethod(encode)
    decode = staticmethod(decode)


STYLES.register("ml4h", _Ml4hStyle)
