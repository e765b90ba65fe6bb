"""Input pipeline throughput and memory on 96^3 float32 volumes stored gzip-compressed in HD5.

In one run, side by side over the same files (read once beforehand so that all are in the page cache):
a bare single-process h5py read loop, then the pipeline (through ``tf.data``, as Keras sees it) with 1 and 2
workers, and the bare loop again (the bare rate used is the mean of both, which evens out drift on a shared
machine). The target is ``rate(W) >= 0.8 x W x bare``. On a shared machine wall-clock rates measure the CPU share
each process got more than the pipeline, so CPU seconds per volume (main process plus workers) are printed too,
with the rate they allow on W idle cores. Then the peak resident memory (main process plus
workers) of a pass over the small cohort and over a larger one, to show that it does not grow with cohort size.

    python benchmarks/bench_pipeline.py                      # 200 files, memory also on 600
    python benchmarks/bench_pipeline.py --memory-files 2000  # the issue's 2,000-volume memory check
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import psutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHAPE = (96, 96, 96)
KEY = "mri/t1_96/instance_0"


def write_files(folder: Path, n: int) -> list[Path]:
    """``n`` synthetic 96^3 volumes (written once, reused by later runs)."""
    from ml4ge.hd5 import write_tensor
    from ml4ge.synthetic import ellipsoid_volume

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = ellipsoid_volume(SHAPE, rng)
    paths = []
    for i in range(n):
        path = folder / f"{i}.hd5"
        if not path.exists():
            noisy = np.where(base > 0, base + rng.normal(0, 5, SHAPE).astype(np.float32), 0)
            with h5py.File(f"{path}.tmp", "w") as hd5:
                write_tensor(hd5, "mri/t1_96", noisy, instance=0)
            os.replace(f"{path}.tmp", path)
        paths.append(path)
    return paths


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def bare_rate(paths) -> tuple[float, float]:
    """Volumes/s of a plain single-process h5py loop, and its CPU seconds per volume."""
    me = psutil.Process()
    start, cpu = time.perf_counter(), cpu_seconds(me)
    for path in paths:
        with h5py.File(path, "r") as hd5:
            hd5[KEY][()]
    return len(paths) / (time.perf_counter() - start), (cpu_seconds(me) - cpu) / len(paths)


class PeakMemory:
    """Peak summed RSS of this process and its children, sampled every ``interval`` seconds in a thread."""

    def __init__(self, interval: float):
        self.peak, self.interval, self._stop = 0, interval, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def pipeline_pass(paths, workers: int, batch_size: int, passes: int = 2, interval: float = 0.25) -> dict:
    """Volumes/s of the first pass (workers starting) and of the last, CPU seconds per volume of the last pass
    in the main process and in the workers, and the peak RSS over all passes."""
    from ml4ge.pipeline import TensorDataset
    from ml4ge.tensormap import TensorMap

    t1 = TensorMap("t1_96", (*SHAPE, 1), group="mri")
    me, rates = psutil.Process(), []
    with TensorDataset(paths, [t1], [], batch_size, num_workers=workers) as data, PeakMemory(interval) as memory:
        dataset = data.dataset()
        for _ in range(passes):
            children = me.children(recursive=True)
            start, main_cpu, child_cpu = time.perf_counter(), cpu_seconds(me), sum(map(cpu_seconds, children))
            rows = 0
            for inputs, _ in dataset:
                rows += int(inputs["input_t1_96"].shape[0])
            assert rows == len(paths), f"read {rows} of {len(paths)} volumes"
            rates.append(rows / (time.perf_counter() - start))
            main_cpu = (cpu_seconds(me) - main_cpu) / rows
            child_cpu = (sum(map(cpu_seconds, children)) - child_cpu) / rows
    return {"first": rates[0], "rate": rates[-1], "main_cpu": main_cpu, "worker_cpu": child_cpu,
            "peak": memory.peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--memory-files", type=int, default=600, help="larger cohort for the memory check")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/ml4ge_bench_pipeline"))
    args = parser.parse_args()

    import tensorflow  # noqa: F401  (loaded before the workers start, as in training)

    all_paths = write_files(args.folder, max(args.files, args.memory_files))
    paths = all_paths[: args.files]
    bare_rate(paths)  # warm the page cache
    print(f"{args.files} volumes {SHAPE} float32, gzip in HD5, batch {args.batch_size}; "
          f"{os.cpu_count()} CPUs (shared with other jobs: figures are under contention)")
    (before, cpu_before) = bare_rate(paths)
    results = {w: pipeline_pass(paths, w, args.batch_size) for w in args.workers}
    (after, cpu_after) = bare_rate(paths)
    bare, bare_cpu = (before + after) / 2, (cpu_before + cpu_after) / 2
    print(f"bare h5py loop, 1 process: {bare:6.1f} volumes/s (before {before:.1f}, after {after:.1f}); "
          f"{1e3 * bare_cpu:.1f} ms CPU per volume")
    for workers, r in results.items():
        target = 0.8 * workers * bare
        # On W idle cores the pipeline's rate is at most W / (CPU per volume of workers + main process).
        projected = workers / (r["worker_cpu"] + r["main_cpu"]) / (1 / bare_cpu)
        print(f"pipeline, {workers} worker(s): {r['rate']:6.1f} volumes/s = {r['rate'] / bare:.2f} x bare, "
              f"{r['rate'] / target:.2f} x target (0.8 x {workers} x bare); first pass {r['first']:.1f}/s; "
              f"CPU per volume: workers {1e3 * r['worker_cpu']:.1f} ms + main {1e3 * r['main_cpu']:.1f} ms "
              f"-> on {workers} idle core(s) {projected:.2f} x bare = {projected / (0.8 * workers):.2f} x target; "
              f"peak RSS {r['peak'] / 2**20:.0f} MiB")
    if args.memory_files > args.files:
        workers = max(args.workers)
        small = pipeline_pass(paths, workers, args.batch_size, passes=1, interval=0.02)["peak"]
        large = pipeline_pass(all_paths[: args.memory_files], workers, args.batch_size, passes=1, interval=0.02)["peak"]
        print(f"peak RSS of one pass, {workers} workers (main + workers): {args.files} volumes {small / 2**20:.0f} "
              f"MiB, {args.memory_files} volumes {large / 2**20:.0f} MiB (ratio {large / small:.2f}; cohort "
              f"{args.memory_files / args.files:.0f}x larger)")


if __name__ == "__main__":
    main()
