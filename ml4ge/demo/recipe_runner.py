"""Running one recipe inside the demo's process, as ``ml4ge --mode ...`` would, with its own ``log.txt``.

This module and the stage modules that call it (:mod:`ml4ge.demo.pipeline`, :mod:`ml4ge.demo.truth_stages`) sit at
the recipe layer: they drive recipes. The rest of the demo package (cohort, report, truth checks) sits below and
imports no recipe.
"""

from __future__ import annotations

import logging
from pathlib import Path


def run_recipe(argv: list[str]) -> Path:
    """Parse, validate and run one recipe in this process, logging to its own ``log.txt``; returns its run folder.

    Raises:
        ValueError, KeyError, FileNotFoundError: from the recipe's validation.
        RuntimeError: when the recipe returns a non-zero status.
    """
    from ml4ge.arguments import build_parser, run_folder, save_arguments, validate
    from ml4ge.recipes import RECIPES

    args = build_parser().parse_args(argv)
    validate(args)
    folder = run_folder(args)
    save_arguments(args, folder)
    handler = logging.FileHandler(folder / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        status = int(RECIPES.load(args.mode).run(args) or 0)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    if status:
        raise RuntimeError(f"--mode {args.mode} exited with status {status}; see {folder / 'log.txt'}.")
    return folder
