"""SFCN brain age: a training step of the factory-built SFCN against the same model written by hand in plain Keras.

For each size (the demo's 64x80x64 with the reduced ``sfcn_small`` preset, and SFCN's 160x192x160 with ``sfcn``),
batch 4 by default, float32, no XLA on CPU:

* seconds per training step (forward, backward, Adam update) of the ``autoencoder``-family model built from the
  ``sfcn_encode`` and ``soft_label`` blocks (its loss :class:`~ml4ge.models.soft_label.SoftLabelKL` computes the
  Gaussian soft labels from the ages inside the step), and of the same network written directly with Keras layers
  (its soft labels computed beforehand with scipy, its KL written as a lambda), their steps alternating one by one
  so that both see the same load; the ratio factory/hand should be within 5 %;
* arithmetic efficiency: model FLOPs per step (convolutions and dense layers, counted from the built layers, x3 for
  a training step) per second, as a fraction of the float32 matmul rate measured in the same run.

Run: ``python benchmarks/bench_sfcn.py [--sizes demo full] [--batch 4] [--steps 3]``. A size whose step does not
fit in memory is reported as such (try ``--batch 2``). Figures are measured under whatever contention there was;
read the ratios.
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench_model import forward_flops, matmul_gflops  # noqa: E402  (benchmarks/ is on the path when run)
from keras import ops  # noqa: E402

from ml4ge.models.factory import Architecture, build_family, compile_model  # noqa: E402
from ml4ge.models.presets import PRESETS  # noqa: E402
from ml4ge.models.soft_label import soft_labels  # noqa: E402
from ml4ge.recipes.train import block_losses  # noqa: E402
from ml4ge.tensormap import TensorMap  # noqa: E402

SIZES = {"demo": ((64, 80, 64), "sfcn_small"), "full": ((160, 192, 160), "sfcn")}
AGE = TensorMap("age", (1,))


def factory_sfcn(shape, preset: str):
    chosen = PRESETS.get(preset)("t1")
    tm = TensorMap("t1_sfcn", (*shape, 1))
    model = build_family(Architecture("autoencoder", ("sfcn_encode",), (), ("soft_label",), chosen.model), [tm], [AGE])
    compile_model(model, block_losses(model, [AGE]), settings=chosen.training, jit_compile=False)
    return model, tm, chosen


def hand_sfcn(shape, chosen) -> keras.Model:
    """SFCN as a user would write it in Keras (PyTorch's BatchNorm defaults), soft labels given as targets."""
    sfcn, bins = chosen.model.sfcn, chosen.model.soft_label
    inputs = keras.Input((*shape, 1))
    x = inputs
    for width in sfcn.channels:
        x = keras.layers.Conv3D(width, 3, padding="same")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
        x = keras.layers.ReLU()(keras.layers.MaxPooling3D(2)(x))
    x = keras.layers.Conv3D(sfcn.bottleneck, 1)(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x))
    x = keras.layers.Dropout(sfcn.dropout)(keras.layers.GlobalAveragePooling3D()(x))
    outputs = keras.layers.Activation("log_softmax")(keras.layers.Dense(bins.bins)(x))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(chosen.training.learning_rate), jit_compile=False,
                  loss=lambda y, p: ops.sum(y * (ops.log(y + 1e-16) - p), axis=-1))
    return model


def step_seconds(model, x, y) -> float:
    start = time.perf_counter()
    model.train_on_batch(x, y)
    return time.perf_counter() - start


def bench_size(name: str, batch: int, steps: int, peak: float) -> None:
    """Alternate factory and hand-written steps (after one warm-up step each) and print the figures."""
    shape, preset = SIZES[name]
    factory, tm, chosen = factory_sfcn(shape, preset)
    hand = hand_sfcn(shape, chosen)
    assert factory.count_params() == hand.count_params(), (factory.count_params(), hand.count_params())
    rng = np.random.default_rng(0)
    volume = rng.random((batch, *shape, 1), dtype=np.float32)
    ages = rng.uniform(50, 75, (batch, 1)).astype("float32")
    labels = soft_labels(ages, chosen.model.soft_label).astype("float32")
    runs = {"factory": (factory, {tm.input_name: volume}, {AGE.output_name: ages}), "hand": (hand, volume, labels)}
    times = {key: [] for key in runs}
    for model, x, y in runs.values():
        model.train_on_batch(x, y)  # traces the step
    for _ in range(steps):
        for key, (model, x, y) in runs.items():
            times[key].append(step_seconds(model, x, y))
    best = {key: min(values) for key, values in times.items()}
    median = {key: float(np.median(values)) for key, values in times.items()}
    flops = 3 * forward_flops(factory) * batch
    achieved = flops / best["factory"] / 1e9
    print(f"{name} {'x'.join(map(str, shape))} ({preset}) batch {batch}: params {factory.count_params() / 1e6:.2f} M | "
          f"factory {best['factory']:.2f} s/step (median {median['factory']:.2f}; "
          f"{batch / best['factory']:.2f} samples/s) | hand {best['hand']:.2f} s/step (median {median['hand']:.2f}) | "
          f"factory/hand {best['factory'] / best['hand']:.3f} (medians {median['factory'] / median['hand']:.3f}) | "
          f"{flops / 1e9:.0f} GFLOP/step -> {achieved:.0f} GFLOP/s = {achieved / peak:.0%} of matmul")
    keras.backend.clear_session()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="Timed steps of each model, alternating.")
    args = parser.parse_args(argv)
    peak = matmul_gflops()
    print(f"float32 matmul (2048^2, Keras {keras.backend.backend()} backend): {peak:.0f} GFLOP/s")
    for name in args.sizes:
        try:
            bench_size(name, args.batch, args.steps, peak)
        except (MemoryError, RuntimeError) as error:  # an allocator failure: say what did not fit, go on
            print(f"{name} batch {args.batch}: does not fit ({type(error).__name__}: {str(error)[:200]}); "
                  "try --batch 2")
    print(f"matmul again after the runs: {matmul_gflops():.0f} GFLOP/s (contention check)")
    print(f"({math.prod((160, 192, 160))} voxels at full size; the machine may be shared: read the ratios)")


if __name__ == "__main__":
    main()
