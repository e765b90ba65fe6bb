"""``--mode sweep``: one predictor per input combination per target, and the performance grid (the legibility
seed's 700-model table and figure, REFERENCE_SEEDS.md D).

Every cell is a ``--mode train --family predictor`` run of its own in ``<run>/cells/<target>__<inputs>__r<k>/``
with the sweep's flags, one target (``--output_tensors``, one model each) and one combination of
``--input_tensors``: ``--sweep_inputs t1 t2 t1+t2 t1+t2+volumes`` (names as given to ``--input_tensors`` or
TensorMap names), by default every non-empty combination. ``--sweep_repeats K`` trains each cell K times with
seeds ``--random_seed + k`` (each its own split); cells of one repeat share the split, so combinations are compared
on the same test subjects. ``--optional_tensors`` stay optional in a cell that has another input; in a cell made
of optional inputs only they are required (a subject with none of the cell's inputs has nothing to predict from,
and is skipped there, listed in the cell's ``skipped_samples.tsv``).

Outputs in ``<run>/``: ``sweep_cells.tsv`` (target, inputs, repeat, seconds of training, metric, value),
``sweep_grid.tsv`` (target, inputs, metric, mean, sd, repeats) and ``sweep_grid.png`` (:mod:`ml4ge.plots_sweep`).
A sweep killed part-way resumes: finished cells are train runs that have nothing to redo, an interrupted one
resumes from its last epoch.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import fields
from pathlib import Path

import pandas as pd

from ml4ge.arguments import flag, flag_settings, run_folder
from ml4ge.atomic import write_table, write_text
from ml4ge.lookup import tensormap_names
from ml4ge.recipes import train
from ml4ge.recipes.train import TrainSettings

log = logging.getLogger(__name__)
SECONDS = "sweep_seconds.txt"  # a cell's training time, written once it finished
MAX_INPUTS = 8  # 255 combinations


@flag_settings
class SweepSettings(TrainSettings):
    """The train flags, plus the combinations and repeats of the grid."""

    mode = "sweep"
    state_files = ("cells",)
    sweep_inputs: tuple[str, ...]
    sweep_repeats: int


Settings = SweepSettings


def combinations(args: SweepSettings) -> list[tuple[str, ...]]:
    """The input combinations as tuples of ``--input_tensors`` names.

    Raises:
        ValueError: for a name that is not among the inputs, or too many inputs for every combination.
    """
    if not args.sweep_inputs:
        if len(args.input_tensors) > MAX_INPUTS:
            raise ValueError(f"{len(args.input_tensors)} inputs make {2 ** len(args.input_tensors) - 1} "
                             "combinations; name the ones to train with --sweep_inputs A B A+B ...")
        return [combo for size in range(1, len(args.input_tensors) + 1)
                for combo in itertools.combinations(args.input_tensors, size)]
    input_tmaps, _ = train.tensormaps(args)
    by_name = {tm.name: given for given, tm in zip(args.input_tensors, input_tmaps)}
    by_name |= {given: given for given in args.input_tensors}
    found = []
    for combo in args.sweep_inputs:
        names = [name for name in combo.split("+") if name]
        unknown = [name for name in names if name not in by_name]
        if unknown or not names:
            raise ValueError(f"--sweep_inputs {combo!r}: {', '.join(unknown) or 'empty'} not among --input_tensors "
                             f"{' '.join(args.input_tensors)}; join input names with '+'.")
        found.append(tuple(dict.fromkeys(by_name[name] for name in names)))
    return list(dict.fromkeys(found))


def label(names, args: SweepSettings) -> str:
    """A combination's or target's label: its TensorMap names joined by '+'."""
    tmaps = train.resolve_all(list(names), args.tensormap_prefix)
    return "+".join(tm.name for tm in tmaps)


def cell_settings(args: SweepSettings, combo: tuple[str, ...], target: str, repeat: int) -> TrainSettings:
    """The train settings of one cell."""
    shared = {item.name: getattr(args, item.name) for item in fields(TrainSettings)}
    input_tmaps = train.tensormaps(args)[0]
    optional = set(tensormap_names(args.optional_tensors, args.input_tensors, input_tmaps).values())
    names = dict(zip(args.input_tensors, (tm.name for tm in input_tmaps)))
    wanted = tuple(name for name in combo if names[name] in optional)
    if len(wanted) == len(combo):  # nothing required: a subject without them has nothing to be predicted from
        wanted = ()
    cell_id = f"{label([target], args)}__{label(combo, args)}__r{repeat}"
    return TrainSettings(**(shared | {"output_folder": str(run_folder(args) / "cells"), "id": cell_id,
                                      "input_tensors": combo, "output_tensors": (target,),
                                      "optional_tensors": wanted, "family": "predictor",
                                      "random_seed": args.random_seed + repeat}))


def cells(args: SweepSettings) -> list[tuple[str, tuple[str, ...], int]]:
    return [(target, combo, repeat) for target in args.output_tensors for combo in combinations(args)
            for repeat in range(args.sweep_repeats)]


def validate(args: SweepSettings) -> None:
    """Checks before any work: the train checks of every cell.

    Raises:
        ValueError, FileNotFoundError, KeyError: with what to change.
    """
    if args.family not in (flag("family").default, "predictor"):  # the flag is shared with train; cells are predictors
        raise ValueError(f"--mode sweep trains predictors; leave out --family (got {args.family!r}).")
    if not args.input_tensors or not args.output_tensors:
        raise ValueError("--mode sweep needs --input_tensors (the inputs to combine) and --output_tensors (the "
                         "targets, one model each).")
    for target, combo, _ in cells(args)[:: args.sweep_repeats]:
        train.validate(cell_settings(args, combo, target, 0))


def run(args: SweepSettings) -> int:
    """Train the cells not finished yet, then write the grid. Returns the exit status (0)."""
    from ml4ge import recipes
    from ml4ge.plots_sweep import grid_table, plot_grid

    folder = run_folder(args)
    rows = []
    for target, combo, repeat in cells(args):
        settings = cell_settings(args, combo, target, repeat)
        cell = run_folder(settings)
        started = time.perf_counter()
        status = recipes.run(settings)
        if status:
            raise RuntimeError(f"sweep cell {settings.id} failed (status {status}); see {cell / 'log.txt'}.")
        if not (cell / SECONDS).exists():
            write_text(cell / SECONDS, f"{time.perf_counter() - started:.1f}\n")
        rows += cell_rows(cell, label([target], args), label(combo, args), repeat)
        _clear_session()
    table = pd.DataFrame(rows)
    write_table(table, folder / "sweep_cells.tsv")
    grid = grid_table(table)
    write_table(grid, folder / "sweep_grid.tsv")
    plot_grid(grid, folder / "sweep_grid.png", [label(combo, args) for combo in combinations(args)])
    seconds = table.drop_duplicates(["target", "inputs", "repeat"])["seconds"]
    log.info("sweep: %d cells, %.1f s of training per cell (mean)", len(seconds), seconds.mean())
    return 0


def cell_rows(cell: Path, target: str, inputs: str, repeat: int) -> list[dict]:
    """The cell's test metrics as rows of ``sweep_cells.tsv``.

    Raises:
        FileNotFoundError: when the cell has no test metrics (an empty test split).
    """
    performance = cell / "test_performance.tsv"
    if not performance.exists():
        raise FileNotFoundError(f"{performance} is missing: the cell has no test split (--test_ratio 0?); the "
                                "grid needs test metrics.")
    seconds = float((cell / SECONDS).read_text())
    return [{"target": target, "inputs": inputs, "repeat": repeat, "seconds": seconds, "metric": row.metric,
             "value": row.value} for row in pd.read_csv(performance, sep="\t").itertuples()]


def _clear_session() -> None:
    import keras

    keras.backend.clear_session()  # each cell builds a new model: free the last one's graph
