"""``--mode merge_shards``: join the shards written by ``infer_encoders --shard i/n`` in ``<output_folder>/<id>/``.

Every table's shards must all be present (same ``n``), have the same columns and share no sample id; the joined
``hidden_<tmap>_<id>.tsv`` is written atomically. The shards' ``skipped_samples.shard_i_of_n.tsv`` are joined
into ``skipped_samples.tsv``. Shard files are kept (remove them once the merged tables are checked).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from ml4ge.arguments import flag_settings
from ml4ge.latents import find_shards, merge_table
from ml4ge.recipes.settings import RunSettings

log = logging.getLogger(__name__)


@flag_settings
class MergeShardsSettings(RunSettings):
    """The flags of ``--mode merge_shards``: the run folder holding the shards."""

    mode = "merge_shards"


Settings = MergeShardsSettings


def shard_folder(args: MergeShardsSettings) -> Path:
    return Path(args.output_folder) / args.id


def validate(args: MergeShardsSettings) -> None:
    """Raises ValueError when the run folder holds no shard files."""
    if not find_shards(shard_folder(args)):
        raise ValueError(f"{shard_folder(args)} holds no hidden_*.shard_<i>_of_<n>.tsv files; run --mode "
                         "infer_encoders --shard i/n with the same --output_folder and --id first.")


def read_skipped(path: Path) -> list[tuple[str, str, str]]:
    """Rows (sample_id, tensor, reason) of a skipped-samples TSV, without its header."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    return [tuple(row) for row in rows[1:] if len(row) == 3]


def run(args: MergeShardsSettings) -> int:
    """Merge every table's shards. Returns 0."""
    from ml4ge.skipped import SkippedSamples

    folder = shard_folder(args)
    for stem, shards in find_shards(folder).items():
        path, rows = merge_table(folder, stem, shards)
        log.info("merged %d shards into %s (%d samples)", len(shards), path, rows)
    shard_skips = sorted(folder.glob("skipped_samples.shard_*_of_*.tsv"))
    if shard_skips:
        merged = SkippedSamples(folder)
        for path in shard_skips:
            for row in read_skipped(path):
                merged.record(*row)
        merged.write()
    return 0
