"""The ``autoencoder`` family: one encoder per input map, a merge, one decoder per output map.

It serves unimodal autoencoders (UDIP), multimodal pair models (DropFuse, pair losses) and supervised models
(encoders -> a head per output map). Every encoder and decoder is a Keras model of its own inside the family
model (``encode_<tm>``, ``decode_<tm>``), so it can be saved, loaded and reused alone.

Optional inputs (``spec["optional"]``) come with a ``present_<tm>`` input of shape ``[B, 1]``: an absent
modality's embedding is zeroed and the merge uses only the present ones (see :mod:`ml4ge.models.merges`).

Example:
    >>> model = build_autoencoder([t1], [t1], ["conv_encode"], ["concat"], ["conv_decode"], ModelConfig())
    >>> latents = model.encode({t1.input_name: volumes})["t1"]
"""

from __future__ import annotations

import copy
import types
from pathlib import Path

import keras

import ml4ge.models.conv  # noqa: F401  (registers the built-in blocks)
import ml4ge.models.dense  # noqa: F401
import ml4ge.models.merges  # noqa: F401
from ml4ge.models.config import ModelConfig
from ml4ge.models.family import FamilyModel, map_from_spec, map_spec
from ml4ge.models.layers import ZeroAbsent
from ml4ge.models.layout import part_file
from ml4ge.models.recompute import check_recomputable, recompute_in_backward
from ml4ge.models.registries import DECODERS, ENCODERS, FAMILIES, MERGES
from ml4ge.tensormap import TensorMap, keras_safe

SAVED = "saved"  # the block name of a part taken from a saved .keras file


def part_name(kind: str, tm: TensorMap) -> str:
    """Name of the nested part model: ``encode_<tm>`` or ``decode_<tm>``."""
    return f"{'encode' if kind == 'encoder' else 'decode'}_{keras_safe(tm.name)}"


@FAMILIES.register("autoencoder")
@keras.saving.register_keras_serializable(package="ml4ge")
class AutoencoderModel(FamilyModel):
    """Encoders -> merge -> decoders, built from a spec (see :func:`autoencoder_spec`).

    Args:
        spec: ``{"family": "autoencoder", "inputs", "outputs", "optional", "encoders", "merge", "decoders",
            "config"}``: map specs, ``{tm name: {"block": name}}`` per part (``{"block": "saved", "model": ...}``
            for a part taken from a file, with its Keras config), the merge block name and the
            :class:`ModelConfig` as a dict.
        **kwargs: ``keras.Model`` arguments (name, trainable).
    """

    family = "autoencoder"

    @classmethod
    def from_architecture(cls, architecture, input_tmaps, output_tmaps) -> AutoencoderModel:
        """The model of an :class:`~ml4ge.models.factory.Architecture` (saved parts start from their weights)."""
        return build_autoencoder(input_tmaps, output_tmaps, architecture.encoder_blocks, architecture.merge_blocks,
                                 architecture.decoder_blocks, architecture.config, architecture.optional)

    def __init__(self, spec: dict, **kwargs):
        # === Layers ===
        config = ModelConfig.from_dict(spec["config"])
        input_maps = [map_from_spec(m) for m in spec["inputs"]]
        output_maps = [map_from_spec(m) for m in spec["outputs"]]
        optional = set(spec.get("optional", ()))
        merge = MERGES.get(spec["merge"]).from_config(config)
        if not merge.can_apply(input_maps):
            raise ValueError(f"Merge block {spec['merge']!r} does not apply to inputs {[m.name for m in input_maps]}.")
        encoders = {tm.name: _part(spec["encoders"][tm.name], "encoder", tm, config, tm.shape) for tm in input_maps}
        # === Functional graph ===
        inputs = {tm.name: keras.Input(tm.shape, name=tm.input_name) for tm in input_maps}
        presence = {tm.name: keras.Input((1,), name=tm.presence_name) for tm in input_maps if tm.name in optional}
        embeddings = {name: encoders[name](tensor) for name, tensor in inputs.items()}
        for name, flag in presence.items():
            embeddings[name] = ZeroAbsent(name=f"zero_absent_{keras_safe(name)}")([embeddings[name], flag])
        fused = merge(embeddings, presence or None)
        outputs = {}
        for tm in output_maps:
            decoder = _part(spec["decoders"][tm.name], "decoder", tm, config, tuple(fused.shape[1:]))
            _check_decoder(decoder, tm, tuple(fused.shape[1:]), _output_shape(spec["decoders"][tm.name], tm, config))
            outputs[tm.output_name] = decoder(fused)
        model_inputs = {tm.input_name: inputs[tm.name] for tm in input_maps}
        model_inputs |= {tm.presence_name: presence[tm.name] for tm in input_maps if tm.name in presence}
        kwargs.setdefault("name", "ml4ge_model")
        super().__init__(inputs=model_inputs, outputs=outputs, **kwargs)
        # === Config ===
        self.set_spec(spec)
        self._merge = merge

    @classmethod
    def check_recompute(cls, architecture, input_tmaps) -> None:
        """Refuse ``--recompute_encoders`` when an encoder of ``architecture`` changes state when called (each is
        built here, alone, to look)."""
        for tm in input_tmaps:
            entry, saved = _entry(tm, architecture.encoder_blocks, "encoder", architecture.config, tm.shape)
            check_recomputable(saved or _part(entry, "encoder", tm, architecture.config, tm.shape))

    def recompute_encoders(self) -> None:
        for part in self.encoders.values():
            recompute_in_backward(part)

    # Parts -------------------------------------------------------------------------------------------------
    # Read-only mappings (not dicts) so that Keras' saving does not walk them as containers of the model's layers.
    @property
    def encoders(self) -> types.MappingProxyType:
        """``{tm.name: encoder Model}`` mapping ``tm.shape`` to the embedding ``[B, D_tm]``."""
        return types.MappingProxyType({tm.name: self.get_layer(part_name("encoder", tm)) for tm in self.input_maps})

    @property
    def decoders(self) -> types.MappingProxyType:
        """``{tm.name: decoder Model}`` mapping the fused latent to ``tm.shape``."""
        return types.MappingProxyType({tm.name: self.get_layer(part_name("decoder", tm)) for tm in self.output_maps})

    @property
    def latent_size(self) -> int:
        return int(self.get_layer(part_name("decoder", self.output_maps[0])).input.shape[-1])

    def merger_model(self) -> keras.Model:
        """The merge as a model of its own over the embeddings (``embed_<tm>`` inputs), sharing its weights."""
        embeddings = {tm.name: keras.Input(self.encoders[tm.name].output.shape[1:], name=f"embed_{keras_safe(tm.name)}")
                      for tm in self.input_maps}
        return keras.Model(list(embeddings.values()), self._merge.fuse(embeddings), name="merger")

    # Encoding and decoding -----------------------------------------------------------------------------------
    def encode(self, inputs: dict) -> dict:
        """``{tm.name: embedding}`` of every input map found in ``inputs`` (keyed by ``tm.input_name``)."""
        return {tm.name: self.encoders[tm.name](inputs[tm.input_name], training=False)
                for tm in self.input_maps if tm.input_name in inputs}

    def fuse(self, embeddings: dict, presence: dict | None = None):
        """The fused latent of ``embeddings`` (``{tm.name: [B, d]}``; all inputs, or one alone).

        Args:
            embeddings: per input map; a single map's embedding is its own latent.
            presence: ``{tm.name: [B, 1]}`` flags of optional maps (absent ones do not take part).
        """
        if len(embeddings) == 1:
            return next(iter(embeddings.values()))
        names = [tm.name for tm in self.input_maps]
        if sorted(embeddings) != sorted(names):
            raise ValueError(f"the merge fuses {names}; got embeddings of {sorted(embeddings)}.")
        presence = {name: keras.ops.convert_to_tensor(flag, "float32") for name, flag in (presence or {}).items()}
        ordered = {name: keras.ops.convert_to_tensor(embeddings[name]) for name in names}
        for name, flag in presence.items():
            ordered[name] = ordered[name] * flag
        return self._merge.fuse(ordered, presence or None, training=False)

    def latent(self, inputs: dict):
        """The fused latent of a batch of ``inputs`` (with ``present_<tm>`` flags for optional maps)."""
        presence = {tm.name: inputs[tm.presence_name] for tm in self.input_maps if tm.presence_name in inputs}
        return self.fuse(self.encode(inputs), presence)

    def encoder_of(self, tm) -> keras.Model:
        """The nested encoder of input map ``tm`` (a TensorMap or its name)."""
        return self.encoders[tm if isinstance(tm, str) else tm.name]

    def decode(self, latent, tm):
        """The output map ``tm`` (a TensorMap or its name) decoded from ``latent``."""
        name = tm if isinstance(tm, str) else tm.name
        return self.decoders[name](latent, training=False)


def _part(entry: dict, kind: str, tm: TensorMap, config: ModelConfig, input_shape) -> keras.Model:
    """The ``encode_<tm>``/``decode_<tm>`` model of a spec entry: a registered block, or a saved part's config."""
    if entry["block"] == SAVED:  # Keras consumes the config it deserializes: give it a copy
        return keras.saving.deserialize_keras_object(copy.deepcopy(entry["model"]))
    block = (ENCODERS if kind == "encoder" else DECODERS).get(entry["block"]).from_config(config)
    input_name = tm.input_name if kind == "encoder" else f"latent_{keras_safe(tm.name)}"
    inputs = keras.Input(tuple(input_shape), name=input_name)
    return keras.Model(inputs, block(inputs, tm), name=part_name(kind, tm))


def _output_shape(entry: dict, tm: TensorMap, config: ModelConfig) -> tuple:
    """What the decoder of ``entry`` outputs for ``tm``: ``tm.shape``, or a block's own ``output_shape(tm)`` (the
    ``soft_label`` head's log-probabilities, one per bin, for a scalar age)."""
    block = None if entry["block"] == SAVED else DECODERS.get(entry["block"]).from_config(config)
    return tuple(block.output_shape(tm)) if hasattr(block, "output_shape") else tm.shape


def _check_decoder(decoder: keras.Model, tm: TensorMap, latent_shape: tuple, expected: tuple) -> None:
    got_in, got_out = tuple(decoder.input.shape[1:]), tuple(decoder.output.shape[1:])
    if got_out != expected:
        raise ValueError(f"Decoder for {tm.name!r} outputs {got_out}, not {expected}.")
    if got_in != latent_shape:
        raise ValueError(f"Decoder for {tm.name!r} takes latents of shape {got_in}, but the merge gives "
                         f"{latent_shape}; pass a decoder trained with the same latent size.")


# Specs ---------------------------------------------------------------------------------------------------------
def _check_names(tmaps: list[TensorMap], role: str) -> None:
    safe = [keras_safe(tm.name) for tm in tmaps]
    if len(set(safe)) != len(safe):
        raise ValueError(f"{role} TensorMaps {[tm.name for tm in tmaps]} give clashing Keras names {safe}; rename one.")


def _check_paths(entries, kind: str, tmaps: list[TensorMap]) -> None:
    """Every ``.keras`` entry must exist and name one of ``tmaps``."""
    expected = {part_file(kind, tm) for tm in tmaps}
    for entry in entries:
        if not str(entry).endswith(".keras"):
            continue
        if not Path(entry).is_file():
            raise FileNotFoundError(f"--{kind}_blocks file {str(entry)!r} does not exist.")
        if Path(entry).name not in expected:
            raise ValueError(
                f"--{kind}_blocks file {str(entry)!r} matches no TensorMap; expected one of {sorted(expected)}."
            )


def _load_part(path, name: str, input_shape: tuple | None, output_shape: tuple | None) -> keras.Model:
    """A saved part, renamed (wrapped) to ``name`` so that parts loaded from several runs never clash.

    ``None`` shapes are not checked here (a decoder's input is checked against the merge's latent when the model
    is built).
    """
    loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    got_in, got_out = tuple(loaded.input.shape[1:]), tuple(loaded.output.shape[1:])
    if (input_shape is not None and got_in != tuple(input_shape)) or (
            output_shape is not None and got_out != tuple(output_shape)):
        raise ValueError(
            f"{path}: maps {got_in} -> {got_out}, but this model needs {input_shape} -> "
            f"{tuple(output_shape) if output_shape else '(embedding,)'}; pass a part trained for this TensorMap."
        )
    if loaded.name == name:
        return loaded
    inputs = keras.Input(got_in, name=f"{name}_input")
    return keras.Model(inputs, loaded(inputs), name=name)


def _entry(tm: TensorMap, entries, kind: str, config: ModelConfig, input_shape=None, output_shape=None):
    """``(spec entry, loaded part or None)``: the first entry that applies to ``tm``."""
    registry = ENCODERS if kind == "encoder" else DECODERS
    for entry in entries:
        if str(entry).endswith(".keras"):
            if Path(entry).name == part_file(kind, tm):
                part = _load_part(entry, part_name(kind, tm), input_shape, output_shape)
                return {"block": SAVED, "file": str(entry), "model": keras.saving.serialize_keras_object(part)}, part
            continue
        if registry.get(entry).from_config(config).can_apply(tm):
            return {"block": str(entry)}, None
    raise ValueError(f"No {kind} block in {list(entries)} applies to TensorMap {tm.name!r} of shape {tm.shape}.")


def _merge_name(entries) -> str:
    entries = list(entries)
    if len(entries) > 1:
        raise ValueError(f"Give one merge block (--merge_blocks), got {entries}.")
    name = entries[0] if entries else "concat"
    MERGES.get(name)
    return name


def autoencoder_spec(input_tmaps, output_tmaps, encoder_blocks, merge_blocks, decoder_blocks,
                     config: ModelConfig | None = None, optional=()) -> tuple[dict, dict]:
    """The spec of a model, and the parts loaded from files (``{part name: model}``) whose weights it starts from.

    Raises:
        UnknownNameError: for an unknown block name (with the closest names).
        ValueError: when no block applies to a map, names clash, or a saved part does not fit.
        FileNotFoundError: for a saved part that does not exist.
    """
    config = config or ModelConfig()
    input_tmaps, output_tmaps = list(input_tmaps), list(output_tmaps)
    if not input_tmaps or not output_tmaps:
        raise ValueError(f"Need input and output TensorMaps, got inputs {input_tmaps} and outputs {output_tmaps}.")
    _check_names(input_tmaps, "Input")
    _check_names(output_tmaps, "Output")
    _check_paths(encoder_blocks, "encoder", input_tmaps)
    _check_paths(decoder_blocks, "decoder", output_tmaps)
    unknown = sorted(set(optional) - {tm.name for tm in [*input_tmaps, *output_tmaps]})
    if unknown:
        raise ValueError(f"--optional_tensors {unknown} are not among the model's TensorMaps.")
    merge = _merge_name(merge_blocks)
    loaded, encoders, decoders = {}, {}, {}
    for tm in input_tmaps:
        encoders[tm.name], part = _entry(tm, encoder_blocks, "encoder", config, tm.shape)
        if part is not None:
            loaded[part.name] = part
    for tm in output_tmaps:
        decoders[tm.name], part = _entry(tm, decoder_blocks, "decoder", config, None, tm.shape)
        if part is not None:
            loaded[part.name] = part
    spec = {"family": "autoencoder", "inputs": [map_spec(tm) for tm in input_tmaps],
            "outputs": [map_spec(tm) for tm in output_tmaps],
            "optional": [tm.name for tm in input_tmaps if tm.name in set(optional)],
            "encoders": encoders, "merge": merge, "decoders": decoders, "config": config.to_dict()}
    return spec, loaded


def build_autoencoder(input_tmaps, output_tmaps, encoder_blocks, merge_blocks, decoder_blocks,
                      config: ModelConfig | None = None, optional=()) -> AutoencoderModel:
    """Build the model; parts named by ``.keras`` files start from their saved weights.

    Args:
        input_tmaps, output_tmaps: TensorMaps (the same map in both makes an autoencoder).
        encoder_blocks, decoder_blocks: block names and/or paths to saved ``encoder_<tm>.keras`` /
            ``decoder_<tm>.keras``; per TensorMap the first entry that applies is used.
        merge_blocks: at most one merge block name (empty: ``concat``).
        config: block configuration; defaults to :class:`ModelConfig()`.
        optional: names of input maps a sample may lack.

    Returns:
        An uncompiled :class:`AutoencoderModel`.
    """
    spec, loaded = autoencoder_spec(input_tmaps, output_tmaps, encoder_blocks, merge_blocks, decoder_blocks,
                                    config, optional)
    model = AutoencoderModel(spec)
    for name, part in loaded.items():
        model.get_layer(name).set_weights(part.get_weights())
    return model
