"""The brain-token set of the ViT blocks: the patches that hold a mask voxel in any training sample.

The volumes are registered to one grid, so the set is taken once, from the union of the training split's masks,
and stored in the model config (``ViTConfig.kept_tokens``): shapes stay static, and the model's cost scales with
the brain tokens (about 40-45 % of the grid in MNI space), not with the whole grid.

The train recipe takes it before it builds the model, through the ViT blocks' ``prepare`` hook
(:func:`ml4ge.recipes.train.prepared_architecture`); from Python (with ``paths`` a split)::

    config = with_brain_tokens(config, paths["train"], [*input_tmaps, *output_tmaps])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from ml4ge.models.config import ModelConfig
from ml4ge.nifti import INPUT_ERRORS

log = logging.getLogger(__name__)


def brain_tokens(mask: np.ndarray, patch: Sequence[int]) -> np.ndarray:
    """Flat indices (row-major over the patch grid) of the patches of ``mask`` that hold any nonzero voxel.

    Args:
        mask: ``[*spatial, C]`` mask of one map (channels last, a TensorMap's shape); any channel counts.
        patch: patch size per spatial axis (a map of rank r uses the first r).

    Returns:
        Sorted int array. The mask is padded centrally as the ViT blocks pad (odd extra voxel at the end).

    Example:
        >>> mask = np.zeros((4, 4, 1)); mask[3, 0] = 1
        >>> brain_tokens(mask, (2, 2, 2)).tolist()
        [2]
    """
    mask = (np.asarray(mask) != 0).any(axis=-1)
    spatial = mask.shape
    patch = tuple(int(p) for p in patch[: len(spatial)])
    grid = tuple(-(-s // p) for s, p in zip(spatial, patch))
    extra = [g * p - s for g, p, s in zip(grid, patch, spatial)]
    mask = np.pad(mask, [(e // 2, e - e // 2) for e in extra])
    split = mask.reshape([v for pair in zip(grid, patch) for v in pair])
    return np.flatnonzero(split.any(axis=tuple(range(1, 2 * len(grid), 2))))


def union_mask(paths: Sequence[Path], tm) -> np.ndarray | None:
    """The union of ``tm``'s masks over the samples ``paths`` (None for a map without a mask).

    A sample that cannot be read is left out with a warning naming it and why.

    Raises:
        ValueError: when no sample could be read.
    """
    if tm.mask is None:
        return None
    union, read = np.zeros(tm.shape, dtype=bool), 0
    for path in paths:
        try:
            with h5py.File(path, "r") as hd5:
                _, mask = tm.tensor(hd5, Path(path).stem)
        except INPUT_ERRORS as error:
            log.warning("brain tokens: %s left out of the %s mask union: %s", path, tm.name, error)
            continue
        union |= mask != 0
        read += 1
    if not read:
        raise ValueError(f"no training sample could be read for {tm.name}'s brain tokens; see the warnings above.")
    return union


def with_brain_tokens(config: ModelConfig, paths: Sequence[Path], tmaps) -> ModelConfig:
    """``config`` whose ViT blocks keep, for each masked map of ``tmaps``, the patches with brain in the union of
    the masks of ``paths`` (the training split). Maps without a mask keep all tokens.

    Raises:
        ValueError: when no sample could be read, or a map's masks are empty everywhere.
    """
    vit = config.vit
    for tm in {tm.name: tm for tm in tmaps if 2 <= len(tm.shape) <= 4}.values():
        union = union_mask(list(paths), tm)
        if union is None:
            continue
        kept = brain_tokens(union, vit.patch)
        vit = vit.with_kept(tm.name, kept)
        log.info("ViT %s: %d of %d tokens hold brain in the %d training masks", tm.name, len(kept),
                 int(np.prod(vit.grid(tm.shape[:-1]))), len(paths))
    return replace(config, vit=vit)
