"""Benchmark: demo cohort generation, side by side in one run.

1. Per-subject render-and-write time at 3 mm and at 1 mm (the full 197x233x189 MNI152 grid), after the
   one-off preparation (template, atlas, growth fields), which is timed separately; the ratio 1 mm / 3 mm.
2. A whole cohort (``write_demo_cohort``) at 3 mm with 1 and with 2 workers, with its peak RSS (each in its own
   process), and the speed-up of 2 workers.

The load average is printed with each figure, because the machine is shared.

    python benchmarks/bench_demo_cohort.py                       # 300 subjects, 2,000 SNPs; 1 mm on 2 subjects
    python benchmarks/bench_demo_cohort.py --subjects 60 --full_subjects 1   # a quick look
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import resource, sys, time
from ml4ge.demo.cohort import write_demo_cohort
if __name__ == "__main__":
    start = time.perf_counter()
    write_demo_cohort(sys.argv[1], subjects=int(sys.argv[2]), voxel_mm=3.0, snps=int(sys.argv[3]), seed=0,
                      workers=int(sys.argv[4]))
    usage = [resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    peak = max(usage)
    print(f"{time.perf_counter() - start:.2f} {peak / 1024:.0f}")
"""


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def per_subject(voxel_mm: float, subjects: int, folder: Path) -> tuple[float, float]:
    """``(preparation s, render-and-write s per subject)`` at ``voxel_mm`` in this process."""
    from ml4ge.demo import cohort
    from ml4ge.demo.anatomy import load_template
    from ml4ge.demo.atlas import load_atlas
    from ml4ge.demo.effects import PLANTED_EFFECTS
    from ml4ge.demo.subject import SubjectSpec, build_scene

    start = time.perf_counter()
    cohort._init_worker(build_scene(load_template(voxel_mm), load_atlas(voxel_mm)))
    prepared = time.perf_counter()
    for contrast in cohort.CONTRASTS:
        (folder / contrast).mkdir(parents=True, exist_ok=True)
    amounts = {region: 1.0 for effect in PLANTED_EFFECTS for region in effect.regions}
    for index in range(subjects):
        spec = SubjectSpec(index, cohort.sample_id(index), 62.0, index % 2, amounts)
        cohort._render_and_write(spec, 0, str(folder))
    return prepared - start, (time.perf_counter() - prepared) / subjects


def whole_cohort(folder: Path, subjects: int, snps: int, workers: int) -> tuple[float, float]:
    output = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(subjects), str(snps), str(workers)],
                            check=True, capture_output=True, text=True).stdout.split()
    return float(output[0]), float(output[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--snps", type=int, default=2000)
    parser.add_argument("--full_subjects", type=int, default=2, help="subjects rendered at 1 mm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        coarse_prep, coarse = per_subject(3.0, 10, folder / "3mm")
        print(f"3 mm: preparation {coarse_prep:.1f} s, {coarse:.3f} s per subject ({load()})", flush=True)
        fine_prep, fine = per_subject(1.0, args.full_subjects, folder / "1mm")
        print(f"1 mm: preparation {fine_prep:.1f} s, {fine:.2f} s per subject ({load()})", flush=True)
        print(f"ratio 1 mm / 3 mm per subject: {fine / coarse:.1f}x")
        times = {}
        for workers in (1, 2):
            seconds, peak = whole_cohort(folder / f"cohort{workers}", args.subjects, args.snps, workers)
            times[workers] = seconds
            print(f"write_demo_cohort {args.subjects} subjects at 3 mm, {workers} worker(s): {seconds:.1f} s, "
                  f"peak RSS {peak:.0f} MiB ({load()})", flush=True)
        print(f"speed-up of 2 workers: {times[1] / times[2]:.2f}x")


if __name__ == "__main__":
    main()
