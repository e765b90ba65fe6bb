"""infer_encoders throughput beside a bare ``encoder.predict`` on in-memory arrays, and its peak memory over
a small and a ten times larger cohort.

Usage: ``python benchmarks/bench_infer.py [--small 200] [--large 2000] [--size 32 64] [--workers 2] [--rounds 5]``

Throughput: bare predict and infer_encoders alternate round by round in one process, so both see the same
contention from other jobs on the shared 2-core machine; the ratio is the median of the per-round ratios.
Memory: each cohort size runs in a fresh process, so peak resident memory is that run's own (measured at the
first size only, where the large cohort is written).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def volume_map(size: int):
    from ml4ge.normalizers import brain_zscore
    from ml4ge.tensormap import TensorMap

    return TensorMap("bench_t1", (size, size, size, 1), group="mri", normalization=brain_zscore(), mask="nonzero")


def make_encoder(tm, folder: Path) -> Path:
    from ml4ge.models.artifacts import save_model
    from ml4ge.models.config import ConvConfig, DenseConfig, ModelConfig
    from ml4ge.models.factory import build_model

    config = ModelConfig(conv=ConvConfig(layers=(8,), stages=(16, 32), block_size=1),
                         dense=DenseConfig(widths=(64,)))
    parts = build_model([tm], [tm], ["conv_encode"], ["concat"], ["conv_decode"], config)
    return save_model(parts, folder, "bench")["encoder_bench_t1"]


def read_arrays(tm, paths):
    import h5py
    import numpy as np

    arrays = []
    for path in paths:
        with h5py.File(path, "r") as hd5:
            arrays.append(tm.tensor(hd5)[0])
    return np.stack(arrays)


def throughput(folder: Path, n: int, size: int, workers: int, batch: int, rounds: int) -> dict:
    """Bare ``encoder.predict`` on in-memory arrays and infer_encoders' streaming, alternated round by round in
    this one process so both see the same contention from other jobs; medians over the rounds."""
    import statistics

    from ml4ge.hd5 import hd5_paths
    from ml4ge.models.artifacts import load_keras as load_encoder
    from ml4ge.recipes.infer_encoders import write_latents

    tm = volume_map(size)
    encoder = load_encoder(folder / "encoder_bench_t1.keras")
    paths = hd5_paths(folder / "tensors")[:n]
    x = read_arrays(tm, paths)
    encoder.predict(x[:batch], batch_size=batch, verbose=0)  # warm-up: tracing, and the readers' fork server
    write_latents(encoder, tm, paths[:batch], folder / "warmup.tsv", batch, workers, show_progress=False)
    bare, streamed = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        encoder.predict(x, batch_size=batch, verbose=0)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        write_latents(encoder, tm, paths, folder / "latents.tsv", batch, workers, show_progress=False)
        streamed.append(time.perf_counter() - start)
    return {"bare_s": statistics.median(bare), "streamed_s": statistics.median(streamed),
            "ratio": statistics.median(b / s for b, s in zip(bare, streamed)), "n": n}


def memory(folder: Path, n: int, size: int, workers: int, batch: int) -> dict:
    """Peak resident memory of this process while infer_encoders streams ``n`` samples."""
    import resource

    from ml4ge.hd5 import hd5_paths
    from ml4ge.models.artifacts import load_keras as load_encoder
    from ml4ge.recipes.infer_encoders import write_latents

    encoder = load_encoder(folder / "encoder_bench_t1.keras")
    paths = hd5_paths(folder / "tensors")[:n]
    write_latents(encoder, volume_map(size), paths, folder / "latents.tsv", batch, workers, show_progress=False)
    return {"n": n, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(*args) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--size", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        kind, folder, *numbers = options.child
        function = throughput if kind == "throughput" else memory
        print(json.dumps(function(Path(folder), *map(int, numbers))))
        return
    for size in options.size:
        bench_size(size, options)


def bench_size(size: int, options) -> None:
    from ml4ge.synthetic import write_cohort

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tm = volume_map(size)
        count = options.large if size == options.size[0] else options.small
        write_cohort(folder / "tensors", [tm], count, seed=0)
        make_encoder(tm, folder)
        load = os.getloadavg()[0]
        speed = run_child("throughput", folder, options.small, size, options.workers, options.batch, options.rounds)
        print(f"{size}^3 volumes, batch {options.batch}, {options.workers} reader processes, {options.rounds} "
              f"alternating rounds, load average {load:.1f} -> {os.getloadavg()[0]:.1f} (shared 2-core CPU)")
        print(f"  bare encoder.predict on arrays, {options.small} samples: {options.small / speed['bare_s']:.1f} "
              f"samples/s (median)")
        print(f"  infer_encoders streaming,       {options.small} samples: "
              f"{options.small / speed['streamed_s']:.1f} samples/s (median)")
        print(f"  throughput ratio infer_encoders / bare predict: {speed['ratio']:.2f} (median of rounds; "
              "target >= 0.8)")
        if count < options.large:
            return
        small = run_child("memory", folder, options.small, size, options.workers, options.batch)
        large = run_child("memory", folder, options.large, size, options.workers, options.batch)
        print(f"  peak RSS infer_encoders: {small['peak_mib']:.0f} MiB for {options.small} samples, "
              f"{large['peak_mib']:.0f} MiB for {options.large}: ratio {large['peak_mib'] / small['peak_mib']:.3f} "
              "(target <= 1.10)")


if __name__ == "__main__":
    main()
