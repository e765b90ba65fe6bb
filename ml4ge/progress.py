"""One place that decides how progress is shown, so every recipe shows it the same way: a tqdm bar on a terminal,
and log lines with an ETA when stderr is a file (a SLURM or nohup log), where a bar would be carriage returns."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

LINE_INTERVAL_S = 30.0  # a progress line at least this often while a step runs (stderr not a terminal)
DECILE_GAP_S = 5.0  # and at each further 10 % done, when this long has passed since the last line


def duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 05 s"`` or ``"2 h 07 min"``.

    Example:
        >>> duration(185.2), duration(7620)
        ('3 min 05 s', '2 h 07 min')
    """
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class LineProgress:
    """Progress as log lines: ``"tensorize: 120/300 subjects (40 %), 1 min 02 s, ETA 1 min 33 s"`` every
    :data:`LINE_INTERVAL_S` seconds, or at each further 10 % once :data:`DECILE_GAP_S` seconds have passed since the
    last line, and a closing line for a step that printed any. The same interface as the tqdm bars used here
    (iterate, ``update(n)``, ``close()``, a context manager).

    Args:
        iterable: what to iterate over; None to drive it with ``update``.
        total: number of items (``len(iterable)`` by default; None when unknown: no percentage or ETA).
        description: the step's name.
        unit: what one item is.
        clock: seconds, monotonic (the tests pass their own).
        emit: where lines go (the ``ml4ge.progress`` logger: the console and the run's ``log.txt``).
    """

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, description: str = "",
                 unit: str = "it", clock: Callable[[], float] = time.monotonic,
                 emit: Callable[[str], None] | None = None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.description, self.unit = total, description or "progress", unit
        self.clock, self.emit = clock, emit or log.info
        self.n, self.lines = 0, 0
        self.start = self.last = clock()
        self.decile = 0

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        decile = int(10 * self.n / self.total) if self.total else 0
        if now - self.last >= LINE_INTERVAL_S or (decile > self.decile and now - self.last >= DECILE_GAP_S):
            self.emit(self.line(now))
            self.last, self.lines = now, self.lines + 1
        self.decile = max(self.decile, decile)

    def line(self, now: float) -> str:
        elapsed = now - self.start
        if not self.total:
            return f"{self.description}: {self.n} {self.unit}s, {duration(elapsed)}"
        eta = elapsed / self.n * (self.total - self.n) if self.n else float("nan")
        eta_text = duration(eta) if self.n else "?"
        return (f"{self.description}: {self.n}/{self.total} {self.unit}s ({100 * self.n / self.total:.0f} %), "
                f"{duration(elapsed)}, ETA {eta_text}")

    def close(self) -> None:
        if self.lines:
            self.emit(f"{self.description}: {self.n} {self.unit}s done in {duration(self.clock() - self.start)}")
            self.lines = 0

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable: Iterable | None = None, total: int | None = None, description: str = "", unit: str = "it",
             disable: bool | None = None) -> tqdm | LineProgress:
    """A tqdm progress bar on stderr, or :class:`LineProgress` log lines when stderr is not a terminal.

    Args:
        iterable: what to iterate over; None to drive the bar with ``update``.
        total: number of items when ``iterable`` has no length.
        description: text before the bar (``"tensorize"``).
        unit: what one item is (``"subject"``).
        disable: True shows nothing; False always a bar; None (default) a bar on a terminal, else progress lines
            (so logs and CI output get a line every ~30 s or 10 % with an ETA, not carriage returns).

    Returns:
        The tqdm bar or the line progress (iterate over it, or call ``update(n)`` and ``close()``; it is a context
        manager).

    Example:
        >>> sum(progress(range(3), description="demo", disable=True))
        3
    """
    if disable is None and not sys.stderr.isatty():
        return LineProgress(iterable, total, description, unit)
    return tqdm(iterable, total=total, desc=description, unit=unit, disable=bool(disable), dynamic_ncols=True,
                file=sys.stderr)
