"""The demo's studies: which models one demo trains, interprets and compares (``--study``).

A :class:`DemoModel` says how one model trains (its input maps, its train flags, its epochs); :data:`MODELS` holds
every model any study uses, and a :class:`Study` names the models of one demo. The stages are the same for every
study (:mod:`ml4ge.demo.pipeline` runs a model's train and infer stages only when the study names it), so a new
study is one registration here, not a new pipeline:

- ``default``: the T1 and T2 autoencoders, the T1/T2 DropFuse pair model and the deep-brain T1 autoencoder.
- ``cvae``: a contrastive VAE of T1 with the patients of a cohort with planted disease subtypes as target and the
  controls as background (``cvae_t1``), beside a plain VAE of everyone (``vae_t1``) for the same epochs; the
  ``evaluate_groups`` stage asks which space separates the subtypes (issue #16 item 4, :mod:`ml4ge.demo.group_stages`).
- ``vit``: the CNN autoencoder of T1 (the default's ``ae_t1``) beside the UDIP-ViT autoencoder of the same T1
  volumes (``vit_t1``), each given the same CPU time for training (:data:`VIT_EPOCH_FACTORS`); the second seed
  study's claim that a ViT's latents find loci the CNN's miss (the hippocampal left-right asymmetry) is the test.
- ``brain_age``: SFCN brain age on a cohort with an ageing SNP, beside ridge baselines on the T1 autoencoder's
  latents and on the regional volumes, and a GWAS of the brain-age gap (:mod:`ml4ge.demo.brain_age_study`).
- ``ml4h``: the ml4h registration study's experiment with ml4h's blocks (``--conv_style ml4h`` at the preset's
  widths): a T1 and a T2 autoencoder (``ml4h_ae_t1``, ``ml4h_ae_t2``) and the T1/T2 DropFuse pair model twice, with
  ml4ge's corrected loss and fusion (``ml4h_dropfuse``: InfoNCE, DropFuse averaged at inference) and with ml4h's
  exact ones (``ml4h_dropfuse_exact``: ``--pair_loss contrastive_ml4h --pair_merge dropout_ml4h``), side by side:
  what the corrections change (docs/ml4h_differences.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ml4ge.registry import Registry

if TYPE_CHECKING:
    from ml4ge.demo.presets import DemoSettings

DEFAULT_STUDY = "default"
BASELINE_SPACE = "brain_volume_only"


@dataclass(frozen=True)
class DemoModel:
    """One demo model.

    Args:
        inputs: the settings attributes naming its input TensorMaps.
        paired: a pair (DropFuse) model of two inputs.
        epoch_factor: its epochs as a multiple of the preset's (rounded, at least 1); None: the preset's.
        flags: its own train flags (model and optimizer, ``batch_size`` if not the preset's, and for a pair model
            its pair loss and fusion if not the preset's ``pair_flags``) instead of the preset's ``model_flags``;
            None: the preset's.
        cohort_flags: train flags that name a file of the demo cohort, as ``(flag, file name)`` pairs (the cvae's
            ``--target_csv patients.csv``).
    """

    inputs: tuple[str, ...]
    paired: bool = False
    epoch_factor: Callable[[DemoSettings], float] | None = None
    flags: Callable[[DemoSettings], dict[str, Any]] | None = None
    cohort_flags: tuple[tuple[str, str], ...] = ()

    def epochs(self, settings: DemoSettings) -> int:
        factor = self.epoch_factor(settings) if self.epoch_factor else 1
        return max(1, round(settings.epochs * factor))

    def train_flags(self, settings: DemoSettings) -> dict[str, Any]:
        return self.flags(settings) if self.flags else settings.model_flags


def deep_epochs(settings: DemoSettings) -> float:
    """The deep-brain crop is about a tenth of the volume, and so is an epoch: it trains ``deep_epoch_factor``
    times the epochs."""
    return settings.deep_epoch_factor


# The UDIP-ViT of each demo preset: the reduced preset on the 3 mm and 5 mm grids (8x8x8 patches), the full one at
# 1 mm. Same batch and patience as the CNN; the preset brings the seed's AdamW and step schedule.
VIT_MODEL_PRESETS = {"default": "udip_vit_small", "quick": "udip_vit_small", "full_resolution": "udip_vit"}
# Epochs of the ViT per epoch of the CNN T1 autoencoder, so that both train for about the same CPU time. Default
# preset, measured on the shared 2-core CPU (2 and 4 epochs of each, the difference): the CNN costs 20.5 CPU-s per
# epoch, the ViT 15.7 (wall 44 s and 17 s, under loads of 2-6), so the ViT gets 1.3x the epochs (13 for 10). The
# quick preset (a smoke test) and 1 mm (no measurement on a GPU) give both the same epochs.
VIT_EPOCH_FACTORS = {"default": 1.3, "quick": 1.0, "full_resolution": 1.0}


def vit_flags(settings: DemoSettings) -> dict[str, Any]:
    """Train flags of the demo's UDIP-ViT autoencoder on the preset's grid."""
    return {"model_preset": VIT_MODEL_PRESETS[settings.preset], "encoder_blocks": ("vit_encode",),
            "decoder_blocks": ("vit_decode",), "patience": settings.model_flags.get("patience", 4)}


def vit_epochs(settings: DemoSettings) -> float:
    return VIT_EPOCH_FACTORS[settings.preset]


# The cvae study's models: the preset's conv encoder and decoder, a dense layer of 128 and Gaussian heads of 32
# (the seed's s = z = 32 after Dense 128, REFERENCE_SEEDS.md C.3); the plain VAE's code is 32 wide too, so all three
# scored spaces have 32 dimensions. Batches of 4 (2 patients + 2 controls for the cvae: with one of each the
# discriminator's half swap would change nothing), the same for the VAE. Same epochs for both: a cvae epoch runs
# two encoders over the training patients and as many controls (about 2/3 of the training split), a VAE epoch one
# encoder over the whole split, so they cost about the same (measured: README, "--study cvae").
GROUP_BATCH = 4
# Epochs of both models per preset epoch (one budget for both). At the default preset's 10 the cvae's loss was still
# falling fast (45,900 at epoch 5, 20,400 at epoch 10; README, "--study cvae"), so both train 3x; the quick preset (a
# smoke test) and 1 mm keep the preset's.
GROUP_EPOCH_FACTORS = {"default": 3.0, "quick": 1.0, "full_resolution": 1.0}


def group_epochs(settings: DemoSettings) -> float:
    return GROUP_EPOCH_FACTORS[settings.preset]


def cvae_flags(settings: DemoSettings) -> dict[str, Any]:
    """Train flags of the demo's contrastive VAE (patients as target, controls as background)."""
    return {**settings.model_flags, "family": "cvae", "dense_layers": (128,), "salient_size": 32,
            "background_size": 32, "batch_size": GROUP_BATCH}


def vae_flags(settings: DemoSettings) -> dict[str, Any]:
    """Train flags of the plain VAE of every subject beside it."""
    return {**settings.model_flags, "family": "vae", "dense_layers": (128, 32), "batch_size": GROUP_BATCH}


# The ml4h study's models: ml4h's encoder and decoder structure (activated embedding, ml4h's decoder; docs/
# ml4h_differences.md) at the preset's widths and kernels, every other flag the preset's. The exact DropFuse model
# also takes ml4h's pair loss and fusion; the corrected one keeps the preset's pair_flags (InfoNCE, DropFuse).
ML4H_EXACT_PAIR = {"pair_loss": "contrastive_ml4h", "pair_merge": "dropout_ml4h"}


def ml4h_blocks(settings: DemoSettings) -> dict[str, Any]:
    """The preset's train flags with ml4h's conv structure.

    Raises:
        ValueError: for a preset whose model is a ``--model_preset`` (full_resolution's ``udip``): the preset's
            architecture wins over ``--conv_style``, so the models would be plain ones.
    """
    if "model_preset" in settings.model_flags:
        raise ValueError(f"--study ml4h builds ml4h's blocks from the preset's conv flags, but the "
                         f"{settings.preset} preset's models are --model_preset {settings.model_flags['model_preset']} "
                         "(its own, plain structure); run the study at the default preset or with --quick.")
    return {**settings.model_flags, "conv_style": "ml4h"}


def ml4h_exact(settings: DemoSettings) -> dict[str, Any]:
    """ml4h's blocks, pair loss and fusion (the registration study's DropFuse as ml4h trained it)."""
    return {**ml4h_blocks(settings), **ML4H_EXACT_PAIR}


# The whole-brain autoencoders mirror the ml4h registration study; their latents are dominated by the cortex's
# variance (atrophy, head size). ae_deep sees only the central 96 mm cube, at a fraction of the cost per epoch, so
# that a latent space carries the deep grey structures where the demo plants effects (docs/experiments.md).
MODELS = {
    "ae_t1": DemoModel(("t1",)),
    "ae_t2": DemoModel(("t2",)),
    "dropfuse": DemoModel(("t1", "t2"), paired=True),
    "ae_deep": DemoModel(("t1_deep",), epoch_factor=deep_epochs),
    "vit_t1": DemoModel(("t1",), epoch_factor=vit_epochs, flags=vit_flags),
    "cvae_t1": DemoModel(("t1",), flags=cvae_flags, epoch_factor=group_epochs,
                         cohort_flags=(("target_csv", "patients.csv"), ("background_csv", "controls.csv"))),
    "vae_t1": DemoModel(("t1",), flags=vae_flags, epoch_factor=group_epochs),
    "ml4h_ae_t1": DemoModel(("t1",), flags=ml4h_blocks),
    "ml4h_ae_t2": DemoModel(("t2",), flags=ml4h_blocks),
    "ml4h_dropfuse": DemoModel(("t1", "t2"), paired=True, flags=ml4h_blocks),
    "ml4h_dropfuse_exact": DemoModel(("t1", "t2"), paired=True, flags=ml4h_exact),
}
@dataclass(frozen=True)
class Study:
    """The models of one demo.

    Args:
        models: names in :data:`MODELS`, trained and inferred in this order.
        interpret: the autoencoders whose trait- and SNP-selected dimensions PerDI maps.
        pairs: ``--pairs`` of the compare stage: latent spaces (model names, ``<model>_<input>`` for a pair model)
            or :data:`BASELINE_SPACE`.
        side_by_side: ``report.md`` opens with a table of the models side by side (:mod:`ml4ge.demo.study_table`).
        table_note: what the side-by-side table's reader should know of this study (after the table's legend).
        shared_stages: the stages of every study this one runs (None: all; its own stages run regardless).
        cohort_options: ``(name, value)`` arguments of :func:`ml4ge.demo.cohort.write_demo_cohort` for its cohort.
    """

    models: tuple[str, ...]
    interpret: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    side_by_side: bool = False
    table_note: str = ""
    shared_stages: tuple[str, ...] | None = None
    cohort_options: tuple[tuple[str, float], ...] = ()  # write_demo_cohort arguments

    @property
    def patients(self) -> float:
        """The fraction of patients (two planted disease subtypes) its cohort holds (0: none)."""
        return dict(self.cohort_options).get("patients", 0.0)

    def __post_init__(self):
        unknown = sorted(set(self.models + self.interpret) - set(MODELS))
        if unknown or not set(self.interpret) <= set(self.models):
            raise ValueError(f"a study names models of MODELS ({', '.join(MODELS)}) and interprets some of its own; "
                             f"got models {self.models}, interpret {self.interpret}.")


STUDIES: Registry[Study] = Registry("demo study")
STUDIES.register(DEFAULT_STUDY, Study(
    models=("ae_t1", "ae_t2", "dropfuse", "ae_deep"), interpret=("ae_t1", "ae_deep"),
    pairs=(("ae_t1", "ae_t2"), ("dropfuse_t1", "ae_t1"), ("dropfuse_t2", "ae_t2"), ("ae_t1", BASELINE_SPACE))))
STUDIES.register("vit", Study(
    models=("ae_t1", "vit_t1"), interpret=("ae_t1", "vit_t1"),
    pairs=(("vit_t1", "ae_t1"), ("ae_t1", BASELINE_SPACE), ("vit_t1", BASELINE_SPACE)), side_by_side=True,
    table_note="The ViT's epochs give it about the CNN's training time."))
STUDIES.register("legibility", Study(models=(), interpret=(), pairs=(), shared_stages=("generate", "tensorize")))
STUDIES.register("brain_age", Study(
    models=("ae_t1",), interpret=(), pairs=(("ae_t1", BASELINE_SPACE),), cohort_options=(("ageing_years", 3.0),),
    shared_stages=("generate", "tensorize", "associate", "compare")))
STUDIES.register("cvae", Study(
    models=("cvae_t1", "vae_t1"), interpret=(), pairs=(), shared_stages=("generate", "tensorize"),
    cohort_options=(("patients", 1 / 3),)))
# Each DropFuse space beside the autoencoder of its modality, and the exact space beside the corrected one.
STUDIES.register("ml4h", Study(
    models=("ml4h_ae_t1", "ml4h_ae_t2", "ml4h_dropfuse", "ml4h_dropfuse_exact"), interpret=("ml4h_ae_t1",),
    pairs=(("ml4h_dropfuse_t1", "ml4h_ae_t1"), ("ml4h_dropfuse_t2", "ml4h_ae_t2"),
           ("ml4h_dropfuse_exact_t1", "ml4h_ae_t1"), ("ml4h_dropfuse_exact_t2", "ml4h_ae_t2"),
           ("ml4h_dropfuse_exact_t1", "ml4h_dropfuse_t1"), ("ml4h_dropfuse_exact_t2", "ml4h_dropfuse_t2"),
           ("ml4h_ae_t1", BASELINE_SPACE)),
    side_by_side=True, table_note=(
        "All four models have ml4h's blocks (`--conv_style ml4h`) at the preset's widths. `ml4h_dropfuse` trains "
        "with ml4ge's corrected pair loss and fusion (symmetric InfoNCE with a clamped learned temperature; "
        "DropFuse drawn per sample and coordinate, the mean at inference), `ml4h_dropfuse_exact` with ml4h's "
        "(`--pair_loss contrastive_ml4h`: the swapped cross-entropy, a bounded linear penalty on the diagonal "
        "softmax mass; `--pair_merge dropout_ml4h`: one modality per coordinate for the whole batch, random at "
        "inference too). Inference: the spaces here are the encoders' outputs (`infer_encoders` runs "
        "`encoder_<tmap>.keras` alone, before the fusion), so they are deterministic for both models. What passes "
        "through the exact model's fusion is random: its test metrics and reconstructions (one draw) and its fused "
        "table `latents/ml4h_dropfuse_exact/hidden_fused_ml4h_dropfuse_exact.tsv` (a new draw per batch), which no "
        "stage here uses.")))
