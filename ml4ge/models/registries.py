"""The model registries, one per role, importing no implementation.

Blocks, families and layer factories register themselves here when their modules are imported
(:func:`ml4ge.models.builtins.load_builtins` imports the built-in ones). Keeping the registries apart from the
implementations means an implementation module imports this one, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable

from ml4ge.registry import Registry

ENCODERS: Registry[type] = Registry("encoder block")
MERGES: Registry[type] = Registry("merge block")
DECODERS: Registry[type] = Registry("decoder block")
FAMILIES: Registry[type] = Registry("model family")

# Layer factories: (layer_name, rank) -> a new Layer; rank is the number of spatial axes (0 for vectors).
ACTIVATIONS: Registry[Callable] = Registry("activation")
NORMALIZATIONS: Registry[Callable] = Registry("normalization")
REGULARIZATIONS: Registry[Callable] = Registry("regularization")
