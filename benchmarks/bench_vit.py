"""UDIP-ViT autoencoder: training throughput against the same ViT written by hand, and cost against kept tokens.

Two parts, each a training step (forward, backward, AdamW update) on random volumes, no XLA:

* ``throughput``: the factory-built ViT of a preset (``udip_vit_small`` by default, on the demo's 64x80x64) and the
  same network written by hand as a plain ``keras.Model`` (same layers, weights and attention op, no ml4ge code),
  their steps alternating one by one so that both see the same load; the ratio factory/hand should be within 5 %.
* ``tokens``: the factory model keeping 25 %, 42 % (about the brain share of an MNI grid), 50 % and 100 % of the
  tokens (those nearest the grid centre), one fresh process per fraction so that its peak memory is its own:
  step time, and peak memory (resident set on CPU, the allocator's peak on a GPU). The 42 % step should cost at
  most 60 % of the 100 % step.

Run: ``python benchmarks/bench_vit.py [--preset udip_vit_small] [--shape 64 80 64] [--batch 4] [--steps 5]
[--precision float32|mixed_bfloat16] [--parts throughput tokens]``. The full-size preset
(``--preset udip_vit --shape 182 218 182 --batch 2``) is for a GPU. Figures are measured under whatever
contention there was; read the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from ml4ge.models.config import ModelConfig  # noqa: E402
from ml4ge.models.factory import build_model, compile_model  # noqa: E402
from ml4ge.models.presets import PRESETS  # noqa: E402
from ml4ge.models.vit_layers import INIT_STD, NORM_EPSILON, sincos_codes  # noqa: E402
from ml4ge.models.vit_loss import PatchMaskedMeanSquaredError  # noqa: E402
from ml4ge.tensormap import TensorMap  # noqa: E402

FRACTIONS = (0.25, 0.42, 0.5, 1.0)


def central_tokens(grid, fraction: float) -> list[int]:
    """The ``fraction`` of the tokens of ``grid`` nearest its centre (a brain-like blob), sorted."""
    centres = np.stack(np.unravel_index(np.arange(math.prod(grid)), grid), axis=1) - (np.array(grid) - 1) / 2
    order = np.argsort((centres / np.array(grid)) ** 2 @ np.ones(len(grid)), kind="stable")
    return sorted(order[: max(1, round(fraction * len(order)))].tolist())


def factory_vit(preset: str, shape, kept):
    """The ``autoencoder``-family ViT of ``preset`` keeping ``kept`` tokens, compiled with the preset's optimizer
    and the patch-masked MSE."""
    chosen = PRESETS.get(preset)("t1")
    config: ModelConfig = chosen.model
    tm = TensorMap("t1", (*shape, 1), mask="nonzero", loss=PatchMaskedMeanSquaredError(config.vit.patch))
    config = config.with_changes(vit=config.vit.with_kept(tm.name, kept))
    model = build_model([tm], [tm], ["vit_encode"], [], ["vit_decode"], config)
    compile_model(model, [tm], settings=chosen.training, jit_compile=False)
    return model, tm, config.vit


class HandBlock(keras.layers.Layer):
    """A pre-LN transformer block written out plainly (what a user would write without ml4ge)."""

    def __init__(self, width, heads, index, **kwargs):
        super().__init__(**kwargs)
        init = keras.initializers.TruncatedNormal(stddev=INIT_STD)
        out = keras.initializers.TruncatedNormal(stddev=INIT_STD / math.sqrt(2 * index))
        self.width, self.heads = width, heads
        self.ln1 = keras.layers.LayerNormalization(epsilon=NORM_EPSILON)
        self.ln2 = keras.layers.LayerNormalization(epsilon=NORM_EPSILON)
        self.qkv = keras.layers.Dense(3 * width, kernel_initializer=init)
        self.proj = keras.layers.Dense(width, kernel_initializer=out)
        self.fc1 = keras.layers.Dense(4 * width, kernel_initializer=init, activation=keras.activations.gelu)
        self.fc2 = keras.layers.Dense(width, kernel_initializer=out)

    def call(self, x):
        batch, tokens = ops.shape(x)[0], x.shape[1]
        qkv = ops.reshape(self.qkv(self.ln1(x)), (batch, tokens, 3, self.heads, self.width // self.heads))
        attended = ops.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
        x = x + self.proj(ops.reshape(attended, (batch, tokens, self.width)))
        return x + self.fc2(self.fc1(self.ln2(x)))


class HandViT(keras.Model):
    """The same ViT autoencoder as a plain subclassed ``keras.Model``: ops.pad, Conv3D patches, take, blocks."""

    def __init__(self, vit, shape, kept, **kwargs):
        super().__init__(**kwargs)
        init = keras.initializers.TruncatedNormal(stddev=INIT_STD)
        self.patch, self.shape_ = vit.patch_size(3), tuple(shape)
        self.grid = vit.grid(shape)
        self.kept = np.asarray(kept, "int32")
        source = np.full(math.prod(self.grid), len(kept), "int32")
        source[self.kept] = np.arange(len(kept))
        self.source = source
        self.codes = sincos_codes(self.grid, vit.width)[self.kept]
        self.decoder_codes = sincos_codes(self.grid, vit.decoder_width)[self.kept]
        self.embed = keras.layers.Conv3D(vit.width, self.patch, strides=self.patch, kernel_initializer=init)
        self.encoder = [HandBlock(vit.width, vit.heads, i + 1) for i in range(vit.depth)]
        self.norm = keras.layers.LayerNormalization(epsilon=NORM_EPSILON)
        self.to_decoder = keras.layers.Dense(vit.decoder_width, kernel_initializer=init)
        self.decoder = [HandBlock(vit.decoder_width, vit.decoder_heads, i + 1) for i in range(vit.decoder_depth)]
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=NORM_EPSILON)
        self.head = keras.layers.Dense(math.prod(self.patch), kernel_initializer=init)

    def pads(self):
        return [(g * p - s) for g, p, s in zip(self.grid, self.patch, self.shape_)]

    def call(self, x):
        pads = self.pads()
        x = ops.pad(x, [(0, 0), *((e // 2, e - e // 2) for e in pads), (0, 0)])
        tokens = ops.reshape(self.embed(x), (-1, math.prod(self.grid), self.codes.shape[1]))
        tokens = ops.take(tokens, self.kept, axis=1) + ops.cast(self.codes[None], tokens.dtype)
        for block in self.encoder:
            tokens = block(tokens)
        latent = ops.mean(self.norm(tokens), axis=1)
        first = self.to_decoder(latent)[:, None]
        codes = ops.cast(self.decoder_codes[None], first.dtype)
        tokens = ops.concatenate([first, ops.broadcast_to(codes, (ops.shape(first)[0], *self.decoder_codes.shape))], 1)
        for block in self.decoder:
            tokens = block(tokens)
        patches = self.head(self.decoder_norm(tokens)[:, 1:])
        full = ops.take(ops.concatenate([patches, ops.zeros_like(patches[:, :1])], 1), self.source, axis=1)
        g, p = self.grid, self.patch
        volume = ops.reshape(ops.transpose(ops.reshape(full, (-1, *g, *p, 1)), (0, 1, 4, 2, 5, 3, 6, 7)),
                             (-1, *(a * b for a, b in zip(g, p)), 1))
        starts = [e // 2 for e in pads]
        return volume[:, starts[0]:starts[0] + self.shape_[0], starts[1]:starts[1] + self.shape_[1],
                      starts[2]:starts[2] + self.shape_[2]]


def batch_data(shape, batch: int):
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(batch, *shape, 1)).astype("float32")
    return volume, np.concatenate([volume, (rng.random(volume.shape) > 0.5).astype("float32")], axis=-1)


def step_seconds(model, x, y) -> float:
    start = time.perf_counter()
    model.train_on_batch(x, y)
    return time.perf_counter() - start


def throughput(args) -> None:
    """Factory model and hand-written model, steps alternating; prints best and median s/step and their ratio."""
    probe = PRESETS.get(args.preset)("t1").model.vit
    kept = central_tokens(probe.grid(tuple(args.shape)), 0.42)
    factory, tm, vit = factory_vit(args.preset, args.shape, kept)
    hand = HandViT(vit, args.shape, kept)
    volume, target = batch_data(args.shape, args.batch)
    hand.compile(keras.optimizers.AdamW(1e-3), loss=PatchMaskedMeanSquaredError(vit.patch), jit_compile=False)
    hand(volume[:1])
    assert factory.count_params() == hand.count_params(), (factory.count_params(), hand.count_params())
    runs = {"factory": (factory, {tm.input_name: volume}, {tm.output_name: target}), "hand": (hand, volume, target)}
    times = {name: [] for name in runs}
    for model, x, y in runs.values():
        model.train_on_batch(x, y)  # traces the step
    for _ in range(args.steps):
        for name, (model, x, y) in runs.items():
            times[name].append(step_seconds(model, x, y))
    best = {name: min(values) for name, values in times.items()}
    median = {name: float(np.median(values)) for name, values in times.items()}
    print(f"throughput {args.preset} {'x'.join(map(str, args.shape))} batch {args.batch}, {len(kept)} of "
          f"{math.prod(vit.grid(tuple(args.shape)))} tokens, {factory.count_params():,} parameters: factory "
          f"{best['factory']:.3f} s/step (median {median['factory']:.3f}; {args.batch / best['factory']:.1f} "
          f"samples/s) | hand {best['hand']:.3f} (median {median['hand']:.3f}) | factory/hand "
          f"{best['factory'] / best['hand']:.3f} (medians {median['factory'] / median['hand']:.3f})", flush=True)


class ResidentPeak(threading.Thread):
    """Samples this process's resident set every millisecond while running: ``peak`` MiB. TensorFlow's CPU
    allocations are not seen by tracemalloc, and the import of TensorFlow sets a ``ru_maxrss`` that small models
    never pass, so the growth over the resident set before the first step is what a step costs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = self.current(), True

    @staticmethod
    def current() -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def run(self):
        while self.running:
            self.peak = max(self.peak, self.current())
            time.sleep(0.001)

    def stop(self) -> float:
        self.running = False
        self.join()
        return self.peak


def one_fraction(args) -> dict:
    """Run in a fresh process: step time and peak memory of the factory model keeping ``args.fraction``."""
    probe = PRESETS.get(args.preset)("t1").model.vit
    grid = probe.grid(tuple(args.shape))
    kept = central_tokens(grid, args.fraction)
    model, tm, _ = factory_vit(args.preset, args.shape, kept)
    volume, target = batch_data(args.shape, args.batch)
    x, y = {tm.input_name: volume}, {tm.output_name: target}
    before = ResidentPeak.current()
    sampler = ResidentPeak()
    sampler.start()
    model.train_on_batch(x, y)
    times = [step_seconds(model, x, y) for _ in range(args.steps)]
    result = {"fraction": args.fraction, "tokens": len(kept), "grid": math.prod(grid), "best": min(times),
              "median": float(np.median(times)), "rss_mib": sampler.stop(), "rss_before_mib": before}
    try:
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            result["gpu_peak_mib"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except (ImportError, ValueError):  # another backend, or no GPU memory statistics: the resident set only
        pass
    return result


def tokens(args) -> None:
    """One process per fraction; prints each, then the ratios to the all-tokens step."""
    results = []
    for fraction in FRACTIONS:
        command = [sys.executable, __file__, "--one_fraction", str(fraction), "--preset", args.preset, "--shape",
                   *map(str, args.shape), "--batch", str(args.batch), "--steps", str(args.steps), "--precision",
                   args.precision]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"fraction {fraction} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    full = results[-1]
    for r in results:
        memory = f"GPU peak {r['gpu_peak_mib']:.0f} MiB" if "gpu_peak_mib" in r else (
            f"peak RSS +{r['rss_mib'] - r['rss_before_mib']:.0f} MiB over the built model "
            f"({r['rss_mib']:.0f} MiB)")
        print(f"tokens {r['fraction']:.0%} ({r['tokens']} of {r['grid']}): {r['best']:.3f} s/step (median "
              f"{r['median']:.3f}; {args.batch / r['best']:.1f} samples/s) = {r['best'] / full['best']:.2f} of all "
              f"tokens | {memory}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="udip_vit_small")
    parser.add_argument("--shape", nargs=3, type=int, default=[64, 80, 64])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="Timed steps (alternating in the throughput part).")
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"))
    parser.add_argument("--parts", nargs="*", default=["throughput", "tokens"], choices=("throughput", "tokens"))
    parser.add_argument("--one_fraction", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    keras.mixed_precision.set_global_policy(args.precision)
    if args.one_fraction is not None:
        args.fraction = args.one_fraction
        print(json.dumps(one_fraction(args)))
        return
    print(f"Keras {keras.__version__} ({keras.backend.backend()}), precision {args.precision}", flush=True)
    for part in args.parts:
        {"throughput": throughput, "tokens": tokens}[part](args)


if __name__ == "__main__":
    main()
