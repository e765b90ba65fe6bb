"""The demo's ``--study legibility`` (issue #18; REFERENCE_SEEDS.md D): sex and age from T1, T2, T1 + T2 and
T1 + T2 + brain volumes, with T2 missing for 30 % of subjects, as a grid of predictors (``--mode sweep``).

Stages (registered in :mod:`ml4ge.demo.pipeline`'s registry, run only in this study):

- ``drop_t2`` (after generate): deletes the T2 NIfTI files of 30 % of the subjects (every ``MISSING_EVERY``-th in
  a seeded order) from the study's own cohort and their rows from its manifest, and lists them in
  ``t2_missing.csv``; a cohort given with ``--demo_data`` (another demo's) is refused, never changed.
- ``sweep`` (after tensorize): ``--mode sweep`` over the four combinations for ``age`` and ``sex``: T2 optional
  (every subject kept beside T1; the T2-only cell has the 70 % with a T2), the brain-volume domain
  (``ml4ge.demo.maps.brain_volumes``: total and cortical grey-matter volume, neither age nor sex) as tabular input.
  The network is the seed's residual CNN at a demo width (:data:`PREDICTOR_FLAGS`).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from ml4ge.atomic import write_table
from ml4ge.demo.context import DemoRun, tensormap_name
from ml4ge.demo.recipe_runner import run_recipe
from ml4ge.demo.report import markdown_table

log = logging.getLogger(__name__)
MISSING_FRACTION = 0.3
MISSING_LIST = "t2_missing.csv"
VOLUMES = "ml4ge.demo.maps.brain_volumes"
TARGETS = ("age", "sex")
# The seed's network (5 residual stages) at a quarter of its widths, so that 8 cells train in the demo's budget.
# From scratch on 240 subjects: Adam at 2e-3 (training MAE 7.9 years after 4 epochs, 11.1 at 1e-3), halved after 2
# epochs without a lower validation loss; the statistics of BatchNorm are recomputed before each validation (the
# family's precise BatchNorm), without which inference predicted a near-constant age.
PREDICTOR_FLAGS = {"predictor_stages": (8, 16, 32, 64, 64), "predictor_width": 64, "learning_rate": 2e-3,
                   "lr_schedule": "plateau", "lr_patience": 2, "patience": 5, "patience_style": "ml4ge",
                   "balance": "undersample"}


def missing_subjects(ids, seed: int, fraction: float = MISSING_FRACTION) -> list[str]:
    """The ``round(fraction * n)`` subjects without T2: a seeded draw, sorted."""
    ids = sorted(ids)
    count = round(fraction * len(ids))
    return sorted(np.random.default_rng([seed, 18]).choice(ids, count, replace=False).tolist())


def drop_t2(run: DemoRun) -> None:
    """Remove the T2 of 30 % of the subjects from the study's own cohort (files and manifest rows).

    Raises:
        ValueError: for a cohort given with ``--demo_data`` (it belongs to another demo).
    """
    if run.data is not None:
        raise ValueError(f"--study legibility deletes T2 files from its cohort; it does not change {run.data} "
                         "(--demo_data): leave out --demo_data so that it generates its own.")
    manifest = pd.read_csv(run.cohort / "manifest.csv", dtype=str)
    done = run.cohort / MISSING_LIST
    dropped = (pd.read_csv(done, dtype=str)["sample_id"].tolist() if done.is_file()
               else missing_subjects(manifest["sample_id"].unique(), run.seed))
    is_t2 = manifest["path"].str.startswith("t2/")
    for path in manifest.loc[is_t2 & manifest["sample_id"].isin(dropped), "path"]:
        (run.cohort / path).unlink(missing_ok=True)
    write_table(manifest[~(is_t2 & manifest["sample_id"].isin(dropped))], run.cohort / "manifest.csv", sep=",")
    write_table(pd.DataFrame({"sample_id": dropped}), done, sep=",")
    log.info("legibility: T2 removed for %d of %d subjects", len(dropped), manifest["sample_id"].nunique())


def combinations(run: DemoRun) -> tuple[str, ...]:
    t1, t2 = run.settings.t1, run.settings.t2
    return (t1, t2, f"{t1}+{t2}", f"{t1}+{t2}+{VOLUMES}")


def sweep(run: DemoRun) -> None:
    from ml4ge.recipes.sweep import SweepSettings

    settings = run.settings
    run_recipe(SweepSettings(tensors=str(run.tensors), input_tensors=(settings.t1, settings.t2, VOLUMES),
                             optional_tensors=(settings.t2,), output_tensors=TARGETS,
                             sweep_inputs=combinations(run), epochs=settings.epochs, batch_size=8, id="sweep",
                             **PREDICTOR_FLAGS, **run.common_settings()))
    import keras

    keras.backend.clear_session()


def sweep_section(run: DemoRun) -> str:
    """``## Legibility``: the grid's headline metrics, the heatmap and the cost per cell."""
    folder = run.folder / "sweep"
    grid_path = folder / "sweep_grid.tsv"
    if not grid_path.is_file():
        return ""
    grid = pd.read_csv(grid_path, sep="\t")
    cells = pd.read_csv(folder / "sweep_cells.tsv", sep="\t").drop_duplicates(["target", "inputs", "repeat"])
    rows = grid[grid["metric"].isin(["balanced_accuracy", "roc_auc", "mae", "r2"])]
    table = rows.assign(value=[f"{m:.3f}" for m in rows["mean"]]).pivot(index=["target", "metric"], columns="inputs",
                                                                          values="value")
    missing = run.cohort / MISSING_LIST
    dropped = len(pd.read_csv(missing)) if missing.is_file() else 0
    names = [tensormap_name(name) for name in (run.settings.t1, run.settings.t2)]
    return "\n".join([
        "## Legibility: what each input adds", "",
        f"One predictor per input combination and target (`--mode sweep`), {names[1]} missing for {dropped} "
        f"subjects (kept beside {names[0]}, zeros and a zeroed branch); test split, MAE in years.", "",
        markdown_table(table.reset_index()), "",
        "![grid](sweep/sweep_grid.png)", "",
        f"{len(cells)} cells, {cells['seconds'].mean():.1f} s of training per cell (mean; "
        f"{json.dumps(PREDICTOR_FLAGS['predictor_stages'])} stages)."])
