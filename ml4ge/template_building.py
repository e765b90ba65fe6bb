"""A registration template of any contrast built from a cohort: iterative rigid registration to the running mean.

Iteration 0 is the plain mean of the volumes on the first volume's grid (each volume brought there through the
affines, without registration). Each further iteration registers every volume rigidly
(:func:`ml4ge.registration.register_to`) to the current template and averages the registered volumes into the
next one: the template sharpens as the subjects' poses are undone. Rigid only, as tensorize's ``--register_to``:
head size is kept (it is anatomy), so the template is the cohort's average head at its average size.

Each volume is scaled to a mean of 1 over its nonzero voxels before it is averaged (scanner gain differs between
subjects), and the template is scaled back by the cohort's median brain intensity. Volumes are read again at each
iteration rather than kept in memory, so a cohort of any size fits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ml4ge.nifti import INPUT_ERRORS, read_nifti
from ml4ge.progress import progress
from ml4ge.registration import Rigid, prepare_reference, register_to, resample_rigid

log = logging.getLogger(__name__)

# iteration 0's transform: the volumes as they lie in world coordinates
IDENTITY_RIGID = Rigid(rotation=np.eye(3), translation=np.zeros(3), centre=np.zeros(3))


@dataclass
class TemplateResult:
    """The template, its grid (the first readable volume's), one row per iteration (the mean and least correlation
    of the volumes with the template they built) and the volumes left out, with the reason."""

    template: np.ndarray
    affine: np.ndarray
    iterations: list[dict]
    skipped: dict[str, str]


def correlation(a: np.ndarray, b: np.ndarray, support: np.ndarray) -> float:
    """Pearson correlation of two volumes over ``support`` (NaN when either is constant there)."""
    x, y = a[support].astype(np.float64), b[support].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denominator) if denominator > 0 else float("nan")


def _read(path, skipped: dict[str, str]):
    """``(volume, affine)`` of ``path``, or None with the reason in ``skipped``."""
    try:
        volume, affine, _ = read_nifti(path)
        if volume.ndim != 3:
            raise ValueError(f"a template is built from 3-D volumes; this one has shape {volume.shape}")
        return volume, affine
    except INPUT_ERRORS as error:
        skipped[path] = f"{type(error).__name__}: {error}"
        log.warning("build_template: %s skipped: %s", path, skipped[path])
        return None


def _average(paths, grid, reference, skipped, description) -> tuple[np.ndarray, dict[str, Rigid], list[float]]:
    """The intensity-normalised mean of the volumes on ``grid`` (shape, affine), each registered to ``reference``
    (None: as it lies in world space), with each volume's transform and brain intensity. A volume that cannot be
    read, or has no voxel on the grid, is skipped with the reason in ``skipped``."""
    shape, grid_affine = grid
    total, rigids, levels = np.zeros(shape, np.float64), {}, []
    for path in progress(paths, description=description, unit="volume"):
        read = None if path in skipped else _read(path, skipped)
        if read is None:
            continue
        volume, affine = read
        rigid = IDENTITY_RIGID if reference is None else register_to(volume, affine, reference)
        on_grid = resample_rigid(volume, affine, rigid, shape, grid_affine)
        level = float(on_grid[on_grid != 0].mean()) if np.any(on_grid) else 0.0
        if level <= 0:
            skipped[path] = "no positive voxel on the template's grid (empty, or outside the first volume's field)"
            continue
        total += on_grid / level
        rigids[path], levels = rigid, [*levels, level]
    if not rigids:
        raise ValueError(f"none of the {len(paths)} volumes could be used: {next(iter(skipped.values()), '')}")
    return total / len(rigids), rigids, levels


def _scores(iteration: int, template: np.ndarray, grid, rigids: dict[str, Rigid]) -> dict:
    """How close template ``iteration`` is to each volume as aligned to build it: the mean and least correlation
    over the template's brain (the volumes are read again: a cohort is never held in memory)."""
    shape, grid_affine = grid
    support = template > 0.1 * template.max()
    values = []
    for path, rigid in rigids.items():
        volume, affine, _ = read_nifti(path)
        values.append(correlation(template, resample_rigid(volume, affine, rigid, shape, grid_affine), support))
    return {"iteration": iteration, "volumes": len(values), "mean_correlation": float(np.nanmean(values)),
            "least_correlation": float(np.nanmin(values))}


def build_template(paths: Sequence[str], iterations: int = 4) -> TemplateResult:
    """Build a template from NIfTI ``paths`` by ``iterations`` rounds of rigid registration to the running mean.

    Returns:
        A :class:`TemplateResult` on the first readable volume's grid.

    Raises:
        ValueError: for fewer than 2 paths, iterations < 1, or when no volume could be read.
    """
    if len(paths) < 2 or iterations < 1:
        raise ValueError(f"a template needs at least 2 volumes and 1 iteration, got {len(paths)} and {iterations}")
    skipped: dict[str, str] = {}
    first = next((read for read in (_read(path, skipped) for path in paths) if read is not None), None)
    if first is None:
        raise ValueError(f"none of the {len(paths)} volumes could be read: {next(iter(skipped.values()))}")
    grid = (first[0].shape, np.asarray(first[1]))
    template, rigids, levels = _average(paths, grid, None, skipped, "template: plain mean")
    rows = [_scores(0, template, grid, rigids)]
    for iteration in range(1, iterations + 1):
        reference = prepare_reference(template.astype(np.float32), grid[1])
        template, rigids, levels = _average(paths, grid, reference, skipped,
                                            f"template: iteration {iteration}/{iterations}")
        rows.append(_scores(iteration, template, grid, rigids))
        log.info("build_template: iteration %d: mean correlation with the template %.4f (least %.4f)", iteration,
                 rows[-1]["mean_correlation"], rows[-1]["least_correlation"])
    scaled = (template * float(np.median(levels))).astype(np.float32)
    return TemplateResult(scaled, grid[1], rows, skipped)
