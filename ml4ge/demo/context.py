"""The demo's run context: one demo folder, its settings, its models, and where each stage's outputs lie.

The stage modules (:mod:`ml4ge.demo.pipeline`, :mod:`ml4ge.demo.truth_stages`) and the report
(:mod:`ml4ge.demo.report`) all take a :class:`DemoRun`; it lives here, apart from them, so that none of them has to
import another to learn what a run is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ml4ge.demo.presets import DemoSettings
from ml4ge.demo.studies import DEFAULT_STUDY, MODELS, STUDIES, Study

STAGE_RECORDS = "stages"


@dataclass
class DemoRun:
    """Where one demo lives and what it was asked to do.

    Args:
        folder: ``<output_folder>/<id>/`` of the demo.
        settings: the preset, possibly with another subject count or epochs.
        seed: cohort seed and ``--random_seed`` of every recipe.
        num_workers: ``--num_workers`` of every recipe.
        data: an existing cohort folder (``--demo_data``), or None to generate one in ``<folder>/data``.
        study: the name of its :class:`~ml4ge.demo.studies.Study` (``--study``): which models it trains.
    """

    folder: Path
    settings: DemoSettings
    seed: int
    num_workers: int
    data: Path | None = None
    study: str = DEFAULT_STUDY
    timings: dict[str, dict] = field(default_factory=dict)

    @property
    def cohort(self) -> Path:
        return self.data if self.data is not None else self.folder / "data"

    @property
    def tensors(self) -> Path:
        return self.folder / "tensors"

    def fingerprint(self) -> dict:
        """The settings, seed and cohort folder: what must match for this folder to be resumed."""
        return json.loads(json.dumps({**self.settings.fingerprint(), "seed": self.seed, "data": str(self.cohort),
                                      "study": self.study}))

    @property
    def plan(self) -> Study:
        """Its study: the models it trains, interprets and compares."""
        return STUDIES.get(self.study)

    def stage_record(self, name: str) -> Path:
        return self.folder / STAGE_RECORDS / f"{name}.json"

    def common_settings(self) -> dict:
        """Run settings every recipe of the demo shares: its folder, seed and workers."""
        return {"output_folder": str(self.folder), "random_seed": self.seed, "num_workers": self.num_workers}


@dataclass(frozen=True)
class Stage:
    """One step of the demo.

    Args:
        order: stages run by increasing order (a model's train and infer stages have fractional ones).
        kind: what the stage is, for the timing table (generate, tensorize, train, infer, compare, ...).
        run: does the work; raises on failure.
        report: returns the stage's markdown section for ``report.md`` (or None).
        model: the model (of :data:`MODELS`) this stage trains or infers: it runs only in a study naming it.
        study: the one study this stage belongs to (it runs in no other); None: a stage of every study.
    """

    order: float
    kind: str
    run: Callable[[DemoRun], None]
    report: Callable[[DemoRun], str] | None = None
    model: str | None = None
    study: str | None = None


def tensormap_name(given: str) -> str:
    """The TensorMap's own name for a command-line name (``ml4ge.demo.maps.t1_3mm`` -> ``t1_3mm``)."""
    from ml4ge.lookup import resolve

    return resolve(given).name


def model_inputs(run: DemoRun, model: str) -> list[str]:
    return [getattr(run.settings, attribute) for attribute in MODELS[model].inputs]


def latent_folder(run: DemoRun) -> Path:
    return run.folder / "latents"


def latent_table(run: DemoRun, model: str, given: str) -> Path:
    """``<demo>/latents/<model>/hidden_<tmap>_<model>.tsv``."""
    return latent_folder(run) / model / f"hidden_{tensormap_name(given)}_{model}.tsv"


def _spaces(run: DemoRun) -> Iterator[tuple[str, str, str]]:
    """``(space, model, input attribute)`` of each latent space of the study's models, in the study's order."""
    for model in run.plan.models:
        spec = MODELS[model]
        for attribute in spec.inputs:
            yield (f"{model}_{attribute}" if spec.paired else model), model, attribute


def latent_spaces(run: DemoRun) -> dict[str, Path]:
    """``{space name: latent table}`` of the study's models: the model's name, ``<model>_<input>`` for a pair model
    (the default study: ``ae_t1``, ``ae_t2``, ``dropfuse_t1``, ``dropfuse_t2``, ``ae_deep``)."""
    return {space: latent_table(run, model, getattr(run.settings, attribute))
            for space, model, attribute in _spaces(run)}


def space_models(run: DemoRun) -> dict[str, str]:
    """``{space name: model}``: which model wrote each latent space (a pair model writes two)."""
    return {space: model for space, model, _ in _spaces(run)}
