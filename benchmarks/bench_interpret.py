"""PerDI (``--mode interpret``) cost per latent dimension at 64^3: time and peak memory for 100 vs 500 subjects,
and the saving from sharing each batch's original reconstruction across the dimensions of a pass.

Usage: ``python benchmarks/bench_interpret.py [--small 100] [--large 500] [--dimensions 2] [--batch 10]``

The decoder is the quickstart's factory-built 3-D conv autoencoder (conv_encode/conv_decode, 8-channel stem,
16/32 stages, 32 latents) on a 64^3 map; weights are untrained (timing does not depend on them). Each
measurement runs in a fresh process, so its peak resident memory is its own. The machine is shared: the load
average is printed with the figures; compare ratios measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART_MODEL = ["--conv_layers", "8", "--dense_blocks", "16", "32", "--block_size", "1", "--dense_layers", "32",
                    "--conv_x", "3", "--conv_y", "3", "--conv_z", "3", "--pool_x", "2", "--pool_y", "2",
                    "--pool_z", "2"]


def build_decoder():
    from ml4ge.arguments import build_parser
    from ml4ge.models.config import ModelConfig
    from ml4ge.models.factory import build_model
    from ml4ge.normalizers import brain_zscore
    from ml4ge.tensormap import TensorMap

    tm = TensorMap("bench_t1_64", (64, 64, 64, 1), group="mri", normalization=brain_zscore(), mask="nonzero")
    config = ModelConfig.from_args(build_parser().parse_args(["--mode", "interpret", *QUICKSTART_MODEL]))
    parts = build_model([tm], [tm], ["conv_encode"], ["concat"], ["conv_decode"], config)
    return tm, parts.decoders[tm.name]


def child(subjects: int, dimensions: int, per_pass: int, batch: int) -> dict:
    """One PerDI run in this process: decode, statistics and |t| maps (smoothed, sigma 3) for the dimensions."""
    import resource

    import numpy as np

    from ml4ge.interpret.perturb import latent_shifts, perdi_statistics
    from ml4ge.interpret.study import decoder_function
    from ml4ge.interpret.voxel_stats import abs_t_map

    tm, decoder = build_decoder()
    decode = decoder_function(decoder, batch)
    timed = {"decode": 0.0}

    def timed_decode(latents):
        start = time.perf_counter()
        out = decode(latents)
        timed["decode"] += time.perf_counter() - start
        return out

    latents = np.random.default_rng(0).normal(size=(subjects, int(decoder.input.shape[-1]))).astype(np.float32)
    decode(latents[:batch])  # warm-up: trace the predict function
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mask = np.ones(tm.shape[:-1], dtype=bool)
    shifts = latent_shifts(latents, list(range(dimensions)), 1.0)
    start, cpu = time.perf_counter(), time.process_time()
    mean = np.zeros(tm.shape)
    for _, stats in perdi_statistics(timed_decode, latents, shifts, batch, per_pass, mean):
        abs_t_map(stats.t()[..., 0], mask, 3.0)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"subjects": subjects, "dimensions": dimensions, "per_pass": per_pass, "wall_s": wall, "cpu_s": cpu,
            "decode_s": timed["decode"], "wall_per_dim_s": wall / dimensions,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "model_rss_mb": baseline_mb}


def measure(subjects: int, dimensions: int, per_pass: int, batch: int) -> dict:
    command = [sys.executable, __file__, "--child", str(subjects), str(dimensions), str(per_pass), str(batch)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=500)
    parser.add_argument("--dimensions", type=int, default=2)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--child", nargs=4, type=int, metavar=("SUBJECTS", "DIMENSIONS", "PER_PASS", "BATCH"))
    options = parser.parse_args()
    if options.child:
        print(json.dumps(child(*options.child)))
        return
    print(f"load average before: {os.getloadavg()}")
    d = options.dimensions
    runs = {"small, shared pass": measure(options.small, d, d, options.batch),
            "large, shared pass": measure(options.large, d, d, options.batch),
            "large, one dim per pass": measure(options.large, d, 1, options.batch)}
    print(f"load average after: {os.getloadavg()}")
    header = f"{'run':26s} {'N':>5s} {'dims':>4s} {'wall/dim s':>10s} {'cpu s':>7s} {'decode s':>8s} {'peak MB':>8s}"
    print(header)
    for name, r in runs.items():
        print(f"{name:26s} {r['subjects']:5d} {r['dimensions']:4d} {r['wall_per_dim_s']:10.1f} {r['cpu_s']:7.1f} "
              f"{r['decode_s']:8.1f} {r['peak_rss_mb']:8.0f}  (model alone {r['model_rss_mb']:.0f} MB)")
    small, large, single = runs.values()
    print(f"time ratio {options.large} / {options.small} subjects: "
          f"{large['wall_per_dim_s'] / small['wall_per_dim_s']:.2f} (subjects ratio {options.large / options.small:g})")
    print(f"peak memory ratio {options.large} / {options.small} subjects: "
          f"{large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")
    print(f"one dimension per pass / shared pass (time per dimension): "
          f"{single['wall_per_dim_s'] / large['wall_per_dim_s']:.2f} (expected about 2d/(d+1) = {2 * d / (d + 1):.2f})")


if __name__ == "__main__":
    main()
