"""Splits: exact ratios, independent of listing order, explicit assignments, written to and read from a run."""

import random
from argparse import Namespace

import numpy as np
import pytest

from ml4ge.splits import (
    SPLITS,
    Split,
    read_ids,
    read_split,
    split_for_run,
    split_ids,
    split_paths,
    write_split,
)
from ml4ge.synthetic import write_cohort, write_sample
from ml4ge.tensormap import TensorMap

IDS = [f"{1000000 + i}" for i in range(100)]


def write_ids(path, ids, header="sample_id"):
    path.write_text("".join(f"{line}\n" for line in ([header] if header else []) + list(ids)))
    return path


def assert_partition(split, ids):
    sets = [set(split.ids(name)) for name in SPLITS]
    assert sum(map(len, sets)) == len(set().union(*sets)), "splits overlap"
    assert set().union(*sets) == set(ids)


@pytest.mark.parametrize("n, valid_ratio, test_ratio, expected", [
    (100, 0.1, 0.2, (70, 10, 20)),
    (7, 0.25, 0.25, (3, 2, 2)),  # 1.75 rounds to 2
    (10, 0.05, 0.0, (9, 1, 0)),  # 0.5 rounds up, not to even
    (3, 0.0, 0.0, (3, 0, 0)),
])
def test_exact_counts(n, valid_ratio, test_ratio, expected):
    split = split_ids(IDS[:n], valid_ratio, test_ratio, seed=7)
    assert (len(split.train), len(split.valid), len(split.test)) == expected
    assert_partition(split, IDS[:n])


def test_same_split_for_any_listing_order_and_different_for_another_seed():
    shuffled = IDS[:]
    random.Random(3).shuffle(shuffled)
    assert split_ids(IDS, 0.1, 0.1, seed=5) == split_ids(shuffled, 0.1, 0.1, seed=5)
    assert split_ids(IDS, 0.1, 0.1, seed=5).valid != split_ids(IDS, 0.1, 0.1, seed=6).valid


def test_split_is_pinned_across_machines_and_versions():
    """sha256 ranking, not Python's salted hash(): these ids must come out the same everywhere, forever."""
    split = split_ids([f"s{i}" for i in range(10)], 0.2, 0.2, seed=12878)
    assert split == Split(("s0", "s1", "s2", "s3", "s5", "s6"), ("s4", "s9"), ("s7", "s8"))


def test_a_new_sample_moves_no_other_sample_out_of_valid_or_test():
    before = split_ids(IDS[:50], 0.2, 0.2, seed=1)
    after = split_ids(IDS[:51], 0.2, 0.2, seed=1)
    moved = [i for i in IDS[:50] if (i in before.train) != (i in after.train)]
    assert len(moved) <= 2  # only the rounding of the counts can shift a boundary sample


def test_split_of_hd5_files_is_identical_when_written_in_another_order(tmp_path):
    tm = TensorMap("x", (1,), group="p")
    forward, backward = tmp_path / "a", tmp_path / "b"
    write_cohort(forward, [tm], 30)
    backward.mkdir()
    for i in reversed(range(30)):  # created in the opposite order, so directory order differs too
        write_sample(backward / f"{i}.hd5", [tm], np.random.default_rng(i))
    split_a, paths_a = split_paths(forward, 0.2, 0.1, seed=9)
    split_b, paths_b = split_paths(backward, 0.2, 0.1, seed=9)
    assert split_a == split_b
    assert [p.name for p in paths_a["valid"]] == [p.name for p in paths_b["valid"]]
    assert [p.parent for p in paths_a["train"]] == [forward] * 21


def test_sample_csv_filters(tmp_path):
    keep = write_ids(tmp_path / "keep.csv", IDS[:40] + ["9999999"], header="eid")
    split = split_ids(IDS, 0.25, 0.25, seed=2, sample_csv=keep)
    assert_partition(split, IDS[:40])
    assert split.counts() == {"train": 20, "valid": 10, "test": 10}


def test_explicit_lists_assign_and_absent_ids_are_reported(tmp_path):
    train = write_ids(tmp_path / "train.csv", IDS[:50] + ["missing_1"])
    split = split_ids(IDS, 0.2, 0.2, seed=2, train_csv=train)
    assert split.train == tuple(sorted(IDS[:50]))
    assert len(split.valid) == len(split.test) == 10  # 20% of the 50 ids left over; the other 30 are left out
    assert not set(split.valid + split.test) & set(IDS[:50])
    assert split.absent == {"train": ("missing_1",)}

    test = write_ids(tmp_path / "test.csv", IDS[90:], header=None)
    split = split_ids(IDS, 0.1, 0.3, seed=2, test_csv=test)
    assert split.test == tuple(IDS[90:])
    assert split.counts() == {"train": 81, "valid": 9, "test": 10}
    assert_partition(split, IDS)


def test_an_id_in_two_explicit_lists_is_an_error(tmp_path):
    train = write_ids(tmp_path / "train.csv", IDS[:10])
    valid = write_ids(tmp_path / "valid.csv", IDS[9:20])
    with pytest.raises(ValueError, match=f"'{IDS[9]}' is in both --train_csv and --valid_csv"):
        split_ids(IDS, 0.1, 0.1, seed=1, train_csv=train, valid_csv=valid)


def test_bad_ratios_are_refused():
    with pytest.raises(ValueError, match="sum below 1"):
        split_ids(IDS, 0.5, 0.5, seed=1)


def test_read_ids_header_rules(tmp_path):
    assert read_ids(write_ids(tmp_path / "a.csv", ["1", "2"], header="EID")) == ["1", "2"]
    assert read_ids(write_ids(tmp_path / "b.csv", ["1", "2"], header=None)) == ["1", "2"]
    assert read_ids(write_ids(tmp_path / "c.csv", ["s1", "s2"], header="subject")) == ["s1", "s2"]
    assert read_ids(write_ids(tmp_path / "d.csv", ["s1", "s2"], header=None), known={"s1"}) == ["s1", "s2"]
    (tmp_path / "e.tsv").write_text("age\tsample_id\n60\ts1\n61\ts2\n")
    assert read_ids(tmp_path / "e.tsv") == ["s1", "s2"]
    (tmp_path / "empty.csv").write_text("sample_id\n")
    with pytest.raises(ValueError, match="holds no sample ids"):
        read_ids(tmp_path / "empty.csv")


def test_written_split_reads_back_and_is_reused_by_a_resumed_run(tmp_path):
    tm = TensorMap("x", (1,), group="p")
    write_cohort(tmp_path / "tensors", [tm], 20)
    args = Namespace(tensors=str(tmp_path / "tensors"), valid_ratio=0.2, test_ratio=0.2, random_seed=4,
                     sample_csv=None, train_csv=None, valid_csv=None, test_csv=None)
    run = tmp_path / "run"
    first = split_for_run(args, run)
    assert sorted(p.name for p in run.iterdir()) == ["test.csv", "train.csv", "valid.csv"]
    written = read_split(run)
    assert written == split_paths(args.tensors, 0.2, 0.2, 4)[0]
    assert [p.name for p in first["valid"]] == [f"{i}.hd5" for i in written.valid]

    args.random_seed = 5  # a resumed run keeps its split even if the flags changed
    assert split_for_run(args, run) == first


def test_write_split_roundtrip_keeps_empty_splits(tmp_path):
    split = Split(("a", "b"), (), ("c",))
    write_split(split, tmp_path)
    assert read_split(tmp_path) == split
    with pytest.raises(FileNotFoundError, match="valid.csv"):
        (tmp_path / "valid.csv").unlink()
        read_split(tmp_path)
