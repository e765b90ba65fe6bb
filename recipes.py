"""Run ml4ge recipes from a checkout: ``python recipes.py --mode train ...`` (same as the ``ml4ge`` command)."""

import sys

from ml4ge.cli import main

if __name__ == "__main__":
    sys.exit(main())
