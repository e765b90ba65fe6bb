"""An optional patient group in the demo cohort: two planted disease subtypes, age- and sex-matched to controls.

With ``patients = p > 0`` (:func:`ml4ge.demo.cohort.write_demo_cohort`), a fraction ``p`` of the subjects are
patients, each carrying one subtype of :data:`DISEASE_SUBTYPES` (atrophy of its own regions, with its own effect
size); the others are healthy controls. The truth check of the contrastive VAE (issue #16 item 4) trains on patients
as target and controls as background, and asks whether the salient space separates the subtypes.

Matching: within each sex, subjects are ordered by age and patients are drawn by systematic sampling along that
order (one random offset), and the subtypes alternate along the patients' age order (a random start), so patients
and controls, and the two subtypes, have the same sex mix and nearly the same age distribution.

Everything here draws from its own stream ``default_rng([seed, PATIENT_STREAM])`` after the cohort's draws, and
only patients' region growth changes, so the controls' images and traits are those of the cohort without patients
(and ``p = 0``, the default, writes exactly the cohort it always did).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

CONTROL, PATIENT = "control", "patient"
PATIENT_STREAM = 16_004  # the patients' own random stream (issue 16, item 4)
GROUP_COLUMNS = ["sample_id", "group", "subtype", "atrophy_mm"]


@dataclass(frozen=True)
class DiseaseSubtype:
    """One planted disease pattern.

    Attributes:
        name: the ``subtype`` label in ``groups.csv``.
        regions: atlas regions whose boundaries move (all by the same amount).
        atrophy_mm: mean boundary growth in mm (negative: the regions shrink).
        atrophy_sd_mm: its SD between patients.
    """

    name: str
    regions: tuple[str, ...]
    atrophy_mm: float
    atrophy_sd_mm: float


# Two disease patterns, each a deep grey structure and the white matter of its lobes (regions no planted genetic
# trait uses), with its own effect size: a frontal-subcortical one (caudate and frontal white matter) and a
# temporo-parietal one (amygdala, temporal and parietal white matter). Shrinking a lobe's white matter moves grey
# matter into it over thousands of voxels, so the pattern is large against the images' variation; atrophy of a deep
# structure alone (2-3 mm, the first version) was too small at 3 mm to be found even by its regions' mean intensities
# (README, "--study cvae"). The boundary moves less than ``atrophy_mm`` in small structures (the growth field is
# smoothed over 5 mm).
DISEASE_SUBTYPES = (
    DiseaseSubtype("subtype_a", ("caudate_left", "caudate_right", "frontal_wm_left", "frontal_wm_right"),
                   atrophy_mm=-4.5, atrophy_sd_mm=0.5),
    DiseaseSubtype("subtype_b", ("amygdala_left", "amygdala_right", "temporal_wm_left", "temporal_wm_right",
                                 "parietal_wm_left", "parietal_wm_right"), atrophy_mm=-5.0, atrophy_sd_mm=0.5),
)


def disease_regions() -> list[str]:
    """Every region a subtype moves (the scene needs their growth fields)."""
    return sorted({region for subtype in DISEASE_SUBTYPES for region in subtype.regions})


def check_fraction(patients: float, subjects: int) -> None:
    """Raises ValueError unless ``0 <= patients < 1`` leaves every subtype and the controls some subjects."""
    if not 0.0 <= patients < 1.0:
        raise ValueError(f"patients is the fraction of subjects who are patients, in [0, 1); got {patients!r}")
    expected = patients * subjects
    if patients and (expected < 2 * len(DISEASE_SUBTYPES) or subjects - expected < 2 * len(DISEASE_SUBTYPES)):
        raise ValueError(f"patients={patients:g} of {subjects} subjects gives about {expected:.0f} patients; "
                         f"each of the {len(DISEASE_SUBTYPES)} subtypes and the controls need at least 2 per sex: "
                         "raise subjects or choose a fraction nearer 1/3")


def assign_subtypes(ages: np.ndarray, sexes: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Each subject's subtype name, or :data:`CONTROL`, matched on age and sex (see the module docstring)."""
    labels = np.full(len(ages), CONTROL, dtype=object)
    for sex in np.unique(sexes):
        rows = np.flatnonzero(sexes == sex)
        rows = rows[np.argsort(ages[rows], kind="stable")]
        rank = np.arange(len(rows)) + rng.random()
        chosen = rows[np.floor((rank + 1) * fraction) > np.floor(rank * fraction)]  # systematic sampling
        start = int(rng.integers(len(DISEASE_SUBTYPES)))
        for k, row in enumerate(chosen):
            labels[row] = DISEASE_SUBTYPES[(start + k) % len(DISEASE_SUBTYPES)].name
    return labels


def add_patients(specs: list, fraction: float, seed: int) -> tuple[list, pd.DataFrame]:
    """``specs`` with each patient's atrophy added to its region growth, and the ``groups.csv`` table.

    Args:
        specs: the cohort's :class:`ml4ge.demo.subject.SubjectSpec` list.
        fraction: share of patients (0: none; the specs come back unchanged).
        seed: the cohort's seed (the patients draw from ``default_rng([seed, PATIENT_STREAM])``).
    """
    rng = np.random.default_rng([seed, PATIENT_STREAM])
    ages = np.array([spec.age for spec in specs])
    sexes = np.array([spec.sex for spec in specs])
    labels = assign_subtypes(ages, sexes, fraction, rng) if fraction else np.full(len(specs), CONTROL, dtype=object)
    by_name = {subtype.name: subtype for subtype in DISEASE_SUBTYPES}
    rows, planned = [], []
    for spec, label in zip(specs, labels, strict=True):
        subtype = by_name.get(label)
        amount = 0.0 if subtype is None else float(subtype.atrophy_mm + subtype.atrophy_sd_mm * rng.standard_normal())
        if subtype is not None:
            spec = dataclasses.replace(spec, region_amounts={**spec.region_amounts,
                                                             **{region: amount for region in subtype.regions}})
        planned.append(spec)
        rows.append((spec.sample_id, CONTROL if subtype is None else PATIENT, label, round(amount, 4)))
    return planned, pd.DataFrame(rows, columns=GROUP_COLUMNS)


def patients_record(groups: pd.DataFrame, ages, sexes, fraction: float) -> dict:
    """The ``patients`` part of ``truth.json``: the subtypes, the counts and how well the groups are matched."""
    ages, sexes = np.asarray(ages, dtype=float), np.asarray(sexes)
    summary = {label: {"subjects": int(rows.sum()), "mean_age": round(float(ages[rows].mean()), 2),
                       "male_fraction": round(float(sexes[rows].mean()), 3)}
               for label in sorted(set(groups.subtype)) for rows in [(groups.subtype == label).to_numpy()]}
    return {"fraction": fraction, "subtypes": [asdict(subtype) for subtype in DISEASE_SUBTYPES],
            "groups": summary, "matching": "systematic sampling along age within each sex; subtypes alternate"}
