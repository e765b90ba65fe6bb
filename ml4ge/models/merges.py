"""Merge blocks: ``concat``, ``average``, ``dropout`` (DropFuse) and ``pair`` (pair losses + a fusion).

A merge block makes its layers once, in ``__init__``, and wires the same layers each time it is called: the
factory calls it on the merger model's inputs and again in the full model's graph, so both share weights and
the full model reports the pair loss as its own metric. Embeddings arrive as ``{tm.name: [B, D] tensor}`` in
input order. With one input every merge is the identity.

Differences from ml4h: ``concat`` only concatenates (ml4h's adds another dense block named ``embed``);
``dropout`` is DropFuse over all embeddings, deterministic at inference (ml4h's DropoutBlock looks at the first
pair only and stays random at inference).
"""

from __future__ import annotations

import keras

from ml4ge.models.blocks import MERGES
from ml4ge.models.layers import DropFuse, PairLoss
from ml4ge.registry import closest_matches

FUSIONS = {
    "concat": lambda: keras.layers.Concatenate(name="merge_concat"),
    "average": lambda: keras.layers.Average(name="merge_average"),
    "dropout": lambda: DropFuse(name="merge_dropfuse"),
}


def _fusion(name: str):
    if name not in FUSIONS:
        raise ValueError(f"Unknown fusion {name!r}; choose one of {', '.join(sorted(FUSIONS))} (--pair_merge).")
    return FUSIONS[name]()


class _Fuse:
    """A merge that only fuses the embeddings with one layer."""

    fusion = "concat"

    def __init__(self):
        self.layer = _fusion(self.fusion)

    @classmethod
    def from_config(cls, config):
        return cls()

    def can_apply(self, input_tmaps) -> bool:
        return len(input_tmaps) >= 1

    def __call__(self, embeddings: dict):
        values = list(embeddings.values())
        return values[0] if len(values) == 1 else self.layer(values)


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
        self.fuse = _fusion(pair.merge)

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

    def __call__(self, embeddings: dict):
        current = dict(embeddings)
        for left, right in self.resolve_pairs(list(current)):
            current[left], current[right] = self.loss([current[left], current[right]])
        return self.fuse(list(current.values()))
