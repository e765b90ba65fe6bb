"""Every flag once, :data:`FLAGS`: the areas' tables (``*_flags`` modules of this package) joined in one order, and
:func:`flag`, the definition of one flag by name.
"""

from __future__ import annotations

from ml4ge.arguments.association_flags import ASSOCIATION_FLAGS
from ml4ge.arguments.demo_flags import DEMO_FLAGS
from ml4ge.arguments.flag import Flag
from ml4ge.arguments.inference_flags import INFERENCE_FLAGS
from ml4ge.arguments.interpretation_flags import INTERPRETATION_FLAGS
from ml4ge.arguments.ml4h_flags import ML4H_FLAGS
from ml4ge.arguments.model_flags import MODEL_FLAGS
from ml4ge.arguments.run_data_flags import DATA_FLAGS, RUN_FLAGS
from ml4ge.arguments.training_flags import TRAINING_FLAGS
from ml4ge.registry import UnknownNameError, closest_matches


def joined(*tables: dict[str, Flag]) -> dict[str, Flag]:
    """The tables as one, in their order.

    Raises:
        ValueError: for a flag defined in two tables.
    """
    table: dict[str, Flag] = {}
    for part in tables:
        twice = sorted(set(table) & set(part))
        if twice:
            raise ValueError(f"flags defined twice: {', '.join('--' + name for name in twice)}")
        table |= part
    return table


# The order within a --help group is the order here (ml4h parity's flags come after the training flags).
FLAGS: dict[str, Flag] = joined(RUN_FLAGS, DATA_FLAGS, MODEL_FLAGS, TRAINING_FLAGS, ML4H_FLAGS, INFERENCE_FLAGS,
                                ASSOCIATION_FLAGS, INTERPRETATION_FLAGS, DEMO_FLAGS)


def flag(name: str) -> Flag:
    """The definition of ``--name``.

    Raises:
        UnknownNameError: for a name not in :data:`FLAGS`, with the closest names.
    """
    try:
        return FLAGS[name]
    except KeyError:
        hint = closest_matches(name, FLAGS)
        raise UnknownNameError(f"Unknown flag --{name}." + (f" Did you mean {', '.join('--' + h for h in hint)}?"
                                                            if hint else "")) from None
