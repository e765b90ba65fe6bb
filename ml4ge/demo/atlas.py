"""A region label image drawn on the MNI152 template from MNI coordinates and tissue maps.

Not a neuroanatomical atlas: regions are boxes, ellipsoids and coordinate rules at the textbook MNI
positions, intersected with the template's tissue classes, so that the demo has named regions whose
volumes it can plant effects in and measure. Rules are applied in order; a voxel keeps the first label
that claims it. Left is MNI x < 0.

The atlas is drawn once on the 1 mm template (cached per process) and taken to a coarser grid by
nearest-neighbour sampling, so that thin structures (ventricles) are found at full resolution.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from ml4ge.demo.anatomy import SOURCE_VOXEL_MM, Template, build_template, load_template, warp

HEMISPHERES = ("left", "right")
# Deep grey matter ellipsoids: name -> (centre |x|, y, z in mm, radii in mm), right-hemisphere x.
DEEP_GREY = {
    "thalamus": ((11.0, -18.0, 7.0), (7.0, 12.0, 8.0)),
    "caudate": ((13.0, 12.0, 10.0), (5.0, 11.0, 9.0)),
    "putamen": ((25.0, 2.0, 1.0), (5.5, 13.0, 8.0)),
    "pallidum": ((19.0, -3.0, 0.0), (3.5, 6.0, 4.0)),
    "hippocampus": ((27.0, -22.0, -13.0), (6.0, 16.0, 6.0)),
    "amygdala": ((23.0, -4.0, -19.0), (6.0, 6.0, 6.0)),
}
LOBES = ("frontal", "parietal", "temporal", "occipital", "insula")
WHITE_MATTER_LOBES = ("frontal", "parietal", "temporal", "occipital")
VENTRICLE_BOX = {"x": (2.0, 34.0), "y": (-50.0, 34.0), "z": (-22.0, 36.0)}
VENTRICLE_DEPTH_MM = 8.0


@dataclass(frozen=True)
class Atlas:
    """Integer labels on a template grid and the table ``label, name, hemisphere``."""

    labels: np.ndarray
    table: pd.DataFrame
    affine: np.ndarray

    def label_of(self, name: str) -> int:
        """The label number of region ``name``.

        Raises:
            KeyError: if there is no such region (the message lists the names).
        """
        rows = self.table.loc[self.table["name"] == name, "label"]
        if rows.empty:
            raise KeyError(f"no atlas region named {name!r}; regions: {', '.join(self.table['name'])}")
        return int(rows.iloc[0])


def _lobe(x, y, z, ax) -> dict[str, np.ndarray]:
    """Cerebral lobe masks by MNI coordinate (``ax`` = |x|); each voxel falls in exactly one."""
    insula = (ax >= 28) & (ax <= 42) & (y > -25) & (y < 25) & (z > -8) & (z < 22)
    occipital = (y < -70) & ~insula
    temporal = (z < 4) & (y < 22) & (ax > 26) & ~insula & ~occipital
    frontal = (y > -18) & ~insula & ~temporal & ~occipital
    parietal = ~(insula | occipital | temporal | frontal)
    return {"frontal": frontal, "parietal": parietal, "temporal": temporal, "occipital": occipital,
            "insula": insula}


def _axes(template: Template) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MNI x, y, z of the grid as open (broadcastable) arrays; the template grid is axis-aligned."""
    return tuple(
        (template.affine[axis, axis] * np.arange(n, dtype=np.float32) + template.affine[axis, 3]).reshape(
            [-1 if a == axis else 1 for a in range(3)])
        for axis, n in enumerate(template.shape))


def _ventricles(template: Template, x, y, z) -> np.ndarray:
    """Lateral ventricles: dark, CSF-rich voxels deep inside the brain near the midline, largest components."""
    ax = np.abs(x)
    box = ((ax >= VENTRICLE_BOX["x"][0]) & (ax <= VENTRICLE_BOX["x"][1]) & (y >= VENTRICLE_BOX["y"][0])
           & (y <= VENTRICLE_BOX["y"][1]) & (z >= VENTRICLE_BOX["z"][0]) & (z <= VENTRICLE_BOX["z"][1]))
    intensity = template.tissue_intensity()
    dark = template.t1 < 0.5 * (intensity["csf"] + intensity["gm"])
    candidate = box & dark & (template.csf > 0.5)
    candidate &= _depth_mm(template.mask > 0.5, candidate, template.voxel_mm) > VENTRICLE_DEPTH_MM
    components, count = ndimage.label(candidate)
    if count == 0:
        raise RuntimeError("found no ventricle voxels in the MNI152 template; the template files look wrong")
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = np.argsort(sizes)[::-1][:2]  # the two lateral ventricles (or one, if joined through the midline)
    return np.isin(components, keep[sizes[keep] > 0.2 * sizes[keep[0]]])


def _depth_mm(brain: np.ndarray, where: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Distance (mm) to the brain's edge, exact wherever it is at most ``VENTRICLE_DEPTH_MM`` inside
    ``where``'s bounding box (computed on that box padded by the depth, not on the whole grid)."""
    depth = np.zeros(brain.shape, dtype=np.float32)
    if not where.any():
        return depth
    pad = int(np.ceil(VENTRICLE_DEPTH_MM / voxel_mm)) + 1
    box = tuple(slice(max(int(i.min()) - pad, 0), min(int(i.max()) + pad + 1, n))
                for i, n in zip(np.nonzero(where), brain.shape, strict=True))
    depth[box] = ndimage.distance_transform_edt(brain[box]) * voxel_mm
    return depth


def _rules(template: Template) -> list[tuple[str, str, Callable[[], np.ndarray]]]:
    """``(name, hemisphere, mask maker)`` in priority order."""
    x, y, z = _axes(template)
    ax = np.abs(x)
    brain = template.mask > 0.5
    tissue = np.argmax(np.stack([template.csf, template.gm, template.wm]), axis=0)
    grey, white = brain & (tissue == 1), brain & (tissue == 2)
    side = {"left": x < 0, "right": x >= 0}
    lobes = _lobe(x, y, z, ax)
    brainstem = brain & (ax < 14) & (y > -44) & (y < -10) & (z < -12)
    cerebellum = brain & ~brainstem & (y < -38) & (z < -12 - 0.2 * (y + 38)) & (tissue > 0)
    cerebrum = brain & ~brainstem & ~cerebellum
    ventricles = functools.cache(lambda: _ventricles(template, x, y, z))

    def ellipsoid(name, hemisphere):
        (cx, cy, cz), (rx, ry, rz) = DEEP_GREY[name]
        cx = -cx if hemisphere == "left" else cx
        return (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1.0) & brain & (tissue > 0)

    rules = [("lateral_ventricle_" + h, h, lambda h=h: ventricles() & side[h]) for h in HEMISPHERES]
    rules += [(f"{name}_{h}", h, lambda name=name, h=h: ellipsoid(name, h)) for name in DEEP_GREY for h in HEMISPHERES]
    rules.append(("brainstem", "both", lambda: brainstem & (tissue > 0)))
    rules += [(f"cerebellum_{h}", h, lambda h=h: cerebellum & side[h]) for h in HEMISPHERES]
    rules += [(f"{lobe}_{h}", h, lambda lobe=lobe, h=h: cerebrum & grey & lobes[lobe] & side[h])
              for lobe in LOBES for h in HEMISPHERES]
    rules += [(f"{lobe}_wm_{h}", h, lambda lobe=lobe, h=h: cerebrum & white & lobes[lobe] & side[h])
              for lobe in WHITE_MATTER_LOBES for h in HEMISPHERES]
    rules += [(f"insula_wm_{h}", h, lambda h=h: cerebrum & white & lobes["insula"] & side[h]) for h in HEMISPHERES]
    return rules


def draw_atlas(template: Template) -> Atlas:
    """Label ``template``'s grid with the rules above (voxels no rule claims, e.g. sulcal CSF, stay 0)."""
    labels = np.zeros(template.shape, dtype=np.int16)
    rows = []
    for number, (name, hemisphere, make) in enumerate(_rules(template), start=1):
        region = make() & (labels == 0)
        labels[region] = number
        rows.append({"label": number, "name": name, "hemisphere": hemisphere})
    return Atlas(labels=labels, table=pd.DataFrame(rows), affine=template.affine)


@functools.lru_cache(maxsize=2)
def load_atlas(voxel_mm: float = 3.0) -> Atlas:
    """The atlas on the ``voxel_mm`` template grid: drawn at 1 mm, sampled nearest-neighbour (cached)."""
    if float(voxel_mm) == SOURCE_VOXEL_MM:
        return draw_atlas(load_template(SOURCE_VOXEL_MM))
    fine = draw_atlas(build_template(SOURCE_VOXEL_MM))  # not cached: the 1 mm volumes are not needed after
    coarse = load_template(voxel_mm)
    index = np.indices(coarse.shape, dtype=np.float32) * np.float32(voxel_mm / SOURCE_VOXEL_MM)
    labels = warp(fine.labels, index, order=0).astype(np.int16)
    return Atlas(labels=labels, table=fine.table, affine=coarse.affine)
