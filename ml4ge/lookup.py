"""Resolve TensorMap names from the command line.

Plain names (``t1``, ``age``) come from the built-in catalogue. Dotted names follow ml4h: with
``--tensormap_prefix my.maps``, ``brain.t1_custom`` is the attribute ``t1_custom`` of module
``my.maps.brain``; without a prefix the dotted name is ``module.attribute`` itself. Catalogue modules are
imported only when a name is looked up, and importing them reads no files.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from ml4ge.registry import UnknownNameError, closest_matches
from ml4ge.tensormap import TensorMap

CATALOGUE_MODULES = ("ml4ge.tensormaps.brain_mri", "ml4ge.tensormaps.phenotypes")


def module_tensormaps(module) -> dict[str, TensorMap]:
    """TensorMaps defined at the top level of ``module``, by attribute name."""
    return {name: value for name, value in vars(module).items() if isinstance(value, TensorMap)}


def catalogue() -> dict[str, TensorMap]:
    """All built-in TensorMaps by name.

    Raises:
        ValueError: if two catalogue maps share a name.
    """
    maps: dict[str, TensorMap] = {}
    for module_name in CATALOGUE_MODULES:
        for tm in module_tensormaps(importlib.import_module(module_name)).values():
            if tm.name in maps and maps[tm.name] is not tm:
                raise ValueError(f"two catalogue TensorMaps are named {tm.name!r}; names must be unique")
            maps[tm.name] = tm
    return maps


def _from_module(name: str, prefix: str | None) -> TensorMap:
    module_part, _, attribute = name.rpartition(".")
    module_name = f"{prefix}.{module_part}" if prefix else module_part
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise UnknownNameError(
            f"TensorMap {name!r}: cannot import module {module_name!r} ({error}). "
            "Check --tensormap_prefix and that the module is on PYTHONPATH."
        ) from None
    maps = module_tensormaps(module)
    if attribute not in maps:
        hint = closest_matches(attribute, maps)
        suggestion = f" Did you mean {', '.join(f'{module_part}.{h}' for h in hint)}?" if hint else ""
        raise UnknownNameError(f"Module {module_name!r} has no TensorMap {attribute!r}.{suggestion}")
    return maps[attribute]


def resolve(name: str, prefix: str | None = None) -> TensorMap:
    """The TensorMap called ``name``.

    Raises:
        UnknownNameError: naming the closest catalogue names or module attributes.
    """
    if "." in name:
        return _from_module(name, prefix)
    maps = catalogue()
    if name not in maps:
        hint = closest_matches(name, maps)
        suggestion = f" Did you mean {', '.join(map(repr, hint))}?" if hint else ""
        raise UnknownNameError(
            f"Unknown TensorMap {name!r}.{suggestion} Built-in maps: {', '.join(sorted(maps))}. "
            "For your own maps use --tensormap_prefix with module.variable names."
        )
    return maps[name]


def resolve_all(names: Iterable[str], prefix: str | None = None) -> list[TensorMap]:
    """Resolve every name, failing on the first unknown one and on two names giving maps with one name."""
    maps = [resolve(name, prefix) for name in names]
    seen: dict[str, str] = {}
    for given, tm in zip(names, maps):
        if tm.name in seen and seen[tm.name] != given:
            raise ValueError(f"{given!r} and {seen[tm.name]!r} are both TensorMaps named {tm.name!r}; rename one.")
        seen[tm.name] = given
    return maps


def tensormap_names(names: Iterable[str], given: Iterable[str], tmaps) -> dict[str, str]:
    """``{name: TensorMap name}`` for names written either as on the command line (``given``, resolved in order to
    ``tmaps``) or as TensorMap names; names that are neither are left out."""
    known = {tm.name: tm.name for tm in tmaps} | {flag: tm.name for flag, tm in zip(given, tmaps)}
    return {name: known[name] for name in names if name in known}
