"""``--mode demo``: the whole method on the embedded MNI152 demo cohort, end to end, in one command.

generate -> tensorize -> train (T1 AE, T2 AE, T1/T2 DropFuse pair model, deep-brain T1 AE) -> infer_encoders ->
associate -> compare -> interpret -> ``<output_folder>/<id>/report.md`` (stages: :mod:`ml4ge.demo.pipeline`,
report: :mod:`ml4ge.demo.report`). ``--study vit`` trains the CNN and the UDIP-ViT autoencoder of T1 instead, each
for about the same CPU time, and the report sets them side by side (:mod:`ml4ge.demo.studies`); ``--study ml4h``
trains the default's T1, T2 and DropFuse models with ml4h's blocks, DropFuse with ml4ge's corrected and with ml4h's
exact pair loss and fusion, side by side.

Flags: ``--quick`` (80 subjects at 5 mm, 3 epochs: a few minutes on a laptop CPU), ``--full_resolution``
(1 mm, UDIP-sized models: for a GPU), the default (300 subjects at 3 mm), ``--demo_subjects N`` and
``--demo_epochs E`` to change the preset, ``--demo_data folder`` to reuse a generated cohort, ``--random_seed``
(cohort and training) and ``--num_workers``. Rerunning with the same ``--id`` skips the finished stages.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ml4ge.arguments import flag_settings
from ml4ge.recipes.settings import RunSettings

log = logging.getLogger(__name__)
COHORT_FILES = ("manifest.csv", "phenotypes.csv", "truth.json")
MIN_SUBJECTS = 30  # train/valid/test splits and 5-fold comparison need a few dozen subjects


@flag_settings
class DemoRecipeSettings(RunSettings):
    """The flags of ``--mode demo``: the preset and its changes, a cohort to reuse."""

    mode = "demo"
    quick: bool
    full_resolution: bool
    demo_subjects: int | None
    demo_epochs: int | None
    demo_data: str | None
    study: str


Settings = DemoRecipeSettings


def validate(args: DemoRecipeSettings) -> None:
    """Refuse impossible demo flags before any work.

    Raises:
        ValueError: for --quick with --full_resolution, too few subjects, a cohort on another grid, a study whose
            models cannot train at the preset (the flags' bounds refuse --demo_epochs 0 before this).
        FileNotFoundError: for a --demo_data folder without the cohort files.
    """
    from ml4ge.demo.pipeline import check_settings, demo_run_from_args
    from ml4ge.demo.studies import MODELS

    if args.quick and args.full_resolution:
        raise ValueError("--quick and --full_resolution contradict each other; give one of them.")
    if args.demo_subjects is not None and args.demo_subjects < MIN_SUBJECTS:
        raise ValueError(f"--demo_subjects {args.demo_subjects}: the demo needs at least {MIN_SUBJECTS} subjects.")
    run = demo_run_from_args(args)
    if run.data is not None:
        check_cohort(run.data, run.settings.voxel_mm)
    check_settings(run)
    for model in run.plan.models:  # a study's model may refuse the preset (the ml4h study at full resolution)
        MODELS[model].train_flags(run.settings)


def check_cohort(folder: Path, voxel_mm: float) -> None:
    """A --demo_data folder must hold a generated cohort on the preset's grid."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--demo_data {str(folder)!r} is not a folder; give a folder written by the demo.")
    missing = [name for name in COHORT_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"--demo_data {folder} has no {', '.join(missing)}; give a folder written by the "
                                "demo's generate stage (<demo run>/data).")
    made = json.loads((folder / "truth.json").read_text()).get("voxel_mm")
    if made is not None and float(made) != voxel_mm:
        raise ValueError(f"--demo_data {folder} was generated at {made} mm but this preset uses {voxel_mm} mm; "
                         "add or drop --quick/--full_resolution to match, or let the demo generate its cohort.")


def run(args: DemoRecipeSettings) -> int:
    """Run every demo stage (finished ones are skipped) and print where the report is. Returns 0."""
    from ml4ge.demo.pipeline import demo_run_from_args, run_demo

    report = run_demo(demo_run_from_args(args))
    log.info("demo report: %s", report)
    print(f"Demo finished: see {report}")
    return 0
