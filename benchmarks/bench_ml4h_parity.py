"""ml4ge and ml4h side by side with ml4h's architecture (issue #22): step time and peak memory at 64^3, batch 4,
with 0 and 2 loader workers. One run alternates the engines (ml4h, ml4ge, ml4h, ml4ge, ...), each configuration
in its own child process, so that each peak is its own and both see the same machine load.

The model is what the registration study's seed-style flags build (ml4ge's ``--conv_style ml4h``, the default):
swish, ``--conv_layers 32 --dense_blocks 32 32 32 --block_size 3 --dense_layers 256``, ml4h's default kernels 3x3x2
and pooling 2x2x1, an autoencoder of a 64^3x1 volume, trained on one synthetic HD5 cohort that both engines read
(``/bench/t1_64/instance_0``, a (64, 64, 64, 1) array: ml4h's default reader takes the first dataset under
``/<path_prefix>/<name>/``, ml4ge's the ``instance_<k>`` datasets under ``/<group>/<name>``). ml4ge's child builds the
model with ml4ge's factory and reads with ml4ge's loader (``--num_workers`` reading processes); ml4h's child
(``ml4h_parity_child.py``, run by ``--ml4h_python``) with ml4h's parse_args, model factory and tensor generators
(ml4h's ``--num_workers``: 2 gives its training loader 1 worker, and validation and test loaders 1 each).

Each child trains ``--warmup`` untimed steps (graph tracing), then ``--steps`` timed ones, and reports the median
step, samples/s, forward GFLOP per sample (convolutions and dense layers, counted from the built layers by the same
function for both), forward GFLOP/s (forward GFLOP x samples/s; training does about 3 times that), the training
process's median CPU seconds per step (all its threads: what load on a shared machine changes least), parameters and
the training process's peak RSS (``ru_maxrss``). The parent samples the child's process tree every 0.5 s for the
largest worker's peak RSS and the tree's peak total RSS and PSS (process_tree.py). Then the ratios ml4ge/ml4h; the
memory goal is judged on the tree's PSS, the memory the whole run holds (the training process alone with 0 workers).

Run: ``python benchmarks/bench_ml4h_parity.py --ml4h_python /path/to/ml4h/venv/bin/python [--steps 5]
[--repeats 2] [--mixed_precision] [--recompute_encoders]``: the last two add ml4ge's rows with those flags (each
alone and both together). Without ``--ml4h_python`` only ml4ge is measured. On a shared machine read the figures as
measured under its load at the time (printed before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from parity_common import BATCH, GROUP, NAME, RESULT_PREFIX, SEED_FLAGS, SIZE, print_result, result_row, step_clock
from process_tree import TreeSampler

HERE = Path(__file__).resolve().parent
ML4H_CHILD = HERE / "ml4h_parity_child.py"
GOAL_SPEED, GOAL_MEMORY = 1.5, 0.5  # issue #22: ml4ge at least 1.5x ml4h's samples/s, at most half its memory
BF16 = "ml4ge_bf16"  # ml4ge with --mixed_precision
# ml4ge's configurations: (--mixed_precision, --recompute_encoders)
ML4GE_ENGINES = {"ml4ge": (False, False), BF16: (True, False), "ml4ge_recompute": (False, True),
                 "ml4ge_bf16_recompute": (True, True)}


def volume_map():
    from ml4ge.normalizers import PerSampleZScore
    from ml4ge.tensormap import TensorMap

    return TensorMap(NAME, (SIZE, SIZE, SIZE, 1), group=GROUP, normalization=PerSampleZScore())


def write_cohort(folder: Path, samples: int, seed: int = 0) -> None:
    """``samples`` files ``<i>.hd5``, each a noisy ellipsoid stored as a (64, 64, 64, 1) float32 array."""
    import h5py
    import numpy as np

    from ml4ge.hd5 import HD5_SUFFIX, write_tensor
    from ml4ge.synthetic import ellipsoid_volume

    rng = np.random.default_rng(seed)
    for i in range(samples):
        with h5py.File(folder / f"{i}{HD5_SUFFIX}", "w") as hd5:
            write_tensor(hd5, f"{GROUP}/{NAME}", ellipsoid_volume((SIZE,) * 3, rng)[..., None], instance=0)


def ml4ge_child(cohort: Path, workers: int, warmup: int, steps: int, engine: str = "ml4ge") -> dict:
    """ml4ge's training of the same model in one of :data:`ML4GE_ENGINES`: ``--mixed_precision`` (bfloat16 on a
    CPU) and ``--recompute_encoders`` set as the train recipe sets them."""
    import tensorflow as tf

    from ml4ge.arguments import build_parser
    from ml4ge.hd5 import hd5_paths
    from ml4ge.models.config import ModelConfig
    from ml4ge.models.factory import build_model, compile_model
    from ml4ge.pipeline import TensorDataset
    from ml4ge.strategy import set_precision

    mixed, recompute = ML4GE_ENGINES[engine]
    set_precision(mixed, tf.distribute.get_strategy())
    tm = volume_map()
    args = build_parser().parse_args(["--mode", "train", *SEED_FLAGS])
    model = build_model([tm], [tm], ["conv_encode"], [], ["conv_decode"], ModelConfig.from_args(args))
    if recompute:
        model.recompute_encoders()
    compile_model(model, [tm], 1e-4)
    times: list[float] = []
    cpu: list[float] = []
    clock = step_clock(times, cpu)
    with TensorDataset(hd5_paths(cohort), [tm], [tm], BATCH, shuffle=True, num_workers=workers, seed=1) as data:
        model.fit(data.dataset(), steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[clock])
    return result_row(engine, workers, model, times, cpu, warmup)


def child_command(engine: str, options, cohort: Path, workers: int) -> tuple[list[str], dict]:
    """The command line and environment of one configuration's child."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    timing = [str(options.warmup), str(options.steps)]
    if engine == "ml4h":
        env.pop("PYTHONPATH", None)  # ml4h's interpreter sees only its own packages (and this folder, the script's)
        scratch = cohort.parent / f"ml4h_scratch_{workers}"
        return [options.ml4h_python, str(ML4H_CHILD), str(cohort), str(workers), *timing, str(scratch)], env
    return [sys.executable, __file__, "--child", f"{cohort}:{workers}:{engine}", "--warmup", timing[0],
            "--steps", timing[1]], env


def run_child(command: list[str], env: dict) -> dict | None:
    """Run one child while sampling its process tree; its result row with the sampled peaks, None if it failed."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(child.pid)
    out, err = child.communicate()
    peaks = sampler.stop()
    rows = [line[len(RESULT_PREFIX):] for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    if child.returncode or not rows:
        print(f"FAILED (exit {child.returncode}): {' '.join(command[:2])} ...\n" + "\n".join(err.splitlines()[-15:]))
        return None
    return {**json.loads(rows[-1]), **peaks, "child_wall_s": time.perf_counter() - started}


def engines(options) -> list[str]:
    mine = [name for name, (mixed, recompute) in ML4GE_ENGINES.items()
            if (options.mixed_precision or not mixed) and (options.recompute_encoders or not recompute)]
    if options.ml4h_python:
        return ["ml4h", *mine]
    print("ml4h rows skipped: no --ml4h_python given (the interpreter of a venv where ml4h imports).")
    return mine


def show(row: dict) -> str:
    return " ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in row.items())


def medians(rows: list[dict], engine: str, workers: int) -> dict | None:
    """The median of each measured figure over the repeats of one configuration."""
    mine = [row for row in rows if row["engine"] == engine and row["workers"] == workers]
    if not mine:
        return None
    return {key: statistics.median(row[key] for row in mine) if isinstance(value, float) else value
            for key, value in mine[0].items()}


def report_ratios(rows: list[dict], workers_list: list[int]) -> None:
    """ml4ge/ml4h per worker count: samples/s (goal >= 1.5) and peak memory (goal <= 0.5)."""
    for workers in workers_list:
        for engine in ML4GE_ENGINES:
            report_ratio(medians(rows, "ml4h", workers), medians(rows, engine, workers), workers)


def report_ratio(ml4h: dict | None, ml4ge: dict | None, workers: int) -> None:
    if ml4h and ml4ge:
            speed = ml4ge["samples_per_s"] / ml4h["samples_per_s"]
            cpu = ml4ge["cpu_s_per_step"] / ml4h["cpu_s_per_step"]
            process = ml4ge["peak_rss_gb"] / ml4h["peak_rss_gb"]
            tree = ml4ge["peak_tree_pss_gb"] / ml4h["peak_tree_pss_gb"]
            print(f"workers {workers}: {ml4ge['engine']}/ml4h samples/s {speed:.3f} (goal >= {GOAL_SPEED}: "
                  f"{'met' if speed >= GOAL_SPEED else 'not met'}; CPU s per step of the training process {cpu:.3f}); "
                  f"peak PSS of the process tree {tree:.3f} (goal <= {GOAL_MEMORY}: "
                  f"{'met' if tree <= GOAL_MEMORY else 'not met'}; peak RSS of the training process {process:.3f})")
            if ml4h["parameters"] != ml4ge["parameters"]:
                print(f"  parameters differ: ml4h {ml4h['parameters']:,}, ml4ge {ml4ge['parameters']:,}")


def run_all(options) -> list[dict]:
    """Every configuration, alternating the engines within each worker count, ``--repeats`` times."""
    rows, names = [], engines(options)
    with tempfile.TemporaryDirectory() as folder:
        cohort = Path(folder) / "tensors"
        cohort.mkdir()
        write_cohort(cohort, options.samples)
        for _ in range(options.repeats):
            for workers in options.workers:
                for engine in names:
                    row = run_child(*child_command(engine, options, cohort, workers))
                    if row:
                        print(show(row), flush=True)
                        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all configurations (medians reported)")
    parser.add_argument("--ml4h_python", help="interpreter of a venv where ml4h imports; without it no ml4h rows")
    parser.add_argument("--mixed_precision", action="store_true",
                        help="also ml4ge with --mixed_precision (bfloat16 on a CPU; ml4h trains in float32)")
    parser.add_argument("--recompute_encoders", action="store_true",
                        help="also ml4ge with --recompute_encoders (in each precision measured)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        cohort, workers, engine = options.child.split(":")
        print_result(ml4ge_child(Path(cohort), int(workers), options.warmup, options.steps, engine))
        return
    print(f"load average at start: {os.getloadavg()}")
    rows = run_all(options)
    print(f"load average at end: {os.getloadavg()}")
    report_ratios(rows, options.workers)


if __name__ == "__main__":
    main()
