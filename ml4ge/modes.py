"""The modes of ``ml4ge --mode X``: mode name -> recipe module path and a one-line summary.

A registry only: it imports no recipe, so the argument definitions, the parser and ``--help`` can name the modes
without importing a recipe (nor TensorFlow); :meth:`ModeRegistry.load` imports a recipe module when it is needed.
Each recipe module defines ``Settings`` (a frozen dataclass whose fields are the flags the mode uses),
``validate(settings)`` (raises before any work) and ``run(settings) -> int`` (the exit status).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ml4ge.registry import Registry


@dataclass(frozen=True)
class Mode:
    """Where a mode's recipe lives and what it does, in one line for ``ml4ge --help``."""

    module: str
    summary: str


class ModeRegistry(Registry[Mode]):
    """Registry of mode name -> :class:`Mode`, with :meth:`load` importing the recipe module."""

    def load(self, mode: str):
        """The recipe module of ``mode``.

        Raises:
            UnknownNameError: for an unknown mode, with the closest names.
        """
        return importlib.import_module(self.get(mode).module)


RECIPES = ModeRegistry("mode")
RECIPES.register("tensorize", Mode("ml4ge.recipes.tensorize", "NIfTI volumes and phenotype CSVs -> one HD5 file "
                                                              "per subject"))
RECIPES.register("train", Mode("ml4ge.recipes.train", "fit a model made of blocks; writes the model and its parts"))
RECIPES.register("infer", Mode("ml4ge.recipes.infer", "predictions of a trained model for every sample"))
RECIPES.register("infer_encoders", Mode("ml4ge.recipes.infer_encoders", "latent tables from a trained model's "
                                                                        "encoders"))
RECIPES.register("infer_hidden", Mode("ml4ge.recipes.infer_hidden", "ml4h's name of infer_encoders (--hidden_layer "
                                                                    "embed or embed_<tmap>)"))
RECIPES.register("export", Mode("ml4ge.recipes.export", "a trained model's encoders as SavedModels for serving "
                                                        "(no ml4ge needed to load them)"))
RECIPES.register("merge_shards", Mode("ml4ge.recipes.merge_shards", "join the shards of infer_encoders --shard"))
RECIPES.register("compare", Mode("ml4ge.recipes.compare", "which latent space carries more phenotype signal"))
RECIPES.register("evaluate_groups", Mode("ml4ge.recipes.evaluate_groups", "how well latent spaces separate "
                                                                          "known groups: silhouette, GMM NMI, plots"))
RECIPES.register("explore", Mode("ml4ge.recipes.explore", "a QC table of a cohort of HD5 files"))
RECIPES.register("interpret", Mode("ml4ge.recipes.interpret", "PerDI maps: the brain regions each latent "
                                                              "dimension changes"))
RECIPES.register("demo", Mode("ml4ge.recipes.demo", "the whole method on a generated cohort, with a report"))
RECIPES.register("associate", Mode("ml4ge.recipes.associate", "a GWAS of every latent dimension"))
RECIPES.register("build_template", Mode("ml4ge.recipes.build_template", "a rigid registration template of any "
                                                                        "contrast from a cohort's volumes"))
RECIPES.register("sweep", Mode("ml4ge.recipes.sweep", "one predictor per input combination per target; the "
                                                      "performance grid (TSV and heatmap)"))
RECIPES.register("brain_age", Mode("ml4ge.recipes.brain_age", "brain age of a trained model, bias-corrected on "
                                                              "controls; brain-age gap tables"))
