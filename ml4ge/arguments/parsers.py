"""The parsers built from the flag table: one mode's (the fields of its settings class), or every mode's; their
errors are two lines.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from ml4ge.arguments.flag import GROUPS
from ml4ge.arguments.settings import flag_names
from ml4ge.arguments.table import FLAGS
from ml4ge.modes import RECIPES


class FlagParser(argparse.ArgumentParser):
    """An argument parser whose errors are two lines (what is wrong, where the help is), exit status 2."""

    def __init__(self, *args, hint: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.hint = hint

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n{self.hint}\n")


def add_flags(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """Add ``--name`` for every name, in :data:`FLAGS` order, under the groups of :data:`GROUPS` in order."""
    wanted = set(names)
    for title in GROUPS:
        members = [name for name, item in FLAGS.items() if name in wanted and item.group == title]
        if members:
            group = parser.add_argument_group(title)
            for name in members:
                group.add_argument(f"--{name}", **FLAGS[name].argparse_options())


def build_parser(settings_class: type | None = None) -> argparse.ArgumentParser:
    """The parser of one mode: ``--mode`` and the fields of ``settings_class``, grouped, run flags first.

    Without a class: every flag of every mode (what ``parse_args`` returns then has every attribute).
    """
    if settings_class is None:
        parser = FlagParser(prog="ml4ge", description="ml4ge recipes: tensorize, train, infer and compare learned "
                                                      "representations.", hint="ml4ge --help lists the modes.")
        parser.add_argument("--mode", required=True, help=f"Recipe to run: {', '.join(RECIPES.names())}.")
        add_flags(parser, FLAGS)
        return parser
    mode = settings_class.mode
    parser = FlagParser(prog=f"ml4ge --mode {mode}", usage=f"ml4ge --mode {mode} [flags]",
                        description=f"{mode}: {RECIPES.get(mode).summary}.",
                        hint=f"ml4ge --mode {mode} --help lists the flags of this mode.")
    parser.add_argument("--mode", required=True, choices=[mode], help=argparse.SUPPRESS)
    add_flags(parser, flag_names(settings_class))
    return parser
