"""The per-subject HD5 layout: ``<sample_id>.hd5`` with datasets at ``/<group>/<name>/instance_<k>``.

The layout follows ml4h so that existing ml4h tensors read without re-tensorizing, including ml4h's NIfTI
layout that stores a brain volume as one dataset per axial slice, ``/<group>/<name>/axial_<i>/instance_<k>``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import h5py
import numpy as np

HD5_SUFFIX = ".hd5"
INSTANCE_PREFIX = "instance_"
AXIAL_PREFIX = "axial_"
COMPRESSION = "gzip"
COMPRESSION_LEVEL = 4
# Largest dataset read into memory. A corrupt header can claim terabytes; reading it would end the whole run (out
# of memory) instead of skipping the one sample. A 182x218x182 float64 volume is 58 MB.
MAX_DATASET_BYTES = 2 * 1024**3


def sample_id_from_path(path) -> str:
    """The sample id of an HD5 file: its file name without ``.hd5``."""
    return Path(path).name[: -len(HD5_SUFFIX)] if str(path).endswith(HD5_SUFFIX) else Path(path).stem


def hd5_paths(folder) -> list[Path]:
    """All ``*.hd5`` files directly in ``folder``, sorted by sample id.

    Raises:
        FileNotFoundError: if ``folder`` does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--tensors folder {str(folder)!r} does not exist; point it at a folder of .hd5 files.")
    return sorted((p for p in folder.iterdir() if p.name.endswith(HD5_SUFFIX)), key=sample_id_from_path)


def open_sample(path) -> h5py.File:
    """Open one sample's HD5 file read-only, with a clear error for empty or non-HDF5 files.

    Raises:
        OSError: if the file is empty, is not HDF5, or is truncated.
    """
    size = os.path.getsize(path)
    if size == 0:
        raise OSError(f"empty file {str(path)!r}")
    if not h5py.is_hdf5(path):
        raise OSError(f"not an HDF5 file: {str(path)!r}")
    return h5py.File(path, "r")


def _numbered(keys, prefix: str) -> list[tuple[int, str]]:
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    found = [(int(m.group(1)), k) for k in keys if (m := pattern.match(k))]
    return sorted(found)


def instance_names(group: h5py.Group) -> list[str]:
    """Children named ``instance_<k>``, ordered numerically (``instance_10`` after ``instance_2``)."""
    return [name for _, name in _numbered(group.keys(), INSTANCE_PREFIX)]


def select_instance(group: h5py.Group, instance: str | int = "first") -> h5py.Dataset:
    """The dataset for ``instance``: ``"first"``, ``"last"`` or a number ``k`` (``instance_<k>``).

    Raises:
        KeyError: if there is no such instance.
    """
    names = instance_names(group)
    if not names:
        raise KeyError(f"no instance_<k> datasets under {group.name!r}")
    if instance == "first":
        return group[names[0]]
    if instance == "last":
        return group[names[-1]]
    name = f"{INSTANCE_PREFIX}{int(instance)}"
    if name not in group:
        raise KeyError(f"{group.name!r} has no {name}; it has {', '.join(names)}")
    return group[name]


def read_dataset(hd5: h5py.File, key: str, instance: str | int = "first") -> np.ndarray:
    """Read the array stored at ``key`` (``group/name``) for the chosen instance.

    ``key`` may name a dataset directly, a group of ``instance_<k>`` datasets, or an ml4h slice-per-dataset
    volume whose children are ``axial_<i>`` groups: those slices are stacked along the last axis into a
    3-D volume.

    Raises:
        KeyError: if ``key`` is missing or holds no readable instance.
    """
    if key not in hd5:
        raise KeyError(f"missing dataset {key!r}")
    node = hd5[key]
    if isinstance(node, h5py.Dataset):
        return values(node)
    slices = _numbered(node.keys(), AXIAL_PREFIX)
    if slices:
        return np.stack([values(select_instance(node[name], instance)) for _, name in slices], axis=-1)
    return values(select_instance(node, instance))


def values(node) -> np.ndarray:
    """The whole array of a dataset, refusing what is not one, is empty or claims more than :data:`MAX_DATASET_BYTES`.

    Raises:
        TypeError: if ``node`` is a group.
        ValueError: if the dataset is empty or claims more bytes than :data:`MAX_DATASET_BYTES` (a corrupt header).
    """
    if not isinstance(node, h5py.Dataset):
        raise TypeError(f"{node.name!r} is a group, not a dataset")
    if not node.size:  # fitting an empty array to a map's shape would make a volume of padding
        raise ValueError(f"dataset {node.name!r} is empty (shape {node.shape})")
    size = node.size * node.dtype.itemsize
    if size > MAX_DATASET_BYTES:
        raise ValueError(f"dataset {node.name!r} claims shape {node.shape} of {node.dtype} ({size} bytes), more "
                         f"than {MAX_DATASET_BYTES}; the file is corrupt or not a tensor of one sample")
    return node[()]


def read_axial_slices(hd5: h5py.File, key: str, indices, instance: str | int = "first") -> np.ndarray:
    """Stack the chosen axial slices of a volume into channels, reading only those slices when possible."""
    node = hd5[key] if key in hd5 else None
    if node is None:
        raise KeyError(f"missing dataset {key!r}")
    if isinstance(node, h5py.Group) and _numbered(node.keys(), AXIAL_PREFIX):
        return np.stack([values(select_instance(node[f"{AXIAL_PREFIX}{i}"], instance)) for i in indices], axis=-1)
    volume = read_dataset(hd5, key, instance)
    return np.take(volume, list(indices), axis=-1)


def write_tensor(
    hd5: h5py.File,
    key: str,
    value,
    instance: int | None = None,
    attributes: dict | None = None,
) -> h5py.Dataset:
    """Write ``value`` at ``/<key>/instance_<k>``; arrays chunked and gzip-compressed, scalars as 1 element.

    ``instance`` defaults to the next free instance number. Provenance goes in ``attributes`` (source path,
    affine, voxel size); a ``date`` attribute (seconds since the epoch) is added when absent. Values carry Fletcher32
    checksums; open the file with ``libver="latest"`` to checksum its metadata too.
    """
    group = hd5.require_group(key)
    if instance is None:
        existing = _numbered(group.keys(), INSTANCE_PREFIX)
        instance = existing[-1][0] + 1 if existing else 0
    array = np.asarray(value)
    name = f"{INSTANCE_PREFIX}{int(instance)}"
    # Fletcher32 checksums make a flipped bit in the stored values an error on read instead of a wrong value
    # (they need chunked storage, so scalars are one chunk of one element).
    if array.ndim == 0 or array.size == 1:
        dataset = group.create_dataset(name, data=array.reshape(1), chunks=(1,), fletcher32=True)
    else:
        dataset = group.create_dataset(
            name, data=array, chunks=True, compression=COMPRESSION, compression_opts=COMPRESSION_LEVEL,
            fletcher32=True,
        )
    for attribute, attribute_value in {"date": time.time(), **(attributes or {})}.items():
        dataset.attrs[attribute] = attribute_value
    return dataset
