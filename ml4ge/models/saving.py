"""Load a saved ``.keras`` model with every ml4ge layer, loss and family registered, in Keras' safe mode."""

from __future__ import annotations

from pathlib import Path


def load_keras(path: str | Path, compile: bool = False):
    """The model saved at ``path``; ``compile`` restores its loss and optimizer state.

    ml4ge's custom classes (families, centring templates, crops, pair layers, losses) register themselves with
    Keras when their modules are imported, so they are imported here: a model or an encoder can be loaded by a
    process that built nothing.
    """
    import keras

    from ml4ge.models.builtins import load_builtins

    load_builtins()
    return keras.saving.load_model(path, compile=compile, safe_mode=True)
