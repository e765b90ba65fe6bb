"""Shared by the recipe tests: a user TensorMap module with tiny maps, a synthetic cohort, tiny model flags."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MAPS_MODULE = textwrap.dedent("""
    from ml4ge.normalizers import ZScore, brain_zscore
    from ml4ge.tensormap import TensorMap

    t1 = TensorMap("t1_tiny", (8, 8, 8, 1), group="ukb_brain_mri", dataset="T1", normalization=brain_zscore(),
                   mask="nonzero")
    t2 = TensorMap("t2_tiny", (8, 8, 8, 1), group="ukb_brain_mri", dataset="T2", normalization=brain_zscore(),
                   mask="nonzero")
    age = TensorMap("age_tiny", (1,), group="phenotypes", normalization=ZScore(50, 10))
""")

# A model family of the tests' own, loaded by --family <package>.families.AdversarialAutoencoder. It uses every
# training hook: its own train_step (two optimizer steps per batch), a compute_loss with an extra term, a second
# optimizer (the discriminator's) and a callback of its own (a per-epoch weight ramp, logged).
FAMILY_MODULE = textwrap.dedent("""
    import math

    import keras
    import tensorflow as tf
    from keras import ops

    from ml4ge.models.family import FamilyModel, map_from_spec, map_spec


    class AdversaryRamp(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.model.adversary_weight.assign(min(1.0, 0.5 * epoch))

        def on_epoch_end(self, epoch, logs=None):
            logs["adversary_weight"] = float(self.model.adversary_weight.numpy())


    @keras.saving.register_keras_serializable(package="ml4ge_tests")
    class AdversarialAutoencoder(FamilyModel):
        family = "adversarial_autoencoder"

        @classmethod
        def from_architecture(cls, architecture, input_tmaps, output_tmaps):
            return cls({"family": cls.family, "inputs": [map_spec(input_tmaps[0])],
                        "outputs": [map_spec(output_tmaps[0])]})

        def __init__(self, spec, **kwargs):
            source, target = map_from_spec(spec["inputs"][0]), map_from_spec(spec["outputs"][0])
            inputs = keras.Input(source.shape, name=source.input_name)
            latent = keras.layers.Dense(4, name="latent")(keras.layers.Flatten(name="flatten")(inputs))
            decoded = keras.layers.Dense(math.prod(target.shape), name="decode")(latent)
            outputs = keras.layers.Reshape(target.shape, name="reshape")(decoded)
            super().__init__(inputs={source.input_name: inputs}, outputs={target.output_name: outputs}, **kwargs)
            self.set_spec(spec)
            self.encoder = keras.Model(inputs, latent, name="encoder")
            self.discriminator = keras.Sequential(
                [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)],
                name="discriminator")
            self.adversary_weight = keras.Variable(0.0, trainable=False, name="adversary_weight")
            self.discriminator_loss = keras.metrics.Mean(name="discriminator_loss")
            self.prior_seed = keras.random.SeedGenerator(0)  # its state variable exists before any tf.function

        def encode(self, inputs):
            tm = self.input_maps[0]
            return {tm.name: self.encoder(inputs[tm.input_name], training=False)}

        def training_callbacks(self, settings):
            return [AdversaryRamp()]

        def compile_for_training(self, output_tmaps, settings, jit_compile="auto", run_eagerly=False):
            super().compile_for_training(output_tmaps, settings, jit_compile, run_eagerly)
            self.discriminator_optimizer = keras.optimizers.Adam(1e-2)
            self.discriminator_optimizer.build(self.discriminator.trainable_variables)
            return self

        @property
        def metrics(self):
            return [*super().metrics, self.discriminator_loss]

        def _generator_variables(self):
            excluded = {id(v) for v in self.discriminator.trainable_variables}
            return [v for v in self.trainable_variables if id(v) not in excluded]

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            loss = super().compute_loss(x, y, y_pred, sample_weight, training)
            fooled = self.discriminator(self.encoder(x[self.input_maps[0].input_name], training=training))
            return loss + self.adversary_weight * ops.mean(ops.softplus(-fooled))

        def train_step(self, data):
            x, y = data[0], data[1]
            latent = self.encoder(x[self.input_maps[0].input_name], training=True)
            prior = keras.random.normal(ops.shape(latent), seed=self.prior_seed)
            with tf.GradientTape() as tape:
                critic = ops.mean(ops.softplus(-self.discriminator(prior))) + ops.mean(
                    ops.softplus(self.discriminator(latent)))
            variables = self.discriminator.trainable_variables
            self.discriminator_optimizer.apply_gradients(zip(tape.gradient(critic, variables), variables))
            self.discriminator_loss.update_state(critic)
            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self.compute_loss(x, y, y_pred, training=True)
            variables = self._generator_variables()
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return self.compute_metrics(x, y, y_pred)
""")

TINY_MODEL = ["--conv_layers", "4", "--dense_blocks", "8", "--block_size", "1", "--dense_layers", "16",
              "--num_workers", "0"]


def write_maps_package(root: Path, package: str) -> Path:
    """``<root>/<package>/brain.py`` holding t1, t2 and age, and ``families.py`` with a test model family; returns
    ``root`` (to put on sys.path)."""
    folder = root / package
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text("")
    (folder / "brain.py").write_text(MAPS_MODULE)
    (folder / "families.py").write_text(FAMILY_MODULE)
    return root


def write_cohort(root: Path, package: str, n: int, seed: int = 0) -> Path:
    """A cohort of ``n`` HD5 files with t1, t2 and age under ``root/tensors``."""
    import importlib

    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    maps = importlib.import_module(f"{package}.brain")
    from ml4ge.synthetic import write_cohort as write

    write(root / "tensors", [maps.t1, maps.t2, maps.age], n, seed=seed)
    return root / "tensors"


def subprocess_env(maps_root: Path, **extra) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(maps_root), os.environ.get("PYTHONPATH", "")])
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def backup_epoch(run: Path) -> int:
    """The epoch of a training run's backup (0 before the first one is committed)."""
    metadata = Path(run) / "checkpoints" / "backup" / "training_metadata.json"
    try:
        return json.loads(metadata.read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def sigkill_after_first_backup(argv: list[str], env: dict, run: Path, wait_s: float) -> int:
    """Start the training command ``argv``, SIGKILL it once its first epoch is backed up (or after ``wait_s``), and
    return the backed-up epoch it was killed at; asserts that the kill came before the run finished."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + wait_s
        while backup_epoch(run) < 1 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_after = backup_epoch(run)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "training finished before it could be killed"
    return killed_after
