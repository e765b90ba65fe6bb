"""Wall-clock-independent cost of a demo stage: CPU time and peak memory of this process and its workers."""

from __future__ import annotations

import threading


class ResourceMeter:
    """Samples this process and its descendants (forkserver workers included) in a thread while a stage runs.

    ``peak_mb`` is the largest sum of their resident memory; ``cpu_s`` their user + system CPU time during the
    stage (a worker's last fraction of a sampling interval before it exits is missed).
    """

    def __init__(self, interval_s: float = 0.25):
        import psutil

        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._process = psutil.Process()
        self._cpu_start = self._cpu_latest = self._cpu_now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _members(self):
        return [self._process, *self._process.children(recursive=True)]

    def _cpu_now(self) -> dict[int, float]:
        import psutil

        times = {}
        for member in self._members():
            try:
                cpu = member.cpu_times()
                times[member.pid] = cpu.user + cpu.system
            except psutil.Error:  # a worker that exited between listing and reading
                continue
        return times

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for member in self._members():
                try:
                    total += member.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self._cpu_latest = {**self._cpu_latest, **self._cpu_now()}
            self._stop.wait(self.interval_s)

    @property
    def cpu_s(self) -> float:
        return sum(latest - self._cpu_start.get(pid, 0.0) for pid, latest in self._cpu_latest.items())

    def __enter__(self) -> ResourceMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._cpu_latest = {**self._cpu_latest, **self._cpu_now()}
