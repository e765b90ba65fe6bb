"""The planted truth of the demo cohort: which structure varies with age, sex and which SNP, by how much.

Every planted trait has a structure factor per subject,
``f = age_sd * z(age) + effect_sd_per_allele * (g - mean g) + e`` with ``e ~ N(0, 1)``, so effect sizes are
in units of the structure's own non-genetic variation. The factor sets how many mm the trait's regions grow
at their boundaries (``base_growth_mm + growth_mm_per_sd * f``; see :class:`ml4ge.demo.anatomy.GrowthField`), which
the rendered anatomy carries; the trait is then measured on the subject's warped atlas. Kinds are looked up
in registries: how a factor deforms the regions, and how the trait is measured from region volumes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

AGE_RANGE = (45.0, 80.0)
HEAD_SCALE_BY_SEX = 0.018  # linear head scale +/- this for male/female (about 11% brain volume difference)
HEAD_SCALE_SD = 0.02
GM_LOSS_OVER_AGE_RANGE = 0.25  # fraction of cortical grey matter turned to CSF from the youngest to the oldest
GM_LOSS_SD = 0.03
TRAIT_NOISE_SD = 0.01  # measurement noise: relative for volumes, absolute for asymmetry indices


@dataclass(frozen=True)
class PlantedEffect:
    """One trait with a causal SNP.

    Attributes:
        trait: phenotype column.
        kind: ``volume`` (all regions grow together) or ``asymmetry`` (first region grows, second shrinks).
        regions: atlas region names the factor acts on and the trait is measured over.
        effect_sd_per_allele: factor shift per copy of the SNP's allele 1 (in SDs of the non-genetic part).
        age_sd: factor shift per SD of age.
        base_growth_mm, growth_mm_per_sd: boundary growth (mm) at factor 0, and per unit of factor.
    """

    trait: str
    kind: str
    regions: tuple[str, ...]
    effect_sd_per_allele: float
    age_sd: float
    base_growth_mm: float
    growth_mm_per_sd: float


# Boundary growth per SD of factor: 1 mm for the ventricles (already large, and growing with age), 2 mm for the
# deep grey structures, 4 mm for the hippocampal asymmetry (2 mm per side, one side grows as the other shrinks).
# Smaller growth barely shows on the demo's 3 mm grid, even after registration (docs/experiments.md).
PLANTED_EFFECTS = (
    PlantedEffect("ventricle_volume", "volume", ("lateral_ventricle_left", "lateral_ventricle_right"),
                  effect_sd_per_allele=1.0, age_sd=1.6, base_growth_mm=2.5, growth_mm_per_sd=1.0),
    PlantedEffect("hippocampus_asymmetry", "asymmetry", ("hippocampus_left", "hippocampus_right"),
                  effect_sd_per_allele=1.0, age_sd=0.0, base_growth_mm=0.0, growth_mm_per_sd=4.0),
    PlantedEffect("thalamus_volume", "volume", ("thalamus_left", "thalamus_right"),
                  effect_sd_per_allele=1.0, age_sd=-0.5, base_growth_mm=0.0, growth_mm_per_sd=2.0),
    PlantedEffect("putamen_volume", "volume", ("putamen_left", "putamen_right"),
                  effect_sd_per_allele=-1.0, age_sd=-0.3, base_growth_mm=0.0, growth_mm_per_sd=2.0),
)


def _volume_amounts(effect: PlantedEffect, amount: float) -> dict[str, float]:
    return {region: amount for region in effect.regions}


def _asymmetry_amounts(effect: PlantedEffect, amount: float) -> dict[str, float]:
    first, second = effect.regions
    return {first: amount / 2.0, second: -amount / 2.0}


def _volume_trait(volumes: Mapping[str, float], regions) -> float:
    return float(sum(volumes[r] for r in regions))


def _asymmetry_trait(volumes: Mapping[str, float], regions) -> float:
    first, second = (volumes[r] for r in regions)
    return float((first - second) / max((first + second) / 2.0, 1e-6))


def _relative_noise(value: float, z: float) -> float:
    return value * (1.0 + TRAIT_NOISE_SD * z)


def _absolute_noise(value: float, z: float) -> float:
    return value + TRAIT_NOISE_SD * z


# kind -> how a growth amount (mm) is spread over the regions
REGION_AMOUNTS: dict[str, Callable[[PlantedEffect, float], dict[str, float]]] = {
    "volume": _volume_amounts, "asymmetry": _asymmetry_amounts,
}
# kind -> how the trait is measured from region volumes (mL)
TRAIT_MEASURES: dict[str, Callable[[Mapping[str, float], tuple[str, ...]], float]] = {
    "volume": _volume_trait, "asymmetry": _asymmetry_trait,
}
# kind -> how a standard normal draw ``z`` of measurement noise enters the trait
TRAIT_NOISE: dict[str, Callable[[float, float], float]] = {"volume": _relative_noise, "asymmetry": _absolute_noise}


def truth_record(effects=PLANTED_EFFECTS) -> dict:
    """The parts of ``truth.json`` that do not depend on the cohort: age/sex effects and region lists."""
    return {
        "age_effects": {
            "age_range_years": f"{AGE_RANGE[0]:g}-{AGE_RANGE[1]:g}",
            "cortical_gm_fraction_lost_over_range": GM_LOSS_OVER_AGE_RANGE,
            **{f"{e.trait}_factor_sd_per_age_sd": e.age_sd for e in effects if e.age_sd},
        },
        "sex_effects": {
            "head_scale_male_minus_female": round(2 * HEAD_SCALE_BY_SEX, 4),
            "head_scale_sd": HEAD_SCALE_SD,
            "volume_ratio_male_over_female": round(((1 + HEAD_SCALE_BY_SEX) / (1 - HEAD_SCALE_BY_SEX)) ** 3, 3),
        },
        "regions": {e.trait: list(e.regions) for e in effects},
        "effects": [asdict(e) for e in effects],
    }
