"""Where the interpreted latents and the data-derived mask come from.

Latents either come from a latent table (``hidden_<tmap>_<id>.tsv`` of the encoder of the decoded modality,
first ``N`` rows, as PerDI took the first 500 rows of its table) or are computed from ``--tensors`` with the
model's encoders (and its merger when every input it fuses is given), batch by batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml4ge.tensormap import keras_safe


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


def _load(path: Path):
    from ml4ge.models.saving import load_keras

    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing beside --model_file; was the model saved by --mode train?")
    return load_keras(path)


def fusion(model_folder: Path, input_tmaps):
    """``embeddings {tm.name: [B, d]} -> latent [B, D]``: the merger when it fuses exactly these inputs,
    the embedding itself for a single input the merger does not take alone.

    Raises:
        ValueError: for several inputs that are not exactly the merger's inputs.
    """
    merger = _load(model_folder / "merger.keras")
    wanted = [f"embed_{keras_safe(tm.name)}" for tm in input_tmaps]
    names = [tensor.name.split(":")[0] for tensor in merger.inputs]
    if sorted(names) == sorted(wanted):
        by_name = {f"embed_{keras_safe(tm.name)}": tm.name for tm in input_tmaps}
        return lambda embeddings: merger.predict_on_batch([embeddings[by_name[name]] for name in names])
    if len(input_tmaps) == 1:
        return lambda embeddings: embeddings[input_tmaps[0].name]
    raise ValueError(f"the merger fuses {names}, but --input_tensors gives {wanted}; give all of the merger's "
                     "inputs, or one input to decode its own embedding.")


def encoded_latents(model_folder, input_tmaps, paths, batch_size: int, num_workers: int,
                    skipped=None) -> tuple[list[str], np.ndarray]:
    """Latents of ``paths`` from the encoders (and merger) saved in ``model_folder``.

    Raises:
        NoUsableSamplesError: if no sample could be read.
        ValueError: for fewer than 2 subjects.
    """
    from ml4ge.pipeline import iterate_batches

    model_folder = Path(model_folder)
    encoders = {tm.name: _load(model_folder / f"encoder_{keras_safe(tm.name)}.keras") for tm in input_tmaps}
    fuse = fusion(model_folder, input_tmaps)
    ids, latents = [], []
    for sample_ids, inputs, _ in iterate_batches(paths, input_tmaps, [], batch_size, num_workers=num_workers,
                                                 skipped=skipped):
        embeddings = {tm.name: np.asarray(encoders[tm.name].predict_on_batch(inputs[tm.input_name]))
                      for tm in input_tmaps}
        latents.append(np.asarray(fuse(embeddings), dtype=np.float32))
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
