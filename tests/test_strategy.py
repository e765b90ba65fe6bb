"""Distribution strategies: choice, mixed precision, global batch size, MirroredStrategy over two logical CPUs
and MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1.

Logical devices and TF_CONFIG must be set before TensorFlow initialises, so the distributed runs happen in
fresh subprocesses.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_default_strategy_float32_and_batch_split():
    from ml4ge import strategy

    default = strategy.make_strategy("default")
    assert default.num_replicas_in_sync == 1
    assert strategy.check_batch_size(8, default) == 8
    assert strategy.is_chief(default) and strategy.worker_index(default) == 0
    assert strategy.make_strategy("auto").num_replicas_in_sync == 1  # no TPU, no GPU here


def test_mixed_precision_is_bfloat16_on_cpu():
    import keras

    from ml4ge import strategy

    default = strategy.make_strategy("default")
    try:
        assert strategy.set_precision(True, default) == "mixed_bfloat16"
        assert keras.mixed_precision.global_policy().compute_dtype == "bfloat16"
    finally:
        assert strategy.set_precision(False, default) == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_unknown_and_unconfigured_strategies_fail_clearly(monkeypatch):
    from ml4ge import strategy
    from ml4ge.registry import UnknownNameError

    with pytest.raises(UnknownNameError, match="mirrored"):
        strategy.make_strategy("mirored")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        strategy.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        strategy.make_strategy("multi_worker")
    with pytest.raises(RuntimeError, match="no TPU"):
        strategy.make_strategy("tpu")


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from ml4ge import strategy
    mirrored = strategy.make_strategy("mirrored")
    per_replica = strategy.check_batch_size(8, mirrored)
    try:
        strategy.check_batch_size(7, mirrored)
        odd = "accepted"
    except ValueError as error:
        odd = str(error)
    seen = []
    class Batch(keras.layers.Layer):
        def call(self, x):
            seen.append(x.shape[0])
            return x
    with mirrored.scope():
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(1)(Batch()(inputs)))
        model.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(8)
    history = model.fit(data, epochs=2, verbose=0)
    kinds = sorted({type(v).__name__ for v in model.trainable_variables})
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "per_replica": per_replica, "odd": odd,
                      "traced_batches": sorted(set(s for s in seen if s)), "loss": history.history["loss"],
                      "variables": kinds}))
""")


def test_training_under_mirrored_strategy_on_two_logical_cpus(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["per_replica"] == 4
    assert "multiple of the 2 replicas" in result["odd"]
    assert result["traced_batches"] == [4]  # each replica sees half of the global batch of 8
    assert all(loss == loss for loss in result["loss"]) and len(result["loss"]) == 2


@pytest.mark.slow
def test_one_epoch_under_multi_worker_mirrored_strategy(tmp_path):
    from recipe_helpers import TINY_MODEL, subprocess_env, write_cohort, write_maps_package

    root = write_maps_package(tmp_path / "maps", "multi_worker_maps")
    tensors = write_cohort(root, "multi_worker_maps", 12, seed=7)
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    argv = [sys.executable, str(REPO / "recipes.py"), "--mode", "train", "--strategy", "multi_worker",
            "--tensors", str(tensors), "--output_folder", str(tmp_path / "runs"), "--id", "mw",
            "--tensormap_prefix", "multi_worker_maps", "--input_tensors", "brain.t1", "--output_tensors", "brain.t1",
            "--merge_blocks", "concat", "--batch_size", "4", "--epochs", "1", "--valid_ratio", "0.25",
            "--test_ratio", "0.25", *TINY_MODEL]
    workers = [subprocess.Popen(argv, env=subprocess_env(root, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}})), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        outputs = [w.communicate(timeout=150)[0] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, output in zip(workers, outputs):
        assert w.returncode == 0, output[-3000:]
    assert all("MultiWorkerMirroredStrategy with 2 replica(s)" in output for output in outputs)
    run = tmp_path / "runs" / "mw"
    assert (run / "mw.keras").is_file() and (run / "test_metrics.tsv").is_file()
    assert (run / "workers" / "worker_1" / "test_metrics.tsv").is_file()  # the other worker wrote aside
    import numpy as np
    import pandas as pd

    from ml4ge.models.artifacts import load_model

    logs = [pd.read_csv(folder / "training_log.csv") for folder in (run, run / "workers" / "worker_1")]
    assert list(logs[0]["epoch"]) == [0] and np.isfinite(logs[0][["loss", "val_loss"]].to_numpy()).all()
    pd.testing.assert_frame_equal(logs[0], logs[1])  # metrics are reduced over both workers, not per worker
    chief, other = (load_model(folder / "mw.keras") for folder in (run, run / "workers" / "worker_1"))
    for mine, theirs in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(mine, theirs)  # synchronous training: one set of weights


TWO_CPU_MAIN = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from ml4ge.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_train_recipe_under_mirrored_strategy_on_two_logical_cpus(tmp_path):
    from recipe_helpers import TINY_MODEL, subprocess_env, write_cohort, write_maps_package

    root = write_maps_package(tmp_path / "maps", "mirrored_maps")
    tensors = write_cohort(root, "mirrored_maps", 15, seed=5)  # train 9 = 4 + 4 + 1: a last row for 2 replicas
    script = tmp_path / "two_cpus.py"
    script.write_text(TWO_CPU_MAIN)
    argv = [sys.executable, str(script), "--mode", "train", "--strategy", "mirrored", "--tensors", str(tensors),
            "--output_folder", str(tmp_path / "runs"), "--id", "mirrored", "--tensormap_prefix", "mirrored_maps",
            "--input_tensors", "brain.t1", "brain.t2", "--output_tensors", "brain.t1", "brain.t2",
            "--merge_blocks", "pair", "--pairs", "brain.t1", "brain.t2", "--pair_merge", "dropout",
            "--batch_size", "4", "--epochs", "2", "--valid_ratio", "0.2", "--test_ratio", "0.2", *TINY_MODEL]
    done = subprocess.run(argv, capture_output=True, text=True, env=subprocess_env(root), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "mirrored"
    assert "strategy mirrored: MirroredStrategy with 2 replica(s)" in (run / "log.txt").read_text()
    for name in ("mirrored.keras", "encoder_t1_tiny.keras", "encoder_t2_tiny.keras", "decoder_t1_tiny.keras",
                 "decoder_t2_tiny.keras", "merger.keras", "learning_curves_mirrored.png", "test_metrics.tsv"):
        assert (run / name).is_file(), name
    import numpy as np
    import pandas as pd

    log = pd.read_csv(run / "training_log.csv")
    assert list(log["epoch"]) == [0, 1] and np.isfinite(log[["loss", "val_loss"]].to_numpy()).all()
    metrics = pd.read_csv(run / "test_metrics.tsv", sep="\t").set_index("metric")["value"]
    assert "loss" in metrics.index and np.isfinite(metrics).all()


def test_a_last_batch_too_small_for_the_replicas_joins_the_one_before():
    import numpy as np

    from ml4ge.batch_reading import Batch
    from ml4ge.pipeline import join_short_tail

    def batch(rows, start):
        ids = [str(i) for i in range(start, start + rows)]
        return Batch(list(range(start, start + rows)), ids, {"x": np.arange(start, start + rows, dtype="float32")}, {})

    joined = list(join_short_tail([batch(4, 0), batch(4, 4), batch(1, 8)], min_rows=2))
    assert [len(b) for b in joined] == [4, 5] and joined[1].ids == ["4", "5", "6", "7", "8"]
    assert [len(b) for b in join_short_tail([batch(4, 0), batch(2, 4)], min_rows=2)] == [4, 2]
    with pytest.raises(ValueError, match="fewer than the 2 replicas"):
        list(join_short_tail([batch(1, 0)], min_rows=2))
