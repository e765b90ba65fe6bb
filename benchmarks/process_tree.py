"""Peak memory of a process and its descendants (loader workers), sampled from /proc by the parent.

The benchmark's parent samples its child's tree, so both engines are measured by the same code and the measuring
costs the measured processes nothing but the kernel's page-table walks. Each sample reads ``smaps_rollup``: RSS
(what ``top`` shows; pages a forked worker shares copy-on-write with its parent are counted in both) and PSS
(shared pages split between their sharers: the sum over the tree is the memory the run really holds).
Sampling can miss a spike shorter than the interval; the training process's own peak comes from the kernel
(``ru_maxrss``) in the child's result instead.
"""

from __future__ import annotations

import threading
from pathlib import Path

PROC = Path("/proc")


def children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, from every process's ``stat``."""
    children: dict[int, list[int]] = {}
    for stat in PROC.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces and parentheses
        children.setdefault(ppid, []).append(int(stat.parent.name))
    return children


def descendants(root: int) -> list[int]:
    """``root``'s descendants (children, their children, ...), not ``root`` itself."""
    children, found, stack = children_map(), [], [root]
    while stack:
        kids = children.get(stack.pop(), [])
        found += kids
        stack += kids
    return found


def rss_pss_kb(pid: int) -> tuple[int, int]:
    """RSS and PSS of ``pid`` in kB; (0, 0) for a process that has ended."""
    values = {}
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return 0, 0
    return values.get("Rss", 0), values.get("Pss", 0)


class TreeSampler:
    """Samples ``root``'s tree every ``interval`` seconds in a thread until :meth:`stop`.

    Attributes after stop: ``worker_rss_kb`` (the largest descendant's peak RSS), ``total_rss_kb`` and
    ``total_pss_kb`` (the peak sums over the whole tree, root included) and ``processes`` (the most descendants
    seen at once).
    """

    def __init__(self, root: int, interval: float = 0.5):
        self.root, self.interval = root, interval
        self.worker_rss_kb = self.total_rss_kb = self.total_pss_kb = self.processes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        kids = descendants(self.root)
        memory = {pid: rss_pss_kb(pid) for pid in [self.root, *kids]}
        self.processes = max(self.processes, len(kids))
        self.worker_rss_kb = max([self.worker_rss_kb, *(memory[pid][0] for pid in kids)])
        self.total_rss_kb = max(self.total_rss_kb, sum(rss for rss, _ in memory.values()))
        self.total_pss_kb = max(self.total_pss_kb, sum(pss for _, pss in memory.values()))

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self._sample()

    def stop(self) -> dict:
        """Stop sampling; the peaks in GB."""
        self._done.set()
        self._thread.join()
        return {"peak_worker_rss_gb": self.worker_rss_kb / 2**20, "peak_tree_rss_gb": self.total_rss_kb / 2**20,
                "peak_tree_pss_gb": self.total_pss_kb / 2**20, "worker_processes": self.processes}
