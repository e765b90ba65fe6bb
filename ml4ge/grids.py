"""Arrays on a TensorMap's grid <-> world (scanner / MNI mm) coordinates: the one owner of that mapping.

tensorize stores each volume's NIfTI affine (voxel index -> mm) with it, describing the stored array. A TensorMap
then fits the stored array to its shape (:func:`ml4ge.arrays.fit_to_shape`): a centred crop/pad, or with
``resize`` one isotropic zoom then a centred crop/pad. :func:`map_affine` carries the stored affine through the
same steps, so that voxel ``i`` of the array the model sees (and of what a decoder outputs for it) lies at
``map_affine(tm, hd5) @ i`` in world coordinates. tensorize (:func:`fitted_affine` for ``--resample``), infer
(NIfTI predictions) and interpret (PerDI maps, atlases) all take their affines from here.

Example:
    >>> affine = np.diag([3.0, 3.0, 3.0, 1.0])
    >>> crop_pad_affine(affine, (10, 10, 10), (6, 12, 10))[:3, 3].tolist()  # cropped by 2, padded by 1
    [6.0, -3.0, 0.0]
"""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
from nibabel.affines import apply_affine, voxel_sizes
from nibabel.processing import resample_from_to

from ml4ge.hd5 import select_instance


def read_affine(stored) -> np.ndarray:
    """A stored ``affine`` attribute as a 4x4 float64 array.

    Raises:
        ValueError: if it is not 16 finite numbers.
    """
    try:
        affine = np.asarray(stored, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"malformed affine attribute ({str(error)[:100]})") from error
    if affine.size != 16 or not np.all(np.isfinite(affine)):
        raise ValueError(f"malformed affine attribute: {affine.size} values of shape {affine.shape}, expected 16 "
                         "finite numbers (4 x 4)")
    return affine.reshape(4, 4)


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


def _read_source(tm):
    """The map whose stored dataset ``tm`` reads: itself, or the source of a reader such as NonzeroOf."""
    source = getattr(tm.reader, "source", None) if tm.reader is not None else tm
    return source if hasattr(source, "key") else None


def stored_grid(tm, hd5: h5py.File) -> tuple[np.ndarray | None, tuple[int, ...]] | None:
    """``(affine or None, spatial shape)`` of the dataset ``tm`` reads (following its fallbacks), or None when
    the file holds none or the map does not read one stored grid (axial slices as channels, custom readers).

    Raises:
        ValueError: if the stored affine is malformed.
    """
    source = _read_source(tm)
    if source is None or source.axial_slices is not None:
        return None
    dataset = _stored_dataset(hd5, source.key, source.instance)
    if dataset is None:
        return None if source.fallback is None else stored_grid(source.fallback, hd5)
    affine = dataset.attrs.get("affine")
    rank = len(tm.shape) - 1
    return (None if affine is None else read_affine(affine)), tuple(int(n) for n in dataset.shape[:rank])


def crop_pad_affine(affine: np.ndarray, source_shape, target_shape) -> np.ndarray:
    """The affine after :func:`ml4ge.arrays.center_crop_or_pad` from ``source_shape`` to ``target_shape``:
    output voxel ``j`` is input voxel ``j + start_in - start_out`` on every axis."""
    shift = np.eye(4)
    for axis, (have, want) in enumerate(zip(source_shape, target_shape, strict=True)):
        shift[axis, 3] = max((have - want) // 2, 0) - max((want - have) // 2, 0)
    return np.asarray(affine, dtype=np.float64) @ shift


def fitted_affine(affine: np.ndarray, source_shape, target_shape) -> np.ndarray:
    """The affine of a volume after :func:`ml4ge.arrays.resample` from ``source_shape`` to ``target_shape``.

    Both shapes are spatial (at most 3 axes). Mirrors ``resample``: one zoom factor ``min(want / have)``,
    ``ndimage.zoom`` with ``grid_mode=True`` (output voxel ``j`` samples input coordinate
    ``(j + 0.5) * have / zoomed - 0.5``), then a centred crop/pad.
    """
    source_shape = tuple(int(s) for s in source_shape)
    target_shape = tuple(int(s) for s in target_shape)
    if source_shape == target_shape:
        return np.asarray(affine, dtype=np.float64)
    factor = min(want / have for want, have in zip(target_shape, source_shape, strict=True))
    zoomed = tuple(int(round(have * factor)) for have in source_shape)
    index_to_source = np.eye(4)
    for axis, (have, size) in enumerate(zip(source_shape, zoomed)):
        index_to_source[axis, axis] = have / size
        index_to_source[axis, 3] = 0.5 * have / size - 0.5
    return crop_pad_affine(np.asarray(affine, dtype=np.float64) @ index_to_source, zoomed, target_shape)


def fit_affine(affine: np.ndarray, source_shape, target_shape, resize: bool) -> np.ndarray:
    """The affine after :func:`ml4ge.arrays.fit_to_shape` (spatial shapes): resampled when ``resize`` and the
    shapes differ, else cropped/padded."""
    if resize and tuple(source_shape) != tuple(target_shape):
        return fitted_affine(affine, source_shape, target_shape)
    return crop_pad_affine(affine, source_shape, target_shape)


def map_affine(tm, hd5: h5py.File) -> np.ndarray | None:
    """The affine of ``tm``'s fitted array in one sample's file, or None when the data carries none.

    Raises:
        ValueError: if ``tm`` is a scalar map (it has no grid), or the stored affine is malformed.
    """
    if tm.is_scalar:
        raise ValueError(f"TensorMap {tm.name!r} of shape {tm.shape} is a scalar map; it has no grid.")
    grid = stored_grid(tm, hd5)
    if grid is None or grid[0] is None:
        return None
    affine, source = grid
    return fit_affine(affine, source, tm.shape[:len(source)], tm.resize)


def world_of(index, affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of voxel indices ``index`` (..., 3) on the grid ``affine``."""
    return apply_affine(np.asarray(affine, dtype=np.float64), np.asarray(index, dtype=np.float64))


def voxel_of(world, affine: np.ndarray) -> np.ndarray:
    """Voxel indices (fractional) of world coordinates ``world`` (..., 3) on the grid ``affine``."""
    return apply_affine(np.linalg.inv(np.asarray(affine, dtype=np.float64)), np.asarray(world, dtype=np.float64))


def voxel_size(affine: np.ndarray, rank: int = 3) -> tuple[float, ...]:
    """The voxel size (mm) along the first ``rank`` axes of the grid ``affine``."""
    return tuple(float(z) for z in voxel_sizes(np.asarray(affine, dtype=np.float64))[:rank])


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
