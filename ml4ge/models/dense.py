"""``dense_encode`` / ``dense_decode``: dense blocks for vector TensorMaps (shape ``(n,)``).

Encoder: the hidden ``--dense_layers`` (dense -> norm -> activation -> regularization), then a linear dense
layer of the latent size named ``embed_<tm>``. Decoder: the hidden widths in reverse, then a dense layer of
``tm.shape[0]`` units with ``tm.activation`` (softmax for categorical maps).
"""

from __future__ import annotations

import keras

from ml4ge.models.blocks import DECODERS, ENCODERS, Namer, after_layer, check_layer_names
from ml4ge.tensormap import TensorMap, keras_safe

# The dtype of the dense layers on one vector per sample: float32 also under mixed precision. Their weights outweigh
# their activations (the layer between a flattened 64^3 volume and the embedding holds tens of millions of weights and
# one vector per sample), so a half-precision copy of the kernel and of its gradient at every step costs more memory
# than the float32 product costs time: 0.12 GB less peak memory for ml4h's architecture at 64^3 in bfloat16, at the
# same CPU time (docs/ml4h_differences.md).
VECTOR_DTYPE = "float32"


def vector_dense(width: int, name: str, **kwargs) -> keras.layers.Dense:
    """A Dense layer on one vector per sample, computing in :data:`VECTOR_DTYPE`."""
    return keras.layers.Dense(width, name=name, dtype=VECTOR_DTYPE, **kwargs)


def dense_stack(x, widths, dense, namer: Namer):
    """Dense -> norm -> activation -> regularization for each width, configured by ``dense`` (a DenseConfig)."""
    for width in widths:
        x = vector_dense(width, namer("dense"))(x)
        x = after_layer(x, namer, 0, dense.activation, dense.normalize, dense.regularize, dense.regularize_rate)
    return x


class _DenseBlock:
    def __init__(self, dense):
        check_layer_names(dense.activation, dense.normalize, dense.regularize)
        self.dense = dense

    @classmethod
    def from_config(cls, config):
        return cls(config.dense)

    def can_apply(self, tm: TensorMap) -> bool:
        return len(tm.shape) == 1

    def hidden(self, x, widths, namer: Namer):
        return dense_stack(x, widths, self.dense, namer)


@ENCODERS.register("dense_encode")
class DenseEncoder(_DenseBlock):
    """Dense encoder for vector maps; the embedding is the linear last layer."""

    def __call__(self, x, tm: TensorMap):
        x = self.hidden(x, self.dense.hidden, Namer(f"encode_{tm.name}"))
        return vector_dense(self.dense.latent_size, f"embed_{keras_safe(tm.name)}")(x)


@DECODERS.register("dense_decode")
class DenseDecoder(_DenseBlock):
    """Dense decoder for vector maps, ending in ``tm.shape[0]`` units with ``tm.activation``."""

    def __call__(self, latent, tm: TensorMap):
        namer = Namer(f"decode_{tm.name}")
        x = self.hidden(latent, self.dense.hidden[::-1], namer)
        return vector_dense(tm.shape[0], f"{namer.prefix}_output", activation=tm.activation)(x)
