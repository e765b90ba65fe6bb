"""Decode original and perturbed latents (PerDI step 3) and feed the differences to the voxel statistics.

For dimension ``d``, every subject's latent ``z`` is decoded as is and with ``z[d] += k * sd_d`` (``sd_d`` the
population SD of ``d`` over the interpreted subjects): a deterministic shift of one coordinate, not noise. For a
named direction ``w`` (a trait's, from ``associate --direction_traits``) the shift is the vector
``w * k * sd(z w) / |w|^2``, which moves the projection ``z w`` by ``k`` of its SDs and nothing orthogonal to ``w``.
Subjects are visited in batches and each batch's original reconstruction is decoded once and reused for every
dimension of a pass, so a pass over ``m`` dimensions costs ``m + 1`` decodes per batch instead of ``2 m``. The
number of dimensions per pass is bounded by a memory budget, since each keeps two float64 volumes of sums.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ml4ge.interpret.voxel_stats import PairedDifferenceStats

Decode = Callable[[np.ndarray], np.ndarray]
BYTES_PER_VOXEL = 2 * 8  # two float64 running sums per dimension


def latent_shifts(latents: np.ndarray, dimensions: Sequence[int], k: float) -> dict[int, float]:
    """``{d: k * sd_d}`` with the population SD (ddof 0) of each dimension over ``latents`` ``[N, D]``.

    Raises:
        ValueError: for a dimension outside ``0..D-1`` or one that does not vary (a shift of 0 tests nothing).
    """
    latents = np.asarray(latents, dtype=np.float64)
    size = latents.shape[1]
    bad = [d for d in dimensions if not 0 <= d < size]
    if bad:
        raise ValueError(f"--interpret_dimensions {bad} outside the latent's 0..{size - 1}.")
    shifts = {int(d): float(k * latents[:, d].std()) for d in dimensions}
    constant = [d for d, shift in shifts.items() if shift == 0]
    if constant:
        raise ValueError(f"latent dimensions {constant} do not vary across the {len(latents)} subjects, so a shift "
                         "of k SD is 0; leave them out of --interpret_dimensions.")
    return shifts


def direction_shifts(latents: np.ndarray, directions: dict[str, np.ndarray], k: float) -> dict[str, np.ndarray]:
    """``{name: w * k * sd(latents @ w) / |w|^2}`` for each direction ``w`` (see the module docstring).

    Raises:
        ValueError: for a direction of the wrong length or one along which the subjects do not vary.
    """
    latents = np.asarray(latents, dtype=np.float64)
    shifts = {}
    for name, weights in directions.items():
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (latents.shape[1],):
            raise ValueError(f"direction {name!r} has {weights.size} weights; the latents have {latents.shape[1]} "
                             "dimensions. Give the direction of this latent space.")
        spread = float((latents @ weights).std())
        if spread == 0:
            raise ValueError(f"the {len(latents)} subjects do not vary along direction {name!r}; a shift of k SD is "
                             "0. Leave it out of --interpret_directions.")
        shifts[name] = weights * (k * spread / float(weights @ weights))
    return shifts


def dimensions_per_pass(voxels: int, count: int, memory_bytes: float) -> int:
    """How many dimensions share one pass over the subjects within ``memory_bytes`` of running sums (at least 1)."""
    return int(max(1, min(count, memory_bytes // (BYTES_PER_VOXEL * max(voxels, 1)))))


def decode_in_batches(decode: Decode, latents: np.ndarray, batch_size: int) -> Iterator[tuple[slice, np.ndarray]]:
    """``(rows, decoded)`` for consecutive batches of ``latents``."""
    for start in range(0, len(latents), batch_size):
        rows = slice(start, min(start + batch_size, len(latents)))
        yield rows, np.asarray(decode(latents[rows]))


def perdi_statistics(decode: Decode, latents: np.ndarray, shifts: dict[int, float], batch_size: int,
                     per_pass: int, mean_image: np.ndarray | None = None
                     ) -> Iterator[tuple[int, PairedDifferenceStats]]:
    """Paired difference statistics of every dimension in ``shifts``, yielded as each pass finishes.

    Args:
        decode: ``latents [B, D] -> reconstructions [B, *shape]`` (the decoder only, in inference mode).
        latents: ``[N, D]`` latents of the interpreted subjects.
        shifts: ``{d: shift}`` added to dimension ``d`` (see :func:`latent_shifts`), or ``{name: vector}`` added to
            every dimension (see :func:`direction_shifts`).
        batch_size: subjects decoded per call.
        per_pass: dimensions sharing one pass over the subjects (see :func:`dimensions_per_pass`).
        mean_image: when given, receives the mean original reconstruction (filled during the first pass).

    Yields:
        ``(d, stats)`` in the order of ``shifts``; a pass's statistics are freed once yielded.
    """
    latents = np.asarray(latents, dtype=np.float32)
    order = list(shifts)
    for start in range(0, len(order), per_pass):
        group = order[start:start + per_pass]
        stats: dict[int, PairedDifferenceStats] = {}
        total = None
        for rows, original in decode_in_batches(decode, latents, batch_size):
            if start == 0 and mean_image is not None:
                total = original.sum(axis=0, dtype=np.float64) + (0 if total is None else total)
            for d in group:
                moved = latents[rows].copy()
                if np.ndim(shifts[d]):
                    moved += np.asarray(shifts[d], dtype=np.float32)
                else:
                    moved[:, d] += shifts[d]
                difference = np.asarray(decode(moved)) - original
                stats.setdefault(d, PairedDifferenceStats(difference.shape[1:])).update(difference)
        if total is not None:
            mean_image[...] = total.reshape(mean_image.shape) / len(latents)
        for d in group:
            yield d, stats.pop(d)
