"""Imports the modules that register ml4ge's built-in blocks, families and Keras classes."""

from __future__ import annotations

import sys


def load_builtins() -> None:
    """Register the built-in blocks and model families (idempotent; kept out of import time of the registries)."""
    import ml4ge.models.autoencoder  # noqa: F401
    import ml4ge.models.conv  # noqa: F401
    import ml4ge.models.conv_ml4h  # noqa: F401
    import ml4ge.models.cvae  # noqa: F401
    import ml4ge.models.dense  # noqa: F401
    import ml4ge.models.layers  # noqa: F401
    import ml4ge.models.losses  # noqa: F401
    import ml4ge.models.merges  # noqa: F401
    import ml4ge.models.predictor  # noqa: F401
    import ml4ge.models.sfcn  # noqa: F401
    import ml4ge.models.soft_label  # noqa: F401
    import ml4ge.models.vae  # noqa: F401
    import ml4ge.models.vit  # noqa: F401
    import ml4ge.models.vit_loss  # noqa: F401


def register_keras_objects(keras_module) -> None:
    """Run when Keras is imported (see :mod:`ml4ge`): register ml4ge's classes, so a saved model loads with plain
    ``keras.saving.load_model``.

    When an ml4ge module is itself importing Keras, registering now would re-enter that half-imported module;
    ml4ge then registers where it loads models (:func:`ml4ge.models.artifacts.load_keras`) and builds them.
    """
    if not _ml4ge_module_importing():
        load_builtins()


def _ml4ge_module_importing() -> bool:
    """Whether an ml4ge module is being executed by the import system right now."""
    return any(getattr(getattr(module, "__spec__", None), "_initializing", False)
               for name, module in list(sys.modules.items()) if name.startswith("ml4ge."))
