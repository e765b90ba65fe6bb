"""Truth check of PerDI on the demo cohort, trait route: do the latent dimensions most correlated with a planted
trait map to the region the trait was planted in? (The demo's interpret stage takes the SNP route instead; the
logic of both lives in :mod:`ml4ge.demo.truth`.)

Usage::

    python examples/interpret_demo_truth.py --demo_folder demo_output/<id> [--data <cohort folder>]
        [--model ae_t1] [--dimensions_per_trait 2] [--interpret_samples 500]

For each planted trait of ``truth.json`` (``regions: {trait: [atlas names]}``), the latent dimensions of
``<demo>/latents/<model>/hidden_<tmap>_<model>.tsv`` most correlated with the trait (|Pearson r|, the trait and
the latents residualised on ``--adjust``: age, sex and brain volume by default, since the demo ages and scales
every region) are interpreted with
``--mode interpret`` (decoder of the model's modality, the cohort's atlas), and the rank of each planted region
among the atlas regions is reported, per hemisphere and with left/right merged. Writes ``truth_ranks.tsv`` and
``truth_ranks.md`` in ``<demo>/interpret_truth/`` (or ``--output``) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from ml4ge.atomic import write_table, write_text
from ml4ge.compare import load_latents
from ml4ge.demo.truth import planted_ranks, top_dimensions


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo_folder", required=True, type=Path, help="<output_folder>/<id> of a demo run.")
    parser.add_argument("--data", type=Path, help="the demo cohort folder (default <demo_folder>/data).")
    parser.add_argument("--output", type=Path, help="run folder of this check (default <demo_folder>/interpret_truth).")
    parser.add_argument("--model", default="ae_t1", help="demo model whose decoder is interpreted (ae_t1, ae_t2).")
    parser.add_argument("--dimensions_per_trait", type=int, default=2)
    parser.add_argument("--interpret_samples", type=int, default=500)
    parser.add_argument("--smooth_sigma", type=float, default=1.0,
                        help="voxels; the demo's grid is 3-5 mm, so PerDI's 3 mm is about one voxel.")
    parser.add_argument("--batch_size", type=int, default=10)
    parser.add_argument("--adjust", nargs="*", default=["age", "sex", "brain_volume"],
                        help="phenotype columns removed from the trait and the latents before correlating.")
    return parser.parse_args(argv)


def run_interpret(args, settings: dict, table: Path, dimensions, out: Path) -> Path:
    from ml4ge.cli import main

    tmap = settings["t1"] if args.model.endswith("t1") else settings["t2"]
    argv = ["--mode", "interpret", "--latent_tables", str(table), "--output_tensors", tmap,
            "--tensors", str(args.demo_folder / "tensors"),
            "--model_file", str(args.demo_folder / args.model / f"{args.model}.keras"),
            "--interpret_dimensions", *map(str, dimensions), "--interpret_samples", str(args.interpret_samples),
            "--smooth_sigma", str(args.smooth_sigma), "--batch_size", str(args.batch_size),
            "--atlas", str(args.data / "atlas.nii.gz"), "--atlas_labels", str(args.data / "atlas_labels.tsv"),
            "--output_folder", str(out.parent), "--id", out.name, "--num_workers", "0"]
    if main(argv) != 0:
        raise RuntimeError(f"--mode interpret failed; see {out / 'log.txt'}")
    return next(out.glob("perdi_*/"))


def main(argv=None) -> int:
    args = parse(argv)
    args.data = args.data or args.demo_folder / "data"
    settings = json.loads((args.demo_folder / "demo.json").read_text())["settings"]
    truth = json.loads((args.data / "truth.json").read_text())
    short = (settings["t1"] if args.model.endswith("t1") else settings["t2"]).split(".")[-1]
    table = args.demo_folder / "latents" / args.model / f"hidden_{short}_{args.model}.tsv"
    phenotypes = pd.read_csv(args.data / "phenotypes.csv", dtype={"sample_id": str}).set_index("sample_id")
    chosen = top_dimensions(load_latents(table), phenotypes, list(truth["regions"]), args.dimensions_per_trait,
                            args.adjust)
    out = args.output or args.demo_folder / "interpret_truth"
    maps = run_interpret(args, settings, table, sorted(set(chosen["dimension"])), out)
    ranks = planted_ranks(maps, args.data / "atlas.nii.gz", args.data / "atlas_labels.tsv", chosen, truth["regions"])
    write_table(ranks, out / "truth_ranks.tsv")
    write_text(out / "truth_ranks.md", ranks.to_markdown(index=False) if _has_tabulate() else ranks.to_string())
    print(ranks.to_string(index=False))
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
