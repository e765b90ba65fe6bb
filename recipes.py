"""Run ml4ge recipes from a checkout: ``python recipes.py --mode train ...`` (same as the ``ml4ge`` command)."""

from ml4ge.cli import console_main

if __name__ == "__main__":
    console_main()
