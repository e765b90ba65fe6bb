"""Brain age: the leak-free linear bias correction, the summaries, and ``--mode brain_age`` on a trained SFCN."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from ml4ge.brain_age import LeakError, brain_age_table, fit_bias_correction, split_summary, summary_row
from ml4ge.cli import main
from ml4ge.compare import load_latents


def _series(values, ids):
    return pd.Series(np.asarray(values, float), index=pd.Index(ids, name="sample_id"))


# ------------------------------------------------------------------------------------------ the correction
def test_correction_recovers_a_planted_linear_bias_exactly():
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(50)]
    age = _series(rng.uniform(45, 80, 50), ids)
    predicted = 20.0 + 0.6 * age  # regression to the mean: the young look older, the old younger
    bias = fit_bias_correction(predicted, age)
    assert bias.intercept == pytest.approx(20.0, abs=1e-9) and bias.slope == pytest.approx(0.6, abs=1e-12)
    table = brain_age_table(predicted, age, bias)
    np.testing.assert_allclose(table["brain_age"], age, atol=1e-9)
    np.testing.assert_allclose(table["bag"], 0.0, atol=1e-9)


def test_bag_of_the_correction_set_has_zero_correlation_with_age():
    rng = np.random.default_rng(1)
    ids = [f"s{i}" for i in range(200)]
    age = _series(rng.uniform(45, 80, 200), ids)
    predicted = 25 + 0.55 * age + rng.normal(0, 3, 200)
    table = brain_age_table(predicted, age, fit_bias_correction(predicted, age))
    assert np.corrcoef(predicted - age, age)[0, 1] < -0.5  # the raw gap is strongly age-dependent
    assert np.corrcoef(table["bag"], age)[0, 1] == pytest.approx(0.0, abs=1e-10)


def test_fit_set_holding_an_evaluated_sample_is_refused():
    ids = ["a", "b", "c", "d"]
    age, predicted = _series([50, 60, 70, 80], ids), _series([55, 61, 66, 72], ids)
    with pytest.raises(LeakError, match="holds 1 of the evaluated samples"):
        fit_bias_correction(predicted, age, evaluated=["x", "c"])
    fit_bias_correction(predicted, age, evaluated=["x", "y"])  # disjoint: fine


@pytest.mark.parametrize(("predicted", "age", "message"), [
    ([60, 60, 60, 60], [50, 60, 70, 80], "do not follow age"),
    ([55, 61, 66, 72], [60, 60, 60, 60], "same age"),
    ([55, 61], [50, 60], "at least 3"),
    ([55, np.nan, 66], [50, 60, 70], "at least 3"),
])
def test_a_correction_that_cannot_be_fitted_is_refused_not_guessed(predicted, age, message):
    ids = [f"s{i}" for i in range(len(age))]
    with pytest.raises(ValueError, match=message):
        fit_bias_correction(_series(predicted, ids), _series(age, ids))


def test_summary_is_nan_where_a_figure_is_undefined():
    one = pd.DataFrame({"age": [60.0], "brain_age_raw": [61.0], "bag": [0.5]})
    row = summary_row("tiny", one)
    assert row["n"] == 1 and row["mae"] == 1.0
    assert all(np.isnan(row[k]) for k in ("r2", "pearson_r", "bag_sd", "corr_bag_age_before", "corr_bag_age_after"))


def test_split_summary_has_a_row_per_split_the_correction_set_and_all():
    table = pd.DataFrame({"split": ["train"] * 4 + ["test"] * 3, "correction_set": [True] * 4 + [False] * 3,
                          "age": [50, 60, 70, 80, 55, 65, 75.0], "brain_age_raw": [55, 61, 66, 72, 58, 64, 70.0]})
    table["bag"] = table.brain_age_raw - table.age
    summary = split_summary(table)
    assert list(summary.split) == ["test", "train", "correction_set", "all"]
    assert list(summary.n) == [3, 4, 4, 7]


# ------------------------------------------------------------------------------------------ the recipe
MAPS = """
from ml4ge.tensormap import TensorMap

vol = TensorMap("ba_vol", (16, 16, 16, 1), group="mri", dataset="vol")
age = TensorMap("age", (1,), group="phenotypes")
"""
N = 40


def _write_cohort(root):
    """HD5 files whose 16^3 volume holds a 'ventricle' that grows with age, plus age and sex."""
    rng = np.random.default_rng(3)
    folder = root / "tensors"
    folder.mkdir(parents=True)
    grid = np.stack(np.meshgrid(*[np.arange(16) - 7.5] * 3, indexing="ij"), -1)
    radius = np.linalg.norm(grid, axis=-1)
    ages = rng.uniform(46, 78, N)
    for i, age in enumerate(ages):
        volume = (1.0 + 0.1 * rng.normal(size=(16, 16, 16))) * (radius > 2 + 4 * (age - 45) / 35)
        with h5py.File(folder / f"s{i:03d}.hd5", "w") as hd5:
            hd5.create_dataset("mri/vol/instance_0", data=volume.astype(np.float32))
            hd5.create_dataset("phenotypes/age/instance_0", data=[age])
            hd5.create_dataset("phenotypes/sex/instance_0", data=[i % 2])
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SFCN trained on the cohort by ``--mode train`` (module scope: one training for all recipe tests)."""
    import sys

    root = tmp_path_factory.mktemp("brain_age")
    (root / "ba_maps").mkdir()
    (root / "ba_maps" / "__init__.py").write_text("")
    (root / "ba_maps" / "brain.py").write_text(MAPS)
    sys.path.insert(0, str(root))
    tensors = _write_cohort(root)
    status = main(["--mode", "train", "--tensors", str(tensors), "--tensormap_prefix", "ba_maps",
                   "--input_tensors", "brain.vol", "--output_tensors", "brain.age", "--encoder_blocks", "sfcn_encode",
                   "--decoder_blocks", "soft_label", "--sfcn_channels", "4", "8", "--soft_label_range", "40", "84",
                   "--soft_label_width", "2", "--epochs", "20", "--batch_size", "4", "--learning_rate", "0.01",
                   "--num_workers", "0", "--output_folder", str(root / "runs"), "--id", "sfcn"])
    assert status == 0
    return root, tensors, root / "runs" / "sfcn" / "sfcn.keras"


def _brain_age(root, tensors, model, *extra, run_id="ba"):
    return main(["--mode", "brain_age", "--tensors", str(tensors), "--tensormap_prefix", "ba_maps",
                 "--input_tensors", "brain.vol", "--output_tensors", "brain.age", "--model_file", str(model),
                 "--num_workers", "0", "--output_folder", str(root / "runs"), "--id", run_id, *extra])


@pytest.mark.slow
def test_recipe_fits_on_the_training_split_and_evaluates_the_others(trained):
    root, tensors, model = trained
    assert _brain_age(root, tensors, model) == 0
    folder = root / "runs" / "ba"
    table = pd.read_csv(folder / "brain_age_ba.tsv", sep="\t", dtype={"sample_id": str}).set_index("sample_id")
    train = set(pd.read_csv(root / "runs" / "sfcn" / "train.csv", dtype=str).iloc[:, 0])
    assert len(table) == N and set(table.index[table.correction_set]) == train
    assert set(table.split) == {"train", "valid", "test"}
    record = json.loads((folder / "bias_correction_ba.json").read_text())
    bag = load_latents(folder / "bag_ba.tsv")  # what compare and associate read
    assert list(bag.columns) == ["bag"] and not set(bag.index) & set(record["fit_set"])
    assert set(bag.index) | set(record["fit_set"]) == set(table.index)
    fitted = table[table.correction_set]
    slope, intercept = np.polyfit(fitted.age, fitted.brain_age_raw, 1)
    assert record["slope"] == pytest.approx(slope, rel=1e-4)  # the table is rounded to 4 decimals
    assert record["intercept"] == pytest.approx(intercept, rel=1e-3)
    np.testing.assert_allclose(table.brain_age, (table.brain_age_raw - intercept) / slope, atol=1e-3)
    summary = pd.read_csv(folder / "brain_age_summary_ba.tsv", sep="\t").set_index("split")
    assert summary.loc["correction_set", "corr_bag_age_after"] == pytest.approx(0.0, abs=1e-3)
    covariates = pd.read_csv(folder / "bag_covariates_ba.tsv", sep="\t", dtype={"sample_id": str})
    assert list(covariates.columns) == ["sample_id", "age", "sex"] and set(covariates.sample_id) == set(bag.index)
    assert (folder / "brain_age_ba.png").stat().st_size > 10_000


@pytest.mark.slow
def test_a_given_correction_set_is_used_and_never_evaluated(trained):
    root, tensors, model = trained
    ids = [f"s{i:03d}" for i in range(0, N, 2)]
    pd.DataFrame({"sample_id": ids}).to_csv(root / "controls.csv", index=False)
    assert _brain_age(root, tensors, model, "--bias_correction_csv", str(root / "controls.csv"), run_id="ba2") == 0
    record = json.loads((root / "runs" / "ba2" / "bias_correction_ba2.json").read_text())
    assert record["fit_set"] == ids and record["n"] == len(ids)
    assert not set(load_latents(root / "runs" / "ba2" / "bag_ba2.tsv").index) & set(ids)


@pytest.mark.slow
def test_evaluating_a_correction_sample_is_refused_before_any_work(trained, capsys):
    root, tensors, model = trained
    pd.DataFrame({"sample_id": ["s000", "s001", "s002"]}).to_csv(root / "fit.csv", index=False)
    pd.DataFrame({"sample_id": ["s002", "s003"]}).to_csv(root / "evaluate.csv", index=False)
    with pytest.raises(SystemExit) as exit_info:
        _brain_age(root, tensors, model, "--bias_correction_csv", str(root / "fit.csv"), "--sample_csv",
                   str(root / "evaluate.csv"), run_id="leak")
    assert exit_info.value.code == 2 and "bias-correction set" in capsys.readouterr().err
    assert not (root / "runs" / "leak").exists()


@pytest.mark.slow
def test_infer_refuses_a_soft_label_model_and_points_to_brain_age(trained, capsys):
    root, tensors, model = trained
    with pytest.raises(SystemExit) as exit_info:
        main(["--mode", "infer", "--tensors", str(tensors), "--tensormap_prefix", "ba_maps", "--input_tensors",
              "brain.vol", "--output_tensors", "brain.age", "--model_file", str(model), "--output_folder",
              str(root / "runs"), "--id", "infer"])
    assert exit_info.value.code == 2 and "--mode brain_age" in capsys.readouterr().err
