"""``--mode explore``: a QC table of a cohort, one row per sample, and failure counts per TensorMap.

Writes ``explore_<id>.tsv`` (see :mod:`ml4ge.explore` for its columns) and ``explore_failures.tsv`` in
``<output_folder>/<id>/``, and prints the failure counts. A run in which no sample read any TensorMap stops
with an error.

Example:
    python recipes.py --mode explore --tensors hd5/ --input_tensors t1 age sex --id qc --num_workers 4
"""

from __future__ import annotations

import logging
from pathlib import Path

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.explore import error_column, explore, failure_counts, write_tsv
from ml4ge.hd5 import hd5_paths, sample_id_from_path
from ml4ge.lookup import resolve_all
from ml4ge.readers import read_table
from ml4ge.recipes.settings import RunSettings

log = logging.getLogger(__name__)


@flag_settings
class ExploreSettings(RunSettings):
    """The flags of ``--mode explore``: the cohort and the TensorMaps to summarise."""

    mode = "explore"
    tensors: str | None
    input_tensors: tuple[str, ...]
    output_tensors: tuple[str, ...]
    tensormap_prefix: str | None
    sample_csv: str | None


Settings = ExploreSettings


def _tmaps(args: ExploreSettings):
    names = list(dict.fromkeys([*args.input_tensors, *args.output_tensors]))
    return resolve_all(names, args.tensormap_prefix)


def validate(args: ExploreSettings) -> None:
    """Raises ValueError/FileNotFoundError/KeyError before any work when the flags cannot work."""
    if not args.tensors:
        raise ValueError("--mode explore needs --tensors, the folder of .hd5 files to explore.")
    if not Path(args.tensors).is_dir():
        raise FileNotFoundError(f"--tensors {args.tensors!r} is not a folder; point it at a folder of .hd5 files.")
    if not args.input_tensors and not args.output_tensors:
        raise ValueError("--mode explore needs the TensorMaps to summarise: --input_tensors t1 age ...")
    _tmaps(args)


def sample_paths(args: ExploreSettings) -> list[Path]:
    """The HD5 files of ``--tensors``, restricted to ``--sample_csv`` when given.

    Raises:
        ValueError: if no file is left.
    """
    paths = hd5_paths(args.tensors)
    if args.sample_csv:
        wanted = set(read_table(args.sample_csv).index)
        paths = [p for p in paths if sample_id_from_path(p) in wanted]
    if not paths:
        raise ValueError(f"no .hd5 files in {args.tensors!r}" + (f" listed in {args.sample_csv}" if args.sample_csv
                                                                  else "") + ".")
    return paths


def run(args: ExploreSettings) -> int:
    """Explore the cohort and write the tables; returns 0.

    Raises:
        RuntimeError: if every sample failed for every TensorMap.
    """
    tmaps = _tmaps(args)
    paths = sample_paths(args)
    folder = run_folder(args)
    frame = explore(paths, tmaps, num_workers=args.num_workers)
    table = write_tsv(frame, folder / f"explore_{args.id}.tsv")
    failures = failure_counts(frame, tmaps)
    write_tsv(failures, folder / "explore_failures.tsv")
    print(f"explored {len(frame)} samples into {table}")
    print(failures.to_string(index=False))
    log.info("explore failures:\n%s", failures.to_string(index=False))
    if (frame[[error_column(tm) for tm in tmaps]] != "").all(axis=None):
        raise RuntimeError(f"every TensorMap failed for every sample in {args.tensors}; see {table} for the reasons.")
    return 0
