"""Distribution strategies and mixed precision: the one place (with the input pipeline) that uses ``tf.*``.

``--strategy`` picks how training is spread over devices:

* ``default``: TensorFlow's default strategy (CPU or one GPU).
* ``mirrored``: ``tf.distribute.MirroredStrategy`` over every visible GPU (or logical CPU devices in tests).
* ``multi_worker``: ``tf.distribute.MultiWorkerMirroredStrategy`` configured by the ``TF_CONFIG`` environment
  variable (one process per worker; every worker runs the same command).
* ``tpu``: ``tf.distribute.TPUStrategy`` on the TPU found by ``TPUClusterResolver``.
* ``auto``: ``tpu`` when a TPU is reachable, ``mirrored`` when more than one GPU is visible, else ``default``.

The batch size given on the command line is global: each step consumes ``batch_size`` samples in total, split
evenly across the replicas (``tf.distribute`` re-batches the input dataset into per-replica batches).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

import keras
import tensorflow as tf

from ml4ge.registry import Registry

log = logging.getLogger(__name__)

STRATEGIES: Registry = Registry("distribution strategy")


def tpu_resolver():
    """A connected ``TPUClusterResolver``, or None when no TPU is reachable.

    ``TPUClusterResolver`` raises ``ValueError`` when no TPU name is configured and there is no local TPU; any
    other failure (a TPU name that does not answer) is a configuration error and propagates.
    """
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    except ValueError:
        return None
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return resolver


@STRATEGIES.register("default")
def default_strategy() -> tf.distribute.Strategy:
    return tf.distribute.get_strategy()


@STRATEGIES.register("mirrored")
def mirrored_strategy() -> tf.distribute.Strategy:
    return tf.distribute.MirroredStrategy()


@STRATEGIES.register("multi_worker")
def multi_worker_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy from ``TF_CONFIG``.

    Raises:
        ValueError: if ``TF_CONFIG`` is unset or is not JSON with ``cluster`` and ``task``.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "--strategy multi_worker needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}.'
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {raw[:200]!r}") from None
    if "cluster" not in config or "task" not in config:
        raise ValueError(f"TF_CONFIG needs 'cluster' and 'task' entries; received keys {sorted(config)}.")
    return tf.distribute.MultiWorkerMirroredStrategy()


@STRATEGIES.register("tpu")
def tpu_strategy() -> tf.distribute.Strategy:
    """TPUStrategy on the TPU named by the environment (``TPU_NAME``) or attached locally.

    Raises:
        RuntimeError: if no TPU is reachable.
    """
    resolver = tpu_resolver()
    if resolver is None:
        raise RuntimeError("--strategy tpu: no TPU is reachable (set TPU_NAME or run on a TPU VM); "
                           "use auto or default.")
    return tf.distribute.TPUStrategy(resolver)


def visible_gpus() -> int:
    return len(tf.config.list_physical_devices("GPU"))


@STRATEGIES.register("auto")
def auto_strategy() -> tf.distribute.Strategy:
    """TPU when reachable, MirroredStrategy over more than one GPU, else the default strategy."""
    resolver = tpu_resolver()
    if resolver is not None:
        return tf.distribute.TPUStrategy(resolver)
    if visible_gpus() > 1:
        return mirrored_strategy()
    return default_strategy()


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy named by ``--strategy``.

    Raises:
        UnknownNameError: for a name that is not registered.
        ValueError, RuntimeError: when the chosen strategy cannot be configured here.
    """
    strategy = STRATEGIES.get(name)()
    log.info("strategy %s: %s with %d replica(s)", name, public_name(strategy), strategy.num_replicas_in_sync)
    return strategy


def public_name(strategy: tf.distribute.Strategy) -> str:
    """The ``tf.distribute`` name of ``strategy`` (``MultiWorkerMirroredStrategy``'s class is
    ``CollectiveAllReduceStrategy``)."""
    for name in ("TPUStrategy", "MultiWorkerMirroredStrategy", "MirroredStrategy"):
        if isinstance(strategy, getattr(tf.distribute, name)):
            return name
    return type(strategy).__name__


def device_kind(strategy: tf.distribute.Strategy) -> str:
    """``"tpu"``, ``"gpu"`` or ``"cpu"``: the kind of device the strategy computes on."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    return "gpu" if visible_gpus() else "cpu"


# float16 on CPU is far slower than float32 (docs/experiments.md); bfloat16 is supported by CPUs and TPUs.
MIXED_POLICIES = {"tpu": "mixed_bfloat16", "cpu": "mixed_bfloat16", "gpu": "mixed_float16"}


def set_precision(mixed: bool, strategy: tf.distribute.Strategy) -> str:
    """Set the global Keras dtype policy; returns its name.

    Args:
        mixed: ``--mixed_precision``; False keeps (or restores) ``float32``.
        strategy: decides the device kind: bfloat16 on TPU and CPU, float16 on GPU.
    """
    policy = MIXED_POLICIES[device_kind(strategy)] if mixed else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def check_batch_size(batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The per-replica batch size of a global ``batch_size``.

    Raises:
        ValueError: if the global batch does not split evenly over the replicas.
    """
    replicas = strategy.num_replicas_in_sync
    if batch_size < replicas or batch_size % replicas:
        raise ValueError(
            f"--batch_size {batch_size} is global and must be a multiple of the {replicas} replicas of this strategy; "
            f"use {max(replicas, batch_size - batch_size % replicas)}."
        )
    return batch_size // replicas


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Shard a generator-backed dataset by element across workers (it has no files tf.data could split)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one process that should write run outputs (always True outside multi-worker training)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and
                                            "chief" not in resolver.cluster_spec().as_dict())


def worker_index(strategy: tf.distribute.Strategy) -> int:
    """This process's worker index in multi-worker training (0 otherwise)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return 0
    return int(resolver.task_id or 0)


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True for a MultiWorkerMirroredStrategy that spans more than one worker process."""
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


@contextlib.contextmanager
def keras_distribution_fixes(model, element_spec, strategy: tf.distribute.Strategy):
    """Let ``model.fit``/``model.evaluate`` run over several replicas (a no-op for one replica).

    Keras 3.15's TensorFlow trainer fails there in two places (tensorflow/tensorflow#72388):

    * ``_maybe_symbolic_build`` (at the start of ``fit`` and of every validation pass) averages the first real
      batch over the replicas to build the model's state. That fails when the replicas' shares differ in size
      (a last batch of 3 over 2 replicas) and, over several workers, for any nested (dict) batch. Here the
      state (model, optimizer, compiled loss and metrics) is built beforehand, under the strategy's scope, from
      symbolic tensors shaped like ``element_spec``, and that step is skipped.
    * Over several workers, ``reduce_per_replica`` averages each step's metric values with
      ``strategy.reduce("MEAN", v, axis=0)``, which fails for scalars. While the context is active, scalars are
      averaged over the replicas with ``axis=None`` (the mean Keras takes over replicas on one worker);
      everything else goes through Keras unchanged.

    Args:
        model: a compiled Keras model created under ``strategy.scope()``.
        element_spec: the ``(inputs, targets)`` element spec of the dataset.
        strategy: the run's strategy.
    """
    if strategy.num_replicas_in_sync == 1 and not is_multi_worker(strategy):
        yield
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    symbolic = tf.nest.map_structure(lambda spec: keras.KerasTensor(tuple(spec.shape), spec.dtype.name),
                                     element_spec)
    with strategy.scope():
        model._symbolic_build(data_batch=symbolic)
    keras_reduce = tf_trainer.reduce_per_replica
    model._maybe_symbolic_build = _already_built
    if is_multi_worker(strategy):
        tf_trainer.reduce_per_replica = _reduce_scalars_by_mean(keras_reduce)
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = keras_reduce
        del model._maybe_symbolic_build


def _already_built(iterator=None, data_batch=None):
    """Stands in for Keras' ``_maybe_symbolic_build`` once :func:`keras_distribution_fixes` has built the state."""


def _reduce_scalars_by_mean(keras_reduce):
    def reduce_per_replica(values, strategy, reduction):
        def reduce(value):
            local = strategy.experimental_local_results(value)[0]
            if reduction in ("auto", "mean") and local.shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return keras_reduce(value, strategy, reduction)

        return tf.nest.map_structure(reduce, values)

    return reduce_per_replica
