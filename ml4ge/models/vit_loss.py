"""The patch-masked MSE of UDIP-ViT (REFERENCE_SEEDS.md section B.3), registered as ``patch_masked_mse``.

``L = sum_b sum_p n_bp mse_bp / sum_b sum_p n_bp`` where ``n_bp`` is 1 when patch ``p`` of sample ``b`` holds any
mask voxel and ``mse_bp`` is the mean squared error over *all* voxels of that patch (background voxels of a patch
that holds brain included, at their normalized value); patches without brain are ignored. The volume is split
into patches as the ViT blocks split it (central zero-padding to a multiple of the patch); padding voxels are not
part of the map and are left out of a patch's mean (the seed padded before its model, so its edge patches averaged
over padding it also had to predict).
"""

from __future__ import annotations

import keras
from keras import ops

from ml4ge.models.losses import LOSSES, _split_values_and_mask
from ml4ge.models.vit_config import ViTConfig
from ml4ge.models.vit_layers import patchify


def _patches(x, patch: tuple[int, ...]):
    """``x`` padded centrally to a multiple of ``patch`` and split into ``[B, tokens, voxels]`` patches."""
    spatial = tuple(x.shape[1:-1])
    extra = [-(-s // p) * p - s for s, p in zip(spatial, patch)]
    if any(extra):  # the split of CentralCropPad: an odd extra voxel goes at the end
        x = ops.pad(x, [(0, 0), *((e // 2, e - e // 2) for e in extra), (0, 0)])
    return patchify(x, patch)


def patch_squared_errors(y_true, y_pred, patch):
    """Per sample and patch: the mean squared error over the patch's voxels, and whether it holds brain.

    Args:
        y_true: ``[B, ..., 2C]`` values then mask on the last axis (``TensorMap.target``).
        y_pred: ``[B, ..., C]`` predictions.
        patch: patch size per axis (3 entries; the first ``rank`` are used).

    Returns:
        ``(mse, brain)``, two ``[B, tokens]`` tensors.
    """
    values, mask = _split_values_and_mask(y_true, y_pred)
    patch = tuple(int(p) for p in patch[: len(y_pred.shape) - 2])
    error = ops.square(ops.cast(values, y_pred.dtype) - y_pred)
    inside = ops.ones_like(error)
    voxels = ops.sum(_patches(inside, patch), axis=-1)
    mse = ops.sum(_patches(error, patch), axis=-1) / ops.maximum(voxels, 1.0)
    brain = ops.cast(ops.max(_patches(ops.cast(mask, y_pred.dtype), patch), axis=-1) > 0, y_pred.dtype)
    return mse, brain


@keras.saving.register_keras_serializable(package="ml4ge")
class PatchMaskedMeanSquaredError(keras.losses.Loss):
    """Mean over the patches holding brain of each patch's mean squared error (all its voxels), over the batch.

    As :class:`ml4ge.models.losses.MaskedMeanSquaredError`, ``call`` returns per-sample values ``B * s_b / n``
    (``s_b`` the sample's summed patch errors, ``n`` the brain patches of the batch) whose batch mean is the loss;
    a batch without brain gives 0.

    Args:
        patch: patch size per axis, as the ViT blocks' ``ViTConfig.patch`` (default UDIP-ViT's 14x16x14).

    Example:
        >>> loss = PatchMaskedMeanSquaredError(patch=(8, 8, 8))
        >>> value = loss(np.concatenate([target, mask], -1), prediction)
    """

    def __init__(self, patch=ViTConfig.patch, name="patch_masked_mse", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.patch = tuple(int(p) for p in patch)
        if not self.patch or min(self.patch) < 1:
            raise ValueError(f"patch sizes must be positive, got {patch}.")

    def call(self, y_true, y_pred):
        mse, brain = patch_squared_errors(y_true, y_pred, self.patch)
        per_sample = ops.sum(mse * brain, axis=-1)
        batch_size = ops.cast(ops.shape(per_sample)[0], per_sample.dtype)
        return batch_size * per_sample / ops.maximum(ops.sum(brain), 1.0)

    def get_config(self):
        return {**super().get_config(), "patch": list(self.patch)}


LOSSES.register("patch_masked_mse", PatchMaskedMeanSquaredError)
