"""The MNI152 template on a chosen grid, and the fields that turn it into one subject's anatomy.

nilearn ships the MNI152 2009 T1 template, grey/white matter probability maps and a brain mask inside its
package (197x233x189 at 1 mm, no download). :func:`load_template` resamples them once per process to an
isotropic ``voxel_mm`` grid with the same MNI origin. A subject is rendered by pulling every voxel of its
image back to a template position (:func:`pull_back_coordinates`): rigid misregistration, then head size,
then a smooth random warp, then growth of named structures at their boundaries; one ``map_coordinates``
call per volume then samples the template there.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SOURCE_VOXEL_MM = 1.0
GROWTH_SIGMA_MM = 5.0
MIN_VOXEL_MM, MAX_VOXEL_MM = 1.0, 8.0


@dataclass(frozen=True, eq=False)
class Template:
    """The template volumes on one grid (float32), with the grid's affine (voxel index -> MNI mm).

    Attributes:
        t1: skull-stripped T1 intensities in [0, 1].
        gm, wm, csf: tissue probabilities; ``csf`` is what the brain mask holds beyond grey and white matter.
        mask: brain mask (0/1).
        affine: 4x4 voxel-to-MNI affine.
        voxel_mm: isotropic voxel size.
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    voxel_mm: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.t1.shape)

    def world_coordinates(self) -> np.ndarray:
        """MNI coordinates (mm) of every voxel centre, shape ``(3, *shape)`` float32."""
        return grid_world(self.shape, self.affine)

    def tissue_intensity(self) -> dict[str, float]:
        """Median T1 intensity of nearly pure CSF, grey and white matter voxels."""
        inside = self.mask > 0.5
        return {
            "csf": float(np.median(self.t1[inside & (self.csf > 0.8)])),
            "gm": float(np.median(self.t1[inside & (self.gm > 0.7)])),
            "wm": float(np.median(self.t1[inside & (self.wm > 0.8)])),
        }


def grid_world(shape, affine) -> np.ndarray:
    """MNI coordinates of the voxel centres of a grid, shape ``(3, *shape)`` float32."""
    index = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = affine[:3, :3].astype(np.float32) @ index + affine[:3, 3:4].astype(np.float32)
    return world.reshape(3, *shape)


def target_grid(source_shape, source_affine, voxel_mm: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """``(shape, affine)`` of an isotropic ``voxel_mm`` grid covering the source grid, same origin."""
    shape = tuple(int(np.ceil(n * SOURCE_VOXEL_MM / voxel_mm)) for n in source_shape)
    affine = np.array(source_affine, dtype=np.float64)
    affine[:3, :3] = np.diag([voxel_mm] * 3)
    return shape, affine


def _resample(volume: np.ndarray, shape, voxel_mm: float) -> np.ndarray:
    """Anti-aliased linear resampling of a 1 mm volume onto the ``voxel_mm`` grid with the same origin."""
    if voxel_mm == SOURCE_VOXEL_MM and tuple(shape) == volume.shape:
        return volume.astype(np.float32)
    smooth = ndimage.gaussian_filter(volume, sigma=max(voxel_mm / SOURCE_VOXEL_MM - 1.0, 0.0) / 2.0)
    index = np.indices(shape, dtype=np.float32) * (voxel_mm / SOURCE_VOXEL_MM)
    return ndimage.map_coordinates(smooth, index, order=1, mode="constant", cval=0.0).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _mni152_1mm() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """nilearn's 1 mm MNI152 T1, grey/white matter and brain mask arrays (float32) and their affine."""
    from nilearn import datasets  # imported here: nilearn is slow to import and only the demo needs it

    images = {
        "t1": datasets.load_mni152_template(resolution=1),
        "gm": datasets.load_mni152_gm_template(resolution=1),
        "wm": datasets.load_mni152_wm_template(resolution=1),
        "mask": datasets.load_mni152_brain_mask(resolution=1),
    }
    return {name: image.get_fdata(dtype=np.float32) for name, image in images.items()}, images["t1"].affine


@functools.lru_cache(maxsize=2)
def load_template(voxel_mm: float = 3.0) -> Template:
    """:func:`build_template`, cached per process."""
    return build_template(voxel_mm)


def build_template(voxel_mm: float = 3.0) -> Template:
    """The nilearn MNI152 template, tissue maps and brain mask on an isotropic ``voxel_mm`` grid.

    Raises:
        ValueError: if ``voxel_mm`` is not between 1 and 8 mm.
    """
    if not MIN_VOXEL_MM <= float(voxel_mm) <= MAX_VOXEL_MM:
        raise ValueError(f"voxel_mm must be between {MIN_VOXEL_MM:g} and {MAX_VOXEL_MM:g} mm, got {voxel_mm!r}")
    arrays, source_affine = _mni152_1mm()
    shape, affine = target_grid(arrays["t1"].shape, source_affine, float(voxel_mm))
    volumes = {name: _resample(array, shape, float(voxel_mm)) for name, array in arrays.items()}
    mask = (volumes["mask"] > 0.5).astype(np.float32)
    gm, wm = volumes["gm"] * mask, volumes["wm"] * mask
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    return Template(t1=volumes["t1"] * mask, gm=gm, wm=wm, csf=csf, mask=mask, affine=affine,
                    voxel_mm=float(voxel_mm))


# Deformation fields ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class GrowthField:
    """How one region grows at its boundary: a displacement field inside the region's padded bounding box.

    ``field`` (3, *box shape) is in template voxels per mm of growth and points into the region, with unit
    length (1 mm) at a flat boundary: sampling the template ``amount_mm * field`` further on makes the
    region ``amount_mm`` thicker all round (negative amounts shrink it), pushing its surroundings aside.
    """

    box: tuple[slice, slice, slice]
    field: np.ndarray
    region: np.ndarray  # the region's indicator (float32) inside ``box``

    def warped_volume_ml(self, coordinates: np.ndarray, index: np.ndarray, voxel_mm: float) -> float:
        """Volume (mL) of the region in a subject whose image voxels ``index`` (3, S) sample the template at
        ``coordinates`` (3, S), with partial voxels (linear interpolation of the indicator). Only the image
        voxels in the box are sampled: its padding covers where the subject's region can lie."""
        _, local = _in_box_local(index, coordinates, self.box)
        return float(warp(self.region, local).sum() * voxel_mm**3 / 1000.0)


def _in_box(index: np.ndarray, box) -> np.ndarray:
    inside = np.ones(index.shape[1], dtype=bool)
    for axis, extent in enumerate(box):
        inside &= (index[axis] >= extent.start) & (index[axis] < extent.stop)
    return inside


def _in_box_local(index: np.ndarray, coordinates: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """Which voxels ``index`` (3, S) lie in ``box``, and their ``coordinates`` (3, S) there relative to the box."""
    inside = _in_box(index, box)
    start = np.array([extent.start for extent in box], dtype=np.float32)[:, None]
    return inside, coordinates[:, inside] - start


def growth_field(region: np.ndarray, voxel_mm: float, sigma_mm: float = GROWTH_SIGMA_MM) -> GrowthField:
    """The :class:`GrowthField` of a boolean region mask: the scaled gradient of the Gaussian-smoothed mask.

    Raises:
        ValueError: if the region is empty.
    """
    if not region.any():
        raise ValueError("cannot grow an empty region")
    sigma = sigma_mm / voxel_mm
    pad = int(np.ceil(3 * sigma)) + 1
    box = tuple(slice(max(int(i.min()) - pad, 0), min(int(i.max()) + pad + 1, n))
                for i, n in zip(np.nonzero(region), region.shape, strict=True))
    smooth = ndimage.gaussian_filter(region[box].astype(np.float32), sigma)
    gradient = np.stack(np.gradient(smooth)) * np.float32(sigma * np.sqrt(2 * np.pi) / voxel_mm)
    return GrowthField(box=box, field=gradient.astype(np.float32), region=region[box].astype(np.float32))


def growth_displacement(growth: Sequence[tuple[GrowthField, float]]):
    """Sum of ``amount_mm * field`` over the growing regions, on the union of their boxes.

    Returns:
        ``(box, displacement (3, *box shape))``, or None when nothing grows.
    """
    if not growth:
        return None
    start = np.min([[s.start for s in field.box] for field, _ in growth], axis=0)
    stop = np.max([[s.stop for s in field.box] for field, _ in growth], axis=0)
    total = np.zeros((3, *(stop - start)), dtype=np.float32)
    for field, amount in growth:
        inner = tuple(slice(s.start - a, s.stop - a) for s, a in zip(field.box, start, strict=True))
        total[(slice(None), *inner)] += np.float32(amount) * field.field
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True)), total


@dataclass(frozen=True)
class Pose:
    """Global placement of a subject's brain: head scale about ``centre``, then a rigid misregistration."""

    centre: tuple[float, float, float]
    scale: float
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]


def rotation_matrix(angles_deg) -> np.ndarray:
    """Rotation about x, then y, then z (degrees)."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def smooth_warp_displacement(points: np.ndarray, waves: np.ndarray) -> np.ndarray:
    """Pull-back displacement (mm) from a few random plane waves.

    Args:
        points: (3, N) MNI coordinates.
        waves: (K, 6) rows ``(axis, kx, ky, kz, phase, amplitude_mm)``; wave vectors in radians per mm.
    """
    displacement = np.zeros_like(points)
    for axis, kx, ky, kz, phase, amplitude in waves:
        argument = kx * points[0] + ky * points[1] + kz * points[2] + phase
        displacement[int(axis)] += np.float32(amplitude) * np.cos(argument)
    return displacement


def pull_back_coordinates(template: Template, pose: Pose, growth: Sequence[tuple[GrowthField, float]],
                          waves, index: np.ndarray) -> np.ndarray:
    """Template voxel coordinates (3, S) that the subject's image voxels ``index`` (3, S) sample.

    Image point ``x`` -> anatomy point ``R^T (x - c - t) + c`` (undo the misregistration) -> template point
    ``y = c + (a - c) / scale`` (undo head size) -> ``y`` + smooth random warp at ``y`` -> plus the regions'
    growth displacement there (``growth``: ``(field, amount_mm)`` pairs).
    """
    affine = template.affine.astype(np.float32)
    points = affine[:3, :3] @ index.astype(np.float32) + affine[:3, 3:4]
    centre = np.asarray(pose.centre, dtype=np.float32)[:, None]
    rotation = rotation_matrix(pose.rotation_deg).astype(np.float32)
    anatomy = rotation.T @ (points - centre - np.asarray(pose.translation_mm, dtype=np.float32)[:, None]) + centre
    source = centre + (anatomy - centre) / np.float32(pose.scale)
    source += smooth_warp_displacement(source, np.asarray(waves, dtype=np.float32).reshape(-1, 6))
    inverse = np.linalg.inv(template.affine).astype(np.float32)
    voxels = inverse[:3, :3] @ source + inverse[:3, 3:4]
    grown = growth_displacement(growth)
    if grown is not None:  # the fields vanish outside their boxes: only voxels there can move
        box, total = grown
        inside, local = _in_box_local(index, voxels, box)
        voxels[:, inside] += np.stack([warp(component, local) for component in total])
    return voxels


def warp(volume: np.ndarray, coordinates: np.ndarray, order: int = 1) -> np.ndarray:
    """Sample ``volume`` at template voxel ``coordinates`` (outside the grid reads 0)."""
    return ndimage.map_coordinates(volume, coordinates, order=order, mode="constant", cval=0.0, prefilter=False)


# Image formation ------------------------------------------------------------------------------------------
def bias_field(shape, coefficients: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Smooth multiplicative bias at voxels ``index`` (3, S): ``exp`` of a quadratic polynomial in the
    coordinates scaled to [-1, 1] over the grid ``shape``.

    Args:
        coefficients: 10 numbers for ``1, x, y, z, x^2, y^2, z^2, xy, xz, yz`` (the constant is ignored).
    """
    x, y, z = (2.0 * index[axis].astype(np.float32) / max(n - 1, 1) - 1.0 for axis, n in enumerate(shape))
    terms = (x, y, z, x * x, y * y, z * z, x * y, x * z, y * z)
    log_bias = sum(np.float32(c) * term for c, term in zip(coefficients[1:], terms, strict=True))
    return np.exp(log_bias).astype(np.float32)


def rician_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of standard deviation ``sigma``."""
    real = image + np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    imaginary = np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.sqrt(real * real + imaginary * imaginary)
