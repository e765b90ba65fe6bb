"""Recipes: one module per ``--mode``, found through a registry of module paths.

Modules are imported only when their mode runs, so ``--help`` and ``tensorize`` do not pay for TensorFlow.
Each recipe module defines ``run(args) -> int`` (the exit status) and may define ``validate(args)`` that
raises ``ValueError``/``FileNotFoundError`` before any work starts.
"""

from __future__ import annotations

import importlib

from ml4ge.registry import Registry


class RecipeRegistry(Registry[str]):
    """Registry of mode name -> module path, with :meth:`load` importing the module."""

    def load(self, mode: str):
        return importlib.import_module(self.get(mode))


RECIPES = RecipeRegistry("mode")
RECIPES.register("tensorize", "ml4ge.recipes.tensorize")
