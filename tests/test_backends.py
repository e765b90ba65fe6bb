"""Layers and losses run on other Keras backends: a small pair model trains two steps under JAX and PyTorch.

Keras picks its backend when it is first imported, so each backend runs in a fresh subprocess.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]

# Two tiny 2-D conv encoders tied by a contrastive PairLoss, fused by DropFuse, and two conv decoders trained with
# the masked MSE. Prints the per-step losses and the pair-loss metric as JSON on the last line.
PAIR_MODEL_SCRIPT = textwrap.dedent(
    """
    import json
    import keras
    import numpy as np
    from ml4ge.models.layers import DropFuse, PairLoss
    from ml4ge.models.losses import MaskedMeanSquaredError

    keras.utils.set_random_seed(0)

    def encoder(name):
        x = keras.Input((8, 8, 1), name=name)
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
        h = keras.layers.MaxPooling2D(2)(h)
        return x, keras.layers.Dense(6)(keras.layers.Flatten()(h))

    def decoder(latent, name):
        h = keras.layers.Reshape((4, 4, 2))(keras.layers.Dense(32, activation="relu")(latent))
        h = keras.layers.UpSampling2D(2)(h)
        return keras.layers.Conv2D(1, 3, padding="same", name=name)(h)

    (t1, e1), (t2, e2) = encoder("t1"), encoder("t2")
    e1, e2 = PairLoss("contrastive", weight=0.1, name="pair")([e1, e2])
    fused = DropFuse(seed=0)([e1, e2])
    model = keras.Model([t1, t2], [decoder(fused, "out_t1"), decoder(fused, "out_t2")])
    model.compile(keras.optimizers.Adam(1e-3), loss=[MaskedMeanSquaredError(), MaskedMeanSquaredError()])

    rng = np.random.default_rng(0)
    x = [rng.normal(size=(6, 8, 8, 1)).astype("float32") for _ in range(2)]
    masks = [(np.abs(v) > 0.3).astype("float32") for v in x]
    y = [np.concatenate([v, m], -1) for v, m in zip(x, masks)]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # two steps: 4 samples, then a partial batch of 2
    predictions = [keras.ops.convert_to_numpy(model.predict(x, verbose=0)[0]) for _ in range(2)]
    print(json.dumps({
        "backend": keras.backend.backend(),
        "loss": history.history["loss"],
        "reconstruction_loss": history.history["out_t1_loss"][0] + history.history["out_t2_loss"][0],
        "pair_loss": history.history.get("contrastive_pair_loss"),
        "deterministic_inference": bool(np.array_equal(*predictions)),
    }))
    """
)


def _run_with_backend(backend: str, script: str) -> dict:
    """Run ``script`` in a fresh interpreter with ``KERAS_BACKEND=backend``; the JSON its last line prints."""
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPOSITORY), TF_CPP_MIN_LOG_LEVEL="3",
               JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    completed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, f"{backend} run failed:\n{completed.stderr[-4000:]}"
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("backend, package", [("jax", "jax"), ("torch", "torch")])
def test_pair_model_trains_two_steps_on_another_backend(backend, package):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"the {backend} backend is not installed")
    result = _run_with_backend(backend, PAIR_MODEL_SCRIPT)
    assert result["backend"] == backend
    assert len(result["loss"]) == 1 and _finite(result["loss"][0]) and result["loss"][0] > 0
    pair_share = result["loss"][0] - result["reconstruction_loss"]
    assert 0.01 < pair_share < 1.0  # 0.1 x InfoNCE (about log 4 for a batch of 4 at the start) is in the total
    if backend == "jax":  # Keras' JAX trainer cannot update metrics inside Layer.call (see PairLoss)
        assert result["pair_loss"] is None
    else:
        assert _finite(result["pair_loss"][0]) and result["pair_loss"][0] > 0
    assert result["deterministic_inference"]


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")
