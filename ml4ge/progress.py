"""One place that decides how progress bars look, so every recipe shows them the same way."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def progress(iterable: Iterable | None = None, total: int | None = None, description: str = "", unit: str = "it",
             disable: bool | None = None) -> tqdm:
    """A tqdm progress bar on stderr.

    Args:
        iterable: what to iterate over; None to drive the bar with ``update``.
        total: number of items when ``iterable`` has no length.
        description: text before the bar (``"tensorize"``).
        unit: what one item is (``"subject"``).
        disable: True hides the bar; None (default) hides it when stderr is not a terminal, so logs and CI
            output are not filled with carriage returns.

    Returns:
        The tqdm object (iterate over it, or call ``update(n)`` and ``close()``; it is a context manager).

    Example:
        >>> sum(progress(range(3), description="demo", disable=True))
        3
    """
    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=description, unit=unit, disable=disable, dynamic_ncols=True,
                file=sys.stderr)
