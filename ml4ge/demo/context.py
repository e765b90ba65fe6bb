"""The demo's run context: one demo folder, its settings, its models, and where each stage's outputs lie.

The stage modules (:mod:`ml4ge.demo.pipeline`, :mod:`ml4ge.demo.truth_stages`) and the report
(:mod:`ml4ge.demo.report`) all take a :class:`DemoRun`; it lives here, apart from them, so that none of them has to
import another to learn what a run is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ml4ge.demo.presets import DemoSettings

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


@dataclass(frozen=True)
class DemoModel:
    """One demo model: the settings attributes naming its input TensorMaps, whether it is a pair (DropFuse) model,
    and the settings attribute multiplying its epochs, if any."""

    inputs: tuple[str, ...]
    paired: bool = False
    epoch_factor: str | None = None

    def epochs(self, settings: DemoSettings) -> int:
        return settings.epochs * (getattr(settings, self.epoch_factor) if self.epoch_factor else 1)


# The whole-brain autoencoders mirror the ml4h registration study; their latents are dominated by the cortex's
# variance (atrophy, head size). ae_deep sees only the central 96 mm cube, at a fraction of the cost per epoch, so
# that a latent space carries the deep grey structures where the demo plants effects (docs/experiments.md).
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


def model_inputs(run: DemoRun, model: str) -> list[str]:
    return [getattr(run.settings, attribute) for attribute in MODELS[model].inputs]


def latent_folder(run: DemoRun) -> Path:
    return run.folder / "latents"


def latent_table(run: DemoRun, model: str, given: str) -> Path:
    """``<demo>/latents/<model>/hidden_<tmap>_<model>.tsv``."""
    return latent_folder(run) / model / f"hidden_{tensormap_name(given)}_{model}.tsv"


def latent_spaces(run: DemoRun) -> dict[str, Path]:
    """``{space name: latent table}``: ``ae_t1``, ``ae_t2``, ``dropfuse_t1``, ``dropfuse_t2``, ``ae_deep``."""
    spaces = {}
    for model, spec in MODELS.items():
        for attribute in spec.inputs:
            name = f"{model}_{attribute}" if spec.paired else model
            spaces[name] = latent_table(run, model, getattr(run.settings, attribute))
    return spaces
