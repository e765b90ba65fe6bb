"""Rigid (6 degrees of freedom) registration of a volume to a reference volume.

tensorize uses it (``--register_to TENSOR=REFERENCE``) to undo head position and small misregistration before
volumes are stored, so that models spend their capacity on anatomy rather than on pose. Rigid keeps head size,
which is anatomy (sex, growth).

The transform maps a world point ``x`` (mm) of the reference to ``R (x - c) + c + t`` in the moving image, with
``c`` the centroid of the reference's nonzero voxels. It is fitted by Gauss-Newton on the sum of squared
differences between the reference and the (globally rescaled) moving image, over the reference's nonzero
voxels and a margin around them, coarse to fine: Gaussian-smoothed images sampled on a sparse lattice first,
then the full lattice. Both images can lie on any grids; their affines relate them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

# (smoothing sigma in reference voxels, lattice step, at most this many Gauss-Newton steps), coarse to fine
LEVELS = ((2.0, 3, 40), (1.0, 2, 20))
MARGIN_VOXELS = 2
DAMPING = 1e-6
STOP_ROTATION_RAD = 1e-5
STOP_TRANSLATION_MM = 1e-3


@dataclass(frozen=True)
class Rigid:
    """A rigid transform from reference world coordinates to moving world coordinates (mm)."""

    rotation: np.ndarray  # 3x3
    translation: np.ndarray  # (3,) mm
    centre: np.ndarray  # (3,) mm

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Moving-image world points of reference world ``points`` (3, N)."""
        c = self.centre[:, None]
        return self.rotation @ (points - c) + c + self.translation[:, None]

    def parameters(self) -> np.ndarray:
        """``(rx, ry, rz, tx, ty, tz)``: the rotation vector in degrees and the translation in mm."""
        return np.concatenate([np.rad2deg(Rotation.from_matrix(self.rotation).as_rotvec()), self.translation])


def _world(index: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ index + affine[:3, 3:4]


def _voxels(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    inverse = np.linalg.inv(affine)
    return inverse[:3, :3] @ points + inverse[:3, 3:4]


def _sample(volume: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    return ndimage.map_coordinates(volume, voxels, order=1, mode="constant", cval=0.0, prefilter=False)


def _lattice(reference: np.ndarray, step: int) -> np.ndarray:
    """Voxel indices (3, N) of the reference's nonzero voxels and a margin, every ``step``-th along each axis."""
    support = ndimage.binary_dilation(reference != 0, iterations=MARGIN_VOXELS)
    sparse = np.zeros_like(support)
    sparse[::step, ::step, ::step] = support[::step, ::step, ::step]
    return np.stack(np.nonzero(sparse)).astype(np.float64)


def _gauss_newton_step(moving, gradient, target, points, rigid: Rigid, moving_affine) -> np.ndarray:
    """The parameter update ``(rotation vector, translation)`` that best reduces the squared differences."""
    voxels = _voxels(rigid.apply(points), moving_affine)
    values = _sample(moving, voxels)
    scale = float(values @ target) / max(float(values @ values), 1e-12)
    world_gradient = np.linalg.inv(moving_affine[:3, :3]).T @ np.stack([_sample(g, voxels) for g in gradient])
    offsets = rigid.rotation @ (points - rigid.centre[:, None])
    jacobian = scale * np.vstack([np.cross(offsets.T, world_gradient.T).T, world_gradient])  # (6, N)
    residual = scale * values - target
    normal = jacobian @ jacobian.T
    normal += DAMPING * np.trace(normal) * np.eye(6)
    return -np.linalg.solve(normal, jacobian @ residual)


def _update(rigid: Rigid, step: np.ndarray) -> Rigid:
    rotation = Rotation.from_rotvec(step[:3]).as_matrix() @ rigid.rotation
    return Rigid(rotation=rotation, translation=rigid.translation + step[3:], centre=rigid.centre)


@dataclass(frozen=True, eq=False)
class Reference:
    """What registration needs of a reference, computed once for every volume registered to it: the centre
    (mm) of its nonzero voxels and, per level of :data:`LEVELS`, the lattice's world points and the smoothed
    reference intensities there."""

    centre: np.ndarray
    levels: tuple[tuple[float, int, np.ndarray, np.ndarray], ...]  # (sigma, iterations, points (3, N), target (N,))


def prepare_reference(reference: np.ndarray, affine) -> Reference:
    """The :class:`Reference` of a 3-D volume on the grid ``affine``.

    Raises:
        ValueError: if the volume is not 3-D or has no nonzero voxel.
    """
    if reference.ndim != 3:
        raise ValueError(f"rigid registration takes 3-D volumes; the reference volume has shape {reference.shape}")
    if not np.any(reference):
        raise ValueError("the registration reference is all zeros; give a (skull-stripped) template image")
    affine = np.asarray(affine, float)
    levels = []
    for sigma, step, iterations in LEVELS:
        points = _lattice(reference, step)
        target = _sample(ndimage.gaussian_filter(reference.astype(np.float64), sigma), points)
        levels.append((sigma, iterations, _world(points, affine), target))
    centre = _world(np.argwhere(reference != 0).mean(axis=0)[:, None], affine)[:, 0]
    return Reference(centre=centre, levels=tuple(levels))


def register_rigid(moving: np.ndarray, moving_affine, reference: np.ndarray, reference_affine) -> Rigid:
    """Fit the rigid transform that brings ``moving`` onto ``reference`` (both 3-D, any grids).

    Raises:
        ValueError: if either volume is not 3-D or the reference has no nonzero voxel.
    """
    return register_to(moving, moving_affine, prepare_reference(reference, reference_affine))


def register_to(moving: np.ndarray, moving_affine, reference: Reference) -> Rigid:
    """:func:`register_rigid` to a prepared reference (3-D ``moving``)."""
    if moving.ndim != 3:
        raise ValueError(f"rigid registration takes 3-D volumes; the moving volume has shape {moving.shape}")
    moving_affine = np.asarray(moving_affine, float)
    rigid = Rigid(rotation=np.eye(3), translation=np.zeros(3), centre=reference.centre)
    for sigma, iterations, points, target in reference.levels:
        smooth_moving = ndimage.gaussian_filter(moving.astype(np.float64), sigma)
        gradient = np.gradient(smooth_moving)
        for _ in range(iterations):
            update = _gauss_newton_step(smooth_moving, gradient, target, points, rigid, moving_affine)
            rigid = _update(rigid, update)
            if np.linalg.norm(update[:3]) < STOP_ROTATION_RAD and np.linalg.norm(update[3:]) < STOP_TRANSLATION_MM:
                break
    return rigid


def resample_rigid(moving: np.ndarray, moving_affine, rigid: Rigid, shape, affine) -> np.ndarray:
    """``moving`` brought onto the grid ``(shape, affine)`` through ``rigid`` (linear interpolation, float32)."""
    index = np.indices(shape, dtype=np.float64).reshape(3, -1)
    voxels = _voxels(rigid.apply(_world(index, np.asarray(affine, float))), np.asarray(moving_affine, float))
    return _sample(moving.astype(np.float32), voxels).reshape(shape).astype(np.float32)
