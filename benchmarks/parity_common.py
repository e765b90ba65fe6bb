"""What both children of ``bench_ml4h_parity.py`` share: the model size, the FLOP count, the step clock and the
result row. It imports only the standard library at import time (Keras inside the functions), so that ml4h's
child can load it with ml4h's interpreter and ml4ge's with ml4ge's: both engines are measured by the same code."""

from __future__ import annotations

import json
import math
import resource
import statistics
import sys
import time

SIZE, BATCH = 64, 4
GROUP, NAME = "bench", "t1_64"  # the volume's HD5 dataset: /bench/t1_64/instance_0, a (64, 64, 64, 1) float32
# The seed-style architecture flags (issue #22), spelled the same in ml4ge and ml4h.
SEED_FLAGS = ["--activation", "swish", "--conv_layers", "32", "--dense_blocks", "32", "32", "32", "--block_size", "3",
              "--dense_layers", "256"]
RESULT_PREFIX = "RESULT "  # the child's result line; ml4h prints its model summary and logs on stdout too


def _leaf_layers(model):
    """Every layer of ``model``, descending into nested models (ml4h's encoder and decoder are nested Models)."""
    import keras

    for layer in model.layers:
        yield from _leaf_layers(layer) if isinstance(layer, keras.Model) else [layer]


def forward_gflops(model) -> float:
    """Forward GFLOP per sample of the convolutions and dense layers: 2 x kernel size x output positions."""
    import keras

    total = 0
    for layer in _leaf_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            spatial = 1 if isinstance(layer, keras.layers.Dense) else math.prod(layer.output.shape[1:-1])
            total += 2 * math.prod(kernel.shape) * spatial
    return total / 1e9


def cpu_seconds() -> float:
    """User and system CPU seconds of this process so far, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def step_clock(times: list, cpu: list):
    """A Keras callback appending each training batch's wall time (data fetch included) to ``times`` and the
    process's CPU seconds in it to ``cpu`` (less sensitive than wall time to other processes on a shared machine)."""
    import keras

    class StepClock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start, self.cpu = time.perf_counter(), cpu_seconds()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)
            cpu.append(cpu_seconds() - self.cpu)

    return StepClock()


def result_row(engine: str, workers: int, model, times: list, cpu: list, warmup: int) -> dict:
    """The measured row of one child; peak RSS of this process from the kernel (exact, not sampled)."""
    step = statistics.median(times[warmup:])
    gflop = forward_gflops(model)
    return {"engine": engine, "workers": workers, "parameters": model.count_params(),
            "forward_gflop_per_sample": gflop, "step_s": step, "samples_per_s": BATCH / step,
            "forward_gflop_per_s": gflop * BATCH / step, "cpu_s_per_step": statistics.median(cpu[warmup:]),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            # TensorFlow imports jax when it is installed (tensorflow.lite): ml4ge's test extra installs it, a user's
            # install (README command 1) does not; it adds about 0.06 GB to the peak
            "jax_imported": "jax" in sys.modules}


def print_result(row: dict) -> None:
    print(RESULT_PREFIX + json.dumps(row), flush=True)
