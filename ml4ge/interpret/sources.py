"""Where the interpreted latents and the data-derived mask come from.

Latents either come from a latent table (``hidden_<tmap>_<id>.tsv`` of the encoder of the decoded modality,
first ``N`` rows, as PerDI took the first 500 rows of its table) or are computed from ``--tensors`` with the
trained model (:meth:`encode` and :meth:`fuse` of its family), batch by batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def table_path(entries) -> Path:
    """The one latent table of ``--latent_tables`` (``path`` or ``name=path``).

    Raises:
        ValueError: unless exactly one table is given.
        FileNotFoundError: if it does not exist.
    """
    if len(entries) != 1:
        raise ValueError(f"--mode interpret takes one --latent_tables entry (the decoded modality's encoder "
                         f"table), got {list(entries)}.")
    path = Path(entries[0].split("=", 1)[1] if "=" in entries[0] and not Path(entries[0]).exists() else entries[0])
    if not path.is_file():
        raise FileNotFoundError(f"--latent_tables {str(path)!r} does not exist.")
    return path


def table_dimension(path) -> int:
    """The number of ``latent_<i>`` columns in a latent table's header."""
    with open(path) as handle:
        return sum(column.startswith("latent_") for column in handle.readline().rstrip("\n").split("\t"))


def table_latents(path, count: int, sample_ids=None) -> tuple[list[str], np.ndarray]:
    """The first ``count`` rows of a latent table (restricted to ``sample_ids`` when given).

    Raises:
        ValueError: for a malformed table or fewer than 2 rows left.
    """
    from ml4ge.compare import load_latents

    frame = load_latents(path)
    if sample_ids is not None:
        frame = frame[frame.index.isin(set(map(str, sample_ids)))]
    frame = frame.iloc[:count]
    if len(frame) < 2:
        raise ValueError(f"{path}: {len(frame)} rows left to interpret (after --sample_csv); the paired t-test "
                         "needs at least 2 subjects.")
    return list(frame.index), frame.to_numpy(dtype=np.float32)


def encoded_latents(model_file, input_tmaps, paths, batch_size: int, num_workers: int,
                    skipped=None) -> tuple[list[str], np.ndarray]:
    """Latents of ``paths`` from the trained model: its fused latent over all its inputs, or one input's own
    embedding.

    Raises:
        NoUsableSamplesError: if no sample could be read.
        ValueError: for fewer than 2 subjects, or inputs that are neither one map nor all of the model's.
    """
    from ml4ge.models.artifacts import load_model
    from ml4ge.pipeline import iterate_batches

    model = load_model(model_file)
    names = sorted(tm.name for tm in model.input_maps)
    if len(input_tmaps) != 1 and sorted(tm.name for tm in input_tmaps) != names:
        raise ValueError(f"the model fuses {names}, but --input_tensors gives {[tm.name for tm in input_tmaps]}; "
                         "give all of the model's inputs, or one input to decode its own embedding.")
    ids, latents = [], []
    optional = model.optional if len(input_tmaps) > 1 else ()
    for sample_ids, inputs, _ in iterate_batches(paths, input_tmaps, [], batch_size, num_workers=num_workers,
                                                 skipped=skipped, optional=optional):
        latents.append(np.asarray(model.latent(inputs), dtype=np.float32))
        ids.extend(sample_ids)
    if len(ids) < 2:
        raise ValueError(f"{len(ids)} subjects could be encoded; the paired t-test needs at least 2.")
    return ids, np.concatenate(latents)


def data_mask(tm, paths, batch_size: int, num_workers: int, skipped=None) -> np.ndarray:
    """Brain mask of the decoded map: nonzero voxels of the mean raw image over ``paths`` (any subject's brain).

    Maps with a mask use it (nonzero raw voxels before normalization); others use nonzero normalized values.
    """
    from ml4ge.pipeline import iterate_batches

    channels = tm.shape[-1]
    count = None
    for _, _, outputs in iterate_batches(paths, [], [tm], batch_size, num_workers=num_workers, skipped=skipped):
        target = outputs[tm.output_name]
        inside = target[..., channels:] if tm.mask is not None else target
        found = (inside != 0).any(axis=-1).sum(axis=0)
        count = found if count is None else count + found
    return count > 0


def read_directions(entries) -> dict[str, np.ndarray]:
    """``{name: weights}`` of ``--interpret_directions`` entries ``name=path`` or ``path`` (name: the file's stem),
    each a ``dimension weight`` table written by ``associate --direction_traits`` (``directions/<space>-<trait>.tsv``),
    weights ordered ``latent_0, latent_1, ...``.

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: for a table without ``dimension``/``weight`` columns, dimensions other than ``latent_0..``,
            non-finite or all-zero weights, a name that cannot name a file, or a name given twice.
    """
    import re

    import pandas as pd

    directions = {}
    for entry in entries:
        name, _, path = entry.rpartition("=") if "=" in entry and not Path(entry).exists() else ("", "", entry)
        path = Path(path)
        name = name or path.stem
        if not path.is_file():
            raise FileNotFoundError(f"--interpret_directions {str(path)!r} does not exist.")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name in directions:
            raise ValueError(f"--interpret_directions name {name!r} is repeated or cannot name a file; use letters, "
                             "digits, '.', '_' and '-' (name=path).")
        table = pd.read_csv(path, sep="\t")
        if not {"dimension", "weight"} <= set(table.columns):
            raise ValueError(f"{path} has no dimension and weight columns; give a directions/<space>-<trait>.tsv "
                             "written by associate --direction_traits.")
        if list(table.dimension) != [f"latent_{i}" for i in range(len(table))]:
            raise ValueError(f"{path}: dimensions must be latent_0..latent_{len(table) - 1} in order.")
        weights = table.weight.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(weights)) or not np.any(weights):
            raise ValueError(f"{path}: the weights are missing, infinite or all zero; it defines no direction.")
        directions[name] = weights
    return directions
