"""The one module that writes and reads a trained model folder (file names: :mod:`ml4ge.models.layout`).

    <folder>/<run id>.keras        the family model (it loads alone with ``keras.saving.load_model`` after
                                   ``import ml4ge``; its config names its family and blocks)
    <folder>/encoder_<tm>.keras    each input map's encoder alone: shape -> embedding
    <folder>/decoder_<tm>.keras    each output map's decoder alone: latent -> shape
    <folder>/merger.keras          the merge over the embeddings (``embed_<tm>`` inputs)

Every file is written under a temporary name and renamed, so it is whole or absent. Files load in Keras' safe
mode; ml4ge's Keras classes are registered when Keras is imported (see :mod:`ml4ge`).

Example:
    >>> save_model(model, run_folder, "my_run")
    >>> encoder = load_encoder(run_folder, t1)
"""

from __future__ import annotations

from pathlib import Path

import keras

from ml4ge.atomic import atomic_path
from ml4ge.models.builtins import load_builtins
from ml4ge.models.layout import MERGER_FILE, check_model_format, folder_of, model_path, part_path


def load_keras(path, compile: bool = False) -> keras.Model:
    """The model saved at ``path``, in safe mode, with ml4ge's Keras classes registered.

    Raises:
        ValueError: for a legacy HDF5 model or a file that is not a ``.keras`` archive.
    """
    check_model_format(path)
    load_builtins()
    return keras.saving.load_model(path, compile=compile, safe_mode=True)


def _save(model: keras.Model, path: Path) -> Path:
    with atomic_path(path) as temporary:
        model.save(temporary)
    return path


def save_model(model, folder, run_id: str) -> dict[str, Path]:
    """Write the family model and its parts into ``folder``.

    Returns:
        ``{"full": path, "merger": path, "encoder_<tm>": path, "decoder_<tm>": path}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"full": _save(model, model_path(folder, run_id))}
    merger = getattr(model, "merger_model", None)
    if merger is not None:
        paths["merger"] = _save(merger(), folder / MERGER_FILE)
    for kind, parts in (("encoder", getattr(model, "encoders", {})), ("decoder", getattr(model, "decoders", {}))):
        for name, part in parts.items():
            path = part_path(folder, kind, name)
            paths[path.stem] = _save(part, path)
    return paths


def load_model(model_file, compile: bool = True):
    """The family model saved at ``model_file`` (safe mode); ``compile`` restores its loss and optimizer state.

    Raises:
        FileNotFoundError: if the file does not exist.
    """
    if not Path(model_file).is_file():
        raise FileNotFoundError(f"model {str(model_file)!r} is missing; pass the <id>.keras written by "
                                "--mode train.")
    return load_keras(model_file, compile=compile)


def load_part(folder, kind: str, tm) -> keras.Model:
    """One saved encoder or decoder of the model folder (``folder`` may also be the model file).

    Raises:
        FileNotFoundError: naming the missing file.
    """
    path = part_path(folder_of(folder), kind, tm)
    if not path.is_file():
        name = tm if isinstance(tm, str) else tm.name
        raise FileNotFoundError(f"{path} is missing: the model folder has no {kind} for {name!r}; was it among the "
                                f"training --{'input' if kind == 'encoder' else 'output'}_tensors?")
    return load_keras(path)


def load_encoder(folder, tm) -> keras.Model:
    return load_part(folder, "encoder", tm)


def load_decoder(folder, tm) -> keras.Model:
    return load_part(folder, "decoder", tm)


def saves_parts(spec: dict) -> bool:
    """Whether a family writes its encoders and decoders as files of their own (the autoencoder family does)."""
    return "encoders" in spec


def load_encoders(model_file, tmaps) -> dict:
    """``{tm.name: Model from tm's input to its latent}``: the saved encoder files where the family writes them,
    else the family model's own :meth:`encoder_of` (for a VAE: the mean).

    Raises:
        FileNotFoundError: for a missing model or part file.
    """
    if saves_parts(saved_spec(model_file)):
        return {tm.name: load_encoder(model_file, tm) for tm in tmaps}
    model = load_model(model_file, compile=False)
    return {tm.name: model.encoder_of(tm) for tm in tmaps}


def missing_parts(folder, kind: str, tmaps) -> list[str]:
    """The part files of ``tmaps`` that the model folder lacks."""
    return [str(part_path(folder_of(folder), kind, tm)) for tm in tmaps
            if not part_path(folder_of(folder), kind, tm).is_file()]


def saved_spec(model_file) -> dict:
    """The spec of a family model file, read from its config without loading weights.

    Raises:
        ValueError: if the file is not a model saved by ``--mode train``.
    """
    import json
    import zipfile

    try:
        with zipfile.ZipFile(model_file) as archive:
            spec = json.loads(archive.read("config.json"))["config"]["spec"]
        spec["inputs"], spec["outputs"]
    except (zipfile.BadZipFile, KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(model_file)!r} is not a model saved by --mode train ({type(error).__name__}: "
                         f"{error}); pass the <id>.keras of a training run.") from None
    return spec
