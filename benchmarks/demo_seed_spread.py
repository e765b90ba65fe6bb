"""The spread of the default demo's headline figures over runs with different training seeds.

    python benchmarks/demo_seed_spread.py RUN_FOLDER [RUN_FOLDER ...]

Each RUN_FOLDER is a finished ``--mode demo`` folder (``demo_output/demo``), typically of the same cohort
(``--demo_data``) trained with different ``--random_seed``. Prints the README's headline table with each cell as
``mean [min, max]`` over the runs, marks the cells whose range exceeds ``MOVES`` (they move between runs; quote
them with their range), and lists the planted SNPs' best -log10 P per run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

SPACES = ("ae_t1", "ae_t2", "dropfuse_t1", "dropfuse_t2", "ae_deep")
# (row label, compare folder, phenotype, baseline space)
ROWS = (
    ("age R^2", "compare", "age", "brain_volume_only"),
    ("sex AUC", "compare", "sex", "brain_volume_only"),
    ("ventricle volume R^2, with age + sex", "compare_adjusted", "ventricle_volume", "covariates"),
    ("hippocampus asymmetry R^2, with age + sex", "compare_adjusted", "hippocampus_asymmetry", "covariates"),
    ("thalamus volume R^2, with age + sex", "compare_adjusted", "thalamus_volume", "covariates"),
    ("putamen volume R^2, with age + sex", "compare_adjusted", "putamen_volume", "covariates"),
)
MOVES = 0.05  # a range wider than this is reported as moving between runs


def summary(run: Path, folder: str) -> pd.DataFrame:
    table = pd.read_csv(run / folder / "compare_summary.tsv", sep="\t")
    return table.set_index(["space", "phenotype"])["mean"]


def cell(values: list[float]) -> str:
    series = pd.Series(values)
    text = f"{series.mean():.2f}"
    if len(values) > 1:
        text += f" [{series.min():.2f}, {series.max():.2f}]"
    return text + (" *" if series.max() - series.min() > MOVES else "")


def headline(runs: list[Path]) -> str:
    lines = ["| | " + " | ".join(SPACES) + " | baseline |", "|---" * (len(SPACES) + 2) + "|"]
    for label, folder, phenotype, baseline in ROWS:
        tables = [summary(run, folder) for run in runs]
        cells = [cell([t[(space, phenotype)] for t in tables]) for space in (*SPACES, baseline)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed(run: Path) -> int:
    return json.loads((run / "arguments_demo.json").read_text())["random_seed"]


def planted(runs: list[Path]) -> str:
    rows = []
    for run in runs:
        truth = pd.read_csv(run / "associate" / "truth_snps.tsv", sep="\t")
        rows.append(truth.assign(seed=seed(run))[["seed", "id", "trait", "hit", "best_log10p", "best_space"]])
    return pd.concat(rows).to_string(index=False)


def main(argv: list[str]) -> int:
    runs = [Path(arg) for arg in argv]
    missing = [str(run) for run in runs if not (run / "compare" / "compare_summary.tsv").is_file()]
    if not runs or missing:
        print(f"usage: demo_seed_spread.py RUN_FOLDER...; not finished demo folders: {missing}", file=sys.stderr)
        return 2
    print(f"{len(runs)} runs (seeds {', '.join(str(seed(run)) for run in runs)}); * marks a range wider than {MOVES}\n")
    print(headline(runs))
    print()
    print(planted(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
