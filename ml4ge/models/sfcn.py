"""``sfcn_encode``: the Simple Fully Convolutional Network of Peng et al. (MedIA 2021) as an encoder block.

Per stage: conv 3 (``same``) -> BatchNorm -> max-pool 2 -> ReLU, at the widths of ``config.sfcn.channels``
(the seed's 32, 64, 128, 256, 256); then conv 1 (``config.sfcn.bottleneck``, 64) -> BatchNorm -> ReLU, global
average pooling (the seed's AvgPool3d(5, 6, 5) over its 5x6x5 map at 160x192x160) and dropout (0.5). The
embedding (``embed_<tm>``) is the pooled ``bottleneck``-vector; SFCN's head is the ``soft_label`` decoder block
(:mod:`ml4ge.models.soft_label`). The rank (1-D signal, 2-D image, 3-D volume) comes from the TensorMap's shape,
as for ``conv_encode``. BatchNorm uses PyTorch's defaults (momentum 0.1, i.e. Keras 0.9; epsilon 1e-5).

Use it with ``--encoder_blocks sfcn_encode --decoder_blocks soft_label`` (any supervised family that builds
encoders -> head from the registries can), or ``--model_preset sfcn`` for the seed's sizes and optimisation.
At 160x192x160 with 40 bins the model has 2,952,936 trainable parameters (the seed's "about 3 M"; its PyTorch
count is the same: convolutions with biases, BatchNorm scales and shifts, the head).
"""

from __future__ import annotations

import keras

from ml4ge.models.blocks import ENCODERS, Namer, after_layer
from ml4ge.models.conv import CONV, POOL
from ml4ge.models.sfcn_config import SFCNConfig
from ml4ge.tensormap import TensorMap, keras_safe

GLOBAL_POOL = {1: keras.layers.GlobalAveragePooling1D, 2: keras.layers.GlobalAveragePooling2D,
               3: keras.layers.GlobalAveragePooling3D}


@ENCODERS.register("sfcn_encode")
class SFCNEncoder:
    """SFCN's feature extractor for signals, images and volumes; see the module docstring."""

    def __init__(self, sfcn: SFCNConfig):
        self.sfcn = sfcn

    @classmethod
    def from_config(cls, config) -> SFCNEncoder:
        return cls(config.sfcn)

    def can_apply(self, tm: TensorMap) -> bool:
        return 2 <= len(tm.shape) <= 4

    def check(self, tm: TensorMap) -> None:
        """Every spatial axis must survive the stages' poolings (each halves it, rounding down).

        Raises:
            ValueError: naming the axis and the number of stages that fit.
        """
        smallest = min(tm.shape[:-1])
        if smallest < 2 ** len(self.sfcn.channels):
            raise ValueError(f"sfcn_encode: {tm.name!r} of shape {tm.shape} is too small for "
                             f"{len(self.sfcn.channels)} stages of 2x pooling (each axis needs at least "
                             f"{2 ** len(self.sfcn.channels)} voxels); give fewer --sfcn_channels.")

    def __call__(self, x, tm: TensorMap):
        self.check(tm)
        rank, namer = len(tm.shape) - 1, Namer(f"encode_{tm.name}")
        for width in self.sfcn.channels:
            x = CONV[rank](width, 3, padding="same", name=namer("conv"))(x)
            x = after_layer(x, namer, rank, None, "batch_norm")
            x = POOL["max"][rank](2, name=namer("pool"))(x)
            x = after_layer(x, namer, rank, "relu")
        x = CONV[rank](self.sfcn.bottleneck, 1, name=namer("conv"))(x)
        x = after_layer(x, namer, rank, "relu", "batch_norm")
        x = GLOBAL_POOL[rank](name=namer("global_pool"))(x)
        return keras.layers.Dropout(self.sfcn.dropout, name=f"embed_{keras_safe(tm.name)}")(x)
