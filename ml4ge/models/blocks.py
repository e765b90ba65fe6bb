"""Block registries (encoders, merges, decoders), the block protocol, and the small layer look-ups they share.

A block is a class registered by name. The factory makes one with ``Block.from_config(model_config)``: the block
picks the typed sub-configs it needs (a conv encoder takes ``config.conv`` and ``config.dense``) and nothing else.

* Encoder and decoder blocks: ``can_apply(tm) -> bool`` and ``__call__(x, tm) -> tensor``; an encoder maps
  ``tm.shape`` to a flat embedding, a decoder maps the fused latent to ``tm.shape``. For each TensorMap the
  factory uses the first block of the list that can apply (``conv_encode`` passes over vectors, for example).
* Merge blocks: ``can_apply(input_tmaps) -> bool`` and ``__call__(embeddings: dict[name, tensor]) -> tensor``.
  A merge block creates its layers once and wires the same layers on every call: the family wires it in the
  model's own graph (so that metrics of its layers, such as the pair loss, are reported by the model; Keras does
  not report metrics of nested models) and again for the stand-alone merger and for fusing at inference.

Activations, normalizations and regularizations are looked up by name in the registries; each use makes a new
layer. PyTorch defaults are used where UDIP relies on
them: LeakyReLU slope 0.01, BatchNorm momentum 0.9 (PyTorch 0.1) and epsilon 1e-5.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

import keras

from ml4ge.models.registries import ACTIVATIONS, DECODERS, ENCODERS, MERGES, NORMALIZATIONS, REGULARIZATIONS
from ml4ge.tensormap import TensorMap, keras_safe

__all__ = [
    "ACTIVATIONS", "DECODERS", "ENCODERS", "MERGES", "NORMALIZATIONS", "REGULARIZATIONS", "DecoderBlock",
    "EncoderBlock", "MergeBlock", "Namer", "after_layer", "check_layer_names",
]


class EncoderBlock(Protocol):
    """Maps one input TensorMap's tensor to a flat embedding ``[B, D]``."""

    @classmethod
    def from_config(cls, config) -> EncoderBlock: ...

    def can_apply(self, tm: TensorMap) -> bool: ...

    def __call__(self, x, tm: TensorMap): ...


class DecoderBlock(Protocol):
    """Maps the fused latent ``[B, D]`` to one output TensorMap's shape."""

    @classmethod
    def from_config(cls, config) -> DecoderBlock: ...

    def can_apply(self, tm: TensorMap) -> bool: ...

    def __call__(self, latent, tm: TensorMap): ...


class MergeBlock(Protocol):
    """Fuses the embeddings of all inputs (keyed by TensorMap name) into one latent ``[B, D]``."""

    @classmethod
    def from_config(cls, config) -> MergeBlock: ...

    def can_apply(self, input_tmaps: list[TensorMap]) -> bool: ...

    def __call__(self, embeddings: dict): ...


def _keras_activation(activation: str) -> Callable:
    return lambda name, rank: keras.layers.Activation(activation, name=name)


for _name in ("relu", "swish", "silu", "gelu", "elu", "selu", "tanh", "sigmoid", "softplus", "linear", "mish"):
    ACTIVATIONS.register(_name, _keras_activation(_name))
ACTIVATIONS.register("leaky_relu", lambda name, rank: keras.layers.LeakyReLU(negative_slope=0.01, name=name))
ACTIVATIONS.register(
    "prelu", lambda name, rank: keras.layers.PReLU(shared_axes=list(range(1, rank + 1)) or None, name=name)
)

NORMALIZATIONS.register(
    "batch_norm", lambda name, rank: keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)
)
NORMALIZATIONS.register("layer_norm", lambda name, rank: keras.layers.LayerNormalization(epsilon=1e-5, name=name))
NORMALIZATIONS.register(
    "instance_norm", lambda name, rank: keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)
)

_SPATIAL_DROPOUT = {
    1: keras.layers.SpatialDropout1D, 2: keras.layers.SpatialDropout2D, 3: keras.layers.SpatialDropout3D
}
REGULARIZATIONS.register("dropout", lambda name, rank, rate: keras.layers.Dropout(rate, name=name))
REGULARIZATIONS.register(
    "spatial_dropout",
    lambda name, rank, rate: _SPATIAL_DROPOUT.get(rank, keras.layers.Dropout)(rate, name=name),
)
REGULARIZATIONS.register("gaussian_noise", lambda name, rank, rate: keras.layers.GaussianNoise(rate, name=name))


class Namer:
    """Unique, readable layer names under one prefix: ``encode_t1_conv_0``, ``encode_t1_conv_1``, ...

    Prefixing every layer with its block and TensorMap keeps names unique when models are joined.
    """

    def __init__(self, prefix: str):
        self.prefix = keras_safe(prefix)
        self._counts: dict[str, int] = defaultdict(int)

    def __call__(self, kind: str) -> str:
        index = self._counts[kind]
        self._counts[kind] += 1
        return f"{self.prefix}_{kind}_{index}"


def after_layer(x, namer: Namer, rank: int, activation: str | None, normalize: str | None = None,
                regularize: str | None = None, rate: float = 0.0):
    """Normalize, activate and regularize ``x``, in that order (UDIP's conv -> BN -> LeakyReLU).

    Args:
        x: output of a convolution or dense layer.
        namer: names the new layers.
        rank: spatial axes of ``x`` (0 for vectors).
        activation, normalize, regularize: registry names or None to skip.
        rate: rate of the regularization.

    Returns:
        The transformed tensor.

    Raises:
        UnknownNameError: for a name no registry knows, with the closest names.
    """
    if normalize:
        x = NORMALIZATIONS.get(normalize)(namer("norm"), rank)(x)
    if activation:
        x = ACTIVATIONS.get(activation)(namer("act"), rank)(x)
    if regularize and rate > 0:
        x = REGULARIZATIONS.get(regularize)(namer("reg"), rank, rate)(x)
    return x


def check_layer_names(activation: str | None, normalize: str | None, regularize: str | None) -> None:
    """Fail before building anything when a layer name is unknown.

    Raises:
        UnknownNameError: with the closest registered names.
    """
    for registry, name in ((ACTIVATIONS, activation), (NORMALIZATIONS, normalize), (REGULARIZATIONS, regularize)):
        if name:
            registry.get(name)
