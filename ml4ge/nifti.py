"""Reading a NIfTI volume without trusting its header: refused from the header alone when its data cannot be in the
file, is too large to read, is not one real number per voxel, or has more than one frame; refused after reading when
it holds NaN or Inf. :class:`GridExpectation` checks a volume's grid against the TensorMap it is stored under.
:data:`INPUT_ERRORS` is what a bad input file raises here or in h5py, so a caller can make it
that input's failure rather than the run's.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError, ImageDataError

# A header is believed only if its data can be in the file: deflate compresses at most 1032:1, so a .gz file of
# n bytes holds at most 1032 n bytes of data; and no volume of more than 2^30 voxels (4 GiB as float32) is read.
MAX_DEFLATE_RATIO = 1032
MAX_VOXELS = 2**30
# What a bad input raises: nibabel (ImageFileError, HeaderDataError / ImageDataError for a header it cannot use,
# EOFError / zlib.error for truncated gzip, OSError for short files or missing ones), our own checks (ValueError),
# h5py (OSError, ValueError, KeyError, RuntimeError).
INPUT_ERRORS = (OSError, EOFError, zlib.error, ImageFileError, HeaderDataError, ImageDataError, ValueError, KeyError,
                RuntimeError, OverflowError)
# Voxel sizes within 2 % are one size: headers store float32 zooms, and resampling tools write 0.9999 or 1.0001 mm.
VOXEL_TOLERANCE = 0.02


def read_nifti(path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """``(volume float32, affine 4x4, voxel size)`` of a NIfTI file; trailing singleton axes past 3 dropped.

    Raises:
        FileNotFoundError, OSError, EOFError, zlib.error, ImageFileError: for missing, truncated or non-NIfTI files.
        ValueError: if the volume has more than one frame (4-D), or holds NaN or Inf.
    """
    image = nib.load(str(path))
    check_header(image)
    shape = spatial_shape(image.shape)
    volume = image.get_fdata(dtype=np.float32).reshape(shape)
    if not np.all(np.isfinite(volume)):
        raise ValueError(f"volume contains NaN or Inf ({np.count_nonzero(~np.isfinite(volume))} voxels)")
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    return volume, np.asarray(image.affine, dtype=np.float64), zooms


def check_header(image) -> None:
    """Refuse, from the header alone, a volume without voxels, of a type that is not one real number per voxel,
    or whose data cannot be in its file or is too large to read.

    Raises:
        ValueError: naming what the header claims (a corrupt header or a truncated file).
    """
    shape = tuple(int(n) for n in image.shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"the header claims shape {shape}; every axis needs at least one voxel (a corrupt header)")
    dtype = image.header.get_data_dtype()
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_):
        raise ValueError(f"the header's data type {dtype} is not one real number per voxel (RGB, complex or a "
                         "corrupt header); store intensities")
    check_data_size(image)


def check_data_size(image) -> None:
    """Refuse a volume whose data, by its header, cannot be in its file or is too large to read.

    Raises:
        ValueError: naming the claimed shape and what the file can hold (a corrupt header or a truncated file).
    """
    voxels = int(np.prod([int(n) for n in image.shape], dtype=object))
    data_path = image.file_map["image"].filename
    claimed = voxels * image.header.get_data_dtype().itemsize
    # The offset the reader will use: nibabel's proxy keeps the header's raw vox_offset even where the header
    # object reports a "fixed" 0 (a corrupt offset of 2^63 otherwise overflows numpy's memmap).
    offset = int(getattr(image.dataobj, "offset", 0))
    size = os.path.getsize(data_path)
    room = size * MAX_DEFLATE_RATIO if str(data_path).endswith(".gz") else size - offset
    if claimed > room or voxels > MAX_VOXELS:
        raise ValueError(f"the header claims shape {tuple(image.shape)} ({claimed} bytes of data) but the file holds "
                         f"{size} bytes (at most {MAX_VOXELS} voxels are read); the header is corrupt or the file "
                         "truncated")


def spatial_shape(shape) -> tuple[int, ...]:
    """``shape`` without trailing singleton axes past the third (a 4-D file of one frame is a 3-D volume).

    Raises:
        ValueError: for a 4-D (or higher) shape with more than one frame: no frame is chosen silently.
    """
    shape = tuple(int(n) for n in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise ValueError(f"{len(shape)}-D NIfTI of shape {shape} ({int(np.prod(shape[3:]))} frames); tensorize "
                         "stores 3-D volumes: extract one frame (e.g. fslroi) or average the frames first")
    return shape


def isotropic(voxel_mm) -> tuple[float, float, float]:
    """A voxel size as three numbers (mm): one number is isotropic."""
    values = tuple(float(v) for v in np.atleast_1d(voxel_mm))
    return values * 3 if len(values) == 1 else values


def same_voxel_size(zooms, voxel_mm, tolerance: float = VOXEL_TOLERANCE) -> bool:
    """Whether a file's voxel size ``zooms`` is ``voxel_mm`` on every axis, within ``tolerance`` (relative)."""
    expected = np.asarray(isotropic(voxel_mm))
    return bool(np.all(np.abs(np.asarray(zooms[:3], dtype=float) - expected) <= tolerance * expected))


def describe_grid(shape, zooms) -> str:
    """``91x109x91 at 2 x 2 x 2 mm``: a volume's grid for messages and reports."""
    size = " x ".join(f"{z:g}" for z in np.round(np.asarray(zooms[:3], dtype=float), 3))
    return f"{'x'.join(str(int(n)) for n in shape[:3])} at {size} mm"


class GridMismatchError(ValueError):
    """A volume's voxel size is not the one its TensorMap takes (it would be stored, and read, at the wrong scale)."""


@dataclass(frozen=True)
class GridExpectation:
    """What a TensorMap expects of the grid of the volumes stored under it (plain data: it pickles to workers).

    Args:
        tensor: the map's name.
        shape: the map's spatial shape (empty for maps of axial slices: the stored volume's shape is not theirs).
        voxel_mm: the voxel size the map takes as stored, or None (not declared: any).
        resamples: the map (``resize``) or ``--resample`` brings any grid to ``shape``: nothing is refused.
        alternatives: ``(name, voxel_mm or None)`` of the catalogue's volume maps, named in a refusal (None: the
            map resamples any grid).
    """

    tensor: str
    shape: tuple[int, ...]
    voxel_mm: float | tuple[float, ...] | None = None
    resamples: bool = False
    alternatives: tuple[tuple[str, object], ...] = ()

    def check(self, shape, zooms) -> str:
        """A note for the report when the volume's grid is not the map's ('' when it is).

        Raises:
            GridMismatchError: for a voxel size the map does not take, naming the maps that do.
        """
        grid, own = describe_grid(shape, zooms), tuple(int(n) for n in shape[:3])
        if self.resamples:
            return "" if own == self.shape[:3] else f"{grid} resampled to {self.tensor}'s {self._shape()}"
        if self.voxel_mm is not None and not same_voxel_size(zooms, self.voxel_mm):
            raise GridMismatchError(self._refusal(grid, zooms))
        if own == self.shape[:3] or self.voxel_mm is None or len(self.shape) < 3:
            return ""
        return f"{grid}: centrally cropped/padded to {self.tensor}'s {self._shape()} on read"

    def _shape(self) -> str:
        return "x".join(map(str, self.shape[:3]))

    def _refusal(self, grid: str, zooms) -> str:
        fitting = [name for name, mm in self.alternatives if mm is not None and same_voxel_size(zooms, mm)]
        resampling = [name for name, mm in self.alternatives if mm is None]
        use = (f"store it under {' or '.join(fitting)}" if fitting else
               "store it under a TensorMap of that voxel size (write one: README, 'A TensorMap for your own grid')")
        if resampling:
            use += f", under a map that resamples any grid ({', '.join(resampling)})"
        return (f"{self.tensor} takes {' x '.join(f'{v:g}' for v in isotropic(self.voxel_mm))} mm voxels but this "
                f"volume is {grid}; {use}, or pass --resample to fit it to {self._shape()}")
