"""``vit_encode`` / ``vit_decode``: the vision-transformer autoencoder of UDIP-ViT (REFERENCE_SEEDS.md section B)
for 1-D signals, 2-D images and 3-D volumes, the rank taken from the TensorMap's shape.

Encoder: central zero-pad to a multiple of the patch, patch embedding by a convolution with kernel = stride =
patch, tokens flattened row-major, only the kept tokens (``config.vit.kept_tokens``: those whose patch holds brain
in the training masks; all tokens when not given), plus fixed sine-cosine codes of their grid positions, pre-LN
transformer blocks, a final LayerNorm, and the mean over the kept tokens: the latent (``embed_<tm>``, of size
``vit.width``).

Decoder: a linear map of the latent to one token of ``vit.decoder_width``, followed by the fixed codes of the kept
patches at that width (no learned mask token), pre-LN blocks, LayerNorm, the latent token dropped, a linear map
(``tm.activation``) to each patch's voxels, the patches put back in place (patches not kept are zero) and a central
crop back to ``tm.shape``.

Tokens outside the kept set are never computed nor attended to, so a model's cost scales with the kept tokens;
the set is part of the model's config (and so of its saved ``.keras`` file).

Two optional block hooks carry this into training without the train recipe knowing about ViTs:
``prepare(config, train_paths, tmaps)`` (before building: the kept tokens of each masked map from the union of
the training masks) and ``training_loss(tm)`` (the decoder trains a masked map with the patch-masked MSE of
UDIP-ViT instead of the voxel-level ``masked_mse`` default).
"""

from __future__ import annotations

import logging
import math

import keras

from ml4ge.models.blocks import DECODERS, ENCODERS, Namer
from ml4ge.models.conv import CONV, CentralCropPad
from ml4ge.models.vit_layers import (
    NORM_EPSILON,
    AddPositions,
    DropFirstToken,
    KeepTokens,
    LatentBeforePositions,
    PlacePatches,
    TransformerBlock,
    initializer,
)
from ml4ge.models.vit_loss import PatchMaskedMeanSquaredError
from ml4ge.models.vit_tokens import with_brain_tokens
from ml4ge.tensormap import TensorMap, keras_safe

log = logging.getLogger(__name__)


def vit_rank(tm: TensorMap) -> int:
    """Spatial axes of ``tm``: shape ``(L, C)`` -> 1, ``(H, W, C)`` -> 2, ``(H, W, D, C)`` -> 3."""
    return len(tm.shape) - 1


class _ViTBlock:
    def __init__(self, vit):
        self.vit = vit

    @classmethod
    def from_config(cls, config):
        return cls(config.vit)

    def can_apply(self, tm: TensorMap) -> bool:
        return 2 <= len(tm.shape) <= 4

    @classmethod
    def prepare(cls, config, train_paths, tmaps):
        """``config`` whose ViT keeps, for each masked map of ``tmaps`` it applies to, the patches holding brain in
        the union of the masks of ``train_paths`` (the training split), read once: a map that already has a kept
        set (the other ViT block of an autoencoder prepared it) keeps it."""
        block = cls.from_config(config)
        new = [tm for tm in tmaps if block.can_apply(tm) and tm.mask is not None and config.vit.kept(tm.name) is None]
        for tm in new:
            if tm.augmentations:
                log.warning("ViT %s: its brain tokens come from the training masks without augmentation; brain an "
                            "augmentation moves out of them is not seen by the encoder, is predicted as 0 and still "
                            "counts in the patch loss. Keep augmentations within the kept patches.", tm.name)
        return with_brain_tokens(config, train_paths, new) if new else config

    def layout(self, tm: TensorMap) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], list[int] | None]:
        """``(patch, grid, padded spatial shape, kept token indices or None)`` of ``tm``."""
        spatial = tuple(tm.shape[:-1])
        patch = self.vit.patch_size(len(spatial))
        grid = self.vit.grid(spatial)
        kept = self.vit.kept(tm.name)
        return patch, grid, tuple(g * p for g, p in zip(grid, patch)), None if kept is None else list(kept)

    def blocks(self, x, width: int, depth: int, heads: int, namer: Namer):
        for index in range(1, depth + 1):
            x = TransformerBlock(width, heads, self.vit.mlp_ratio, index, name=namer("block"))(x)
        return keras.layers.LayerNormalization(epsilon=NORM_EPSILON, name=namer("norm"))(x)


@ENCODERS.register("vit_encode")
class ViTEncoder(_ViTBlock):
    """Vision-transformer encoder; see the module docstring. Output ``[B, vit.width]``."""

    def __call__(self, x, tm: TensorMap):
        namer, rank = Namer(f"encode_{tm.name}"), vit_rank(tm)
        patch, grid, padded, kept = self.layout(tm)
        if padded != tuple(tm.shape[:-1]):
            x = CentralCropPad(padded, name=namer("pad"))(x)
        x = CONV[rank](self.vit.width, patch, strides=patch, kernel_initializer=initializer(),
                       name=namer("patch_embed"))(x)
        x = keras.layers.Reshape((math.prod(grid), self.vit.width), name=namer("tokens"))(x)
        x = KeepTokens(kept, math.prod(grid), name=namer("keep"))(x)
        x = AddPositions(grid, kept, name=namer("positions"))(x)
        x = self.blocks(x, self.vit.width, self.vit.depth, self.vit.heads, namer)
        return keras.layers.GlobalAveragePooling1D(name=f"embed_{keras_safe(tm.name)}")(x)


@DECODERS.register("vit_decode")
class ViTDecoder(_ViTBlock):
    """Vision-transformer decoder; see the module docstring. Output ``tm.shape``."""

    def training_loss(self, tm: TensorMap):
        """The loss ``tm`` trains with: the patch-masked MSE at this block's patch size in place of the voxel-level
        ``masked_mse`` (the default of masked continuous maps); any other loss of ``tm`` as it is."""
        return PatchMaskedMeanSquaredError(self.vit.patch) if tm.loss == "masked_mse" else tm.loss

    def __call__(self, latent, tm: TensorMap):
        namer, channels = Namer(f"decode_{tm.name}"), tm.shape[-1]
        patch, grid, padded, kept = self.layout(tm)
        x = keras.layers.Dense(self.vit.decoder_width, kernel_initializer=initializer(), name=namer("embed"))(latent)
        x = LatentBeforePositions(grid, kept, name=namer("positions"))(x)
        x = self.blocks(x, self.vit.decoder_width, self.vit.decoder_depth, self.vit.decoder_heads, namer)
        x = DropFirstToken(name=namer("patch_tokens"))(x)
        x = keras.layers.Dense(math.prod(patch) * channels, activation=tm.activation, kernel_initializer=initializer(),
                               name=f"{namer.prefix}_output")(x)
        x = PlacePatches(grid, patch, channels, kept, name=namer("place"))(x)
        if padded != tuple(tm.shape[:-1]):
            x = CentralCropPad(tuple(tm.shape[:-1]), name=namer("crop"))(x)
        return x
