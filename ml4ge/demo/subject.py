"""Render one demo subject: warp the template into its anatomy, age its cortex, form T1 and T2-like images
with bias and noise, and measure its traits on the warped atlas.

Everything random here comes from ``numpy.random.default_rng([seed, index])``, so a subject is the same
whichever worker renders it and in whatever order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ml4ge.demo.anatomy import (
    GrowthField,
    Pose,
    Template,
    bias_field,
    growth_field,
    pull_back_coordinates,
    rician_noise,
    warp,
)
from ml4ge.demo.atlas import DEEP_GREY, HEMISPHERES, LOBES, Atlas
from ml4ge.demo.effects import (
    AGE_RANGE,
    GM_LOSS_OVER_AGE_RANGE,
    GM_LOSS_SD,
    HEAD_SCALE_BY_SEX,
    HEAD_SCALE_SD,
    PLANTED_EFFECTS,
    TRAIT_MEASURES,
    TRAIT_NOISE,
)

T2_INTENSITY = {"csf": 0.9, "gm": 0.55, "wm": 0.3}
NOISE_SD = 0.02
# The bias field and the individual warp are what is left after a pipeline's bias correction and registration
# (UK Biobank's T1_brain_to_MNI is both): a 2 % bias and 0.2 mm waves. Larger ones become the main variation
# between subjects and hide the deep structures from variance-driven representations (docs/experiments.md).
BIAS_SD = 0.02
MAX_ROTATION_DEG = 3.0
MAX_TRANSLATION_MM = 2.0
WAVES = 6
WAVE_LENGTH_MM = (80.0, 200.0)
WAVE_AMPLITUDE_MM = 0.2
# How far outside the template's brain mask a subject's brain can reach: head scale (at most +7.8% of ~95 mm),
# rotation (at most ~5 degrees combined at ~100 mm), translation (at most 3.5 mm) and the smooth warp.
SUPPORT_MARGIN_MM = 20.0
# Deep grey matter is painted into the template as this fraction of grey matter (of the tissue there) inside
# the atlas's structures, with edges softened by a Gaussian of this width, so that the structures' boundaries,
# which the planted effects move, show in both contrasts.
DEEP_GREY_FRACTION = 0.95
DEEP_GREY_EDGE_MM = 1.5
HEAD_SCALE_CLIP_SD = 3.0


@dataclass(frozen=True)
class SubjectSpec:
    """What the cohort decided about a subject (plain data, so that it pickles to workers)."""

    index: int
    sample_id: str
    age: float
    sex: int
    region_amounts: dict[str, float] = field(default_factory=dict)
    apparent_age: float | None = None  # the age the anatomy shows (the ageing SNP, ml4ge.demo.ageing); None: age


@dataclass(frozen=True)
class Scene:
    """Per-process constants for rendering: the template, its atlas, and how each planted region grows."""

    template: Template
    atlas: Atlas
    cortex: np.ndarray  # cortical grey matter probability (grey matter inside the lobe labels)
    growth: dict[str, GrowthField]  # planted region name -> its growth field
    brain_centre: tuple[float, float, float]
    support: np.ndarray  # (3, S) voxel indices where a subject's brain can lie; everything else stays 0
    intensity: dict[str, float]  # T1 intensity of CSF, grey and white matter


def paint_deep_grey(template: Template, atlas: Atlas) -> Template:
    """``template`` with its deep grey structures (thalamus, caudate, putamen, pallidum, hippocampus, amygdala)
    made grey matter inside the atlas's regions.

    The MNI152 template shows these structures with soft, low-contrast edges that do not follow the atlas's
    ellipsoids, so growing an atlas region would barely change the image. White matter is exchanged for grey
    matter (CSF is kept) and T1 changes by the grey-white intensity difference per unit exchanged.
    """
    names = [f"{name}_{side}" for name in DEEP_GREY for side in HEMISPHERES]
    inside = np.isin(atlas.labels, [atlas.label_of(name) for name in names]).astype(np.float32)
    share = np.clip(ndimage.gaussian_filter(inside, DEEP_GREY_EDGE_MM / template.voxel_mm), 0.0, 1.0)
    tissue = template.gm + template.wm
    gm = (1.0 - share) * template.gm + share * DEEP_GREY_FRACTION * tissue
    intensity = template.tissue_intensity()
    t1 = template.t1 + (gm - template.gm) * np.float32(intensity["gm"] - intensity["wm"])
    return dataclasses.replace(template, t1=t1.astype(np.float32), gm=gm.astype(np.float32),
                               wm=(tissue - gm).astype(np.float32))


def build_scene(template: Template, atlas: Atlas, extra_regions: tuple[str, ...] = ()) -> Scene:
    """Precompute the cortex map, the brain's centre and support, and the growth field of every planted region
    (and of ``extra_regions``: the patients' subtypes); the scene's template has its deep grey structures painted
    (:func:`paint_deep_grey`)."""
    template = paint_deep_grey(template, atlas)
    cortical_labels = [atlas.label_of(f"{lobe}_{side}") for lobe in LOBES for side in ("left", "right")]
    cortex = template.gm * np.isin(atlas.labels, cortical_labels)
    world = template.world_coordinates().reshape(3, -1)
    regions = sorted({name for effect in PLANTED_EFFECTS for name in effect.regions} | set(extra_regions))
    growth = {name: growth_field(atlas.labels == atlas.label_of(name), template.voxel_mm) for name in regions}
    centre = tuple(world[:, template.mask.ravel() > 0.5].mean(axis=1).tolist())
    outside_mm = ndimage.distance_transform_edt(template.mask < 0.5) * template.voxel_mm
    support = np.stack(np.nonzero(outside_mm <= SUPPORT_MARGIN_MM)).astype(np.int32)
    return Scene(template=template, atlas=atlas, cortex=cortex.astype(np.float32), growth=growth,
                 brain_centre=centre, support=support, intensity=template.tissue_intensity())


@dataclass(frozen=True)
class Rendered:
    """A subject's images (float32, template grid) and measured traits."""

    t1: np.ndarray
    t2: np.ndarray
    traits: dict[str, float]


def _pose(scene: Scene, spec: SubjectSpec, rng: np.random.Generator) -> Pose:
    variation = np.clip(rng.standard_normal(), -HEAD_SCALE_CLIP_SD, HEAD_SCALE_CLIP_SD)
    scale = 1.0 + HEAD_SCALE_BY_SEX * (2 * spec.sex - 1) + HEAD_SCALE_SD * variation
    return Pose(centre=scene.brain_centre, scale=float(scale),
                rotation_deg=tuple(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, 3).tolist()),
                translation_mm=tuple(rng.uniform(-MAX_TRANSLATION_MM, MAX_TRANSLATION_MM, 3).tolist()))


def _waves(rng: np.random.Generator) -> np.ndarray:
    """Random plane waves ``(axis, kx, ky, kz, phase, amplitude)`` for the smooth individual warp."""
    direction = rng.standard_normal((WAVES, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    wavenumber = 2 * np.pi / rng.uniform(*WAVE_LENGTH_MM, (WAVES, 1))
    return np.column_stack([rng.integers(0, 3, WAVES), direction * wavenumber, rng.uniform(0, 2 * np.pi, WAVES),
                            WAVE_AMPLITUDE_MM * rng.standard_normal(WAVES)])


def _growth(scene: Scene, spec: SubjectSpec) -> list[tuple[GrowthField, float]]:
    return [(scene.growth[name], amount) for name, amount in spec.region_amounts.items()]


def _finish(scene: Scene, values: np.ndarray, brain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bias field and Rician noise on the support's ``values``, skull-stripped (zero outside the subject's
    brain), placed on the full grid as float32."""
    shape = scene.template.shape
    coefficients = BIAS_SD * rng.standard_normal(10)
    noisy = rician_noise(values * bias_field(shape, coefficients, scene.support), NOISE_SD, rng)
    image = np.zeros(shape, dtype=np.float32)
    image[tuple(scene.support)] = noisy * brain
    return image


def t2_image(csf: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """The T2-FLAIR-like image of tissue maps: CSF bright, grey matter mid, white matter dark (float32)."""
    return (T2_INTENSITY["csf"] * csf + T2_INTENSITY["gm"] * gm + T2_INTENSITY["wm"] * wm).astype(np.float32)


def render_subject(scene: Scene, spec: SubjectSpec, seed: int) -> Rendered:
    """Render one subject's T1 and T2-like images and measure its traits."""
    rng = np.random.default_rng([seed, spec.index])
    template = scene.template
    coordinates = pull_back_coordinates(template, _pose(scene, spec, rng), _growth(scene, spec), _waves(rng),
                                        scene.support)
    gm, wm, mask = (warp(v, coordinates) for v in (template.gm, template.wm, template.mask))
    csf = np.clip(mask - gm - wm, 0.0, 1.0)  # as in the template: what the mask holds beyond grey and white
    brain = mask > 0.5
    anatomical_age = spec.age if spec.apparent_age is None else spec.apparent_age
    age_fraction = (anatomical_age - AGE_RANGE[0]) / (AGE_RANGE[1] - AGE_RANGE[0])
    gm_loss = np.clip(GM_LOSS_OVER_AGE_RANGE * age_fraction + GM_LOSS_SD * rng.standard_normal(), 0.0, 0.6)
    cortex = warp(scene.cortex, coordinates)
    lost = np.float32(gm_loss) * cortex
    gm, csf = gm - lost, csf + lost
    t1 = warp(template.t1, coordinates) + lost * np.float32(scene.intensity["csf"] - scene.intensity["gm"])
    t2 = t2_image(csf, gm, wm)
    traits = measure_traits(scene, coordinates, gm, wm, cortex - lost, rng)
    return Rendered(t1=_finish(scene, t1, brain, rng), t2=_finish(scene, t2, brain, rng), traits=traits)


def measure_traits(scene: Scene, coordinates, gm, wm, cortex, rng: np.random.Generator) -> dict[str, float]:
    """Brain tissue and cortical grey matter volume (mL) and every planted trait, with measurement noise.

    Args:
        coordinates: where the subject's support voxels sample the template; gm, wm, cortex: its warped
            tissue maps there (cortex: cortical grey matter after age-related loss).
    """
    voxel_mm = scene.template.voxel_mm
    voxel_ml = voxel_mm**3 / 1000.0
    volumes = {name: field.warped_volume_ml(coordinates, scene.support, voxel_mm)
               for name, field in scene.growth.items()}
    traits = {
        "brain_volume": TRAIT_NOISE["volume"](float(np.sum(gm + wm) * voxel_ml), rng.standard_normal()),
        "cortical_gm_volume": TRAIT_NOISE["volume"](float(np.sum(cortex) * voxel_ml), rng.standard_normal()),
    }
    for effect in PLANTED_EFFECTS:
        value = TRAIT_MEASURES[effect.kind](volumes, effect.regions)
        traits[effect.trait] = TRAIT_NOISE[effect.kind](value, rng.standard_normal())
    return traits
