"""Resolve TensorMap names from the command line.

Plain names (``t1``, ``age``) come from the built-in catalogue. Dotted names follow ml4h: with
``--tensormap_prefix my.maps``, ``brain.t1_custom`` is the attribute ``t1_custom`` of module
``my.maps.brain``; without a prefix the dotted name is ``module.attribute`` itself. Importing a module runs its
code, so a name read from a data file (a manifest's tensor column) imports only modules under the prefix or of
ml4ge (``ml4ge.demo.maps.t1_3mm``). Catalogue modules are imported only when a name is looked up, and importing
them reads no files.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from ml4ge.registry import UnknownNameError, closest_matches
from ml4ge.tensormap import TensorMap

CATALOGUE_MODULES = ("ml4ge.tensormaps.brain_mri", "ml4ge.tensormaps.phenotypes")
OWN_PACKAGE = "ml4ge"  # dotted names without --tensormap_prefix may name modules of this package only


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


def _module_name(name: str, prefix: str | None, from_data: bool) -> str:
    """The module a dotted name's map lives in: under ``prefix``; without one the name's own module, which for a
    name read from a data file must be one of ml4ge's (the demo's maps).

    Importing runs a module's code, and a data file (a manifest's tensor column) may come from anyone: its names
    import only modules of the package the user named with --tensormap_prefix, or of ml4ge.

    Raises:
        UnknownNameError: for a name that is not ``module.variable`` in Python names, or a name from data that
            would import a module outside those packages.
    """
    module_part, _, attribute = name.rpartition(".")
    if not all(part.isidentifier() for part in [*module_part.split("."), attribute]):
        raise UnknownNameError(f"TensorMap {name!r}: write module.variable in Python names (with --tensormap_prefix "
                               "naming the package the module is in).")
    if prefix:
        return f"{prefix}.{module_part}"
    if not from_data or module_part.split(".")[0] == OWN_PACKAGE:
        return module_part
    raise UnknownNameError(f"TensorMap {name!r}: dotted names in data files are looked up under --tensormap_prefix, "
                           "and only modules under it are imported; pass --tensormap_prefix <your package> and name "
                           "the map module.variable within it.")


def _from_module(name: str, prefix: str | None, from_data: bool = False) -> TensorMap:
    module_part, _, attribute = name.rpartition(".")
    module_name = _module_name(name, prefix, from_data)
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


def resolve(name: str, prefix: str | None = None, from_data: bool = False) -> TensorMap:
    """The TensorMap called ``name``; ``from_data``: the name was read from a file (a manifest), so that without
    ``prefix`` it may name ml4ge's own modules only.

    Raises:
        UnknownNameError: naming the closest catalogue names or module attributes.
    """
    if "." in name:
        return _from_module(name, prefix, from_data)
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
