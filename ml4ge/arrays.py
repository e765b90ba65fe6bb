"""Shape operations shared by tensorize and the readers: centred crop/pad and resampling."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def center_crop_or_pad(array: np.ndarray, shape, fill: float = 0.0) -> np.ndarray:
    """Crop or zero-pad ``array`` to ``shape`` keeping it centred on every axis.

    Example:
        >>> center_crop_or_pad(np.ones((2, 2)), (4, 1)).tolist()
        [[0.0], [1.0], [1.0], [0.0]]
    """
    shape = tuple(int(s) for s in shape)
    if array.ndim != len(shape):
        raise ValueError(f"cannot crop/pad an array of shape {array.shape} to {shape}: ranks differ")
    if array.shape == shape:
        return array
    out = np.full(shape, fill, dtype=array.dtype)
    source, target = [], []
    for have, want in zip(array.shape, shape):
        start_in = max((have - want) // 2, 0)
        start_out = max((want - have) // 2, 0)
        length = min(have, want)
        source.append(slice(start_in, start_in + length))
        target.append(slice(start_out, start_out + length))
    out[tuple(target)] = array[tuple(source)]
    return out


def resample(array: np.ndarray, shape, order: int = 1) -> np.ndarray:
    """Resample ``array`` into ``shape`` with one zoom factor for every axis, then crop/pad centrally.

    The factor is the smallest ``want / have`` ratio, so voxels stay isotropic if they were and the whole field
    of view fits: 182x218x182 at 1 mm becomes 53x64x53 at about 3.4 mm, centred in a 64^3 grid.
    ``order=1`` is trilinear interpolation.
    """
    shape = tuple(int(s) for s in shape)
    if array.shape == shape:
        return array
    factor = min(want / have for want, have in zip(shape, array.shape))
    out = ndimage.zoom(np.asarray(array, dtype=np.float32), factor, order=order, grid_mode=True, mode="grid-constant")
    return center_crop_or_pad(out, shape)


def fit_to_shape(array: np.ndarray, shape, resize: bool = False) -> np.ndarray:
    """Bring ``array`` to ``shape``: resample spatial axes if ``resize`` else crop/pad centrally.

    A trailing channel axis of 1 in ``shape`` is added when the array lacks it.
    """
    shape = tuple(shape)
    if array.ndim == len(shape) - 1:
        array = array[..., np.newaxis]
    if array.ndim != len(shape):
        raise ValueError(f"array of shape {array.shape} cannot take the TensorMap shape {shape}")
    if resize and array.shape[:-1] != shape[:-1]:
        channels = [resample(array[..., c], shape[:-1]) for c in range(array.shape[-1])]
        array = np.stack(channels, axis=-1)
    return center_crop_or_pad(array, shape)
