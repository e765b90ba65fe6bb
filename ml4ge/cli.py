"""Entry point of ``ml4ge`` and ``recipes.py``: parse, validate, dispatch, exit with the recipe's status."""

from __future__ import annotations

import logging
import os
import sys

from ml4ge.arguments import parse_args, run_folder, save_arguments
from ml4ge.recipes import RECIPES

log = logging.getLogger("ml4ge")


def configure_logging(folder) -> None:
    """Log to stderr and to ``<run folder>/log.txt``."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers = [logging.StreamHandler(sys.stderr), logging.FileHandler(folder / "log.txt")]
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in [h for h in root.handlers if getattr(h, "ml4ge_run", False)]:
        root.removeHandler(handler)  # a second main() in one process logs to its own run only.
        handler.close()
    for handler in handlers:
        handler.ml4ge_run = True
        handler.setFormatter(formatter)
        root.addHandler(handler)


def main(argv: list[str] | None = None) -> int:
    """Run one recipe. Errors are logged with their traceback in the run log and give a non-zero status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides our messages.
    args = parse_args(argv)
    folder = run_folder(args)
    configure_logging(folder)
    save_arguments(args, folder)
    recipe = RECIPES.load(args.mode)
    try:
        return int(recipe.run(args) or 0)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError, OSError) as error:
        log.exception("%s failed: %s", args.mode, error)
        print(f"ml4ge --mode {args.mode} failed: {error}", file=sys.stderr)
        return 1


def console_main() -> None:
    sys.exit(main())
