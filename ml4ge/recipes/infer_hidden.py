"""``--mode infer_hidden``: ml4h's mode name for latent tables, an alias of ``--mode infer_encoders``.

ml4h's ``infer_hidden`` reads the layer ``--hidden_layer`` (default ``embed``) of a model; ml4ge's latents are its
encoders' outputs, the layers ml4h names ``embed_<tmap>``. So ``--hidden_layer embed`` (ml4h's default) writes every
input's table, ``--hidden_layer embed_<tmap>`` that input's alone, as ``infer_encoders`` would
(``hidden_<tmap>_<id>.tsv``: ml4ge's file names, not ml4h's ``hidden_<layer>_<id>.tsv``). Other layers are refused.
With ml4h's conv style the table holds the activated embedding, as ml4h's ``infer_encoders`` writes; ml4h's
``infer_hidden --hidden_layer embed`` read the merge block's dense layer before its activation, which ml4ge's
models do not have.
"""

from __future__ import annotations

import dataclasses

from ml4ge.arguments import flag_settings
from ml4ge.lookup import resolve_all
from ml4ge.recipes import infer_encoders
from ml4ge.recipes.infer_encoders import InferEncodersSettings

ML4H_TOP_EMBED = "embed"  # ml4h's default --hidden_layer


@flag_settings
class InferHiddenSettings(InferEncodersSettings):
    """The flags of ``--mode infer_hidden``: those of ``infer_encoders`` and ``--hidden_layer``."""

    mode = "infer_hidden"
    hidden_layer: str


Settings = InferHiddenSettings


def selected_inputs(args: InferHiddenSettings) -> tuple[str, ...]:
    """The ``--input_tensors`` whose encoder output ``--hidden_layer`` names.

    Raises:
        ValueError: for a layer that is no encoder output, naming the layers there are and ``infer_encoders``.
    """
    if args.hidden_layer == ML4H_TOP_EMBED:
        return tuple(args.input_tensors)
    tmaps = resolve_all(args.input_tensors, args.tensormap_prefix)
    chosen = [given for given, tm in zip(args.input_tensors, tmaps) if args.hidden_layer == f"embed_{tm.name}"]
    if not chosen:
        layers = ", ".join([ML4H_TOP_EMBED, *(f"embed_{tm.name}" for tm in tmaps)])
        raise ValueError(f"--hidden_layer {args.hidden_layer}: ml4ge writes the encoders' outputs only ({layers}); "
                         "use one of those, or --mode infer_encoders for every input's table.")
    return tuple(chosen)


def as_infer_encoders(args: InferHiddenSettings) -> InferEncodersSettings:
    fields = {field.name: getattr(args, field.name) for field in dataclasses.fields(InferEncodersSettings)}
    return InferEncodersSettings(**{**fields, "input_tensors": selected_inputs(args)})


def validate(args: InferHiddenSettings) -> None:
    """``--hidden_layer``, then every check of ``infer_encoders``."""
    infer_encoders.validate(as_infer_encoders(args))


def run(args: InferHiddenSettings) -> int:
    return infer_encoders.run(as_infer_encoders(args))
