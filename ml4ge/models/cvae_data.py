"""Half-and-half batches for the ``cvae`` family: target samples in the first half of every batch, background
samples in the second (``--target_csv``, ``--background_csv``).

The run's split (train/valid/test over the samples of both lists) is made as for any run; each split's samples are
then told apart by list. Each group is read by its own :class:`~ml4ge.pipeline.TensorDataset` at half the batch
size, and the two are zipped, pair by pair as the seed did: an epoch ends with the shorter group, and a last pair
of unequal halves is cut to the smaller one, so every batch holds n target and n background rows.

Example:
    >>> groups = split_groups(paths["train"], target_ids, background_ids)
    >>> with HalfAndHalf(TensorDataset(groups["target"], ...), TensorDataset(groups["background"], ...)) as data:
    ...     model.fit(data.dataset())
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)
GROUPS = ("target", "background")


def split_groups(paths, target_ids, background_ids, split: str = "train") -> dict[str, list[Path]]:
    """``{"target": paths, "background": paths}`` of one split's ``paths`` by sample id (file stem).

    Raises:
        ValueError: when a sample is in both lists, or the split lacks one group.
    """
    both = sorted(set(target_ids) & set(background_ids))
    if both:
        raise ValueError(f"{len(both)} samples are in both --target_csv and --background_csv (e.g. {both[:3]}); "
                         "a sample is either a target or a background sample.")
    targets, backgrounds = set(target_ids), set(background_ids)
    groups = {"target": [p for p in paths if Path(p).stem in targets],
              "background": [p for p in paths if Path(p).stem in backgrounds]}
    for name, members in groups.items():
        if paths and not members:
            raise ValueError(f"the {split} split holds no {name} sample: give more samples or other split ratios "
                             f"(--valid_ratio, --test_ratio), or assign samples with --{split}_csv.")
    left_out = len(paths) - sum(map(len, groups.values()))
    if left_out:
        log.warning("%d samples of the %s split are in neither --target_csv nor --background_csv: not used",
                    left_out, split)
    return groups


class HalfAndHalf:
    """Two :class:`~ml4ge.pipeline.TensorDataset` (target, background) as one dataset of joined batches."""

    def __init__(self, target, background):
        self.target, self.background = target, background

    def dataset(self):
        import tensorflow as tf

        def join(first, second):
            n = tf.minimum(tf.shape(tf.nest.flatten(first)[0])[0], tf.shape(tf.nest.flatten(second)[0])[0])
            return tf.nest.map_structure(lambda a, b: tf.concat([a[:n], b[:n]], axis=0), first, second)

        return tf.data.Dataset.zip(self.target.dataset(), self.background.dataset()).map(join)

    def close(self) -> None:
        self.target.close()
        self.background.close()

    def __enter__(self) -> HalfAndHalf:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
