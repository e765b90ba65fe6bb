"""ml4ge training with ml4h's architecture (issue #22): step time and peak memory at 64^3, batch 4, with 0 and 2
loader workers, the configurations measured one after the other in one run (each in its own process, so that each
peak is its own).

The model is what the registration study's flags build in ml4ge (``--conv_style ml4h``, the default): swish,
``--conv_layers 32 --dense_blocks 32 32 32 --block_size 3 --dense_layers 256``, ml4h's default kernels 3x3x2 and
pooling 2x2x1, on a synthetic cohort of 64^3 volumes read from HD5 by ml4ge's loader. Each child builds the model,
trains ``--warmup`` untimed steps (graph tracing), then ``--steps`` timed ones, and reports the median step,
samples/s, forward GFLOP per sample (convolutions and dense layers, counted from the built layers) and peak
resident memory of the process and of its largest worker.

ml4h itself is not run here: see docs/ml4h_differences.md ("Performance") for whether it could be installed.

Run: ``python benchmarks/bench_ml4h_parity.py [--steps 5] [--samples 24]``. On a shared machine read the figures
as measured under its load at the time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED_FLAGS = ["--activation", "swish", "--conv_layers", "32", "--dense_blocks", "32", "32", "32", "--block_size", "3",
              "--dense_layers", "256"]
SIZE, BATCH = 64, 4


def volume_map():
    from ml4ge.normalizers import PerSampleZScore
    from ml4ge.tensormap import TensorMap

    return TensorMap("t1_64", (SIZE, SIZE, SIZE, 1), group="bench", normalization=PerSampleZScore())


def forward_gflops(model) -> float:
    import math

    import keras

    def layers(m):
        for layer in m.layers:
            yield from layers(layer) if isinstance(layer, keras.Model) else [layer]

    total = 0
    for layer in layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            spatial = 1 if isinstance(layer, keras.layers.Dense) else math.prod(layer.output.shape[1:-1])
            total += 2 * math.prod(kernel.shape) * spatial
    return total / 1e9


def child(cohort: Path, workers: int, warmup: int, steps: int) -> dict:
    import keras

    from ml4ge.arguments import build_parser
    from ml4ge.hd5 import hd5_paths
    from ml4ge.models.config import ModelConfig
    from ml4ge.models.factory import build_model, compile_model
    from ml4ge.pipeline import TensorDataset

    tm = volume_map()
    args = build_parser().parse_args(["--mode", "train", *SEED_FLAGS])
    model = build_model([tm], [tm], ["conv_encode"], [], ["conv_decode"], ModelConfig.from_args(args))
    compile_model(model, [tm], 1e-4)
    times = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    with TensorDataset(hd5_paths(cohort), [tm], [tm], BATCH, shuffle=True, num_workers=workers, seed=1) as data:
        model.fit(data.dataset(), steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[Clock()])
    step = statistics.median(times[warmup:])
    return {"workers": workers, "parameters": model.count_params(), "forward_gflop_per_sample": forward_gflops(model),
            "step_s": step, "samples_per_s": BATCH / step,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "peak_worker_rss_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        cohort, workers = args.child.split(":")
        print(json.dumps(child(Path(cohort), int(workers), args.warmup, args.steps)))
        return
    from ml4ge.synthetic import write_cohort

    with tempfile.TemporaryDirectory() as folder:
        write_cohort(Path(folder), [volume_map()], args.samples, seed=0)
        results = []
        for workers in args.workers:
            command = [sys.executable, __file__, "--child", f"{folder}:{workers}", "--steps", str(args.steps),
                       "--warmup", str(args.warmup)]
            done = subprocess.run(command, capture_output=True, text=True, check=True,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for row in results:
        print(" ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                       for key, value in row.items()))
    if len(results) == 2:
        print(f"ratio step time workers {results[1]['workers']}/{results[0]['workers']}: "
              f"{results[1]['step_s'] / results[0]['step_s']:.3f}")


if __name__ == "__main__":
    main()
