"""``--inspect_model``: the architecture as text and as a picture, and the time of a training and an inference
batch (as ml4h's ``_inspect_model``).

The picture is drawn by ``keras.utils.plot_model``, which needs pydot (``pip install pydot``, in ml4ge's ``inspect``
extra) and Graphviz's ``dot`` program (``apt-get install graphviz``); :func:`check_plotting` says which is missing
before any work. The timing runs real steps on one batch of the training split and then restores the weights and
the optimizer's state, so that inspecting a model does not change what it trains to.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

TIMED_STEPS = 3  # after one untimed step that traces the graph


def check_plotting() -> None:
    """Raise when the architecture picture cannot be drawn.

    Raises:
        ValueError: naming what to install (pydot, Graphviz's ``dot``).
    """
    try:
        import pydot  # noqa: F401
    except ImportError:
        raise ValueError("--inspect_model draws the architecture with pydot, which is not installed: "
                         "pip install pydot (or pip install 'ml4ge[inspect]').") from None
    if shutil.which("dot") is None:
        raise ValueError("--inspect_model draws the architecture with Graphviz, whose 'dot' program is not on the "
                         "PATH: install it (apt-get install graphviz, brew install graphviz, conda install graphviz).")


def write_summary(model, path: Path) -> Path:
    """The Keras summary of ``model`` as text."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *_, **__: lines.append(line))
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_architecture(model, path: Path) -> Path:
    """The architecture picture (nested models expanded, shapes shown), as ``keras.utils.plot_model`` draws it.

    Raises:
        ValueError: when pydot or Graphviz is missing (see :func:`check_plotting`).
    """
    import keras

    check_plotting()
    dot = keras.utils.model_to_dot(model, show_shapes=True, show_layer_names=True, expand_nested=True, dpi=72)
    # plot_model's orthogonal edges crash Graphviz 2.42's router on large graphs (maze.c chkSgraph assertion, seen on
    # the seed's DropFuse model); polylines draw the same graph.
    dot.set("splines", "polyline")
    dot.write(str(path), format="png")
    return path


def time_batches(model, inputs: dict, targets: dict, steps: int = TIMED_STEPS) -> dict[str, float]:
    """Median seconds of a training step and of an inference step on one batch; weights and optimizer restored.

    Returns:
        ``{"batch_size", "train_seconds", "inference_seconds"}``.
    """
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    weights = model.get_weights()
    optimizer_state = [variable.numpy() for variable in optimizer.variables]
    names = {tensor.name for tensor in model.inputs}
    inputs = {name: value for name, value in inputs.items() if name in names}
    try:
        train = _median_seconds(lambda: model.train_on_batch(inputs, targets), steps)
        infer = _median_seconds(lambda: model.predict_on_batch(inputs), steps)
    finally:
        model.set_weights(weights)
        for variable, value in zip(optimizer.variables, optimizer_state):
            variable.assign(value)
        model.reset_metrics()
    batch_size = len(next(iter(inputs.values())))
    return {"batch_size": batch_size, "train_seconds": train, "inference_seconds": infer}


def _median_seconds(step, steps: int) -> float:
    step()  # traces the graph
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_timing(timing: dict[str, float], path: Path) -> Path:
    """The timing as a two-column TSV (``name``, ``value``)."""
    rows = [f"{name}\t{value:.6g}" for name, value in timing.items()]
    path.write_text("name\tvalue\n" + "\n".join(rows) + "\n")
    return path


def inspect_model(model, folder: Path, run_id: str, batch) -> dict[str, Path]:
    """Write ``architecture_<id>.txt``, ``architecture_<id>.png`` and ``inspect_timing_<id>.tsv``.

    Args:
        model: the compiled model.
        folder: the run folder.
        run_id: the run's ``--id``.
        batch: ``(inputs, targets)`` dicts of one training batch; None writes no timing (multi-worker training,
            where a step on the chief alone would wait for the other workers forever).
    """
    written = {"summary": write_summary(model, folder / f"architecture_{run_id}.txt"),
               "picture": plot_architecture(model, folder / f"architecture_{run_id}.png")}
    if batch is not None:
        written["timing"] = write_timing(time_batches(model, *batch), folder / f"inspect_timing_{run_id}.tsv")
    return written
