"""The grid of the decoded volumes (shape and affine) and bringing atlases and masks onto it.

The decoder outputs volumes on the grid of the TensorMap it was trained on. Its affine comes from the data:
tensorize stores each volume's NIfTI affine as an attribute. When the map read its own (already resampled)
dataset that affine is used as is; when it resampled a full-resolution volume on read (``t1_64`` from ``t1``),
the affine is carried through the same zoom and centring (:func:`ml4ge.tensorize.fitted_affine`); a plain
centred crop/pad shifts the origin.
"""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from ml4ge.hd5 import select_instance
from ml4ge.tensorize import fitted_affine


def _stored_dataset(hd5: h5py.File, key: str, instance) -> h5py.Dataset | None:
    if key not in hd5:
        return None
    node = hd5[key]
    if isinstance(node, h5py.Dataset):
        return node
    try:
        return select_instance(node, instance)
    except KeyError:
        return None  # e.g. ml4h's slice-per-dataset layout: no affine stored with the volume


def stored_grid(tm, hd5: h5py.File) -> tuple[np.ndarray | None, tuple[int, ...]] | None:
    """``(affine or None, spatial shape)`` of the dataset ``tm`` reads (following its fallbacks), or None."""
    dataset = _stored_dataset(hd5, tm.key, tm.instance)
    if dataset is None:
        return None if tm.fallback is None else stored_grid(tm.fallback, hd5)
    rank = len(tm.shape) - 1
    affine = dataset.attrs.get("affine")
    return (None if affine is None else np.asarray(affine, dtype=np.float64)), tuple(dataset.shape[:rank])


def crop_pad_affine(affine: np.ndarray, source_shape, target_shape) -> np.ndarray:
    """The affine after :func:`ml4ge.arrays.center_crop_or_pad` from ``source_shape`` to ``target_shape``."""
    shift = np.eye(4)
    for axis, (have, want) in enumerate(zip(source_shape, target_shape)):
        shift[axis, 3] = max((have - want) // 2, 0) - max((want - have) // 2, 0)
    return np.asarray(affine, dtype=np.float64) @ shift


def map_affine(tm, hd5: h5py.File) -> np.ndarray | None:
    """The affine of ``tm``'s fitted volume in one sample's file, or None when the data carries none.

    Raises:
        ValueError: if ``tm`` is not a 3-D volume map.
    """
    if len(tm.shape) != 4:
        raise ValueError(f"TensorMap {tm.name!r} of shape {tm.shape} is not a 3-D volume (x, y, z, channels); "
                         "interpret decodes volumes.")
    grid = stored_grid(tm, hd5)
    if grid is None or grid[0] is None:
        return None
    affine, source = grid
    target = tm.shape[:-1]
    if tm.resize and source != target:
        return fitted_affine(affine, source, target)
    return crop_pad_affine(affine, source, target)


def same_grid(image: nib.Nifti1Image, shape, affine: np.ndarray) -> bool:
    return tuple(image.shape[:3]) == tuple(shape) and np.allclose(image.affine, affine, atol=1e-4)


def onto_grid(image: nib.Nifti1Image, shape, affine: np.ndarray) -> np.ndarray:
    """The image's values on the grid ``(shape, affine)``: as is when it already lies there, else resampled
    with nearest neighbour (labels and masks stay labels and masks; outside the image is 0)."""
    if image.ndim > 3:
        image = nib.Nifti1Image(np.asarray(image.dataobj).reshape(image.shape[:3]), image.affine)
    if same_grid(image, shape, affine):
        return np.asarray(image.dataobj)
    return np.asarray(resample_from_to(image, (tuple(shape), affine), order=0, mode="constant", cval=0).dataobj)
