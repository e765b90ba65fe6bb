"""Layers of the vision-transformer blocks, in ``keras.ops`` for every Keras backend, registered so that a saved
model loads in safe mode: token selection, fixed sine-cosine position codes, pre-LayerNorm transformer blocks and
putting decoded patches back in place.

Tokens are the patches of a grid flattened in row-major (C) order, the order in which ``keras.layers.Reshape``
flattens a patch-embedding convolution's output: token ``n`` is the patch at ``np.unravel_index(n, grid)``.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

# Truncated normal initialisation of the seed (I-JEPA / V-JEPA): std 0.02 for every linear and patch layer.
INIT_STD = 0.02
# LayerNorm epsilon of the seed's transformer blocks (MAE / I-JEPA style).
NORM_EPSILON = 1e-6


def initializer(scale: float = 1.0):
    """Truncated normal with std ``0.02 * scale`` (output projections of block i use scale 1/sqrt(2 i))."""
    return keras.initializers.TruncatedNormal(stddev=INIT_STD * scale)


def axis_widths(width: int, rank: int) -> tuple[int, ...]:
    """How a code of ``width`` is shared among ``rank`` axes: even parts, as equal as possible, extra to the first.

    Example:
        >>> axis_widths(128, 3)
        (44, 42, 42)
    """
    base = width // rank // 2 * 2
    if base < 2:
        raise ValueError(f"position codes of width {width} cannot give {rank} axes 2 dimensions each.")
    return (width - base * (rank - 1), *([base] * (rank - 1)))


def sincos_1d(positions: np.ndarray, width: int) -> np.ndarray:
    """``[sin(p w_k), cos(p w_k)]``, k < width / 2, ``w_k = 10000^(-2k / width)``: ``[len(positions), width]``."""
    half = width // 2
    omega = 1.0 / 10000 ** (np.arange(half, dtype=np.float64) / half)
    angles = np.outer(np.asarray(positions, dtype=np.float64), omega)
    codes = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    return np.pad(codes, ((0, 0), (0, width - 2 * half)))


def sincos_codes(grid: tuple[int, ...], width: int) -> np.ndarray:
    """Fixed position codes of every token of ``grid``, ``[prod(grid), width]``, row ``n`` for token ``n``.

    Each axis gets its own 1-D sine-cosine code of the token's coordinate on that axis (axis 0 first, widths from
    :func:`axis_widths`); rows follow the row-major flatten order of the tokens (the seed's meshgrid order did not).

    Example:
        >>> sincos_codes((2, 3), 8).shape
        (6, 8)
    """
    coordinates = np.unravel_index(np.arange(math.prod(grid)), grid)
    parts = [sincos_1d(c, w) for c, w in zip(coordinates, axis_widths(width, len(grid)))]
    return np.concatenate(parts, axis=1).astype(np.float32)


def _indices(indices, count: int) -> list[int]:
    indices = list(range(count)) if indices is None else [int(i) for i in indices]
    if not indices or min(indices) < 0 or max(indices) >= count:
        raise ValueError(f"token indices must be within [0, {count}), got {len(indices)} from "
                         f"{min(indices, default=None)} to {max(indices, default=None)}.")
    return indices


@keras.saving.register_keras_serializable(package="ml4ge")
class KeepTokens(keras.layers.Layer):
    """The tokens ``indices`` of ``[B, N, E]`` tokens, in that order: ``[B, K, E]``.

    Args:
        indices: flat token indices (``None``: all ``count`` tokens).
        count: tokens of the full grid.
    """

    def __init__(self, indices, count: int, **kwargs):
        super().__init__(**kwargs)
        self.count = int(count)
        self.indices = _indices(indices, self.count)

    def call(self, tokens):
        return ops.take(tokens, np.asarray(self.indices, dtype="int32"), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.indices), input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "indices": self.indices, "count": self.count}


@keras.saving.register_keras_serializable(package="ml4ge")
class AddPositions(keras.layers.Layer):
    """Adds the fixed codes (:func:`sincos_codes`) of the kept tokens to ``[B, K, E]`` tokens.

    Args:
        grid: patches per axis.
        indices: the kept tokens' flat indices (``None``: all).
    """

    def __init__(self, grid, indices=None, **kwargs):
        super().__init__(**kwargs)
        self.grid = tuple(int(g) for g in grid)
        self.indices = _indices(indices, math.prod(self.grid))

    def codes(self, width: int) -> np.ndarray:
        return sincos_codes(self.grid, width)[self.indices]

    def call(self, tokens):
        return tokens + ops.cast(self.codes(tokens.shape[-1]), tokens.dtype)[None]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "grid": list(self.grid), "indices": self.indices}


@keras.saving.register_keras_serializable(package="ml4ge")
class LatentBeforePositions(AddPositions):
    """``[B, E]`` latent -> ``[B, 1 + K, E]``: the latent as the first token, then the kept tokens' fixed codes
    (the decoder's "empty" patch tokens: no learned mask token)."""

    def call(self, latent):
        codes = ops.cast(self.codes(latent.shape[-1]), latent.dtype)
        batch = ops.shape(latent)[0]
        positions = ops.broadcast_to(codes[None], (batch, len(self.indices), latent.shape[-1]))
        return ops.concatenate([latent[:, None, :], positions], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1 + len(self.indices), input_shape[-1])


@keras.saving.register_keras_serializable(package="ml4ge")
class DropFirstToken(keras.layers.Layer):
    """``[B, 1 + K, E]`` -> ``[B, K, E]``: the decoder's patch tokens without the latent token before them."""

    def call(self, tokens):
        return tokens[:, 1:]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None if input_shape[1] is None else input_shape[1] - 1, input_shape[-1])


@keras.saving.register_keras_serializable(package="ml4ge")
class TransformerBlock(keras.layers.Layer):
    """Pre-LayerNorm transformer block: ``x + proj(attention(LN(x)))``, then ``x + fc2(gelu(fc1(LN(x))))``.

    Multi-head self-attention with a qkv bias through ``keras.ops.dot_product_attention`` (a fused kernel where the
    backend and device have one); MLP of ``mlp_ratio * width`` with exact GELU; no dropout. Weights start truncated
    normal (std 0.02), biases at zero; the two output projections (attention and ``fc2``) are scaled by
    ``1 / sqrt(2 * layer_index)`` (layer_index counts from 1), as in I-JEPA / V-JEPA.

    Args:
        width: token width; heads: attention heads (dividing ``width``); mlp_ratio: MLP expansion;
        layer_index: position of the block in its stack, from 1.

    Example:
        >>> tuple(TransformerBlock(64, 4, 4, 1)(keras.ops.ones((2, 10, 64))).shape)
        (2, 10, 64)
    """

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4, layer_index: int = 1, **kwargs):
        super().__init__(**kwargs)
        if width % heads or layer_index < 1:
            raise ValueError(f"TransformerBlock needs heads ({heads}) dividing width ({width}) and layer_index >= 1, "
                             f"got layer_index {layer_index}.")
        self.width, self.heads, self.mlp_ratio, self.layer_index = int(width), int(heads), int(mlp_ratio), layer_index
        scale = 1.0 / math.sqrt(2.0 * layer_index)
        self.norm1 = keras.layers.LayerNormalization(epsilon=NORM_EPSILON, name="norm1")
        self.qkv = keras.layers.Dense(3 * width, kernel_initializer=initializer(), name="qkv")
        self.proj = keras.layers.Dense(width, kernel_initializer=initializer(scale), name="proj")
        self.norm2 = keras.layers.LayerNormalization(epsilon=NORM_EPSILON, name="norm2")
        self.fc1 = keras.layers.Dense(mlp_ratio * width, kernel_initializer=initializer(), name="fc1")
        self.fc2 = keras.layers.Dense(width, kernel_initializer=initializer(scale), name="fc2")

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.qkv.build(input_shape)
        self.proj.build(input_shape)
        self.norm2.build(input_shape)
        self.fc1.build(input_shape)
        self.fc2.build((*input_shape[:-1], self.mlp_ratio * self.width))

    def attention(self, x):
        batch, tokens = ops.shape(x)[0], x.shape[1]
        qkv = ops.reshape(self.qkv(x), (batch, tokens, 3, self.heads, self.width // self.heads))
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        attended = ops.dot_product_attention(query, key, value)
        return self.proj(ops.reshape(attended, (batch, tokens, self.width)))

    def call(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(keras.activations.gelu(self.fc1(self.norm2(x)), approximate=False))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads, "mlp_ratio": self.mlp_ratio,
                "layer_index": self.layer_index}


def patchify(x, patch: tuple[int, ...]):
    """``[B, *grid * patch, C]`` -> ``[B, prod(grid), prod(patch) * C]``: row-major tokens, each patch's voxels in
    row-major order then channel (the layout :class:`PlacePatches` undoes). Spatial sizes must be multiples."""
    spatial, channels, rank = tuple(x.shape[1:-1]), x.shape[-1], len(patch)
    grid = tuple(s // p for s, p in zip(spatial, patch))
    split = [v for pair in zip(grid, patch) for v in pair]
    x = ops.reshape(x, (-1, *split, channels))
    order = [0, *range(1, 2 * rank, 2), *range(2, 2 * rank + 1, 2), 2 * rank + 1]
    return ops.reshape(ops.transpose(x, order), (-1, math.prod(grid), math.prod(patch) * channels))


@keras.saving.register_keras_serializable(package="ml4ge")
class PlacePatches(keras.layers.Layer):
    """``[B, K, prod(patch) * C]`` decoded patches of the kept tokens -> ``[B, *grid * patch, C]``; patches of
    tokens not kept are zero.

    Args:
        grid: patches per axis; patch: voxels per patch and axis; channels: C;
        indices: the kept tokens' flat indices, in the order of the input (``None``: all).
    """

    def __init__(self, grid, patch, channels: int, indices=None, **kwargs):
        super().__init__(**kwargs)
        self.grid, self.patch = tuple(int(g) for g in grid), tuple(int(p) for p in patch)
        self.channels = int(channels)
        self.indices = _indices(indices, math.prod(self.grid))

    def source(self) -> np.ndarray:
        """For every grid token, its row in the input, or K (a zero row) for a token not kept."""
        source = np.full(math.prod(self.grid), len(self.indices), dtype="int32")
        source[self.indices] = np.arange(len(self.indices), dtype="int32")
        return source

    def call(self, patches):
        zeros = ops.zeros_like(patches[:, :1])
        tokens = ops.take(ops.concatenate([patches, zeros], axis=1), self.source(), axis=1)
        rank = len(self.grid)
        x = ops.reshape(tokens, (-1, *self.grid, *self.patch, self.channels))
        order = [0, *[v for axis in range(rank) for v in (1 + axis, 1 + rank + axis)], 2 * rank + 1]
        spatial = tuple(g * p for g, p in zip(self.grid, self.patch))
        return ops.reshape(ops.transpose(x, order), (-1, *spatial, self.channels))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *(g * p for g, p in zip(self.grid, self.patch)), self.channels)

    def get_config(self):
        return {**super().get_config(), "grid": list(self.grid), "patch": list(self.patch),
                "channels": self.channels, "indices": self.indices}
