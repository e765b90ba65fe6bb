"""The end-to-end demo as a list of registered stages, each one an existing recipe run in this process.

generate (the MNI152 demo cohort) -> tensorize -> train the study's models (:mod:`ml4ge.demo.studies`; by default a
T1 and a T2 autoencoder, a T1/T2 DropFuse pair model and a deep-brain T1 autoencoder (a central crop); ``--study
vit``: the CNN and the ViT autoencoder of T1; ``--study cvae``: a contrastive VAE of patients against controls and a
plain VAE, then ``evaluate_groups`` (:mod:`ml4ge.demo.group_stages`) in place of the genetics stages; ``--study
ml4h``: T1 and T2 autoencoders and two DropFuse pair models, all with ml4h's blocks, one with ml4ge's corrected pair
loss and fusion and one with ml4h's exact ones) ->
infer_encoders for each -> associate (GWAS of every latent space)
-> compare the latent spaces (age, sex, planted-region traits, GWAS counts; a phenotype-only and a covariates-only
baseline) -> interpret (PerDI of the dimensions the planted traits and SNPs select;
:mod:`ml4ge.demo.truth_stages`) -> ``report.md`` (:mod:`ml4ge.demo.report`).

The models' train stages run two at a time, each in its own process (:mod:`ml4ge.demo.concurrent_stages`).
Every stage has its own run folder ``<demo folder>/<stage>/`` (arguments_<mode>.json, log.txt, outputs) and, when it
finishes, a record ``<demo folder>/stages/<stage>.json`` with its wall time and peak memory: a rerun of the demo
skips recorded stages, and a stage stopped half-way resumes as its recipe does (tensorize skips written subjects,
train continues from its last checkpoint).

Adding a stage: write ``def run_x(run: DemoRun) -> None`` that calls :func:`run_recipe` with a recipe's settings
(e.g. ``CompareSettings(..., **run.common_settings())``), and register
``STAGES.register("x", Stage(order=..., kind="x", run=run_x, report=...))``;
stages run by increasing ``order`` (compare is 50), and ``report`` returns the stage's markdown section. A stage
of one model (``Stage(model=...)``) runs only in the studies that name that model.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pandas as pd

from ml4ge.atomic import write_table, write_text
from ml4ge.demo import brain_age_study, group_stages, legibility, report, truth_stages
from ml4ge.demo.concurrent_stages import concurrency, run_concurrently, training_batch
from ml4ge.demo.context import MODELS, DemoRun, Stage, latent_folder, latent_spaces, model_inputs
from ml4ge.demo.eta import eta_line
from ml4ge.demo.meter import ResourceMeter
from ml4ge.demo.presets import PRESETS
from ml4ge.demo.recipe_runner import run_recipe
from ml4ge.demo.studies import BASELINE_SPACE, DEFAULT_STUDY, STUDIES
from ml4ge.registry import Registry

log = logging.getLogger(__name__)

SETTINGS_FILE = "demo.json"
GROUP_FILES = ("groups.csv", "patients.csv", "controls.csv")  # a cohort with patients (ml4ge.demo.patients)


STAGES: Registry[Stage] = Registry("demo stage")


def ordered_stages(study: str = DEFAULT_STUDY) -> list[tuple[str, Stage]]:
    """The registered stages of ``study`` (those of no model, and those of its models; a stage of one study only in
    it; a study listing its ``shared_stages`` only those of the others) in the order they run."""
    plan = STUDIES.get(study)
    stages = ((name, STAGES.get(name)) for name in STAGES.names())

    def runs(name: str, stage: Stage) -> bool:
        if stage.study is not None:
            return stage.study == study
        if stage.model is not None:
            return stage.model in plan.models
        return plan.shared_stages is None or name in plan.shared_stages

    return sorted(((name, stage) for name, stage in stages if runs(name, stage)), key=lambda item: item[1].order)


# Running recipes in this process -----------------------------------------------------------------------------
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


def run_named_stage(run: DemoRun, name: str) -> dict:
    """:func:`run_stage` of the registered stage ``name`` (what a training process of
    :mod:`ml4ge.demo.concurrent_stages` runs)."""
    return run_stage(run, name, STAGES.get(name))


def check_settings(run: DemoRun) -> None:
    """Refuse to resume a demo folder made with other settings (its finished stages would not match).

    Raises:
        ValueError: naming the differing settings.
    """
    path = run.folder / SETTINGS_FILE
    if not path.is_file():
        return
    # a folder written before studies existed holds the default study
    saved = {"study": DEFAULT_STUDY, **json.loads(path.read_text()).get("settings", {})}
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
    stages = ordered_stages(run.study)
    index = 0
    while index < len(stages):
        batch = training_batch(stages, index) or stages[index:index + 1]
        pending = [name for name, _ in batch if not run.stage_record(name).is_file()]
        if pending:  # the estimate of the time left, from the stages done so far
            done = {done_name: (record["kind"], record["wall_s"]) for done_name, record in run.timings.items()}
            log.info("demo %s", eta_line(done, [(todo, later.kind) for todo, later in stages[index:]]))
        concurrent = run_concurrently(run, pending, run_named_stage) if concurrency(len(pending)) > 1 else {}
        for name, stage in batch:
            run.timings[name] = concurrent.get(name) or run_stage(run, name, stage)
        index += len(batch)
    write_table(pd.DataFrame(list(run.timings.values())), run.folder / "demo_timings.tsv")
    return report.write_report(run, stages)


# Stages ------------------------------------------------------------------------------------------------------
def generate(run: DemoRun) -> None:
    """Write the demo cohort, or check the one given with ``--demo_data``."""
    if run.data is not None:
        check_patient_cohort(run)
        log.info("using the demo cohort in %s", run.data)
        return
    from ml4ge.demo.cohort import write_demo_cohort

    settings = run.settings
    write_demo_cohort(run.cohort, subjects=settings.subjects, voxel_mm=settings.voxel_mm, snps=settings.snps,
                      seed=run.seed, tensors=(settings.t1, settings.t2), workers=max(1, run.num_workers),
                      **dict(run.plan.cohort_options))


def check_patient_cohort(run: DemoRun) -> None:
    """A study of patients needs a cohort that holds them (``groups.csv``, ``patients.csv``, ``controls.csv``).

    Raises:
        FileNotFoundError: naming the missing file and what to do.
    """
    missing = [name for name in GROUP_FILES if not (run.cohort / name).is_file()]
    if run.plan.patients and missing:
        raise FileNotFoundError(f"--study {run.study} needs a cohort with patients, but {run.cohort} has no "
                                f"{', '.join(missing)}; drop --demo_data to let the demo generate one.")


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


def train_settings(run: DemoRun, model: str):
    """The :class:`~ml4ge.recipes.train.TrainSettings` of one demo model."""
    from ml4ge.recipes.train import TrainSettings

    inputs, spec, settings = model_inputs(run, model), MODELS[model], run.settings
    merge = {"merge_blocks": ("pair",), "pairs": (tuple(inputs),), **settings.pair_flags} if spec.paired else {
        "merge_blocks": ()}
    # the model's own flags come last: they may replace the preset's pair loss and fusion (the ml4h study's)
    flags = {"batch_size": settings.batch_size, **merge, **spec.train_flags(settings),
             **{flag: str(run.cohort / name) for flag, name in spec.cohort_flags}}
    return TrainSettings(tensors=str(run.tensors), input_tensors=inputs, output_tensors=inputs, **flags,
                         epochs=spec.epochs(settings), id=model, **run.common_settings())


def train(run: DemoRun, model: str) -> None:
    run_recipe(train_settings(run, model))
    import keras

    keras.backend.clear_session()  # the next model starts from a clean graph and frees this one's memory


def infer(run: DemoRun, model: str) -> None:
    from ml4ge.recipes.infer_encoders import InferEncodersSettings

    common = {**run.common_settings(), "output_folder": str(latent_folder(run))}
    run_recipe(InferEncodersSettings(tensors=str(run.tensors), input_tensors=model_inputs(run, model),
                                     model_file=str(run.folder / model / f"{model}.keras"),
                                     batch_size=run.settings.batch_size, id=model, **common))


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
    pairs = list(run.plan.pairs)
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
# Every model's train stage lies in [20, 21) and its infer stage in [30, 31), in the order of MODELS, however many
# models there are: the bands stay clear of the stages between them (the brain-age study's 25 and 36, associate).
for _offset, _model in enumerate(MODELS):
    _place = _offset / len(MODELS)
    STAGES.register(f"train_{_model}", Stage(20 + _place, "train", _model_stage(train, _model),
                                             report.model_section(_model), model=_model))
    STAGES.register(f"infer_{_model}", Stage(30 + _place, "infer", _model_stage(infer, _model), model=_model))
STAGES.register("associate", Stage(40, "associate", truth_stages.associate, truth_stages.associate_section))
STAGES.register("compare", Stage(50, "compare", compare, report.compare_section))
STAGES.register("compare_adjusted", Stage(51, "compare", compare_adjusted, report.adjusted_section))
STAGES.register("interpret", Stage(60, "interpret", truth_stages.interpret, truth_stages.interpret_section))
STAGES.register("drop_t2", Stage(5, "generate", legibility.drop_t2, study="legibility"))
STAGES.register("sweep", Stage(45, "train", legibility.sweep, legibility.sweep_section, study="legibility"))
for _name, _stage in brain_age_study.stages().items():
    STAGES.register(_name, _stage)
STAGES.register("evaluate_groups", Stage(55, "evaluate", group_stages.evaluate_groups, group_stages.groups_section,
                                        study="cvae"))


def demo_run_from_args(args) -> DemoRun:
    """The :class:`DemoRun` the demo flags describe (see :mod:`ml4ge.recipes.demo`)."""
    from dataclasses import replace

    preset = "quick" if args.quick else "full_resolution" if args.full_resolution else "default"
    settings = PRESETS.get(preset)
    changes = {key: value for key, value in (("subjects", args.demo_subjects), ("epochs", args.demo_epochs))
               if value is not None}
    return DemoRun(folder=Path(args.output_folder) / args.id, settings=replace(settings, **changes),
                   seed=args.random_seed, num_workers=args.num_workers,
                   data=Path(args.demo_data) if args.demo_data else None, study=args.study)
