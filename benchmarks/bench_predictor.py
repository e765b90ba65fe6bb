"""Predictor (``--family predictor``): the residual 3-D CNN's training step against the same network written by
hand in plain Keras, and a batch with 30 % of subjects missing inputs against a full batch.

The network is the legibility seed's at 64^3 (REFERENCE_SEEDS.md D.2): T1 and T2 stacked as two channels of one
CNN, 5 residual stages (32, 64, 128, 256, 256: 1x1 skip conv, conv 3 -> GELU -> conv 3, add, BatchNorm -> GELU ->
max-pool 2 -> dropout 0.1), flatten, Dense 128 -> BatchNorm -> GELU, the head 256 -> 256 (BatchNorm, GELU, dropout
0.1) -> 1, the mean(W^2) L2 at 1e-4 on every weight matrix, Adam, MSE on the scaled target. No XLA.

* ``throughput``: the factory-built predictor (T1 required, T2 optional: the CNN's BatchNorms are Keras' own) and
  the hand-written ``keras.Model``, their steps alternating one by one so both see the same load; medians and
  their ratio (goal: within 1.05).
* ``missing``: the factory predictor with T2 and a tabular domain optional (their branches' BatchNorms take the
  presence flags), one batch with every input present and one with 30 % of rows missing T2 and the domain (zeros,
  flags 0), alternating; medians and their ratio (goal: <= 1.0 within noise: the missing rows are masked, the
  batch's shape and work are the same).

* ``precise_bn``: a precise-BatchNorm recalibration batch (``ml4ge.precise_bn``: the forward pass in training mode,
  dropout off) against a training step, alternating; and the share 16 such batches add to an epoch.

Run: ``python benchmarks/bench_predictor.py [--size 64] [--batch 4] [--steps 5] [--parts throughput missing
precise_bn]``.
Figures are measured under whatever contention there was; read the ratios.
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from ml4ge.models.factory import Architecture, build_family  # noqa: E402
from ml4ge.models.predictor_config import PredictorConfig  # noqa: E402
from ml4ge.tensormap import TensorMap  # noqa: E402
from ml4ge.training_settings import TrainingSettings  # noqa: E402

STAGES, WIDTH, HEAD, L2, LEARNING_RATE = (32, 64, 128, 256, 256), 128, (256, 256), 1e-4, 1e-4
AGE = TensorMap("age", (1,))
VOLUMES = TensorMap("volumes", (4,), channel_map={f"v{i}": i for i in range(4)})


def volumes_maps(size: int):
    return TensorMap("t1", (size, size, size, 1)), TensorMap("t2", (size, size, size, 1))


def factory_predictor(size: int, optional=("t2",), domain: bool = False):
    t1, t2 = volumes_maps(size)
    inputs = [t1, t2, VOLUMES] if domain else [t1, t2]
    config = PredictorConfig(stages=STAGES, width=WIDTH, head_widths=HEAD, l2=L2, balance="none")
    model = build_family(Architecture("predictor", optional=tuple(optional), family_options=config), inputs, [AGE])
    return model.compile_for_training([AGE], TrainingSettings(optimizer="adam", learning_rate=LEARNING_RATE),
                                      jit_compile=False)


def mean_square(weights):
    return L2 * ops.mean(ops.square(weights))


def hand_stage(x, filters: int):
    skip = keras.layers.Conv3D(filters, 1, kernel_regularizer=mean_square)(x)
    y = keras.layers.Conv3D(filters, 3, padding="same", kernel_regularizer=mean_square)(x)
    y = keras.layers.Conv3D(filters, 3, padding="same", kernel_regularizer=mean_square)(keras.activations.gelu(y))
    y = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(keras.layers.Add()([y, skip]))
    return keras.layers.Dropout(0.1)(keras.layers.MaxPooling3D(2)(keras.layers.Activation("gelu")(y)))


def dense_gelu(x, width: int, dropout: float | None):
    x = keras.layers.Dense(width, kernel_regularizer=mean_square)(x)
    x = keras.layers.Activation("gelu")(keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x))
    return keras.layers.Dropout(dropout)(x) if dropout else x


def hand_predictor(size: int) -> keras.Model:
    """The same network in plain Keras (no ml4ge code): two volume inputs stacked as channels."""
    t1, t2 = keras.Input((size, size, size, 1)), keras.Input((size, size, size, 1))
    x = keras.layers.Concatenate()([t1, t2])
    for filters in STAGES:
        x = hand_stage(x, filters)
    x = dense_gelu(keras.layers.Flatten()(x), WIDTH, None)
    for width in HEAD:
        x = dense_gelu(x, width, 0.1)
    model = keras.Model([t1, t2], keras.layers.Dense(1, kernel_regularizer=mean_square)(x))
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="mse", jit_compile=False)
    return model


def trainable(model) -> int:
    return sum(math.prod(v.shape) for v in model.trainable_variables)


def alternate(runs: dict, steps: int) -> dict[str, list[float]]:
    """Seconds per ``train_on_batch`` of each ``{name: (model, x, y)}``, their steps alternating."""
    for model, x, y in runs.values():
        model.train_on_batch(x, y)  # traces the step
    times = {name: [] for name in runs}
    for _ in range(steps):
        for name, (model, x, y) in runs.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[name].append(time.perf_counter() - start)
    return times


def report(label: str, times: dict[str, list[float]], goal: str) -> None:
    median = {name: float(np.median(values)) for name, values in times.items()}
    first, second = list(median)
    parts = " | ".join(f"{name} median {median[name]:.3f} s/step (min {min(times[name]):.3f})" for name in median)
    print(f"{label}: {parts} | {first}/{second} {median[first] / median[second]:.3f} ({goal})", flush=True)


def throughput(args) -> None:
    size, rng = args.size, np.random.default_rng(0)
    factory, hand = factory_predictor(size), hand_predictor(size)
    assert trainable(factory) == trainable(hand), (trainable(factory), trainable(hand))  # the same network
    t1, t2 = (rng.normal(size=(args.batch, size, size, size, 1)).astype("float32") for _ in range(2))
    age = rng.uniform(45, 80, (args.batch, 1)).astype("float32")
    runs = {"factory": (factory, {"input_t1": t1, "input_t2": t2, "present_t2": np.ones((args.batch, 1), "float32")},
                        {"output_age": age}),
            "hand": (hand, [t1, t2], age)}
    report(f"throughput {size}^3 batch {args.batch}, {trainable(hand):,} trainable parameters, {args.steps} steps "
           "each", alternate(runs, args.steps), "goal <= 1.05")


def missing(args) -> None:
    size, rng = args.size, np.random.default_rng(1)
    model = factory_predictor(size, optional=("t2", "volumes"), domain=True)
    full = {"input_t1": rng.normal(size=(args.batch, size, size, size, 1)).astype("float32"),
            "input_t2": rng.normal(size=(args.batch, size, size, size, 1)).astype("float32"),
            "input_volumes": rng.normal(size=(args.batch, 4)).astype("float32"),
            "present_t2": np.ones((args.batch, 1), "float32"), "present_volumes": np.ones((args.batch, 1), "float32")}
    absent = np.arange(args.batch) < round(0.3 * args.batch)
    partial = dict(full, present_t2=np.float32(~absent)[:, None], present_volumes=np.float32(~absent)[:, None])
    partial["input_t2"] = full["input_t2"] * np.float32(~absent)[:, None, None, None, None]
    partial["input_volumes"] = full["input_volumes"] * np.float32(~absent)[:, None]
    age = {"output_age": rng.uniform(45, 80, (args.batch, 1)).astype("float32")}
    report(f"missing {size}^3 batch {args.batch} ({int(absent.sum())} rows without T2 and the domain), {args.steps} "
           "steps each", alternate({"missing_30pct": (model, partial, age), "full": (model, full, age)}, args.steps),
           "goal <= 1.0 within noise")


def precise_bn(args) -> None:
    """A recalibration batch (forward in training mode, dropout off) against a training step, alternating; and
    what 16 recalibration batches add to an epoch of ``--epoch_steps`` steps (the demo's: 240 subjects, batch 8)."""
    from ml4ge.precise_bn import recalibrate_batchnorm

    size, rng = args.size, np.random.default_rng(2)
    model = factory_predictor(size)
    x = {"input_t1": rng.normal(size=(args.batch, size, size, size, 1)).astype("float32"),
         "input_t2": rng.normal(size=(args.batch, size, size, size, 1)).astype("float32"),
         "present_t2": np.ones((args.batch, 1), "float32")}
    age = {"output_age": rng.uniform(45, 80, (args.batch, 1)).astype("float32")}
    model.train_on_batch(x, age)
    recalibrate_batchnorm(model, [(x,)])
    times = {"train_step": [], "recalibration_batch": []}
    for _ in range(args.steps):
        start = time.perf_counter()
        model.train_on_batch(x, age)
        times["train_step"].append(time.perf_counter() - start)
        start = time.perf_counter()
        recalibrate_batchnorm(model, [(x,)])
        times["recalibration_batch"].append(time.perf_counter() - start)
    report(f"precise_bn {size}^3 batch {args.batch}, {args.steps} steps each", times, "forward only: about 1/3")
    ratio = np.median(times["recalibration_batch"]) / np.median(times["train_step"])
    print(f"precise_bn: 16 recalibration batches add {16 * ratio / args.epoch_steps:.1%} to an epoch of "
          f"{args.epoch_steps} training steps (reading the samples not counted)", flush=True)


PARTS = {"throughput": throughput, "missing": missing, "precise_bn": precise_bn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="edge of the cubic volumes (the seed's 64)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--epoch_steps", type=int, default=30, help="precise_bn: training steps per epoch")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    args = parser.parse_args()
    for part in args.parts:
        PARTS[part](args)


if __name__ == "__main__":
    main()
