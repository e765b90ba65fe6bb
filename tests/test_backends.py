"""Layers and losses run on other Keras backends: a factory-built pair model trains two steps under JAX and PyTorch.

Keras picks its backend when it is first imported, so each backend runs in a fresh subprocess.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]

# A T1/T2 pair model built by the factory: two tiny 2-D conv encoders tied by a contrastive PairLoss, DropFuse
# fusion, two conv decoders trained with the masked MSE. Prints the epoch logs as JSON on the last line.
PAIR_MODEL_SCRIPT = """
import json
import keras
import numpy as np
from ml4ge.models.config import ConvConfig, DenseConfig, ModelConfig, PairConfig
from ml4ge.models.factory import build_model, compile_model
from ml4ge.tensormap import TensorMap

keras.utils.set_random_seed(0)
t1, t2 = (TensorMap(name, (8, 8, 1), group="mri", mask="nonzero") for name in ("t1", "t2"))
config = ModelConfig(
    conv=ConvConfig(layers=(4,), stages=(4,), block_size=1, activation="relu"),
    dense=DenseConfig(widths=(6,)),
    pair=PairConfig(loss="contrastive", weight=0.1, merge="dropout"),
)
parts = build_model([t1, t2], [t1, t2], ["conv_encode"], ["pair"], ["conv_decode"], config)
model = compile_model(parts, [t1, t2], learning_rate=1e-3)
rng = np.random.default_rng(0)
x = {tm.input_name: rng.normal(size=(6, *tm.shape)).astype("float32") for tm in (t1, t2)}
for volume in x.values():
    volume[:, :2] = 0.0  # background outside the nonzero mask
y = {tm.output_name: tm.target(x[tm.input_name], (x[tm.input_name] != 0).astype("float32")) for tm in (t1, t2)}
history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # two steps: 4 samples, then a partial batch of 2
predictions = [model.predict(x, verbose=0)[t1.output_name] for _ in range(2)]
print(json.dumps({
    "backend": keras.backend.backend(),
    "loss": history.history["loss"],
    "reconstruction_loss": sum(history.history[f"{tm.output_name}_loss"][0] for tm in (t1, t2)),
    "pair_loss": history.history.get("contrastive_pair_loss"),
    "deterministic_inference": bool(np.array_equal(*predictions)),
}))
"""


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
