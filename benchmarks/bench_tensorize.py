"""Tensorize throughput: NIfTI volumes/s with 1 and 2 processes, measured side by side in one run.

Writes ``--n`` synthetic skull-stripped volumes (noisy ellipsoid on zero background, like an MNI brain) as
.nii.gz with nibabel, then tensorizes them into fresh folders with each worker count and prints
volumes/s and the ratio to the first worker count. Process start-up (spawn) is included, as a user sees it.

    python benchmarks/bench_tensorize.py                    # 40 volumes of 182x218x182
    python benchmarks/bench_tensorize.py --n 16 --shape 96 96 96 --resample
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ml4ge.synthetic import ellipsoid_volume
from ml4ge.tensorize import FAILED, Subject, VolumeInput, status_counts, tensorize_subjects

BASE_VOLUMES = 4  # distinct random volumes; the others are offset copies (drawing noise is slower than tensorize)


def make_niftis(folder: Path, n: int, shape) -> list[Path]:
    rng = np.random.default_rng(0)
    bases = [ellipsoid_volume(shape, rng) for _ in range(min(n, BASE_VOLUMES))]
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    paths = []
    for i in range(n):
        volume = bases[i % len(bases)] + np.float32(i // len(bases)) * (bases[i % len(bases)] != 0)
        path = folder / f"{i}.nii.gz"
        nib.save(nib.Nifti1Image(volume, affine), str(path))
        paths.append(path)
    return paths


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker processes, once joined)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def time_tensorize(subjects, folder: Path, workers: int) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` to tensorize ``subjects`` with ``workers`` processes."""
    start, start_cpu = time.perf_counter(), cpu_seconds()
    rows = tensorize_subjects(subjects, folder, num_workers=workers)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    counts = status_counts(rows)
    if counts[FAILED] or counts["written"] != len(subjects):
        raise RuntimeError(f"benchmark run did not write every subject: {dict(counts)}")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="number of volumes")
    parser.add_argument("--shape", type=int, nargs=3, default=[182, 218, 182], help="volume shape")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    parser.add_argument("--resample", action="store_true", help="also resample to 96^3 (as --resample does)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench_tensorize_"))
    try:
        start = time.perf_counter()
        paths = make_niftis(scratch, args.n, tuple(args.shape))
        print(f"made {args.n} NIfTI volumes of {tuple(args.shape)} float32 in {time.perf_counter() - start:.1f} s")
        map_shape = (96, 96, 96, 1) if args.resample else (*args.shape, 1)
        subjects = [Subject(p.name.split(".")[0], (VolumeInput("t1", str(p), "ukb_brain_mri/T1", map_shape,
                                                                resample=args.resample),)) for p in paths]
        results = {w: time_tensorize(subjects, scratch / f"tensors_{w}", w) for w in args.workers}
        reference = args.n / results[args.workers[0]][0]
        # cores busy = CPU s / wall s: below the worker count means the machine had no more to give (contention).
        print(f"{'workers':>8} {'volumes/s':>10} {'ratio':>6} {'CPU s/volume':>13} {'cores busy':>11}")
        for workers, (seconds, cpu) in results.items():
            rate = args.n / seconds
            print(f"{workers:>8} {rate:>10.2f} {rate / reference:>6.2f} {cpu / args.n:>13.2f} {cpu / seconds:>11.2f}")
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
