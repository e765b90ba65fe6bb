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
