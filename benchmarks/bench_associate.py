"""Benchmark: ``--mode associate`` against PLINK2 ``--glm`` on the same files, side by side in one run.

1. The regime table (default): genotypes without missing calls (imputed hard calls) at 400 and 2,000 samples, and
   with 2 % missing calls, x M SNPs (default 50,000), for 1, 3 and 128 phenotypes; each cell times our recipe as
   run by default (gzip summary tables, hits, loci, plots, exports; a fresh process, imports included), the same
   with ``--uncompressed_sumstats --no_plots`` (PLINK2's files: uncompressed tables, no plot), and one PLINK2 call
   with the same phenotypes and thread count, prints both ratios (>1: ml4ge faster), and checks that both tools
   wrote the same rows (PLINK2 writes NA rows for untestable SNPs; so must we). For 128 phenotypes it also times
   ``--multivariate`` (the omnibus and min-P tests on top of the scan): their extra cost beside the scan.
2. ``--throughput``: one cell with the largest differences of BETA, SE and LOG10P over all tables.
3. ``--memory``: peak RSS of the recipe for M and 10 M SNPs at the same D: memory follows the chunk, not M.

Each command runs in a process of its own, timed from outside the same way for both tools (interpreter start-up and
exit included; wall and CPU seconds, peak RSS). The load average is printed with each figure, because the machine
may be shared.

    python benchmarks/bench_associate.py                       # the regime table, 50,000 SNPs
    python benchmarks/bench_associate.py --snps 5000           # a quick look
    python benchmarks/bench_associate.py --throughput --memory --samples 2000 --dims 128
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ml4ge.genetics.simulate import write_simulated_cohort
from ml4ge.genetics.sumstats import read_sumstats

ENTRY = "from ml4ge.cli import console_main; console_main()"  # what the ``ml4ge`` command runs


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def timed(argv: list[str]) -> dict:
    """Run ``argv`` (``["ml4ge", ...flags]`` or a command) as a process of its own, timed from outside the same way
    for both tools (interpreter start-up and exit included): wall s, CPU s, peak RSS MiB."""
    command = [sys.executable, "-c", ENTRY, *argv[1:]] if argv[0] == "ml4ge" else argv
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{argv[:3]} failed:\n{errors.read().decode()[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024}


def associate_argv(cohort, folder: Path, run_id: str, threads: int) -> list[str]:
    return ["ml4ge", "--mode", "associate", "--latent_tables", f"t1={cohort.latents}", "--genotypes",
            str(cohort.genotypes), "--covariates_file", str(cohort.covariates), "--output_folder", str(folder),
            "--id", run_id, "--num_workers", str(threads)]


def largest_differences(run: Path, plink_prefix: Path, dims: int) -> dict[str, float]:
    """Max |ours - PLINK2| over every table, for BETA, SE, LOG10P (relative for SE and LOG10P > 1)."""
    worst = {"BETA": 0.0, "SE (relative)": 0.0, "LOG10P": 0.0}
    for d in range(dims):
        ours = read_sumstats(run / f"sumstats/t1.latent_{d}.glm.linear.gz").set_index("ID")  # both PLINK2 tables
        theirs = read_sumstats(f"{plink_prefix}.latent_{d}.glm.linear").set_index("ID").loc[ours.index]
        worst["BETA"] = max(worst["BETA"], float(np.nanmax(np.abs(ours.BETA - theirs.BETA))))
        worst["SE (relative)"] = max(worst["SE (relative)"], float(np.nanmax(np.abs(ours.SE / theirs.SE - 1))))
        worst["LOG10P"] = max(worst["LOG10P"], float(np.nanmax(np.abs(ours.LOG10P - theirs.LOG10P))))
    return worst


def throughput(args, folder: Path) -> None:
    cohort = write_simulated_cohort(folder / "main", samples=args.samples, snps=args.snps, dimensions=args.dims,
                                    planted=((100, 0, 0.3), (args.snps // 2, 5, 0.3)), seed=1)
    ours = timed(associate_argv(cohort, folder, "main", args.threads))
    tests = args.snps * args.dims
    print(f"ml4ge associate : {ours['wall']:7.1f} s wall {ours['cpu']:7.1f} s CPU  {tests / ours['wall']:,.0f} "
          f"tests/s  peak RSS {ours['rss']:.0f} MiB  ({load()})")
    plink = shutil.which("plink2")
    if plink is None:
        print("plink2 not installed: no side-by-side figure")
        return
    exports = folder / "main" / "exports"
    theirs = timed([plink, "--bfile", str(cohort.genotypes), "--pheno", str(exports / "t1.pheno.tsv"), "--covar",
                    str(exports / "covariates.tsv"), "--glm", "omit-ref", "hide-covar", "log10", "--maf", "0.01",
                    "--geno", "0.1", "--threads", str(args.threads), "--out", str(folder / "plink")])
    print(f"plink2 --glm    : {theirs['wall']:7.1f} s wall {theirs['cpu']:7.1f} s CPU  {tests / theirs['wall']:,.0f} "
          f"tests/s  peak RSS {theirs['rss']:.0f} MiB  ({load()})")
    print(f"ratio ml4ge/plink2 throughput: wall {theirs['wall'] / ours['wall']:.2f}x, "
          f"CPU {theirs['cpu'] / ours['cpu']:.2f}x ({args.threads} threads each)")
    differences = largest_differences(folder / "main", folder / "plink", args.dims)
    print("largest differences over all tables: " + ", ".join(f"{k} {v:.2g}" for k, v in differences.items()))


def memory(args, folder: Path) -> None:
    for snps in (args.snps, args.large_snps):
        cohort = write_simulated_cohort(folder / f"m{snps}", samples=args.samples, snps=snps,
                                        dimensions=args.large_dims, seed=2)
        result = timed(associate_argv(cohort, folder, f"m{snps}", args.threads))
        print(f"{snps:>9,} SNPs x {args.large_dims} dims: peak RSS {result['rss']:.0f} MiB, {result['wall']:.1f} s "
              f"wall ({load()})")
        shutil.rmtree(folder / f"m{snps}")


def plink_argv(plink: str, cohort, exports: Path, out: Path, threads: int) -> list[str]:
    return [plink, "--bfile", str(cohort.genotypes), "--pheno", str(exports / "t1.pheno.tsv"), "--covar",
            str(exports / "covariates.tsv"), "--glm", "omit-ref", "hide-covar", "--maf", "0.01", "--geno", "0.1",
            "--threads", str(threads), "--out", str(out)]


def same_rows(run: Path, plink_prefix: Path, dims: int) -> bool:
    """Whether every table of ours holds the SNPs (NA rows included) of PLINK2's table of that phenotype."""
    for d in range(dims):
        ours = read_sumstats(run / f"sumstats/t1.latent_{d}.glm.linear.gz", usecols=["ID"])
        theirs = read_sumstats(f"{plink_prefix}.latent_{d}.glm.linear", usecols=["ID"])
        if list(ours.ID) != list(theirs.ID):
            return False
    return True


def regime(args, folder: Path, samples: int, missing: float) -> list[str]:
    """The rows of one genotype regime: 1, 3 and 128 phenotypes (or --dims), ml4ge and PLINK2."""
    import pandas as pd

    cohort = write_simulated_cohort(folder / "cohort", samples=samples, snps=args.snps, dimensions=max(args.phenotypes),
                                    missing=missing, planted=((100, 0, 0.3),), seed=1)
    latents = pd.read_csv(cohort.latents, sep="\t")
    rows = []
    for count in args.phenotypes:
        table = folder / f"latents_{count}.tsv"
        latents.iloc[:, :1 + count].to_csv(table, sep="\t", index=False)
        argv = associate_argv(cohort, folder, f"p{count}", args.threads)
        argv[argv.index(f"t1={cohort.latents}")] = f"t1={table}"
        ours = timed(argv)
        plain = timed([*argv[:-4], "--id", f"u{count}", "--num_workers", str(args.threads), "--uncompressed_sumstats",
                       "--no_plots"])
        theirs = timed(plink_argv(args.plink, cohort, folder / f"p{count}" / "exports", folder / "plink", args.threads))
        same = same_rows(folder / f"p{count}", folder / "plink", count)
        extra = ""
        if count == max(args.phenotypes):
            omnibus = timed([*argv[:-4], "--id", f"m{count}", "--num_workers", str(args.threads), "--multivariate"])
            extra = f"  --multivariate {omnibus['wall']:6.1f} s (+{omnibus['wall'] - ours['wall']:.1f} s)"
        rows.append(f"{samples:>7,} {missing:>7.0%} {count:>5} {ours['wall']:8.1f} {plain['wall']:8.1f} "
                    f"{theirs['wall']:8.1f} {theirs['wall'] / ours['wall']:7.2f}x "
                    f"{theirs['wall'] / plain['wall']:7.2f}x "
                    f"{'yes' if same else 'NO':>9}{extra}  ({load()})")
        for path in folder.glob("plink*"):
            path.unlink()
    shutil.rmtree(folder / "cohort")
    return rows


def regime_table(args, folder: Path) -> None:
    print(f"{args.snps:,} SNPs, {args.threads} threads each; wall seconds of a fresh process (imports included)")
    print("ml4ge: the default run (gzip, plots); plain: --uncompressed_sumstats --no_plots (plink2's files)")
    print(f"{'samples':>7} {'missing':>7} {'pheno':>5} {'ml4ge':>8} {'plain':>8} {'plink2':>8} {'ratio':>8} "
          f"{'plain':>8} {'same rows':>9}")
    for samples in args.regime_samples:
        for missing in (0.0, 0.02):
            for row in regime(args, folder / f"r{samples}_{missing}", samples, missing):
                print(row, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--snps", type=int, default=50_000)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--large_snps", type=int, default=500_000)
    parser.add_argument("--large_dims", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--throughput", action="store_true", help="the single-cell throughput and accuracy check")
    parser.add_argument("--memory", action="store_true", help="peak RSS at --snps and --large_snps")
    parser.add_argument("--phenotypes", type=int, nargs="+", default=[1, 3, 128])
    parser.add_argument("--regime_samples", type=int, nargs="+", default=[400, 2000])
    args = parser.parse_args()
    args.plink = shutil.which("plink2")
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        if args.throughput:
            throughput(args, Path(folder))
        if args.memory:
            memory(args, Path(folder))
        if not (args.throughput or args.memory):
            if args.plink is None:
                raise SystemExit("plink2 is not installed: the regime table compares with it.")
            regime_table(args, Path(folder))
        print(f"benchmark took {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
