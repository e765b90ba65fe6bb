"""The grid of the decoded volumes (shape and affine) and bringing atlases and masks onto it.

The decoder outputs volumes on the grid of the TensorMap it was trained on; :mod:`ml4ge.grids` owns the mapping
from that grid to world coordinates (the stored affine carried through the map's crop/pad or resampling). This
module adds what interpret needs on top: the map must be a 3-D volume.
"""

from __future__ import annotations

import h5py
import numpy as np

from ml4ge import grids
from ml4ge.grids import onto_grid, same_grid

__all__ = ["map_affine", "onto_grid", "same_grid"]


def map_affine(tm, hd5: h5py.File) -> np.ndarray | None:
    """The affine of ``tm``'s fitted volume in one sample's file, or None when the data carries none.

    Raises:
        ValueError: if ``tm`` is not a 3-D volume map, or its stored affine is malformed.
    """
    if len(tm.shape) != 4:
        raise ValueError(f"TensorMap {tm.name!r} of shape {tm.shape} is not a 3-D volume (x, y, z, channels); "
                         "interpret decodes volumes.")
    return grids.map_affine(tm, hd5)
