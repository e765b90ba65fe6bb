"""``dense_encode`` / ``dense_decode``: dense blocks for vector TensorMaps (shape ``(n,)``).

Encoder: the hidden ``--dense_layers`` (dense -> norm -> activation -> regularization), then a linear dense
layer of the latent size named ``embed_<tm>``. Decoder: the hidden widths in reverse, then a dense layer of
``tm.shape[0]`` units with ``tm.activation`` (softmax for categorical maps).
"""

from __future__ import annotations

import keras

from ml4ge.models.blocks import DECODERS, ENCODERS, Namer, after_layer, check_layer_names
from ml4ge.tensormap import TensorMap, keras_safe


def dense_stack(x, widths, dense, namer: Namer):
    """Dense -> norm -> activation -> regularization for each width, configured by ``dense`` (a DenseConfig)."""
    for width in widths:
        x = keras.layers.Dense(width, name=namer("dense"))(x)
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
        return keras.layers.Dense(self.dense.latent_size, name=f"embed_{keras_safe(tm.name)}")(x)


@DECODERS.register("dense_decode")
class DenseDecoder(_DenseBlock):
    """Dense decoder for vector maps, ending in ``tm.shape[0]`` units with ``tm.activation``."""

    def __call__(self, latent, tm: TensorMap):
        namer = Namer(f"decode_{tm.name}")
        x = self.hidden(latent, self.dense.hidden[::-1], namer)
        return keras.layers.Dense(tm.shape[0], activation=tm.activation, name=f"{namer.prefix}_output")(x)
