"""explore: real HD5 cohorts from ml4ge.synthetic, with broken files, through the API and the CLI."""

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from ml4ge.cli import main
from ml4ge.explore import columns, explore, failure_counts, sample_row
from ml4ge.hd5 import read_dataset, write_tensor
from ml4ge.synthetic import write_cohort


@pytest.fixture
def cohort(tmp_path, volume_map, scalar_map, category_map):
    """Five good samples, one empty file, one sample without the scalar, one with a NaN volume."""
    tmaps = [volume_map, scalar_map, category_map]
    folder = tmp_path / "hd5"
    write_cohort(folder, tmaps, n=5, seed=3)
    (folder / "empty.hd5").write_bytes(b"")
    write_cohort(folder, [volume_map, category_map], n=1, seed=4, prefix="noscore")
    with h5py.File(folder / "nan0.hd5", "w") as hd5:
        write_tensor(hd5, volume_map.key, np.full(volume_map.shape[:-1], np.nan, np.float32), instance=0)
        write_tensor(hd5, scalar_map.key, np.array([1.5]), instance=0)
        write_tensor(hd5, category_map.key, np.array([2]), instance=0)
    return folder, tmaps


def test_rows_hold_stored_values_and_errors(cohort):
    folder, (volume_map, scalar_map, category_map) = cohort
    tmaps = [volume_map, scalar_map, category_map]
    paths = sorted(folder.glob("*.hd5"))
    frame = explore(paths, tmaps).set_index("sample_id")
    assert list(frame.reset_index().columns) == columns(tmaps)
    assert len(frame) == 8
    for i in range(5):
        with h5py.File(folder / f"{i}.hd5", "r") as hd5:
            stored = float(read_dataset(hd5, scalar_map.key)[0])
            category = int(read_dataset(hd5, category_map.key)[0])
            volume = read_dataset(hd5, volume_map.key)
        row = frame.loc[str(i)]
        assert row["score"] == pytest.approx(stored)
        assert [row["group_label_a"], row["group_label_b"], row["group_label_c"]] == list(np.eye(3)[category])
        assert row["vol_nonzero"] == pytest.approx(np.mean(volume != 0))  # raw values, not z-scored
        assert row["vol_mean"] == pytest.approx(volume.mean(), rel=1e-5)
        assert (row[["error_vol", "error_score", "error_group_label"]] == "").all()
    assert frame.loc["empty", "error_vol"].startswith("OSError")
    assert np.isnan(frame.loc["empty", "score"])
    assert frame.loc["noscore0", "error_score"].startswith("KeyError")
    assert frame.loc["noscore0", "error_vol"] == ""
    assert "NaN" in frame.loc["nan0", "error_vol"]
    assert frame.loc["nan0", "score"] == pytest.approx(1.5)


def test_failure_counts(cohort):
    folder, tmaps = cohort
    frame = explore(sorted(folder.glob("*.hd5")), tmaps)
    counts = failure_counts(frame, tmaps).set_index("tensor_map")
    assert counts.loc["vol", "failures"] == 2  # empty file, NaN volume
    assert counts.loc["score", "failures"] == 2  # empty file, missing dataset
    assert counts.loc["group_label", "failures"] == 1
    assert (counts.samples == 8).all()


def test_worker_processes_give_the_same_table(cohort):
    folder, tmaps = cohort
    paths = sorted(folder.glob("*.hd5"))
    serial = explore(paths, tmaps, num_workers=0)
    parallel = explore(paths, tmaps, num_workers=2)
    pd.testing.assert_frame_equal(serial, parallel)


def test_unexpected_errors_propagate(tmp_path, scalar_map):
    write_cohort(tmp_path, [scalar_map], n=1)

    def broken(tm, hd5, sample_id):
        raise ZeroDivisionError("a bug, not a bad sample")

    with pytest.raises(ZeroDivisionError):
        sample_row(tmp_path / "0.hd5", [scalar_map.with_changes(reader=broken)])


def test_recipe_writes_tables(tmp_path, capsys):
    from ml4ge.tensormaps.phenotypes import age, sex

    folder = tmp_path / "hd5"
    write_cohort(folder, [age, sex], n=4, seed=1)
    write_cohort(folder, [sex], n=1, seed=2, prefix="noage")
    (folder / "empty.hd5").write_bytes(b"")
    sample_csv = tmp_path / "samples.csv"
    pd.DataFrame({"sample_id": ["0", "1", "2", "empty", "noage0"]}).to_csv(sample_csv, index=False)
    status = main(["--mode", "explore", "--tensors", str(folder), "--input_tensors", "age", "sex",
                   "--output_folder", str(tmp_path / "runs"), "--id", "qc", "--num_workers", "0",
                   "--sample_csv", str(sample_csv)])
    assert status == 0
    run = Path(tmp_path / "runs" / "qc")
    table = pd.read_csv(run / "explore_qc.tsv", sep="\t", dtype={"sample_id": str}, keep_default_na=False)
    assert sorted(table.sample_id) == ["0", "1", "2", "empty", "noage0"]
    assert list(table.columns) == ["sample_id", "age", "error_age", "sex_female", "sex_male", "error_sex"]
    failures = pd.read_csv(run / "explore_failures.tsv", sep="\t").set_index("tensor_map")
    assert failures.loc["age", "failures"] == 2
    assert failures.loc["sex", "failures"] == 1
    assert "most_common_error" in capsys.readouterr().out


def test_recipe_fails_when_everything_fails(tmp_path):
    folder = tmp_path / "hd5"
    folder.mkdir()
    (folder / "a.hd5").write_bytes(b"not hdf5")
    status = main(["--mode", "explore", "--tensors", str(folder), "--input_tensors", "age",
                   "--output_folder", str(tmp_path / "runs"), "--num_workers", "0"])
    assert status == 1


def test_recipe_validation(tmp_path, capsys):
    cases = {"needs --tensors": ["--input_tensors", "age"],
             "Unknown TensorMap 'not_a_map'": ["--tensors", str(tmp_path), "--input_tensors", "not_a_map"],
             "TensorMaps to summarise": ["--tensors", str(tmp_path)]}
    for message, extra in cases.items():
        with pytest.raises(SystemExit):
            main(["--mode", "explore", "--output_folder", str(tmp_path)] + extra)
        assert message in capsys.readouterr().err
