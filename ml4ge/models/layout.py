"""The names of the files in a trained model folder (:mod:`ml4ge.models.artifacts` writes and reads them).

    <folder>/<run id>.keras        the family model
    <folder>/encoder_<tm>.keras    each input map's encoder alone
    <folder>/decoder_<tm>.keras    each output map's decoder alone
    <folder>/merger.keras          the merge over the embeddings

The names live apart from the loader so that a family that takes saved parts as blocks can match file names
without importing the module that loads (and registers) families.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ml4ge.tensormap import TensorMap, keras_safe

MERGER_FILE = "merger.keras"
LEGACY_SUFFIXES = (".h5", ".hdf5")  # Keras 2's HDF5 models: safe mode does not cover them (CVE-2025-9905).


def check_model_format(path) -> None:
    """Refuse a model file ml4ge will not load: a legacy HDF5 model, or anything but a ``.keras`` zip archive.

    Raises:
        ValueError: saying what the file is and what to pass instead.
    """
    path = Path(path)
    if path.suffix.lower() in LEGACY_SUFFIXES:
        raise ValueError(f"{str(path)!r} is a legacy HDF5 model file: ml4ge loads only .keras archives (Keras' safe "
                         "mode does not protect HDF5 models); load it in a trusted session and model.save(...) it "
                         "as .keras.")
    if path.suffix != ".keras":
        raise ValueError(f"{str(path)!r} is not a .keras model file; pass the <id>.keras that --mode train wrote.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{str(path)!r} is not a Keras model archive (a .keras file is the zip that model.save "
                         "writes; this one is truncated or another kind of file); pass the <id>.keras that --mode "
                         "train wrote.")


def model_path(folder, run_id: str) -> Path:
    """``<folder>/<run id>.keras``."""
    return Path(folder) / f"{run_id}.keras"


def part_file(kind: str, tm: TensorMap | str) -> str:
    """``encoder_<tm>.keras`` or ``decoder_<tm>.keras`` (``tm`` a TensorMap or its name)."""
    name = tm if isinstance(tm, str) else tm.name
    return f"{kind}_{keras_safe(name)}.keras"


def part_path(folder, kind: str, tm: TensorMap | str) -> Path:
    """``<folder>/encoder_<tm>.keras`` or ``<folder>/decoder_<tm>.keras``."""
    return Path(folder) / part_file(kind, tm)


def encoder_path(folder, tm) -> Path:
    return part_path(folder, "encoder", tm)


def decoder_path(folder, tm) -> Path:
    return part_path(folder, "decoder", tm)


def folder_of(model_file) -> Path:
    """The model folder of ``--model_file`` (a ``<run id>.keras``), or the folder itself."""
    path = Path(model_file)
    return path if path.is_dir() else path.parent
