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
RECIPES.register("train", "ml4ge.recipes.train")
RECIPES.register("infer", "ml4ge.recipes.infer")
RECIPES.register("infer_encoders", "ml4ge.recipes.infer_encoders")
RECIPES.register("merge_shards", "ml4ge.recipes.merge_shards")
RECIPES.register("compare", "ml4ge.recipes.compare")
RECIPES.register("explore", "ml4ge.recipes.explore")
RECIPES.register("interpret", "ml4ge.recipes.interpret")
RECIPES.register("demo", "ml4ge.recipes.demo")
RECIPES.register("associate", "ml4ge.recipes.associate")
