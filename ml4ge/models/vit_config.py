"""Typed configuration of the vision-transformer blocks (``vit_encode`` / ``vit_decode``), apart from Keras.

The defaults are the UDIP-ViT architecture (REFERENCE_SEEDS.md section B.2): patches of 14x16x14 voxels, width
128, 12 encoder blocks with 8 heads, decoder width 64 with 12 blocks. ``kept_tokens`` holds, per TensorMap, the
patch tokens that take part (those whose patch holds brain in some training mask, see
:func:`ml4ge.models.vit_tokens.with_brain_tokens`); a map without an entry keeps every token.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ViTConfig:
    """Vision-transformer encoder/decoder settings.

    Args:
        patch: patch size per spatial axis (x, y, z); a map of rank r uses the first r entries (``patch[:1]`` for
            1-D signals). The input is zero-padded centrally to a multiple of it.
        width: token width of the encoder; the latent (mean of the kept tokens) has this size.
        depth, heads: encoder transformer blocks and attention heads per block.
        mlp_ratio: hidden width of each block's MLP as a multiple of the token width.
        decoder_width, decoder_depth, decoder_heads: the same for the decoder.
        kept_tokens: ``((tm name, (token index, ...)), ...)``: the flat indices (row-major over the patch grid, the
            order the tokens are flattened in) of the tokens kept for a map, sorted; absent: all tokens.

    Example:
        >>> ViTConfig().grid((182, 218, 182))
        (13, 14, 13)
    """

    patch: tuple[int, int, int] = (14, 16, 14)
    width: int = 128
    depth: int = 12
    heads: int = 8
    mlp_ratio: int = 4
    decoder_width: int = 64
    decoder_depth: int = 12
    decoder_heads: int = 8
    kept_tokens: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self):
        sizes = {"patch": self.patch, "width": (self.width,), "depth": (self.depth,), "heads": (self.heads,),
                 "mlp_ratio": (self.mlp_ratio,), "decoder_width": (self.decoder_width,),
                 "decoder_depth": (self.decoder_depth,), "decoder_heads": (self.decoder_heads,)}
        for name, values in sizes.items():
            if not values or any(int(v) < 1 for v in values):
                raise ValueError(f"ViTConfig.{name} (--vit_{name}) must be positive, got {values}.")
        for width, heads, role in ((self.width, self.heads, ""), (self.decoder_width, self.decoder_heads, "decoder_")):
            if width % heads:
                raise ValueError(f"ViTConfig.{role}width ({width}) must be a multiple of {role}heads ({heads}): "
                                 f"change --vit_{role}width or --vit_{role}heads.")

    def patch_size(self, rank: int) -> tuple[int, ...]:
        """Patch size of a map with ``rank`` spatial axes."""
        if not 1 <= rank <= len(self.patch):
            raise ValueError(f"the ViT blocks take 1-D, 2-D or 3-D maps, got {rank} spatial axes.")
        return tuple(int(p) for p in self.patch[:rank])

    def grid(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """Patches per axis of a map of spatial shape ``spatial`` once padded to a multiple of the patch."""
        return tuple(-(-int(s) // p) for s, p in zip(spatial, self.patch_size(len(spatial))))

    def kept(self, name: str) -> tuple[int, ...] | None:
        """The kept token indices of map ``name``, or None when it keeps all tokens."""
        return next((tuple(indices) for key, indices in self.kept_tokens if key == name), None)

    def with_kept(self, name: str, indices) -> ViTConfig:
        """This config with map ``name`` keeping ``indices`` (sorted, unique; replaces an earlier entry)."""
        indices = tuple(sorted({int(i) for i in indices}))
        if not indices:
            raise ValueError(f"map {name!r} would keep no token: no training mask holds any voxel.")
        others = tuple((key, value) for key, value in self.kept_tokens if key != name)
        return replace(self, kept_tokens=(*others, (name, indices)))
