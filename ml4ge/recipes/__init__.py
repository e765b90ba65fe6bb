"""Recipes: one module per ``--mode`` (registered in :mod:`ml4ge.modes`), each taking its own typed settings.

A recipe module defines ``Settings`` (a frozen dataclass whose fields are the flags the mode uses; see
:mod:`ml4ge.recipes.settings`), ``validate(settings)`` that raises ``ValueError``/``FileNotFoundError``/``KeyError``
before any work, and ``run(settings) -> int`` (the exit status). Modules are imported only when their mode is
used, so ``--help`` and ``tensorize`` do not pay for TensorFlow.

Running a recipe from Python, as the demo does:

    >>> from ml4ge import recipes
    >>> from ml4ge.recipes.compare import CompareSettings
    >>> settings = CompareSettings(latent_tables=("ae=hidden_t1_ae.tsv",), phenotypes="phenotypes.csv", id="cmp")
    >>> recipes.run(settings)  # validate, record, log to <output_folder>/cmp/log.txt, run; returns the status
"""

from __future__ import annotations

from pathlib import Path

from ml4ge.modes import RECIPES
from ml4ge.recipes.settings import check_common
from ml4ge.runs import run_log, start_run

__all__ = ["RECIPES", "prepare", "run", "settings_class", "validate"]


def settings_class(mode: str) -> type:
    """The settings class of ``mode``.

    Raises:
        UnknownNameError: for an unknown mode, with the closest names.
    """
    return RECIPES.load(mode).Settings


def validate(settings) -> None:
    """The checks shared by modes, then the recipe's own; raises with what to change, before any work."""
    check_common(settings)
    RECIPES.load(settings.mode).validate(settings)


def prepare(settings) -> Path:
    """Validate, refuse a changed rerun, create the run folder and record the settings; returns the folder.

    Raises:
        ValueError, KeyError, FileNotFoundError: with what to change (nothing is created then).
    """
    validate(settings)
    return start_run(settings)


def run(settings) -> int:
    """Prepare and run one recipe in this process, logging to its run folder's ``log.txt``; returns its status."""
    folder = prepare(settings)
    with run_log(folder):
        return int(RECIPES.load(settings.mode).run(settings) or 0)
