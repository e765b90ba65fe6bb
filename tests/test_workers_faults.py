"""Reader workers when their run dies: a SIGKILLed (or OOM-killed) run leaves no process and no shared memory."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from ml4ge.synthetic import write_cohort
from ml4ge.tensormap import TensorMap

SHAPE = (8, 8, 8, 1)
# A run that starts its reader workers, reads one batch and then waits to be killed.
RUN = textwrap.dedent("""
    import sys, time
    from ml4ge.pipeline import TensorDataset
    from ml4ge.tensormap import TensorMap
    if __name__ == "__main__":
        vol = TensorMap("vol", {shape}, group="mri")
        data = TensorDataset(sys.argv[2:], [vol], [vol], 2, num_workers=2, context=sys.argv[1])
        next(data.batches())
        print(data.pool._slots.memory.name, flush=True)
        time.sleep(600)
""").format(shape=SHAPE)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("cohort"), [TensorMap("vol", SHAPE, group="mri")], 6)


def _gone_within(processes, seconds: float) -> list[psutil.Process]:
    """The processes still running (zombies count as gone) after waiting up to ``seconds``."""
    deadline = time.monotonic() + seconds
    alive = list(processes)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("context", ["forkserver", "spawn", "fork"])
def test_sigkilled_run_leaves_no_worker_and_no_shared_memory(cohort, context):
    run = subprocess.Popen([sys.executable, "-c", RUN, context, *map(str, cohort)], stdout=subprocess.PIPE,
                           text=True)
    children = []
    try:
        memory = run.stdout.readline().strip()
        assert memory, "the run did not start its workers"
        children = psutil.Process(run.pid).children(recursive=True)
        assert len(children) >= 3  # two workers, the resource tracker (and the fork server)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        survivors = _gone_within(children, 30)
        assert not survivors, [" ".join(p.cmdline())[-80:] for p in survivors]
        deadline = time.monotonic() + 10
        while os.path.exists(f"/dev/shm/{memory}") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not os.path.exists(f"/dev/shm/{memory}"), "the run's shared memory outlived it"
    finally:
        run.kill()
        for child in children:
            if child.is_running():
                child.kill()


@pytest.mark.slow
def test_sigkilled_train_run_leaves_no_process(tmp_path):
    """The real thing: ``--mode train`` reading with two workers from tf.data's threads, SIGKILLed mid-training."""
    from recipe_helpers import TINY_MODEL, subprocess_env, write_maps_package
    from recipe_helpers import write_cohort as write_recipe_cohort

    write_maps_package(tmp_path, "fault_maps")
    tensors = write_recipe_cohort(tmp_path, "fault_maps", 8)
    argv = ["--mode", "train", "--tensors", str(tensors), "--output_folder", str(tmp_path / "runs"), "--id", "k",
            "--tensormap_prefix", "fault_maps", "--input_tensors", "brain.t1", "--output_tensors", "brain.t1",
            "--batch_size", "2", "--epochs", "500", *TINY_MODEL, "--num_workers", "2"]
    run = subprocess.Popen([sys.executable, "-c", "from ml4ge.cli import console_main; console_main()", *argv],
                           env=subprocess_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = []
    try:
        deadline = time.monotonic() + 180
        while len(children) < 4 and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.5)  # tracker, fork server and two workers, once the first epoch reads
            children = psutil.Process(run.pid).children(recursive=True)
        assert len(children) >= 4, f"the run did not start its workers (exit code {run.poll()})"
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        survivors = _gone_within(children, 30)
        assert not survivors, [" ".join(p.cmdline())[-80:] for p in survivors]
    finally:
        run.kill()
        for child in children:
            if child.is_running():
                child.kill()
