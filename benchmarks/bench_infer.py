"""infer_encoders throughput beside a bare ``encoder.predict`` on in-memory arrays, and its peak memory over
a small and a ten times larger cohort.

Usage: ``python benchmarks/bench_infer.py [--small 200] [--large 2000] [--size 32] [--workers 2]``

Each measurement runs in a fresh process (so peak resident memory is that run's own). Figures on the shared
2-core machine are measured under contention from other jobs; compare the ratios, not the absolute numbers.
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
    from ml4ge.models.config import ConvConfig, DenseConfig, ModelConfig
    from ml4ge.models.factory import build_model, save_parts

    config = ModelConfig(conv=ConvConfig(layers=(8,), stages=(16, 32), block_size=1),
                         dense=DenseConfig(widths=(64,)))
    parts = build_model([tm], [tm], ["conv_encode"], ["concat"], ["conv_decode"], config)
    return save_parts(parts, folder, "bench")["encoder_bench_t1"]


def child(mode: str, folder: Path, n: int, size: int, workers: int, batch: int) -> dict:
    """One measurement in this process: 'pipeline' (infer_encoders' streaming) or 'bare' (predict on arrays)."""
    import resource

    import h5py
    import numpy as np

    from ml4ge.hd5 import hd5_paths
    from ml4ge.recipes.infer_encoders import load_encoder, write_latents

    tm = volume_map(size)
    encoder = load_encoder(folder / "encoder_bench_t1.keras")
    paths = hd5_paths(folder / "tensors")[:n]
    if mode == "bare":
        arrays = []
        for path in paths:
            with h5py.File(path, "r") as hd5:
                arrays.append(tm.tensor(hd5)[0])
        x = np.stack(arrays)
        encoder.predict(x[:batch], batch_size=batch, verbose=0)  # warm-up (tracing)
        start = time.perf_counter()
        encoder.predict(x, batch_size=batch, verbose=0)
    else:
        write_latents(encoder, tm, paths[:batch], folder / "warmup.tsv", batch, workers, show_progress=False)
        start = time.perf_counter()
        write_latents(encoder, tm, paths, folder / "latents.tsv", batch, workers, show_progress=False)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "n": n, "seconds": seconds, "samples_per_s": n / seconds, "peak_mib": peak_mib}


def run_child(*args) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        mode, folder, n, size, workers, batch = options.child
        print(json.dumps(child(mode, Path(folder), int(n), int(size), int(workers), int(batch))))
        return
    from ml4ge.synthetic import write_cohort

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tm = volume_map(options.size)
        write_cohort(folder / "tensors", [tm], options.large, seed=0)
        make_encoder(tm, folder)
        common = (folder, options.small, options.size, options.workers, options.batch)
        bare = run_child("bare", *common)
        pipeline = run_child("pipeline", *common)
        large = run_child("pipeline", folder, options.large, *common[2:])
    print(f"{options.size}^3 volumes, batch {options.batch}, {options.workers} reader processes (shared 2-core CPU)")
    print(f"bare encoder.predict on arrays, {options.small} samples: {bare['samples_per_s']:.1f} samples/s")
    print(f"infer_encoders streaming,       {options.small} samples: {pipeline['samples_per_s']:.1f} samples/s")
    print(f"throughput ratio infer_encoders / bare predict: {pipeline['samples_per_s'] / bare['samples_per_s']:.2f}"
          " (target >= 0.8)")
    print(f"peak RSS infer_encoders: {pipeline['peak_mib']:.0f} MiB for {options.small} samples, "
          f"{large['peak_mib']:.0f} MiB for {options.large}: ratio {large['peak_mib'] / pipeline['peak_mib']:.3f} "
          "(target <= 1.10)")


if __name__ == "__main__":
    main()
