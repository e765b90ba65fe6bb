"""The watchdog of a worker process: it exits the worker as soon as the run that started it is gone.

A SIGKILLed run (OOM killer) closes no pipe its workers would notice: they, the fork server and the resource
tracker all hold each other's pipes open, so each worker watches the run's process itself (:func:`watch_run`,
started by :mod:`ml4ge.workers` in every worker).
"""

from __future__ import annotations

import os
import threading
import time

import psutil

# Seconds between a worker's checks that its run is alive.
WATCH_INTERVAL = 0.5


def watch_run(pid: int) -> None:
    """Exit this worker as soon as the run's process ``pid`` is gone, whoever the worker's parent is.

    A parent-death signal (``PR_SET_PDEATHSIG``) does not do: a fork server's worker is the server's child, and the
    signal follows the *thread* that started a process (the pipeline starts workers from tf.data's threads, which
    end). Once the workers are gone the fork server and the resource tracker see their pipes close and exit, and
    the tracker unlinks the run's shared memory.
    """
    try:
        run = psutil.Process(pid)  # remembers the start time, so a reused pid is not mistaken for the run
    except psutil.NoSuchProcess:
        os._exit(1)

    def watch() -> None:
        while _running(run):
            time.sleep(WATCH_INTERVAL)
        os._exit(1)  # nothing to clean up here: the run's results went with it

    threading.Thread(target=watch, name="ml4ge-run-watchdog", daemon=True).start()


def _running(process: psutil.Process) -> bool:
    """Whether ``process`` still runs (a killed process its parent has not reaped yet is a zombie: gone)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
