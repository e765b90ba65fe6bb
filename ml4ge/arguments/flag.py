"""What a flag is: :class:`Flag` (how argparse reads it, its ``--help`` group, default and bounds) and
:class:`Bounds` (the values a number admits), with the ``--help`` group titles and the common bounds that the
flag tables of :mod:`ml4ge.arguments` use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RUN, DATA, MODEL, TRAINING = "run", "data", "model", "training"
INFERENCE, ASSOCIATION = "inference and comparison", "genetic association (associate)"
INTERPRETATION, DEMO = "interpretation of latent dimensions (interpret)", "demo cohort and end-to-end demo (demo)"
GROUPS = (RUN, DATA, MODEL, TRAINING, INFERENCE, ASSOCIATION, INTERPRETATION, DEMO)  # their order in --help


@dataclass(frozen=True)
class Bounds:
    """The values a numeric flag admits: ``low``/``high`` limits (None: none), each inclusive unless ``open_*``."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def admits(self, value: float) -> bool:
        if value != value:  # NaN is within no bounds.
            return False
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        below = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above and below

    def describe(self) -> str:
        """``at least 1``, ``above 0``, ``in [0, 1)``."""
        if self.high is None:
            return f"{'above' if self.open_low else 'at least'} {self.low:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


AT_LEAST_0, AT_LEAST_1, AT_LEAST_2 = Bounds(0), Bounds(1), Bounds(2)
POSITIVE, RATE = Bounds(0, open_low=True), Bounds(0, 1, open_high=True)
OPEN_UNIT = Bounds(0, 1, open_low=True, open_high=True)


@dataclass(frozen=True)
class Flag:
    """How one flag is read.

    Args:
        group: its ``--help`` section.
        default: typed (a tuple for a list); also the default of the settings field of the same name.
        help: the ``--help`` text.
        type: the value type (of each item for a list); by default the default's type, or str.
        nargs: argparse's nargs; ``"*"`` for a tuple default unless given.
        choices, metavar: as argparse's.
        repeat: the flag may be given several times, each adding one item (``--pairs A B --pairs C D``).
        bounds: the values a number (each number of a list) may take; checked before any work
            (:func:`ml4ge.arguments.settings.out_of_bounds`).
    """

    group: str
    default: Any
    help: str
    type: Callable | None = None
    nargs: str | int | None = None
    choices: tuple | None = None
    metavar: str | tuple | None = None
    repeat: bool = False
    bounds: Bounds | None = None

    def argparse_options(self) -> dict[str, Any]:
        """Keywords of ``add_argument``: a False default makes a switch, a tuple default a list. The help is plain
        text: argparse formats it with ``%``, so a ``%`` in it is escaped ("30 %" would crash ``--help``)."""
        text = self.help.replace("%", "%%")
        if self.default is False:
            return {"action": "store_true", "help": text}
        listed = isinstance(self.default, tuple)
        options = {"default": list(self.default) if listed else self.default, "help": text,
                   "type": self.type or (type(self.default) if self.default is not None and not listed else None),
                   "nargs": self.nargs or ("*" if listed and not self.repeat else None),
                   "choices": self.choices, "metavar": self.metavar, "action": "append" if self.repeat else None}
        return {key: value for key, value in options.items() if value is not None or key == "default"}

    def violation(self, name: str, value: Any) -> str | None:
        """What is wrong with ``value`` for ``--name``, or None when it is within :attr:`bounds`."""
        if self.bounds is None or value is None:
            return None
        values = value if isinstance(value, (list, tuple)) else (value,)
        bad = [item for item in values if isinstance(item, (int, float)) and not self.bounds.admits(item)]
        if not bad:
            return None
        each = "each value of " if isinstance(value, (list, tuple)) else ""
        return f"{each}--{name} must be {self.bounds.describe()}, got {bad[0]!r}."
