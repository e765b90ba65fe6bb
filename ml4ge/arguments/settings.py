"""Settings classes: a recipe declares its flags as the fields of a frozen dataclass (:func:`flag_settings`), whose
defaults come from :data:`~ml4ge.arguments.table.FLAGS`; and what is read off such a class or object (its flag
names, values out of bounds, its run folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ml4ge.arguments.table import FLAGS, flag


def typed(value: Any) -> Any:
    """A flag value as settings hold it: lists as tuples (nested too), paths as str."""
    if isinstance(value, (list, tuple)):
        return tuple(typed(item) for item in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


class Settings:
    """Base of the settings classes: lists given in Python become tuples and paths str, as the parser gives them.

    ``mode`` names the recipe a class belongs to; ``rerun_may_change`` names flags that a rerun in the same run
    folder may change (how the work is done, not what it is); ``state_files`` names the files and folders of the
    run folder that a rerun resumes from, which ``--overwrite`` removes (the mode starts over instead of resuming
    a state that may belong to other flags).
    """

    mode: ClassVar[str] = ""
    rerun_may_change: ClassVar[frozenset[str]] = frozenset({"num_workers", "overwrite"})
    state_files: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            object.__setattr__(self, item.name, typed(getattr(self, item.name)))


def flag_settings(cls: type) -> type:
    """Make ``cls`` a frozen dataclass whose annotated fields are flags, each defaulting to its :data:`FLAGS` entry.

    Example:
        >>> @flag_settings
        ... class Folds(Settings):
        ...     folds: int
        >>> Folds().folds, Folds(folds=3).folds
        (5, 3)

    Raises:
        UnknownNameError: for a field that names no flag.
    """
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if not str(annotation).startswith(("ClassVar", "typing.ClassVar")) and name not in cls.__dict__:
            setattr(cls, name, flag(name).default)
    return dataclass(frozen=True)(cls)


def flag_names(settings_class) -> list[str]:
    """The flags of a settings class (or instance)."""
    return [item.name for item in dataclasses.fields(settings_class)]


def out_of_bounds(settings) -> list[str]:
    """A message for each flag of ``settings`` whose value is outside its :attr:`Flag.bounds`."""
    messages = (FLAGS[name].violation(name, getattr(settings, name)) for name in flag_names(settings))
    return [message for message in messages if message]


def settings_from_namespace(settings_class: type, namespace: argparse.Namespace):
    """The settings of ``settings_class`` read from a parsed namespace (other attributes are left out)."""
    return settings_class(**{name: getattr(namespace, name) for name in flag_names(settings_class)})


def run_folder(settings) -> Path:
    """``<output_folder>/<id>/``, created."""
    folder = Path(settings.output_folder) / settings.id
    folder.mkdir(parents=True, exist_ok=True)
    return folder
