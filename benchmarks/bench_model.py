"""UDIP 3-D autoencoder: training throughput, arithmetic efficiency, and factory overhead, measured side by side.

For each input size (64^3 and 96^3 by default, batch 4, float32, no XLA on CPU):

* samples/s of a training step of the factory-built UDIP architecture (``udip_config`` through ``build_model``,
  an ``autoencoder``-family model);
* model FLOPs per step (convolution and dense multiply-adds counted analytically from the built layers, x2 for
  FLOPs, x3 for a training step: forward, gradient of the inputs, gradient of the weights) divided by the step
  time, as a fraction of the float32 matmul rate of this machine measured in the same run;
* the same architecture written by hand with plain Keras layers, and the family model's own graph as a plain
  Keras Functional model (what the factory built before model families: the same nested encoder and decoder),
  their steps alternating one by one with the family model's so that all see the same load; the ratios
  factory/hand and factory/functional should be within 5 %.

Run: ``python benchmarks/bench_model.py [--sizes 64 96] [--steps 3]``. Keep runs short on shared machines and
read the figures as measured under whatever contention there was (both models see the same).
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ml4ge.models.factory import build_model, compile_model  # noqa: E402
from ml4ge.models.losses import MaskedMeanSquaredError  # noqa: E402
from ml4ge.models.presets import udip_config  # noqa: E402
from ml4ge.tensormap import TensorMap  # noqa: E402

WIDTHS = (16, 32, 64, 128, 256)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Float32 matmul rate (GFLOP/s) of this machine, best of ``repeats`` through the Keras backend."""
    a = keras.ops.convert_to_tensor(np.random.default_rng(0).normal(size=(n, n)).astype("float32"))
    keras.ops.convert_to_numpy(keras.ops.matmul(a, a))  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(keras.ops.matmul(a, a))
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def forward_flops(model) -> int:
    """FLOPs of one sample's forward pass through convolutions, transposed convolutions and dense layers."""
    total = 0
    for layer in _layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        weights = math.prod(kernel.shape)
        if isinstance(layer, keras.layers.Dense):
            total += 2 * weights
        elif "Transpose" in type(layer).__name__:
            total += 2 * weights * math.prod(layer.input.shape[1:-1])
        else:
            total += 2 * weights * math.prod(layer.output.shape[1:-1])
    return total


def udip_by_hand(size: int) -> keras.Model:
    """UDIP written directly with Keras layers (no padding needed: ``size`` is a multiple of 16)."""

    def conv_bn_act(x, width):
        x = keras.layers.Conv3D(width, 3, padding="same")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
        return keras.layers.LeakyReLU(negative_slope=0.01)(x)

    inputs = keras.Input((size, size, size, 1))
    x = conv_bn_act(conv_bn_act(inputs, 16), 16)
    for width in WIDTHS[1:]:
        x = keras.layers.MaxPooling3D(2)(x)
        x = conv_bn_act(conv_bn_act(x, width), width)
    bottleneck = tuple(x.shape[1:])
    latent = keras.layers.Dense(128)(keras.layers.Flatten()(x))
    x = keras.layers.Reshape(bottleneck)(keras.layers.Dense(math.prod(bottleneck))(latent))
    for width in WIDTHS[-2::-1]:
        x = conv_bn_act(conv_bn_act(x, width), width)
        x = keras.layers.Conv3DTranspose(width, 2, strides=2)(x)
    x = conv_bn_act(conv_bn_act(x, 16), 16)
    model = keras.Model(inputs, keras.layers.Conv3D(1, 1)(x))
    model.compile(keras.optimizers.Adam(5.248e-4), loss=MaskedMeanSquaredError(), jit_compile=False)
    return model


def factory_udip(size: int):
    tm = TensorMap("t1", (size, size, size, 1), mask="nonzero")
    parts = build_model([tm], [tm], ["conv_encode"], [], ["conv_decode"], udip_config("t1"))
    compile_model(parts, [tm], 5.248e-4, jit_compile=False)
    return parts, tm


def step_seconds(model, x, y) -> float:
    start = time.perf_counter()
    model.train_on_batch(x, y)
    return time.perf_counter() - start


def bench_size(size: int, batch: int, steps: int, peak: float) -> None:
    """Alternate factory and hand-built training steps (after one warm-up step each) and print the figures.

    Steps alternate one by one so that both models see the same contention; the fastest step of each is
    reported (the least disturbed), with the median beside it.
    """
    factory, tm = factory_udip(size)
    hand = udip_by_hand(size)
    assert factory.count_params() == hand.count_params(), (factory.count_params(), hand.count_params())
    functional = keras.Model(factory.input, factory.output)  # the same layers, no family subclass
    functional.compile(keras.optimizers.Adam(5.248e-4), loss={tm.output_name: MaskedMeanSquaredError()},
                       jit_compile=False)
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(batch, size, size, size, 1)).astype("float32")
    target = np.concatenate([volume, (rng.random(volume.shape) > 0.5).astype("float32")], axis=-1)
    runs = {"factory": (factory, {tm.input_name: volume}, {tm.output_name: target}), "hand": (hand, volume, target),
            "functional": (functional, {tm.input_name: volume}, {tm.output_name: target})}
    times = {name: [] for name in runs}
    for model, x, y in runs.values():
        model.train_on_batch(x, y)  # traces the step
    for _ in range(steps):
        for name, (model, x, y) in runs.items():
            times[name].append(step_seconds(model, x, y))
    best = {name: min(values) for name, values in times.items()}
    median = {name: float(np.median(values)) for name, values in times.items()}
    flops = 3 * forward_flops(factory) * batch
    achieved = flops / best["factory"] / 1e9
    print(
        f"{size}^3 batch {batch}: params {factory.count_params() / 1e6:.1f} M | factory {best['factory']:.2f} s/step "
        f"(median {median['factory']:.2f}; {batch / best['factory']:.2f} samples/s) | hand {best['hand']:.2f} s/step "
        f"(median {median['hand']:.2f}) | factory/hand {best['factory'] / best['hand']:.3f} "
        f"(medians {median['factory'] / median['hand']:.3f}) | factory/functional "
        f"{best['factory'] / best['functional']:.3f} (medians {median['factory'] / median['functional']:.3f}) | "
        f"{flops / 1e9:.0f} GFLOP/step -> {achieved:.0f} GFLOP/s "
        f"= {achieved / peak:.0%} of matmul"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", type=int, default=[64, 96])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="Timed steps of each model, alternating.")
    args = parser.parse_args(argv)
    peak = matmul_gflops()
    print(f"float32 matmul (2048^2, Keras {keras.backend.backend()} backend): {peak:.0f} GFLOP/s")
    for size in args.sizes:
        bench_size(size, args.batch, args.steps, peak)
    print(f"matmul again after the runs: {matmul_gflops():.0f} GFLOP/s (contention check)")


if __name__ == "__main__":
    main()
