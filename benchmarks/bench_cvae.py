"""Contrastive VAE (``--family cvae``): a training step against the same step written by hand, the seed's size.

Three parts, on random volumes, no XLA. The network is the seed's (REFERENCE_SEEDS.md C.3) in ml4ge's blocks: each
encoder 4 x [pool 2, Conv3D k3, BatchNorm, ReLU] with 32, 64, 128, 256 channels (the seed's stride-2 convolutions:
same widths, same output grid), flatten, Dense 128, ReLU, Gaussian heads of ``s`` and ``z`` units; the decoder the
mirror (Dense to the bottleneck, per stage Conv3D + BN + ReLU and a stride-2 transposed convolution, a 1x1 output).

* ``throughput``: one cVAE training step (salient encoder on the target half, background encoder on every row,
  decoder on ``[s, z]`` and ``[0, z]``, the encoders' and decoder's Adam step with the TC term, then the
  discriminator's own Adam step) of the factory-built ``cvae`` and of the same computation written by hand as a
  plain ``keras.Model`` with its own ``train_step`` (no ml4ge code), their steps alternating one by one so both see
  the same load; medians and their ratio (goal: factory/hand within 1.10).
* ``seed``: the model at the seed's size (160x192x160, s = z = 32) built shape-only (no step): parameters per part.
* ``memory``: the peak resident memory of a step (batch ``--batch`` = half target, half background), in a fresh
  process so that the peak is the step's own (TensorFlow's CPU allocations are not seen by tracemalloc).

Run: ``python benchmarks/bench_cvae.py [--shape 64 80 64] [--batch 8] [--steps 7] [--parts throughput seed
memory]``. Figures are measured under whatever contention there was; read the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_vit import ResidentPeak  # noqa: E402
from keras import ops  # noqa: E402

from ml4ge.models.config import ConvConfig, DenseConfig, ModelConfig  # noqa: E402
from ml4ge.models.factory import Architecture, build_family, compile_model  # noqa: E402
from ml4ge.models.vae_config import VAEConfig  # noqa: E402
from ml4ge.tensormap import TensorMap  # noqa: E402

STAGES, EMBEDDING, POOL = (32, 64, 128, 256), 128, (2, 2, 2)
SEED_SHAPE, SEED_BATCH = (160, 192, 160), 20  # 10 target + 10 background
LEARNING_RATE, GAMMA = 3e-4, 1.0


def seed_config() -> ModelConfig:
    conv = ConvConfig(layers=(), stages=STAGES, block_size=1, kernel_z=(3,), pool=POOL, activation="relu",
                      normalize="batch_norm", upsample="transpose")
    return ModelConfig(conv=conv, dense=DenseConfig((EMBEDDING,), activation="relu"))


def factory_cvae(shape, size: int = 32, compiled: bool = True):
    """The ``cvae`` family with the seed's encoder, ``s = z = size``, compiled with Adam (no XLA)."""
    tm = TensorMap("t1", (*shape, 1))
    architecture = Architecture("cvae", ("conv_encode",), (), ("conv_decode",), seed_config(), (),
                                VAEConfig(gamma=GAMMA, salient_size=size, background_size=size))
    model = build_family(architecture, [tm], [tm])
    if compiled:
        compile_model(model, [tm], learning_rate=LEARNING_RATE, jit_compile=False)
    return model, tm


def bn_relu(x):
    return keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x))


def hand_encoder(shape, size: int) -> keras.Model:
    """Input -> [pool, conv, BN, ReLU] x 4 -> flatten -> Dense 128 -> ReLU -> (mean, log-variance)."""
    inputs = x = keras.Input((*shape, 1))
    for width in STAGES:
        x = bn_relu(keras.layers.Conv3D(width, 3, padding="same")(keras.layers.MaxPooling3D(POOL)(x)))
    hidden = keras.layers.ReLU()(keras.layers.Dense(EMBEDDING)(keras.layers.Flatten()(x)))
    return keras.Model(inputs, [keras.layers.Dense(size)(hidden), keras.layers.Dense(size)(hidden)])


def hand_decoder(shape, latent: int) -> keras.Model:
    """[s, z] -> Dense to the bottleneck -> per stage (deepest first) conv, BN, ReLU, transposed conv -> 1x1 conv."""
    widths = (1, *STAGES)  # the channels entering each stage, then leaving the last
    bottleneck = (*(s // 2 ** len(STAGES) for s in shape), widths[-1])
    inputs = keras.Input((latent,))
    x = keras.layers.Reshape(bottleneck)(keras.layers.Dense(math.prod(bottleneck))(inputs))
    for stage in reversed(range(len(STAGES))):
        x = bn_relu(keras.layers.Conv3D(widths[stage], 3, padding="same")(x))
        x = keras.layers.Conv3DTranspose(widths[stage], POOL, strides=POOL)(x)
    return keras.Model(inputs, keras.layers.Conv3D(1, 1)(x))


class HandCVAE(keras.Model):
    """The cVAE step as a user would write it in plain Keras: two encoders, a decoder, a discriminator, two Adams."""

    def __init__(self, shape, size: int, alpha: float, **kwargs):
        super().__init__(**kwargs)
        self.salient, self.background = hand_encoder(shape, size), hand_encoder(shape, size)
        self.decoder = hand_decoder(shape, 2 * size)
        self.discriminator = keras.Sequential([keras.Input((2 * size,)), keras.layers.Dense(2 * size, "relu"),
                                               keras.layers.Dense(1)])
        self.alpha, self.noise = alpha, keras.random.SeedGenerator(0)
        self.trackers = [keras.metrics.Mean(name=name) for name in ("loss", "reconstruction_loss", "kl_loss",
                                                                     "tc_loss", "discriminator_loss")]
        self.built = True  # its parts are built functional models

    def build_optimizers(self):
        self.optimizer = keras.optimizers.Adam(LEARNING_RATE)
        self.critic_optimizer = keras.optimizers.Adam(LEARNING_RATE)
        self.optimizer.build(self.autoencoder_weights())
        self.critic_optimizer.build(self.discriminator.trainable_variables)

    def autoencoder_weights(self):
        return [*self.salient.trainable_variables, *self.background.trainable_variables,
                *self.decoder.trainable_variables]

    def call(self, x, training=False):
        mean, _ = self.salient(x, training=training)
        return mean

    def sample(self, mean, log_var):
        return mean + ops.exp(0.5 * log_var) * keras.random.normal(ops.shape(mean), seed=self.noise)

    @staticmethod
    def kl(mean, log_var):
        return ops.mean(-0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1))

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        n = ops.shape(x)[0] // 2
        with tf.GradientTape() as tape:
            s_mean, s_log_var = self.salient(x[:n], training=True)
            z_mean, z_log_var = self.background(x, training=True)
            s, z = self.sample(s_mean, s_log_var), self.sample(z_mean, z_log_var)
            codes = ops.concatenate([ops.concatenate([s, ops.zeros_like(s)], axis=0), z], axis=-1)
            reconstruction = ops.mean(ops.square(y - self.decoder(codes, training=True)))
            kl = self.kl(s_mean, s_log_var) + self.kl(z_mean[:n], z_log_var[:n]) + self.kl(z_mean[n:], z_log_var[n:])
            joint = ops.concatenate([s, z[:n]], axis=-1)
            tc = ops.mean(self.discriminator(joint, training=False))
            loss = self.alpha * reconstruction + kl + GAMMA * tc
        weights = self.autoencoder_weights()
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        half = n // 2
        order = ops.concatenate([ops.arange(0, n % 2), ops.arange(n % 2 + half, n), ops.arange(n % 2, n % 2 + half)])
        marginals = ops.concatenate([s, ops.take(z[:n], order, axis=0)], axis=-1)
        with tf.GradientTape() as tape:
            joint_logits = self.discriminator(ops.stop_gradient(joint), training=True)
            marginal_logits = self.discriminator(ops.stop_gradient(marginals), training=True)
            critic = ops.mean(ops.softplus(-joint_logits)) + ops.mean(ops.softplus(marginal_logits))
        weights = self.discriminator.trainable_variables
        self.critic_optimizer.apply_gradients(zip(tape.gradient(critic, weights), weights))
        for tracker, value in zip(self.trackers, (loss, reconstruction, kl, tc, critic)):
            tracker.update_state(value)
        return {tracker.name: tracker.result() for tracker in self.trackers}


def batch_data(shape, batch: int):
    return np.random.default_rng(0).normal(size=(batch, *shape, 1)).astype("float32")


def both(shape, batch: int):
    """``{name: (model, x, y)}`` for the factory cvae and the hand-written one, with equal parameter counts."""
    factory, tm = factory_cvae(shape)
    hand = HandCVAE(shape, 32, factory.alpha)
    hand.build_optimizers()
    hand.compile(optimizer=hand.optimizer, jit_compile=False)
    trained = [sum(math.prod(v.shape) for v in model.trainable_variables) for model in (factory, hand)]
    assert trained[0] == trained[1], trained  # the same network (factory.count_params() also counts its beta)
    volume = batch_data(shape, batch)
    return {"factory": (factory, {tm.input_name: volume}, {tm.output_name: volume}), "hand": (hand, volume, volume)}


def throughput(args) -> None:
    """Factory and hand-written steps alternating; prints their medians and the ratio."""
    runs = both(tuple(args.shape), args.batch)
    for model, x, y in runs.values():
        model.train_on_batch(x, y)  # traces the step
    times = {name: [] for name in runs}
    for _ in range(args.steps):
        for name, (model, x, y) in runs.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(values)) for name, values in times.items()}
    factory = runs["factory"][0]
    print(f"throughput cvae {'x'.join(map(str, args.shape))} batch {args.batch // 2}+{args.batch // 2}, "
          f"{factory.count_params():,} parameters, {args.steps} steps each: factory median {median['factory']:.3f} "
          f"s/step (min {min(times['factory']):.3f}) | hand median {median['hand']:.3f} (min {min(times['hand']):.3f})"
          f" | factory/hand {median['factory'] / median['hand']:.3f} (goal <= 1.10)", flush=True)


def part_counts(model) -> dict[str, int]:
    """Parameters of each part: encoders with their heads, decoder, discriminator."""
    counts = {"total": model.count_params(), "discriminator": model.discriminator.count_params(),
              "decoder": sum(d.count_params() for d in model.decoders.values())}
    for prefix in ("salient_", "background_"):
        counts[f"{prefix}encoder"] = sum(layer.count_params() for layer in model.layers
                                         if layer.name.startswith((f"encode_{prefix}", prefix)))
    return counts


def seed_size(args) -> None:
    """The model at 160x192x160, s = z = 32, built shape-only: parameters per part."""
    model, _ = factory_cvae(SEED_SHAPE, compiled=False)
    counts = part_counts(model)
    print(f"seed size {'x'.join(map(str, SEED_SHAPE))}, s = z = 32 (batch 10 + 10 not run): "
          + ", ".join(f"{name} {value:,}" for name, value in counts.items())
          + " | seed's salient encoder about 40.5 M (torchinfo)", flush=True)


def one_step_memory(args) -> dict:
    """Run in a fresh process: the resident-set growth over a training step of the factory cvae."""
    model, tm = factory_cvae(tuple(args.shape))
    volume = batch_data(tuple(args.shape), args.batch)
    x, y = {tm.input_name: volume}, {tm.output_name: volume}
    before = ResidentPeak.current()
    watcher = ResidentPeak()
    watcher.start()
    start = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - start
    start = time.perf_counter()
    model.train_on_batch(x, y)
    step = time.perf_counter() - start
    peak = watcher.stop()
    return {"shape": list(args.shape), "batch": args.batch, "parameters": model.count_params(),
            "before_mib": before, "peak_mib": peak, "step_growth_mib": peak - before, "first_step_s": first,
            "step_s": step}


def step_memory(shape, batch: int) -> dict:
    """:func:`one_step_memory` in a fresh process."""
    command = [sys.executable, __file__, "--one_step_memory", "--shape", *map(str, shape), "--batch", str(batch)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def memory(args) -> None:
    """The peak memory of a step at ``--shape`` with ``--batch`` and half of it, each in a fresh process; their
    difference per sample, scaled by voxels, estimates the seed size's activations (parameters and Adam aside)."""
    small, large = (step_memory(args.shape, b) for b in (max(2, args.batch // 4 * 2), args.batch))
    for result in (small, large):
        print(f"memory cvae {'x'.join(map(str, result['shape']))} batch {result['batch'] // 2}+"
              f"{result['batch'] // 2}: peak resident {result['peak_mib']:.0f} MiB, {result['step_growth_mib']:.0f}"
              f" MiB over the {result['before_mib']:.0f} MiB before the first step (model and optimizers built; the "
              f"first step traces); step {result['step_s']:.2f} s (first {result['first_step_s']:.2f} s)", flush=True)
    if large["batch"] > small["batch"]:
        per_sample = (large["peak_mib"] - small["peak_mib"]) / (large["batch"] - small["batch"])
        scale = math.prod(SEED_SHAPE) / math.prod(args.shape)
        parameters = factory_cvae(SEED_SHAPE, compiled=False)[0].count_params()
        print(f"memory per sample {per_sample:.1f} MiB at {'x'.join(map(str, args.shape))}; at 160x192x160 "
              f"with 10 + 10 about {per_sample * scale * SEED_BATCH / 1024:.1f} GiB of activations plus "
              f"{parameters * 16 / 2**30:.1f} GiB of weights, gradients and Adam moments (a linear estimate)",
              flush=True)


PARTS = {"throughput": throughput, "seed": seed_size, "memory": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 80, 64])
    parser.add_argument("--batch", type=int, default=8, help="rows per batch: half target, half background")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--one_step_memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if any(s % 2 ** len(STAGES) for s in args.shape) or args.batch < 2 or args.batch % 2:
        parser.error(f"--shape must be multiples of {2 ** len(STAGES)} and --batch even, at least 2.")
    if args.one_step_memory:
        print(json.dumps(one_step_memory(args)))
        return
    for part in args.parts:
        PARTS[part](args)


if __name__ == "__main__":
    main()
