"""One small generic registry; one instance per role (encoders, merges, recipes, ...)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the closest registered names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0])


def closest_matches(name: str, candidates, n: int = 3) -> list[str]:
    """Registered names closest to ``name`` (for "did you mean ..." messages)."""
    candidates = list(candidates)
    matches = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    return matches or sorted(c for c in candidates if name.lower() in c.lower())[:n]


class Registry(Generic[T]):
    """Maps names to objects for one role.

    Args:
        role: what the registered things are, used in error messages ("encoder block").

    Example:
        >>> encoders = Registry("encoder block")
        >>> @encoders.register("conv_encode")
        ... def conv_encode(config): ...
        >>> encoders.get("conv_encode") is conv_encode
        True
    """

    def __init__(self, role: str):
        self.role = role
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None) -> Callable[[T], T] | T:
        """Register ``item`` under ``name``; usable as a decorator when ``item`` is omitted.

        Raises:
            ValueError: if ``name`` is already registered.
        """
        if item is not None:
            self._add(name, item)
            return item

        def decorator(obj: T) -> T:
            self._add(name, obj)
            return obj

        return decorator

    def _add(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.role} {name!r} is already registered; choose another name.")
        self._items[name] = item

    def get(self, name: str) -> T:
        """The object registered as ``name``.

        Raises:
            UnknownNameError: with the closest registered names.
        """
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        hint = closest_matches(name, self._items)
        suggestion = f" Did you mean {', '.join(map(repr, hint))}?" if hint else ""
        return f"Unknown {self.role} {name!r}.{suggestion} Known: {', '.join(sorted(self._items))}."

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)
