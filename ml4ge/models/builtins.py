"""Imports the modules that register ml4ge's built-in blocks, families and Keras classes."""

from __future__ import annotations


def load_builtins() -> None:
    """Register the built-in blocks and model families (idempotent; kept out of import time of the registries)."""
    import ml4ge.models.autoencoder  # noqa: F401
    import ml4ge.models.conv  # noqa: F401
    import ml4ge.models.dense  # noqa: F401
    import ml4ge.models.layers  # noqa: F401
    import ml4ge.models.losses  # noqa: F401
    import ml4ge.models.merges  # noqa: F401
