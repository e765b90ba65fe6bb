"""Build, compile, save and load models made of encoder, merge and decoder blocks.

``build_model`` makes one encoder model per input TensorMap, one merger model over their embeddings, one
decoder model per output TensorMap and the full model joining them; each part is a Keras model of its own so
that it can be saved, loaded and reused alone (``infer_encoders`` uses only the encoders).

Example:
    >>> parts = build_model([t1], [t1], ["conv_encode"], ["concat"], ["conv_decode"], ModelConfig())
    >>> compile_model(parts, [t1], learning_rate=1e-4)
    >>> parts.full.fit({t1.input_name: x}, {t1.output_name: t1_target})
    >>> save_parts(parts, run_folder, "my_run")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import keras

from ml4ge.models.blocks import DECODERS, ENCODERS, MERGES, load_block_modules
from ml4ge.models.config import ModelConfig
from ml4ge.models.losses import get_loss
from ml4ge.models.saving import load_keras
from ml4ge.tensormap import TensorMap, keras_safe

MERGER_FILE = "merger.keras"


@dataclass
class ModelParts:
    """The full model and its parts.

    Attributes:
        full: inputs ``{tm.input_name: tensor}``, outputs ``{tm.output_name: tensor}``.
        encoders: ``{tm.name: Model}`` mapping ``tm.shape`` to the embedding ``[B, D_tm]``.
        merger: Model over the list of embeddings (input order) to the fused latent ``[B, D]``.
        decoders: ``{tm.name: Model}`` mapping the fused latent to ``tm.shape``.
    """

    full: keras.Model
    encoders: dict[str, keras.Model] = field(default_factory=dict)
    merger: keras.Model | None = None
    decoders: dict[str, keras.Model] = field(default_factory=dict)

    @property
    def latent_size(self) -> int:
        return int(self.merger.output.shape[-1])


def saved_part_name(kind: str, tm: TensorMap) -> str:
    """File name of a saved part: ``encoder_<keras-safe name>.keras`` or ``decoder_<...>.keras``."""
    return f"{kind}_{keras_safe(tm.name)}.keras"


def _check_names(tmaps: list[TensorMap], role: str) -> None:
    safe = [keras_safe(tm.name) for tm in tmaps]
    if len(set(safe)) != len(safe):
        raise ValueError(f"{role} TensorMaps {[tm.name for tm in tmaps]} give clashing Keras names {safe}; rename one.")


def _check_paths(entries, kind: str, tmaps: list[TensorMap]) -> None:
    """Every ``.keras`` entry must exist and name one of ``tmaps``."""
    expected = {saved_part_name(kind, tm) for tm in tmaps}
    for entry in entries:
        if not str(entry).endswith(".keras"):
            continue
        if not Path(entry).is_file():
            raise FileNotFoundError(f"--{kind}_blocks file {str(entry)!r} does not exist.")
        if Path(entry).name not in expected:
            raise ValueError(
                f"--{kind}_blocks file {str(entry)!r} matches no TensorMap; expected one of {sorted(expected)}."
            )


def _load_part(path, name: str, input_shape: tuple, output_shape: tuple | None) -> keras.Model:
    """A saved part, renamed (wrapped) to ``name`` so that parts loaded from several runs never clash."""
    loaded = load_keras(path)
    got_in, got_out = tuple(loaded.input.shape[1:]), tuple(loaded.output.shape[1:])
    if got_in != tuple(input_shape) or (output_shape is not None and got_out != tuple(output_shape)):
        raise ValueError(
            f"{path}: maps {got_in} -> {got_out}, but this model needs {tuple(input_shape)} -> "
            f"{tuple(output_shape) if output_shape else '(embedding,)'}; pass a part trained for this TensorMap."
        )
    if loaded.name == name:
        return loaded
    inputs = keras.Input(input_shape, name=f"{name}_input")
    return keras.Model(inputs, loaded(inputs), name=name)


def _part_for(tm: TensorMap, entries, kind: str, registry, config: ModelConfig, inputs, output_shape=None):
    """The first entry that applies to ``tm``: its saved file, or a registered block that can apply."""
    name = f"{'encode' if kind == 'encoder' else 'decode'}_{keras_safe(tm.name)}"
    for entry in entries:
        if str(entry).endswith(".keras"):
            if Path(entry).name == saved_part_name(kind, tm):
                return _load_part(entry, name, tuple(inputs.shape[1:]), output_shape)
            continue
        block = registry.get(entry).from_config(config)
        if block.can_apply(tm):
            return keras.Model(inputs, block(inputs, tm), name=name)
    raise ValueError(f"No {kind} block in {list(entries)} applies to TensorMap {tm.name!r} of shape {tm.shape}.")


def _merge_block(entries, config: ModelConfig, input_tmaps: list[TensorMap]):
    if len(entries) > 1:
        raise ValueError(f"Give one merge block (--merge_blocks), got {list(entries)}.")
    block = MERGES.get(entries[0] if entries else "concat").from_config(config)
    if not block.can_apply(input_tmaps):
        raise ValueError(f"Merge block {entries[0]!r} does not apply to inputs {[tm.name for tm in input_tmaps]}.")
    return block


def build_model(input_tmaps, output_tmaps, encoder_blocks, merge_blocks, decoder_blocks,
                config: ModelConfig | None = None) -> ModelParts:
    """Build encoders, merger, decoders and the full model.

    Args:
        input_tmaps, output_tmaps: TensorMaps (the same map in both makes an autoencoder).
        encoder_blocks, decoder_blocks: block names and/or paths to saved ``encoder_<tm>.keras`` /
            ``decoder_<tm>.keras``; per TensorMap the first entry that applies is used.
        merge_blocks: at most one merge block name (empty: ``concat``).
        config: block configuration; defaults to :class:`ModelConfig()`.

    Returns:
        :class:`ModelParts` (uncompiled).

    Raises:
        UnknownNameError: for an unknown block name (with the closest names).
        ValueError: when no block applies to a map, names clash, or a saved part does not fit.
        FileNotFoundError: for a saved part that does not exist.
    """
    load_block_modules()
    config = config or ModelConfig()
    input_tmaps, output_tmaps = list(input_tmaps), list(output_tmaps)
    if not input_tmaps or not output_tmaps:
        raise ValueError(f"Need input and output TensorMaps, got inputs {input_tmaps} and outputs {output_tmaps}.")
    _check_names(input_tmaps, "Input")
    _check_names(output_tmaps, "Output")
    _check_paths(encoder_blocks, "encoder", input_tmaps)
    _check_paths(decoder_blocks, "decoder", output_tmaps)
    inputs = {tm.name: keras.Input(tm.shape, name=tm.input_name) for tm in input_tmaps}
    encoders = {tm.name: _part_for(tm, encoder_blocks, "encoder", ENCODERS, config, inputs[tm.name])
                for tm in input_tmaps}
    merge = _merge_block(merge_blocks, config, input_tmaps)
    merger_inputs = [keras.Input(encoders[tm.name].output.shape[1:], name=f"embed_{keras_safe(tm.name)}")
                     for tm in input_tmaps]
    merger = keras.Model(merger_inputs, merge(dict(zip(inputs, merger_inputs))), name="merger")
    # The merge's layers are wired again here (not the merger model) so the full model reports their metrics.
    fused = merge({name: encoders[name](tensor) for name, tensor in inputs.items()})
    decoders = {}
    for tm in output_tmaps:
        latent = keras.Input(fused.shape[1:], name=f"latent_{keras_safe(tm.name)}")
        decoders[tm.name] = _part_for(tm, decoder_blocks, "decoder", DECODERS, config, latent, tm.shape)
        if tuple(decoders[tm.name].output.shape[1:]) != tm.shape:
            raise ValueError(f"Decoder for {tm.name!r} outputs {decoders[tm.name].output.shape}, not {tm.shape}.")
    outputs = {tm.output_name: decoders[tm.name](fused) for tm in output_tmaps}
    full = keras.Model({tm.input_name: inputs[tm.name] for tm in input_tmaps}, outputs, name="ml4ge_model")
    return ModelParts(full=full, encoders=encoders, merger=merger, decoders=decoders)


def build_from_args(args, input_tmaps, output_tmaps) -> ModelParts:
    """Build and compile the model the flags describe (``--encoder_blocks``, ``--model_preset``, ...).

    Returns:
        Compiled :class:`ModelParts`.
    """
    config = ModelConfig.from_args(args)
    parts = build_model(input_tmaps, output_tmaps, args.encoder_blocks, args.merge_blocks, args.decoder_blocks, config)
    compile_model(parts, output_tmaps, config.learning_rate, config.optimizer)
    return parts


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """A Keras optimizer by name (``adam``, ``adamw``, ``sgd``, ...) with ``learning_rate``.

    Raises:
        ValueError: for a name Keras does not know.
    """
    try:
        return keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}})
    except (ValueError, TypeError) as error:
        raise ValueError(f"Unknown optimizer {name!r} (--optimizer): {error}") from error


def compile_model(parts: ModelParts, output_tmaps, learning_rate: float = 1e-4, optimizer: str = "adam",
                  jit_compile="auto", run_eagerly: bool = False) -> keras.Model:
    """Compile the full model with each output's loss (``tm.loss``), weight (``tm.loss_weight``) and metrics.

    Masked outputs get targets with the mask packed as extra channels (``tm.target``); their losses split it.
    ``jit_compile="auto"`` means no XLA on CPU (XLA is far slower there for 3-D convolutions); ``run_eagerly``
    skips graph tracing (debugging, or tiny models where tracing costs more than the steps).

    Returns:
        ``parts.full``, compiled.
    """
    output_tmaps = list(output_tmaps)
    parts.full.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss={tm.output_name: get_loss(tm.loss) for tm in output_tmaps},
        loss_weights={tm.output_name: float(tm.loss_weight) for tm in output_tmaps},
        metrics={tm.output_name: list(tm.metrics) for tm in output_tmaps},
        jit_compile=jit_compile,
        run_eagerly=run_eagerly,
    )
    return parts.full


def _save(model: keras.Model, path: Path) -> Path:
    """Save to a temporary name and rename, so a model file is either whole or absent."""
    temporary = path.with_name(f".{path.stem}.tmp.keras")
    model.save(temporary)
    os.replace(temporary, path)
    return path


def save_parts(parts: ModelParts, folder, run_id: str) -> dict[str, Path]:
    """Write ``<run_id>.keras``, ``encoder_<tm>.keras``, ``decoder_<tm>.keras`` and ``merger.keras`` in ``folder``.

    Returns:
        ``{"full": path, "merger": path, "encoder_<tm>": path, "decoder_<tm>": path}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"full": _save(parts.full, folder / f"{run_id}.keras"),
             "merger": _save(parts.merger, folder / MERGER_FILE)}
    for kind, models in (("encoder", parts.encoders), ("decoder", parts.decoders)):
        for name, model in models.items():
            stem = f"{kind}_{keras_safe(name)}"
            paths[stem] = _save(model, folder / f"{stem}.keras")
    return paths


def _names_by_safe(tmaps, keys, prefix: str) -> dict[str, str]:
    """``{safe name: key for the parts dict}``: TensorMap names when given, else the safe names."""
    safe_names = [key[len(prefix):] for key in keys]
    by_safe = {keras_safe(tm.name): tm.name for tm in tmaps or ()}
    return {safe: by_safe.get(safe, safe) for safe in safe_names}


def load_parts(model_file, input_tmaps=None, output_tmaps=None, compile: bool = True) -> ModelParts:
    """Load a model saved by :func:`save_parts` (safe mode, no custom objects needed).

    Args:
        model_file: the ``<run_id>.keras`` full model; the parts are read from the same folder.
        input_tmaps, output_tmaps: when given, the parts dicts are keyed by TensorMap name, else by safe name.
        compile: restore the full model's loss and optimizer state.

    Returns:
        :class:`ModelParts`; each part is its own copy (weights are not shared between the loaded files).

    Raises:
        FileNotFoundError: if the model file or one of its parts is missing.
    """
    model_file = Path(model_file)
    folder = model_file.parent
    required = [model_file, folder / MERGER_FILE]
    full = load_keras(model_file, compile=compile) if model_file.is_file() else None
    if full is not None:
        inputs = _names_by_safe(input_tmaps, full.input.keys(), "input_")
        outputs = _names_by_safe(output_tmaps, full.output.keys(), "output_")
        required += [folder / f"encoder_{s}.keras" for s in inputs] + [folder / f"decoder_{s}.keras" for s in outputs]
    missing = [str(path) for path in required if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"Cannot load model {str(model_file)!r}: missing {missing}.")

    return ModelParts(
        full=full,
        encoders={name: load_keras(folder / f"encoder_{safe}.keras") for safe, name in inputs.items()},
        merger=load_keras(folder / MERGER_FILE),
        decoders={name: load_keras(folder / f"decoder_{safe}.keras") for safe, name in outputs.items()},
    )
