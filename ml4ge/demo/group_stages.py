"""The demo's group stage (``--study cvae``, issue #16 item 4): which latent space separates the planted disease
subtypes?

The cohort of the cvae study holds patients of two planted subtypes (:mod:`ml4ge.demo.patients`). ``cvae_t1`` is a
contrastive VAE trained with the patients as target and the controls as background; ``vae_t1`` a plain VAE of
everyone (:mod:`ml4ge.demo.studies`). evaluate_groups scores three spaces of the patients against their subtype:

- ``cvae_salient``: the cvae's salient means (``hidden_<tm>_cvae_t1.tsv``), where target-only variation should go;
- ``cvae_background``: its background means (``hidden_<tm>_background_cvae_t1.tsv``), shared with the controls;
- ``vae_latent``: the plain VAE's means (``hidden_<tm>_vae_t1.tsv``).

Outputs: ``<demo>/evaluate_groups/`` (the recipe's ``evaluate_groups.tsv``: silhouette, GMM NMI over 100 fits and
its chance level, and one PCA plot per space). Every patient is scored, whatever its split: training sees who is a
patient, never the subtype, so the subtype labels stay unseen.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ml4ge.demo.context import DemoRun, latent_folder, tensormap_name
from ml4ge.demo.patients import DISEASE_SUBTYPES
from ml4ge.demo.recipe_runner import run_recipe
from ml4ge.demo.report import image, markdown_table
from ml4ge.demo.study_table import training_row

STAGE = "evaluate_groups"
SUBTYPES = tuple(subtype.name for subtype in DISEASE_SUBTYPES)
GROUP_COLUMN = "subtype"
GMM_FITS = 100  # the seed's
# space name -> (model, the infer_encoders table's part: "" for the model's own latents, "background_" for the cvae's)
SPACES = {"cvae_salient": ("cvae_t1", ""), "cvae_background": ("cvae_t1", "background_"), "vae_latent": ("vae_t1", "")}
DIAGNOSTICS = {"d_joint": "D(v)", "d_marginals": "D(v-bar)", "discriminator_loss": "L_D", "tc_loss": "L_TC"}


def space_tables(run: DemoRun) -> dict[str, Path]:
    """``{space: latent table}`` of :data:`SPACES` (``<demo>/latents/<model>/hidden_<tm>_<part><model>.tsv``)."""
    tensor = tensormap_name(run.settings.t1)
    return {space: latent_folder(run) / model / f"hidden_{tensor}_{part}{model}.tsv"
            for space, (model, part) in SPACES.items()}


def evaluate_groups(run: DemoRun) -> None:
    """Silhouette and GMM NMI of the two subtypes in each space of :data:`SPACES`, with a PCA plot each."""
    from ml4ge.recipes.evaluate_groups import EvaluateGroupsSettings

    run_recipe(EvaluateGroupsSettings(
        latent_tables=tuple(f"{space}={path}" for space, path in space_tables(run).items()),
        phenotypes=str(run.cohort / "groups.csv"), group_column=GROUP_COLUMN, groups=SUBTYPES, gmm_components=0,
        gmm_fits=GMM_FITS, id=STAGE, **run.common_settings()))


def scores_table(run: DemoRun) -> pd.DataFrame | None:
    """``evaluate_groups.tsv`` as the report shows it (None before the stage ran)."""
    path = run.folder / STAGE / "evaluate_groups.tsv"
    if not path.is_file():
        return None
    scores = pd.read_csv(path, sep="\t")
    return pd.DataFrame({"space": scores.table, "patients": scores.n_samples, "dimensions": scores.dimensions,
                         "silhouette": scores.silhouette.round(3),
                         "NMI (mean ± SD)": [f"{m:.3f} ± {s:.3f}" for m, s in zip(scores.nmi_mean, scores.nmi_sd)],
                         "NMI chance": scores.nmi_chance.round(3)})


def discriminator_line(run: DemoRun) -> str:
    """The cvae's total-correlation discriminator at its last epoch, from its training log ("" without one)."""
    log = run.folder / "cvae_t1" / "training_log.csv"
    if not log.is_file():
        return ""
    last = pd.read_csv(log).iloc[-1]
    values = ", ".join(f"{label} {last[column]:.3f}" for column, label in DIAGNOSTICS.items() if column in last)
    return f"The cvae's discriminator at its last epoch: {values} (2 ln 2 = 1.386 is a discriminator at chance)."


def groups_section(run: DemoRun) -> str:
    """``## Disease subtypes in each latent space``: the scores, training, and one embedding plot per space."""
    table = scores_table(run)
    if table is None:
        return ""
    groups = json.loads((run.cohort / "truth.json").read_text()).get("patients", {}).get("groups", {})
    counts = ", ".join(f"{name} {groups[name]['subjects']}" for name in SUBTYPES if name in groups)
    lines = ["## Disease subtypes in each latent space", "",
             f"Patients of the planted subtypes ({counts}) in three latent spaces: the contrastive VAE's salient "
             "and background means (`cvae_t1`: patients as target, controls as background) and a plain VAE of "
             "every subject (`vae_t1`). Silhouette of the subtype labels; NMI between the labels and a "
             f"{len(SUBTYPES)}-component Gaussian mixture, mean ± SD over {GMM_FITS} seeded fits; `NMI chance`: "
             "the same fits scored against permuted labels. Every patient is scored (training never sees the "
             "subtype).", "", markdown_table(table), "",
             "Training: " + "; ".join(f"`{model}` {training_row(run, model)}" for model in run.plan.models) + ".",
             "", discriminator_line(run)]
    for space in table.space:
        lines += ["", image(run, run.folder / STAGE / f"evaluate_groups_{space}.png", f"{space}: the patients' "
                                                                                       "subtypes")]
    return "\n".join(lines)
