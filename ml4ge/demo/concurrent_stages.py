"""Training a study's models two at a time, each in a process of its own.

At the demo's sizes one training leaves part of a 2-core machine idle: TensorFlow's steps on small volumes in small
batches keep about 1.2-1.4 cores busy (the default demo's train stages: 1.1-1.4 CPU-s per wall second). The models
of a study are independent (each trains from the same tensors, none reads another's files), so the demo trains two
at once. Each runs its stage exactly as one after the other would (same settings and seeds, a fresh process, the
same run folder and stage record), so the models do not change; only the wall time and the peak memory of the
machine (two trainings' together) do.

The processes are spawned, not forked: the demo's process may already hold TensorFlow's threads.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

log = logging.getLogger(__name__)

CONCURRENT_TRAININGS = 2


def training_batch(stages: list, index: int) -> list:
    """The stages from ``index`` on that train one model each, up to the first other stage (the batch may be
    empty)."""
    batch = []
    for name, stage in stages[index:]:
        if stage.kind != "train" or stage.model is None:
            break
        batch.append((name, stage))
    return batch


def concurrency(pending: int) -> int:
    """How many trainings to run at once: two where there are two cores (or more) and two models to train."""
    return min(CONCURRENT_TRAININGS, pending, os.cpu_count() or 1)


def run_concurrently(run, names: list[str], runner) -> dict[str, dict]:
    """Run the stages ``names`` of ``run`` (:class:`~ml4ge.demo.context.DemoRun`), :func:`concurrency` at a time,
    each as ``runner(run, name)`` (a module-level function, so that it pickles by name); returns their records in the
    order of ``names``.

    Raises:
        the first failed stage's exception (the other running stage finishes, the waiting ones are cancelled);
        RuntimeError: when a training process died without an exception (killed, out of memory).
    """
    workers = concurrency(len(names))
    log.info("demo: training %s, %d at a time, each in its own process", ", ".join(names), workers)
    records = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_stage_in_child, runner, run, name): name for name in names}
        try:
            for future in as_completed(futures):
                records[futures[future]] = future.result()
        except BrokenProcessPool as error:
            raise RuntimeError(f"a training process of the demo died ({error}); the stages not recorded in "
                               f"{run.folder / 'stages'} did not finish: see {run.folder / 'log.txt'}, and rerun "
                               "the same command to resume them.") from error
        finally:
            for future in futures:
                future.cancel()
    return {name: records[name] for name in names}


def run_stage_in_child(runner, run, name: str) -> dict:
    """``runner(run, name)`` in a spawned process, logging as the demo's process does (stderr and the demo's
    ``log.txt``), each line tagged with the stage."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ml4ge import quiet
    from ml4ge.runs import LOG_FORMAT, log_handler

    quiet.install()
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    tagged = logging.Formatter(LOG_FORMAT.replace("%(message)s", f"[{name}] %(message)s"))
    for handler in (logging.StreamHandler(sys.stderr), log_handler(run.folder)):
        handler.setFormatter(tagged)
        root.addHandler(handler)
    return runner(run, name)
