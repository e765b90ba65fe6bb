"""Command-line flags with ml4h's names: one table of definitions, and the parsers built from it.

:data:`FLAGS` holds every flag once: its ``--help`` group, default, help text and how argparse reads it. A recipe
declares the flags it uses as the fields of its settings class (:func:`flag_settings`: field name = flag name, the
default comes from the table), and :func:`build_parser` turns such a class into the parser of that mode only. This
package imports no recipe: the CLI hands it the settings class of the chosen mode.

Import these names from here; the modules of the package are where each part is written:

- :mod:`~ml4ge.arguments.flag`: :class:`Flag`, :class:`Bounds` and the ``--help`` group titles;
- ``*_flags`` (``run_data``, ``model``, ``training``, ``ml4h``, ``inference``, ``association``, ``interpretation``,
  ``demo``): the definitions of one area, and :mod:`~ml4ge.arguments.table`, which joins them into :data:`FLAGS`;
- :mod:`~ml4ge.arguments.settings`: settings classes and what is read off them;
- :mod:`~ml4ge.arguments.parsers`: the parsers.

Adding a flag: define it in the table of its area, then name it as a field of the settings classes that use it.
"""

from ml4ge.arguments.flag import (
    AT_LEAST_0,
    AT_LEAST_1,
    AT_LEAST_2,
    GROUPS,
    OPEN_UNIT,
    POSITIVE,
    RATE,
    Bounds,
    Flag,
)
from ml4ge.arguments.parsers import FlagParser, add_flags, build_parser
from ml4ge.arguments.settings import (
    Settings,
    flag_names,
    flag_settings,
    out_of_bounds,
    run_folder,
    settings_from_namespace,
    typed,
)
from ml4ge.arguments.table import FLAGS, flag

__all__ = [
    "AT_LEAST_0", "AT_LEAST_1", "AT_LEAST_2", "FLAGS", "GROUPS", "OPEN_UNIT", "POSITIVE", "RATE", "Bounds", "Flag",
    "FlagParser", "Settings", "add_flags", "build_parser", "flag", "flag_names", "flag_settings", "out_of_bounds",
    "run_folder", "settings_from_namespace", "typed",
]
