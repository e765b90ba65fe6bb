"""The end-to-end demo as a list of registered stages, each one an existing recipe run in this process.

generate (the MNI152 demo cohort) -> tensorize -> train a T1 and a T2 autoencoder, a T1/T2 DropFuse pair model and
a deep-brain T1 autoencoder (a central crop) -> infer_encoders for each -> associate (GWAS of every latent space)
-> compare the latent spaces (age, sex, planted-region traits, GWAS counts; a phenotype-only and a covariates-only
baseline) -> interpret (PerDI of the dimensions the planted traits and SNPs select;
:mod:`ml4ge.demo.truth_stages`) -> ``report.md`` (:mod:`ml4ge.demo.report`).

Every stage has its own run folder ``<demo folder>/<stage>/`` (arguments_<mode>.json, log.txt, outputs) and, when it
finishes, a record ``<demo folder>/stages/<stage>.json`` with its wall time and peak memory: a rerun of the demo
skips recorded stages, and a stage stopped half-way resumes as its recipe does (tensorize skips written subjects,
train continues from its last checkpoint).

Adding a stage: write ``def run_x(run: DemoRun) -> None`` that calls :func:`run_recipe` with a recipe's settings
(e.g. ``CompareSettings(..., **run.common_settings())``), and register
``STAGES.register("x", Stage(order=..., kind="x", run=run_x, report=...))``;
stages run by increasing ``order`` (compare is 50), and ``report`` returns the stage's markdown section.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ml4ge.atomic import write_table, write_text
from ml4ge.demo import report, truth_stages
from ml4ge.demo.meter import ResourceMeter
from ml4ge.demo.presets import PRESETS, DemoSettings
from ml4ge.registry import Registry

log = logging.getLogger(__name__)

SETTINGS_FILE = "demo.json"
STAGE_RECORDS = "stages"
BASELINE_SPACE = "brain_volume_only"


# Run context --------------------------------------------------------------------------------------------------
@dataclass
class DemoRun:
    """Where one demo lives and what it was asked to do.

    Args:
        folder: ``<output_folder>/<id>/`` of the demo.
        settings: the preset, possibly with another subject count or epochs.
        seed: cohort seed and ``--random_seed`` of every recipe.
        num_workers: ``--num_workers`` of every recipe.
        data: an existing cohort folder (``--demo_data``), or None to generate one in ``<folder>/data``.
    """

    folder: Path
    settings: DemoSettings
    seed: int
    num_workers: int
    data: Path | None = None
    timings: dict[str, dict] = field(default_factory=dict)

    @property
    def cohort(self) -> Path:
        return self.data if self.data is not None else self.folder / "data"

    @property
    def tensors(self) -> Path:
        return self.folder / "tensors"

    def fingerprint(self) -> dict:
        """The settings, seed and cohort folder: what must match for this folder to be resumed."""
        return json.loads(json.dumps({**self.settings.fingerprint(), "seed": self.seed, "data": str(self.cohort)}))

    def stage_record(self, name: str) -> Path:
        return self.folder / STAGE_RECORDS / f"{name}.json"

    def common_settings(self) -> dict:
        """Run settings every recipe of the demo shares: its folder, seed and workers."""
        return {"output_folder": str(self.folder), "random_seed": self.seed, "num_workers": self.num_workers}


@dataclass(frozen=True)
class Stage:
    """One step of the demo.

    Args:
        order: stages run by increasing order.
        kind: what the stage is, for the timing table (generate, tensorize, train, infer, compare, ...).
        run: does the work; raises on failure.
        report: returns the stage's markdown section for ``report.md`` (or None).
    """

    order: int
    kind: str
    run: Callable[[DemoRun], None]
    report: Callable[[DemoRun], str] | None = None


STAGES: Registry[Stage] = Registry("demo stage")


def ordered_stages() -> list[tuple[str, Stage]]:
    """Registered stages in the order they run."""
    return sorted(((name, STAGES.get(name)) for name in STAGES.names()), key=lambda item: item[1].order)


# Running recipes in this process -----------------------------------------------------------------------------
def run_recipe(settings) -> Path:
    """Validate and run one recipe's settings in this process, logging to its own ``log.txt``; returns its run folder.

    Raises:
        ValueError, KeyError, FileNotFoundError: from the recipe's validation.
        RuntimeError: when the recipe returns a non-zero status.
    """
    from ml4ge import recipes
    from ml4ge.arguments import run_folder

    status = recipes.run(settings)
    folder = run_folder(settings)
    if status:
        raise RuntimeError(f"--mode {settings.mode} exited with status {status}; see {folder / 'log.txt'}.")
    return folder


def run_stage(run: DemoRun, name: str, stage: Stage) -> dict:
    """Run one stage unless its record exists; returns the record (wall time, peak memory)."""
    record_path = run.stage_record(name)
    if record_path.is_file():
        log.info("demo stage %s: done in an earlier run, skipped", name)
        return json.loads(record_path.read_text())
    log.info("demo stage %s: starting", name)
    start = time.perf_counter()
    with ResourceMeter() as meter:
        stage.run(run)
    record = {"stage": name, "kind": stage.kind, "wall_s": round(time.perf_counter() - start, 2),
              "cpu_s": round(meter.cpu_s, 2), "peak_rss_mb": round(meter.peak_mb, 1),
              "load_average": round(os.getloadavg()[0], 2), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    record_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(record_path, json.dumps(record, indent=2))
    log.info("demo stage %s: %.1f s, peak %.0f MiB", name, record["wall_s"], record["peak_rss_mb"])
    return record


def check_settings(run: DemoRun) -> None:
    """Refuse to resume a demo folder made with other settings (its finished stages would not match).

    Raises:
        ValueError: naming the differing settings.
    """
    path = run.folder / SETTINGS_FILE
    if not path.is_file():
        return
    saved = json.loads(path.read_text()).get("settings", {})
    wanted = run.fingerprint()
    different = sorted(key for key in wanted if saved.get(key) != wanted[key])
    if different:
        raise ValueError(f"{run.folder} holds a demo made with other settings ({', '.join(different)} differ); "
                         "use another --id or --output_folder, or the same flags as before.")


def run_demo(run: DemoRun) -> Path:
    """Run every registered stage in order (skipping finished ones) and write ``report.md``; returns its path."""
    check_settings(run)
    run.folder.mkdir(parents=True, exist_ok=True)
    write_text(run.folder / SETTINGS_FILE, json.dumps({"settings": run.fingerprint()}, indent=2))
    for name, stage in ordered_stages():
        run.timings[name] = run_stage(run, name, stage)
    write_table(pd.DataFrame(list(run.timings.values())), run.folder / "demo_timings.tsv")
    return report.write_report(run, ordered_stages())


# Stages ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoModel:
    """One demo model: the settings attributes naming its input TensorMaps, whether it is a pair (DropFuse) model,
    and the settings attribute multiplying its epochs, if any."""

    inputs: tuple[str, ...]
    paired: bool = False
    epoch_factor: str | None = None

    def epochs(self, settings: DemoSettings) -> int:
        return settings.epochs * (getattr(settings, self.epoch_factor) if self.epoch_factor else 1)


# The whole-brain autoencoders mirror the ml4h registration study. Their latents carry age, sex and the ventricles
# but hardly the deep grey structures: on 2 CPU cores they train for minutes, and the cortex's variance (atrophy,
# head size) comes first. ae_deep sees the central 96 mm cube only; within the same minutes it carries thalamus,
# putamen and hippocampal asymmetry (R^2 0.93-0.95 beyond age and sex, against 0.00-0.24 for the whole brain), so
# PerDI and the GWAS have something to find there.
MODELS = {
    "ae_t1": DemoModel(("t1",)),
    "ae_t2": DemoModel(("t2",)),
    "dropfuse": DemoModel(("t1", "t2"), paired=True),
    "ae_deep": DemoModel(("t1_deep",), epoch_factor="deep_epoch_factor"),
}


def tensormap_name(given: str) -> str:
    """The TensorMap's own name for a command-line name (``ml4ge.demo.maps.t1_3mm`` -> ``t1_3mm``)."""
    from ml4ge.lookup import resolve

    return resolve(given).name


def generate(run: DemoRun) -> None:
    """Write the demo cohort, or check the one given with ``--demo_data``."""
    if run.data is not None:
        log.info("using the demo cohort in %s", run.data)
        return
    from ml4ge.demo.cohort import write_demo_cohort

    settings = run.settings
    write_demo_cohort(run.cohort, subjects=settings.subjects, voxel_mm=settings.voxel_mm, snps=settings.snps,
                      seed=run.seed, tensors=(settings.t1, settings.t2), workers=max(1, run.num_workers))


def demo_manifest(run: DemoRun) -> pd.DataFrame:
    """The cohort's manifest with absolute paths and this demo's TensorMaps (rows of ``t1/`` and ``t2/`` files)."""
    manifest = pd.read_csv(run.cohort / "manifest.csv", dtype=str)
    folder = manifest["path"].str.split("/").str[0]
    maps = {"t1": run.settings.t1, "t2": run.settings.t2}
    unknown = sorted(set(folder) - set(maps))
    if unknown:
        raise ValueError(f"{run.cohort / 'manifest.csv'}: paths under {unknown}; the demo expects t1/ and t2/.")
    return manifest.assign(tensor=folder.map(maps), path=[str((run.cohort / p).resolve()) for p in manifest["path"]])


def tensorize(run: DemoRun) -> None:
    from ml4ge.recipes.tensorize import TensorizeSettings

    folder = run.folder / "tensorize"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = write_table(demo_manifest(run), folder / "demo_manifest.csv", sep=",")
    run_recipe(TensorizeSettings(manifest=str(manifest), phenotype_csv=str(run.cohort / "phenotypes.csv"),
                                 tensors=str(run.tensors), id="tensorize", register_to=registration_templates(run),
                                 **run.common_settings()))


def registration_templates(run: DemoRun) -> list[str]:
    """``TENSOR=TEMPLATE`` pairs that register each contrast to the cohort's template of that contrast.

    Raises:
        FileNotFoundError: for a cohort without its templates (written by an older ml4ge).
    """
    pairs = []
    for contrast, tensor in (("t1", run.settings.t1), ("t2", run.settings.t2)):
        template = run.cohort / f"template_{contrast}.nii.gz"
        if not template.is_file():
            raise FileNotFoundError(f"{template} is missing: the demo cohort predates registration; generate it "
                                    "again (drop --demo_data, or delete the folder).")
        pairs.append(f"{tensor}={template}")
    return pairs


def model_inputs(run: DemoRun, model: str) -> list[str]:
    return [getattr(run.settings, attribute) for attribute in MODELS[model].inputs]


def train_settings(run: DemoRun, model: str):
    """The :class:`~ml4ge.recipes.train.TrainSettings` of one demo model."""
    from ml4ge.recipes.train import TrainSettings

    inputs, spec, settings = model_inputs(run, model), MODELS[model], run.settings
    merge = {"merge_blocks": ("pair",), "pairs": (tuple(inputs),), **settings.pair_flags} if spec.paired else {
        "merge_blocks": ()}
    return TrainSettings(tensors=str(run.tensors), input_tensors=inputs, output_tensors=inputs, **merge,
                         **settings.model_flags, epochs=spec.epochs(settings), batch_size=settings.batch_size,
                         id=model, **run.common_settings())


def train(run: DemoRun, model: str) -> None:
    run_recipe(train_settings(run, model))
    import keras

    keras.backend.clear_session()  # the next model starts from a clean graph and frees this one's memory


def latent_folder(run: DemoRun) -> Path:
    return run.folder / "latents"


def latent_table(run: DemoRun, model: str, given: str) -> Path:
    """``<demo>/latents/<model>/hidden_<tmap>_<model>.tsv``."""
    return latent_folder(run) / model / f"hidden_{tensormap_name(given)}_{model}.tsv"


def infer(run: DemoRun, model: str) -> None:
    from ml4ge.recipes.infer_encoders import InferEncodersSettings

    common = {**run.common_settings(), "output_folder": str(latent_folder(run))}
    run_recipe(InferEncodersSettings(tensors=str(run.tensors), input_tensors=model_inputs(run, model),
                                     model_file=str(run.folder / model / f"{model}.keras"),
                                     batch_size=run.settings.batch_size, id=model, **common))


def latent_spaces(run: DemoRun) -> dict[str, Path]:
    """``{space name: latent table}``: ``ae_t1``, ``ae_t2``, ``dropfuse_t1``, ``dropfuse_t2``, ``ae_deep``."""
    spaces = {}
    for model, spec in MODELS.items():
        for attribute in spec.inputs:
            name = f"{model}_{attribute}" if spec.paired else model
            spaces[name] = latent_table(run, model, getattr(run.settings, attribute))
    return spaces


def planted_traits(run: DemoRun) -> list[str]:
    """Phenotype columns the cohort's ``truth.json`` names as planted-region traits."""
    truth = json.loads((run.cohort / "truth.json").read_text())
    columns = pd.read_csv(run.cohort / "phenotypes.csv", nrows=0).columns
    traits = list(dict.fromkeys([*truth.get("regions", {}), *(snp["trait"] for snp in truth.get("snps", []))]))
    return [trait for trait in traits if trait in columns and trait != "brain_volume"]


def baseline_table(run: DemoRun, folder: Path) -> Path:
    """A one-column "latent space" of the measured brain volume: the phenotype-only baseline."""
    phenotypes = pd.read_csv(run.cohort / "phenotypes.csv", dtype={"sample_id": str})
    return write_table(phenotypes[["sample_id", "brain_volume"]], folder / f"{BASELINE_SPACE}.tsv")


def compare(run: DemoRun) -> None:
    """Age, sex and the planted traits from every latent space and from brain volume alone."""
    from ml4ge.recipes.compare import CompareSettings

    folder = run.folder / "compare"
    folder.mkdir(parents=True, exist_ok=True)
    spaces = {**latent_spaces(run), BASELINE_SPACE: baseline_table(run, folder)}
    pairs = [("ae_t1", "ae_t2"), ("dropfuse_t1", "ae_t1"), ("dropfuse_t2", "ae_t2"), ("ae_t1", BASELINE_SPACE)]
    run_recipe(CompareSettings(phenotypes=str(run.cohort / "phenotypes.csv"),
                               output_tensors=("age", "sex", *planted_traits(run)), folds=run.settings.folds,
                               latent_tables=tuple(f"{name}={path}" for name, path in spaces.items()), pairs=pairs,
                               association_counts=association_counts(run), id="compare", **run.common_settings()))


def association_counts(run: DemoRun) -> tuple[str, ...]:
    """``--association_counts`` of the associate stage, when it ran (its hit and locus counts join the table)."""
    counts = run.folder / "associate" / "associate_counts.tsv"
    return (str(counts),) if counts.is_file() else ()


def compare_adjusted(run: DemoRun) -> None:
    """The planted traits from every latent space plus age and sex, against the age + sex covariates alone."""
    from ml4ge.recipes.compare import CompareSettings

    traits = planted_traits(run)
    if not traits:
        log.warning("the cohort names no planted-region traits; compare_adjusted has nothing to do")
        return
    spaces = latent_spaces(run)
    run_recipe(CompareSettings(phenotypes=str(run.cohort / "phenotypes.csv"), output_tensors=traits,
                               covariates=("age", "sex"), folds=run.settings.folds,
                               latent_tables=tuple(f"{name}={path}" for name, path in spaces.items()),
                               pairs=[(space, "covariates") for space in spaces], id="compare_adjusted",
                               **run.common_settings()))


def _model_stage(function, model: str):
    def stage(run: DemoRun) -> None:
        function(run, model)

    stage.__name__ = f"{function.__name__}_{model}"
    return stage


STAGES.register("generate", Stage(0, "generate", generate, report.cohort_section))
STAGES.register("tensorize", Stage(10, "tensorize", tensorize))
for _offset, _model in enumerate(MODELS):
    STAGES.register(f"train_{_model}", Stage(20 + _offset, "train", _model_stage(train, _model),
                                             report.model_section(_model)))
    STAGES.register(f"infer_{_model}", Stage(30 + _offset, "infer", _model_stage(infer, _model)))
STAGES.register("associate", Stage(40, "associate", truth_stages.associate, truth_stages.associate_section))
STAGES.register("compare", Stage(50, "compare", compare, report.compare_section))
STAGES.register("compare_adjusted", Stage(51, "compare", compare_adjusted, report.adjusted_section))
STAGES.register("interpret", Stage(60, "interpret", truth_stages.interpret, truth_stages.interpret_section))


def demo_run_from_args(args) -> DemoRun:
    """The :class:`DemoRun` the demo flags describe (see :mod:`ml4ge.recipes.demo`)."""
    from dataclasses import replace

    preset = "quick" if args.quick else "full_resolution" if args.full_resolution else "default"
    settings = PRESETS.get(preset)
    changes = {key: value for key, value in (("subjects", args.demo_subjects), ("epochs", args.demo_epochs))
               if value is not None}
    return DemoRun(folder=Path(args.output_folder) / args.id, settings=replace(settings, **changes),
                   seed=args.random_seed, num_workers=args.num_workers,
                   data=Path(args.demo_data) if args.demo_data else None)
