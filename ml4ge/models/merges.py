"""Merge blocks: ``concat``, ``average``, ``dropout`` (DropFuse) and ``pair`` (pair losses + a fusion).

A merge block makes its layers once and wires the same layers each time it is called: the family wires it in
the model's graph (so the model reports the pair loss as its own metric) and again over embedding inputs for the
stand-alone merger model and for fusing latents at inference, all sharing weights. Embeddings arrive as
``{tm.name: [B, D] tensor}`` in input order. With one input every merge is the identity.

``presence`` (``{tm.name: [B, 1] flag}`` for the optional inputs; required ones count as present) makes the
fusions use only the modalities a sample has: DropFuse draws and averages among them, ``average`` averages
them, ``concat`` concatenates (the family has zeroed an absent modality's embedding), and pair losses score
only complete pairs.
"""

from __future__ import annotations

import keras
from keras import ops

from ml4ge.models.layers import DropFuse, DropFuseMl4h, PairLoss, PresentMean
from ml4ge.models.registries import MERGES
from ml4ge.registry import closest_matches

# fusion name -> (layer without presence flags, layer with them; None when the first one serves both).
FUSIONS = {
    "concat": (lambda: keras.layers.Concatenate(name="merge_concat"), None),
    "average": (lambda: keras.layers.Average(name="merge_average"),
                lambda: PresentMean(name="merge_present_average")),
    "dropout": (lambda: DropFuse(name="merge_dropfuse"), None),
    "dropout_ml4h": (lambda: DropFuseMl4h(name="merge_dropfuse_ml4h"), None),  # ml4h's, random at inference
}
_PRESENCE_AWARE = (DropFuse, PresentMean)


class Fusion:
    """One fusion by name, making its layers on first use so the model wires one layer per kind."""

    def __init__(self, name: str):
        if name not in FUSIONS:
            raise ValueError(f"Unknown fusion {name!r}; choose one of {', '.join(sorted(FUSIONS))} (--pair_merge).")
        self.name = name
        self._layers: dict[bool, keras.layers.Layer] = {}

    def layer(self, with_presence: bool) -> keras.layers.Layer:
        plain, aware = FUSIONS[self.name]
        key = with_presence and aware is not None
        if key not in self._layers:
            self._layers[key] = (aware if key else plain)()
        return self._layers[key]

    def __call__(self, embeddings: dict, presence: dict | None = None, training=None):
        values = list(embeddings.values())
        if len(values) == 1:
            return values[0]
        layer = self.layer(bool(presence))
        options = {} if training is None else {"training": training}
        if presence and isinstance(layer, _PRESENCE_AWARE):
            return layer(values, presence=presence_list(embeddings, presence), **options)
        return layer(values, **options)


def presence_list(embeddings: dict, presence: dict) -> list:
    """One ``[B, 1]`` flag per embedding, in order: the given flag, or ones for a required modality."""
    template = next(iter(presence.values()))
    return [presence[name] if name in presence else ops.ones_like(template) for name in embeddings]


class _Fuse:
    """A merge that only fuses the embeddings with one layer."""

    fusion = "concat"

    def __init__(self):
        self.fuse = Fusion(self.fusion)

    @classmethod
    def from_config(cls, config):
        return cls()

    def can_apply(self, input_tmaps) -> bool:
        return len(input_tmaps) >= 1

    def __call__(self, embeddings: dict, presence: dict | None = None):
        return self.fuse(embeddings, presence)


@MERGES.register("concat")
class ConcatMerge(_Fuse):
    """Concatenates the embeddings (latent size = sum of the embedding sizes)."""

    fusion = "concat"


@MERGES.register("average")
class AverageMerge(_Fuse):
    """Averages embeddings of equal size."""

    fusion = "average"


@MERGES.register("dropout")
class DropoutMerge(_Fuse):
    """DropFuse over all embeddings: a random modality per latent coordinate in training, their mean at inference."""

    fusion = "dropout"


@MERGES.register("pair")
class PairMerge:
    """Ties paired embeddings with a pair loss, then fuses all embeddings (``--pair_merge``).

    One :class:`~ml4ge.models.layers.PairLoss` layer serves every pair (one temperature, one metric), as in ml4h.
    Pairs are applied in sequence so that every pair-loss call lies on the path to the output.

    Args:
        pair: a :class:`~ml4ge.models.config.PairConfig`.

    Raises:
        ValueError: (when called) for a pair naming an input that does not exist, or no pairs with != 2 inputs.
    """

    def __init__(self, pair):
        self.pairs = tuple(tuple(p) for p in pair.pairs)
        self.loss = PairLoss(pair.loss, weight=pair.weight, name="pair_loss")
        self.fuse = Fusion(pair.merge)

    @classmethod
    def from_config(cls, config):
        return cls(config.pair)

    def can_apply(self, input_tmaps) -> bool:
        return len(input_tmaps) >= 2

    def resolve_pairs(self, names: list[str]) -> tuple[tuple[str, str], ...]:
        """The pairs to tie: the configured ones, or the two inputs when none are configured."""
        if not self.pairs:
            if len(names) != 2:
                raise ValueError(f"The pair merge needs --pairs A B when there are {len(names)} inputs: {names}.")
            return ((names[0], names[1]),)
        for name in (n for pair in self.pairs for n in pair):
            if name not in names:
                hint = closest_matches(name, names)
                raise ValueError(
                    f"--pairs names {name!r}, which is not an input TensorMap"
                    f"{' (did you mean ' + ', '.join(map(repr, hint)) + '?)' if hint else ''}; inputs: {names}."
                )
        return self.pairs

    def __call__(self, embeddings: dict, presence: dict | None = None):
        current = dict(embeddings)
        for left, right in self.resolve_pairs(list(current)):
            weights = _pair_weights(presence or {}, left, right)
            options = {} if weights is None else {"weights": weights}
            current[left], current[right] = self.loss([current[left], current[right]], **options)
        return self.fuse(current, presence)


def _pair_weights(presence: dict, left: str, right: str):
    """``[B, 1]`` flags of the complete pairs, or None when both members are required."""
    flags = [presence[name] for name in (left, right) if name in presence]
    if not flags:
        return None
    return flags[0] if len(flags) == 1 else ops.multiply(flags[0], flags[1])
