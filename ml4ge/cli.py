"""Entry point of ``ml4ge`` and ``recipes.py``: find the mode, parse its flags into its settings, run the recipe.

``ml4ge --help`` lists the modes; ``ml4ge --mode X --help`` the flags mode X uses. Flags of other modes are
accepted (ml4h command lines carry them) and named in one warning; an invalid command prints what to change and
exits with status 2; a recipe that fails exits with status 1 and its traceback in the run's ``log.txt``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from dataclasses import dataclass

from ml4ge import quiet, recipes
from ml4ge.arguments import FLAGS, FlagParser, add_flags, build_parser, flag_names, settings_from_namespace
from ml4ge.modes import RECIPES
from ml4ge.registry import UnknownNameError, closest_matches
from ml4ge.runs import LOG_FORMAT, RerunError, log_handler

log = logging.getLogger("ml4ge")
REFUSED = (ValueError, KeyError, FileNotFoundError)
FAILED = (ValueError, KeyError, FileNotFoundError, RuntimeError, OSError)


@dataclass(frozen=True)
class Command:
    """A parsed command line: the mode's settings and the flags given that the mode does not use."""

    settings: object
    unused: tuple[str, ...] = ()

    def unused_warning(self) -> str:
        flags = " ".join(f"--{name}" for name in self.unused)
        return f"--mode {self.settings.mode} does not use {flags}; ignored."


def modes_help() -> str:
    """``ml4ge --help``: the modes, one line each."""
    width = max(map(len, RECIPES.names()))
    lines = [f"  {name:<{width}}  {RECIPES.get(name).summary}" for name in RECIPES.names()]
    return "\n".join(["usage: ml4ge --mode MODE [flags]", "", "ml4ge recipes. Modes:", *lines, "",
                      "ml4ge --mode MODE --help lists the flags of MODE."]) + "\n"


def refuse(message: str, hint: str = "ml4ge --help lists the modes.") -> None:
    """Print what is wrong and what to do (two lines), and exit with status 2."""
    sys.stderr.write(f"ml4ge: error: {message}\n{hint}\n")
    raise SystemExit(2)


def refusal_hint(mode: str, error: Exception) -> str:
    """The second line of a refusal: the ways out of a changed rerun, else where the mode's flags are listed."""
    if isinstance(error, RerunError):
        return "Rerun with the recorded flags to resume it, add --overwrite to replace it, or choose another --id."
    return f"ml4ge --mode {mode} --help lists the flags of this mode."


def find_mode(argv: list[str]) -> str:
    """The ``--mode`` of ``argv``; ``--help`` without a mode prints the modes and exits 0.

    Exits with status 2 for a missing or unknown mode.
    """
    finder = argparse.ArgumentParser(add_help=False)
    finder.add_argument("--mode")
    finder.add_argument("-h", "--help", action="store_true")
    known, _ = finder.parse_known_args(argv)
    if known.mode is None:
        if known.help:
            sys.stdout.write(modes_help())
            raise SystemExit(0)
        refuse(f"choose a recipe with --mode: {', '.join(RECIPES.names())}.")
    try:
        RECIPES.get(known.mode)
    except UnknownNameError as error:
        refuse(str(error))
    return known.mode


def unused_flags(rest: list[str], settings_class: type) -> tuple[str, ...]:
    """Names of the flags in ``rest`` (what the mode's parser left) that belong to other modes.

    Exits with status 2 for a flag no mode has (with the closest names) or a bad value of another mode's flag.
    """
    mode = settings_class.mode
    hint = f"ml4ge --mode {mode} --help lists the flags of this mode."
    names = [token[2:].partition("=")[0] for token in rest if token.startswith("--")]
    for name in names:
        if name not in FLAGS and not any(known.startswith(name) for known in FLAGS):
            matches = closest_matches(name, FLAGS)
            refuse(f"unknown flag --{name}." + (f" Did you mean {', '.join('--' + m for m in matches)}?"
                                                 if matches else ""), hint)
    others = FlagParser(prog=f"ml4ge --mode {mode}", add_help=False, hint=hint)
    add_flags(others, set(FLAGS) - set(flag_names(settings_class)))
    others.parse_args(rest)
    return tuple(dict.fromkeys(names))


def parse(argv: list[str] | None = None) -> Command:
    """The settings of the mode ``argv`` names, and the other modes' flags it carries (not validated).

    Exits with status 2 for an invalid command line, 0 after ``--help``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    settings_class = recipes.settings_class(find_mode(argv))
    namespace, rest = build_parser(settings_class).parse_known_args(argv)
    unused = unused_flags(rest, settings_class)
    return Command(settings_from_namespace(settings_class, namespace), unused)


def parse_settings(argv: list[str]):
    """Parse and validate ``argv`` into the mode's settings; an invalid command exits with status 2."""
    command = parse(argv)
    try:
        recipes.validate(command.settings)
    except REFUSED as error:
        refuse(str(error), refusal_hint(command.settings.mode, error))
    return command.settings


def configure_logging(folder) -> None:
    """Log to stderr and append to ``<run folder>/log.txt``."""
    handlers = [logging.StreamHandler(sys.stderr), log_handler(folder)]
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in [h for h in root.handlers if getattr(h, "ml4ge_run", False)]:
        root.removeHandler(handler)  # a second main() in one process logs to its own run only.
        handler.close()
    for handler in handlers:
        handler.ml4ge_run = True
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)


def main(argv: list[str] | None = None) -> int:
    """Run one recipe. An invalid command exits with status 2 before any work; a failed run returns 1."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides our messages.
    quiet.install()  # and the lines it writes before reading that (ml4ge.quiet)
    command = parse(argv)
    settings = command.settings
    try:
        folder = recipes.prepare(settings)
    except REFUSED as error:
        if command.unused:
            sys.stderr.write(f"ml4ge: warning: {command.unused_warning()}\n")
        refuse(str(error), refusal_hint(settings.mode, error))
    configure_logging(folder)
    log.info("--mode %s started in %s", settings.mode, folder)
    if command.unused:
        log.warning(command.unused_warning())
    try:
        return int(RECIPES.load(settings.mode).run(settings) or 0)
    except FAILED as error:
        log.exception("%s failed: %s", settings.mode, error)
        print(f"ml4ge --mode {settings.mode} failed: {error}", file=sys.stderr)
        return 1


def console_main() -> None:
    """``ml4ge`` and ``recipes.py``: run, then exit without Python's final walk over every object still alive.

    That walk frees nothing the end of the process would not, and after numba (the compiled table writer) or
    Keras it takes 0.2-0.3 s. Freezing takes those objects out of the collector's reach; by then every file a recipe
    wrote is closed (context managers) and logging flushes at exit as usual.
    """
    status = main()
    gc.freeze()
    sys.exit(status)
