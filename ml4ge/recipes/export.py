"""``--mode export``: each input TensorMap's encoder of a trained model as a TensorFlow SavedModel, for serving.

    <output_folder>/<id>/encoder_<tm>/      a SavedModel (``Model.export``): ``served = tf.saved_model.load(path)``
                                           in a Python without ml4ge (nor Keras), then ``served.serve(volumes)``
                                           (a float32 batch of the map's shape, as ml4ge normalizes it) gives the
                                           latents that ``--mode infer_encoders`` writes; keep ``served``
                                           referenced while calling it
    <output_folder>/<id>/encoder_<tm>_<name>/   the family's other codes, as infer_encoders writes them in
                                           ``hidden_<tm>_<name>_<id>.tsv``: a VAE's ``log_var``, a cVAE's
                                           ``background`` means (its ``encoder_<tm>`` gives the salient means)

The encoders are the ones infer_encoders runs (``encoder_<tm>.keras`` beside ``--model_file``, or the family model's
own encoder: a VAE's mean). Each folder is written under a temporary name and renamed when whole; a rerun replaces
it. The ``.keras`` encoder files of a CNN model already load in plain Keras (stock layers only); those of a ViT hold
ml4ge's layers (token selection, position codes, transformer blocks) and need ml4ge; the VAE families write no
encoder files, so export writes ``<id>/encoder_<tm>[_<name>].keras`` beside each of their SavedModels (stock Keras
layers with CNN blocks). A SavedModel serves every one of them and needs neither ml4ge nor Keras.

Example:
    ml4ge --mode export --model_file runs/ae/ae.keras --input_tensors brain_mri.t1 --output_folder runs --id served
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.atomic import atomic_path
from ml4ge.lookup import resolve_all
from ml4ge.recipes.settings import RunSettings

log = logging.getLogger(__name__)
ENDPOINT = "serve"  # the SavedModel's function: latent = saved.serve(volume)


@flag_settings
class ExportSettings(RunSettings):
    """The flags of ``--mode export``."""

    mode = "export"
    input_tensors: tuple[str, ...]
    tensormap_prefix: str | None
    model_file: str | None


Settings = ExportSettings


def validate(args: ExportSettings) -> None:
    """Checks before any work: the model file, the maps it was trained with, and its encoder files.

    Raises:
        ValueError, FileNotFoundError, KeyError: with what to change.
    """
    from ml4ge.models.artifacts import missing_parts, saved_spec, saves_parts
    from ml4ge.recipes.infer_encoders import check_encoder_files, check_maps, check_model_file

    check_model_file(args)
    if not args.input_tensors:
        raise ValueError("--mode export needs --input_tensors: the TensorMaps whose encoders to export.")
    input_tmaps = resolve_all(args.input_tensors, args.tensormap_prefix)
    check_maps(args.model_file, input_tmaps)
    if not saves_parts(saved_spec(args.model_file)):
        return
    missing = missing_parts(args.model_file, "encoder", input_tmaps)
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing: --model_file's folder has no encoder for these maps; "
                                "copy the whole model folder that --mode train wrote.")
    check_encoder_files(args.model_file, input_tmaps)


def run(args: ExportSettings) -> int:
    """Export one SavedModel per encoder (and, for a family without encoder files, a ``.keras`` file). Returns 0."""
    from ml4ge.models.artifacts import saved_spec, saves_parts

    folder = run_folder(args)
    input_tmaps = resolve_all(args.input_tensors, args.tensormap_prefix)
    keras_files = not saves_parts(saved_spec(args.model_file))
    for name, encoder in exported_encoders(args.model_file, input_tmaps).items():
        path = export_encoder(encoder, folder / name)
        log.info("%s exported to %s (served = tf.saved_model.load(path); served.%s(volumes) -> latents)", name, path,
                 ENDPOINT)
        if keras_files:
            with atomic_path(folder / f"{name}.keras") as temporary:
                encoder.save(temporary)
    return 0


def exported_encoders(model_file, input_tmaps) -> dict:
    """``{folder name: Model}``: ``encoder_<tm>`` for each map's latent (infer_encoders' ``hidden_<tm>``), and for a
    family without encoder files ``encoder_<tm>_<name>`` for its other codes
    (:meth:`~ml4ge.models.family.FamilyModel.extra_encoders_of`: a VAE's log-variances, a cVAE's background means)."""
    from ml4ge.models.artifacts import load_encoder, load_model, saved_spec, saves_parts

    if saves_parts(saved_spec(model_file)):
        return {f"encoder_{tm.name}": load_encoder(model_file, tm) for tm in input_tmaps}
    model = load_model(model_file, compile=False)
    encoders = {f"encoder_{tm.name}": model.encoder_of(tm) for tm in input_tmaps}
    return encoders | {f"encoder_{tm.name}_{name}": encoder for tm in input_tmaps
                       for name, encoder in model.extra_encoders_of(tm).items()}


def export_encoder(encoder, path: Path) -> Path:
    """``encoder`` as a SavedModel folder at ``path``, written beside it and renamed when whole."""
    path = Path(path)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        encoder.export(str(temporary), format="tf_saved_model", verbose=False)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return path
