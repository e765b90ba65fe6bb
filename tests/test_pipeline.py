"""The input pipeline: worker processes, bad-sample skipping, shuffling, caching, tf.data and the ml4h layout."""

import csv
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from ml4ge.batch_reading import Batch
from ml4ge.hd5 import write_tensor
from ml4ge.normalizers import brain_zscore
from ml4ge.pipeline import (
    NoUsableSamplesError,
    SampleError,
    SkippedSamples,
    TensorDataset,
    iterate_batches,
    make_dataset,
    read_sample,
    rebatch,
    target_shape,
)
from ml4ge.synthetic import write_cohort
from ml4ge.tensormap import TensorMap

SHAPE = (8, 8, 8, 1)


@pytest.fixture(scope="module")
def vol():
    return TensorMap("vol", SHAPE, group="mri", normalization=brain_zscore(), mask="nonzero")


@pytest.fixture(scope="module")
def age():
    return TensorMap("age", (1,), group="phenotypes")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, vol, age):
    """Ten good samples."""
    return write_cohort(tmp_path_factory.mktemp("good"), [vol, age], 10)


def _write(path, datasets):
    with h5py.File(path, "w") as hd5:
        for key, value in datasets.items():
            write_tensor(hd5, key, value, instance=0)
    return path


def _volume(value=1.0):
    return np.full(SHAPE[:-1], value, np.float32)


def _write_raw(path, make_node):
    """A file whose ``mri/vol`` is whatever ``make_node(hd5)`` puts there (h5py's own calls, not write_tensor)."""
    with h5py.File(path, "w") as hd5:
        write_tensor(hd5, "phenotypes/age", [1.0], instance=0)
        make_node(hd5)
    return path


COMPOUND = np.dtype([("a", "f4"), ("b", "i4")])


# Each bad kind: how to make it, and a piece of the reason it must be listed with.
BAD_KINDS = {
    "missing": (lambda p, good: _write(p, {"phenotypes/age": [1.0]}), "vol", "missing dataset 'mri/vol'"),
    "wrong_rank": (lambda p, good: _write(p, {"mri/vol": np.ones((8, 8)), "phenotypes/age": [1.0]}), "vol",
                   "cannot take the TensorMap shape"),
    "nan": (lambda p, good: _write(p, {"mri/vol": _volume(np.nan), "phenotypes/age": [1.0]}), "vol", "NaN or Inf"),
    "inf": (lambda p, good: _write(p, {"mri/vol": _volume(np.inf), "phenotypes/age": [1.0]}), "vol", "NaN or Inf"),
    "truncated": (lambda p, good: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]), "(file)",
                  "corrupt HDF5 file (truncated file)"),
    "not_hdf5": (lambda p, good: p.write_text("sample_id,age\n1,50\n"), "(file)", "not an HDF5 file"),
    "empty": (lambda p, good: p.write_bytes(b""), "(file)", "empty file"),
    # h5py raises TypeError for these, which readers once let through and which stopped the whole run.
    "compound_dtype": (lambda p, good: _write_raw(p, lambda f: f.create_dataset(
        "mri/vol/instance_0", data=np.zeros(SHAPE[:-1], COMPOUND))), "vol", "TypeError: Cannot cast"),
    "group_for_dataset": (lambda p, good: _write_raw(p, lambda f: f.create_group("mri/vol/instance_0/x")), "vol",
                          "is a group, not a dataset"),
    # A corrupt header claiming terabytes: reading it would end the run out of memory.
    "huge": (lambda p, good: _write_raw(p, lambda f: f.create_dataset(
        "mri/vol/instance_0", shape=(2**16, 2**16, 2**10), dtype="f4", chunks=SHAPE[:-1])), "vol", "claims shape"),
    # Finite as stored (float64), infinite as the model's float32.
    "overflow": (lambda p, good: _write(p, {"mri/vol": _volume() + np.eye(8)[:, :, None], "phenotypes/age": [1e300]}),
                 "age", "NaN or Inf after reading"),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, cohort):
    folder = tmp_path_factory.mktemp("bad")
    paths = {}
    for kind, (make, _, _) in BAD_KINDS.items():
        paths[kind] = folder / f"bad_{kind}.hd5"
        make(paths[kind], cohort[0])
    return paths


def _ids(batches):
    return [sample_id for batch in batches for sample_id in batch.ids]


@pytest.fixture(scope="module")
def skipped_run(tmp_path_factory, cohort, bad_files, vol, age):
    """One pass over good and bad files with 2 workers, returning the TSV rows and the ids read."""
    run = tmp_path_factory.mktemp("run")
    skipped = SkippedSamples(run)
    with TensorDataset([*cohort, *bad_files.values()], [vol], [vol, age], 4, skipped=skipped) as data:
        ids = _ids(data.batches()) + _ids(data.batches())
    with open(run / "skipped_samples.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return rows, ids, skipped


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_bad_kind_is_skipped_and_listed_with_reason(skipped_run, kind):
    rows, ids, _ = skipped_run
    _, tensor, reason = BAD_KINDS[kind]
    listed = [r for r in rows if r["sample_id"] == f"bad_{kind}"]
    assert len(listed) == 1, f"{kind} listed {len(listed)} times in {rows}"
    assert listed[0]["tensor"] == tensor
    assert reason in listed[0]["reason"]
    assert f"bad_{kind}" not in ids


def test_good_samples_all_read_and_skips_counted_once(skipped_run, cohort):
    rows, ids, skipped = skipped_run
    assert sorted(ids) == sorted([p.stem for p in cohort] * 2)
    assert skipped.count == len(BAD_KINDS) == len(rows)
    assert skipped.reasons()["OSError: empty file"] == 1


def test_read_sample_raises_sample_error(bad_files, vol):
    with pytest.raises(SampleError) as caught:
        read_sample(bad_files["nan"], [vol], [])
    assert (caught.value.sample_id, caught.value.tensor) == ("bad_nan", "vol")


def test_all_bad_raises_naming_commonest_reasons(bad_files, vol):
    paths = [bad_files["empty"], bad_files["not_hdf5"], bad_files["missing"]]
    with TensorDataset(paths, [vol], [vol], 2, num_workers=0) as data:
        with pytest.raises(NoUsableSamplesError, match="none of the 3 samples") as caught:
            list(data.batches())
    assert "1 x OSError: empty file" in str(caught.value)
    assert "missing dataset 'mri/vol'" in str(caught.value)
    with pytest.raises(NoUsableSamplesError):
        list(iterate_batches(paths, [vol], [], 2, num_workers=0))


def test_tf_dataset_keys_shapes_dtypes_and_keras_fit(cohort, vol, age):
    import keras
    import tensorflow as tf

    with TensorDataset(cohort, [vol], [vol, age], 4, num_workers=1) as data:
        dataset = data.dataset()
        sizes = []
        for inputs, outputs in dataset:
            assert set(inputs) == {"input_vol"} and set(outputs) == {"output_vol", "output_age"}
            assert inputs["input_vol"].shape[1:] == SHAPE and inputs["input_vol"].dtype == tf.float32
            assert outputs["output_vol"].shape[1:] == target_shape(vol) == (8, 8, 8, 2)
            assert outputs["output_age"].shape[1:] == (1,) and outputs["output_age"].dtype == tf.float32
            sizes.append(int(inputs["input_vol"].shape[0]))
        assert sizes == [4, 4, 2]

        x = keras.Input(SHAPE, name="input_vol")
        flat = keras.layers.Flatten()(x)
        decoded = keras.layers.Reshape((8, 8, 8, 2))(keras.layers.Dense(1024)(flat))
        model = keras.Model({"input_vol": x}, {"output_vol": decoded, "output_age": keras.layers.Dense(1)(flat)})
        model.compile("adam", {"output_vol": "mse", "output_age": "mse"})
        history = model.fit(dataset, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


def test_epochs_shuffle_differently_over_the_same_set(cohort, vol):
    with TensorDataset(cohort, [vol], [], 3, num_workers=0, seed=5) as data:
        first, second = _ids(data.batches()), _ids(data.batches())
        again = _ids(data.batches(epoch=0))
    assert first != second and sorted(first) == sorted(second) == sorted(p.stem for p in cohort)
    assert again == first  # seeded: epoch e always uses seed + e
    with TensorDataset(cohort, [vol], [], 3, num_workers=0, shuffle=False) as data:
        assert _ids(data.batches()) == [p.stem for p in cohort]


def test_one_and_two_workers_read_the_same_samples(cohort, vol):
    read = {}
    for workers in (1, 2):
        with TensorDataset(cohort, [vol], [], 4, num_workers=workers) as data:
            batches = list(data.batches())
        read[workers] = dict(zip(_ids(batches), np.concatenate([b.inputs["input_vol"] for b in batches])))
    assert sorted(read[1]) == sorted(read[2]) == sorted(p.stem for p in cohort)
    for sample_id, values in read[1].items():
        np.testing.assert_array_equal(values, read[2][sample_id])


def test_cache_serves_identical_values_without_the_files(tmp_path, vol, age):
    paths = write_cohort(tmp_path, [vol, age], 5)
    _write(tmp_path / "z_bad.hd5", {"phenotypes/age": [1.0]})
    skipped = SkippedSamples(tmp_path / "run")
    with TensorDataset([*paths, tmp_path / "z_bad.hd5"], [vol], [age], 2, shuffle=False, cache=True,
                       num_workers=1, skipped=skipped) as data:
        first = list(data.batches())
        for path in paths:
            path.unlink()  # the second pass must come from memory
        second = list(data.batches())
    assert _ids(first) == _ids(second) == [p.stem for p in paths]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.inputs["input_vol"], b.inputs["input_vol"])
        np.testing.assert_array_equal(a.outputs["output_age"], b.outputs["output_age"])
    assert skipped.sample_ids == {"z_bad"}


def test_cache_with_augment_is_refused(cohort, vol):
    with pytest.raises(ValueError, match="augment"):
        TensorDataset(cohort, [vol], [], 2, cache=True, augment=True)


def test_iterate_batches_ids_align_with_values(tmp_path, age):
    volume = TensorMap("v", SHAPE, group="mri")
    paths = []
    for i in range(7):
        datasets = {"mri/v": _volume(i), "phenotypes/age": [float(i)]} if i != 3 else {"phenotypes/age": [3.0]}
        paths.append(_write(tmp_path / f"{i}.hd5", datasets))
    skipped = SkippedSamples(tmp_path / "run" / "skipped_samples.tsv")
    seen = []
    for ids, inputs, outputs in iterate_batches(paths, [volume], [age], 2, num_workers=2, skipped=skipped):
        assert len(ids) == len(inputs["input_v"]) == len(outputs["output_age"])
        for row, sample_id in enumerate(ids):
            assert np.all(inputs["input_v"][row] == int(sample_id))
            assert outputs["output_age"][row, 0] == int(sample_id)
        seen += ids
    assert seen == ["0", "1", "2", "4", "5", "6"]
    assert skipped.sample_ids == {"3"} and skipped.path.exists()


def _batch(ids):
    values = np.array([ord(i) for i in ids], np.float32).reshape(-1, 1)
    return Batch(list(range(len(ids))), list(ids), {"x": values}, {})


def test_rebatch_fills_batches_after_skips():
    chunks = [_batch("ab"), _batch("c"), _batch("de"), _batch(""), _batch("fg")]
    batches = list(rebatch(chunks, 2))
    assert [b.ids for b in batches] == [["a", "b"], ["c", "d"], ["e", "f"], ["g"]]
    for batch in batches:  # rows stay with their ids
        assert batch.inputs["x"][:, 0].tolist() == [ord(i) for i in batch.ids]
    assert [b.ids for b in rebatch(chunks, 3, drop_remainder=True)] == [["a", "b", "c"], ["d", "e", "f"]]


def test_skipped_samples_merge_across_writers_and_replace_atomically(tmp_path):
    first = SkippedSamples(tmp_path)
    first.record("1", "t1", "KeyError: missing")
    first.record("1", "t1", "KeyError: missing")
    first.write()
    second = SkippedSamples(tmp_path)
    second.record("2", "(file)", "OSError: empty file")
    path = second.write()
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows == [["sample_id", "tensor", "reason"], ["1", "t1", "KeyError: missing"],
                    ["2", "(file)", "OSError: empty file"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["skipped_samples.tsv"]


def _write_ml4h_slices(path, volume):
    with h5py.File(path, "w") as hd5:
        for i in range(volume.shape[-1]):
            hd5.create_dataset(f"ukb_brain_mri/T1/axial_{i}/instance_0", data=volume[..., i])


def test_ml4h_slice_per_dataset_layout_reads_as_volume_and_slice_stack(tmp_path):
    volume = np.arange(8 * 8 * 12, dtype=np.float32).reshape(8, 8, 12) + 1
    for sample in ("a", "b"):
        _write_ml4h_slices(tmp_path / f"{sample}.hd5", volume)
    as_volume = TensorMap("t1_ml4h", (8, 8, 12, 1), group="ukb_brain_mri", dataset="T1")
    as_slices = TensorMap("t1_slices", (8, 8, 3), group="ukb_brain_mri", dataset="T1", axial_slices=(2, 5, 11))
    inputs, _ = read_sample(tmp_path / "a.hd5", [as_volume, as_slices], [])
    np.testing.assert_array_equal(inputs["input_t1_ml4h"][..., 0], volume)
    np.testing.assert_array_equal(inputs["input_t1_slices"], volume[..., [2, 5, 11]])
    ids, batch, _ = next(iterate_batches(sorted(tmp_path.glob("*.hd5")), [as_volume], [], 2, num_workers=0))
    assert ids == ["a", "b"] and batch["input_t1_ml4h"].shape == (2, 8, 8, 12, 1)


def test_unpicklable_maps_fail_before_work_with_a_hint(cohort):
    odd = TensorMap("odd", SHAPE, group="mri", dataset="vol", validator=lambda tm, x: None)
    with pytest.raises(ValueError, match="module-level functions"):
        TensorDataset(cohort, [odd], [], 2, num_workers=1)
    with TensorDataset(cohort, [odd], [], 2, num_workers=0) as data:
        assert len(_ids(data.batches())) == len(cohort)


def test_abandoned_pass_exits_cleanly(cohort, vol):
    """A script that leaves a pass half read and never closes its dataset still exits (no hang at exit)."""
    script = textwrap.dedent(f"""
        from ml4ge.pipeline import TensorDataset
        from ml4ge.tensormap import TensorMap
        if __name__ == "__main__":
            vol = TensorMap("vol", {SHAPE}, group="mri")
            data = TensorDataset({[str(p) for p in cohort]}, [vol], [vol], 2, num_workers=2)
            batch = next(data.batches())
            print("read", len(batch.ids))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "read 2" in done.stdout


def test_stop_pools_stops_the_workers_of_a_dataset_left_open_mid_pass(cohort, vol):
    """What the test session does before pytest's last garbage collection: a dataset left open, a tf.data iterator
    prefetching from it, and stop_pools stops its workers and lets the iterator go."""
    import psutil

    from ml4ge.workers import stop_pools

    data = TensorDataset(cohort, [vol], [vol], 2, num_workers=2)
    iterator = iter(data.dataset())
    next(iterator)
    workers = [psutil.Process(pid) for pid in data.pool._executor._processes]
    assert len(workers) == 2
    assert stop_pools() >= 1 and data.pool._executor is None
    assert not [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert stop_pools() == 0
    del iterator  # its pass was cut short: destroying it must not wait on the stopped pool


@pytest.mark.parametrize("workers", [0, 2])
def test_make_dataset_full_batches_with_drop_remainder(cohort, bad_files, vol, workers):
    dataset = make_dataset([*cohort, bad_files["nan"]], [vol], [], 3, drop_remainder=True, num_workers=workers)
    assert dataset.element_spec[0]["input_vol"].shape[0] == 3
    assert [int(x["input_vol"].shape[0]) for x, _ in dataset] == [3, 3, 3]


def _values(batches):
    return {i: row for b in batches for i, row in zip(b.ids, b.inputs["input_vol"])}


def test_abandoned_pass_does_not_corrupt_the_next_and_frees_shared_memory(cohort, vol):
    with TensorDataset(cohort, [vol], [], 2, num_workers=0, shuffle=False) as data:
        expected = _values(data.batches())
    with TensorDataset(cohort, [vol], [], 2, num_workers=2, shuffle=False, prefetch=2) as data:
        first = data.batches()
        next(first)  # workers are still filling shared-memory slots for this pass
        second = _values(data.batches())  # runs while the first pass holds slots
        first.close()
        third = _values(data.batches())
        memory = data.pool._slots.memory.name
    for seen in (second, third):
        assert sorted(seen) == sorted(expected)
        for sample_id, row in expected.items():
            np.testing.assert_array_equal(seen[sample_id], row)
    with pytest.raises(FileNotFoundError):
        from multiprocessing.shared_memory import SharedMemory

        SharedMemory(memory)


def _out_of_memory(tm, hd5, sample_id):
    raise MemoryError("cannot allocate")


def _buggy_reader(tm, hd5, sample_id):
    return None.shape  # a bug in a map's code: fails the same way for every sample


def test_memory_error_stops_the_run_and_a_buggy_map_fails_every_sample_clearly(cohort):
    """Errors of the run itself propagate; a map that fails for every sample ends the pass with the reason."""
    starving = TensorMap("starving", (1,), reader=_out_of_memory)
    with TensorDataset(cohort, [starving], [], 2, num_workers=0) as data:
        with pytest.raises(MemoryError):
            list(data.batches())
    buggy = TensorMap("buggy", (1,), reader=_buggy_reader)
    with TensorDataset(cohort, [buggy], [], 2, num_workers=1) as data:
        with pytest.raises(NoUsableSamplesError, match="10 x AttributeError: 'NoneType' object has no attribute"):
            list(data.batches())
