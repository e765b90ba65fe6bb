"""Running one recipe inside the demo's process, as ``ml4ge --mode ...`` would, with its own ``log.txt``.

This module and the stage modules that call it (:mod:`ml4ge.demo.pipeline`, :mod:`ml4ge.demo.truth_stages`) sit at
the recipe layer: they drive recipes. The rest of the demo package (cohort, report, truth checks) sits below and
imports no recipe.
"""

from __future__ import annotations

from pathlib import Path


def run_recipe(settings) -> Path:
    """Validate and run one recipe's settings in this process, logging to its own ``log.txt``; returns its run folder.

    Raises:
        ValueError, KeyError, FileNotFoundError: from the recipe's validation.
        RuntimeError: when the recipe returns a non-zero status.
    """
    from ml4ge import recipes
    from ml4ge.arguments import run_folder

    status = recipes.run(settings)
    folder = run_folder(settings)
    if status:
        raise RuntimeError(f"--mode {settings.mode} exited with status {status}; see {folder / 'log.txt'}.")
    return folder
