"""``--mode train --family predictor`` end to end: an optional T2 missing for 30 % of subjects, a tabular domain,
regression and classification targets, the test report."""

import sys
import textwrap

import h5py
import numpy as np
import pandas as pd
import pytest

from ml4ge.cli import main
from ml4ge.models.artifacts import load_model

PACKAGE = "predictor_maps"
MAPS = textwrap.dedent("""
    from ml4ge.tensormap import TensorMap
    from ml4ge.tensormaps.phenotypes import domain

    t1 = TensorMap("t1_p", (8, 8, 8, 1), group="mri", dataset="T1")
    t2 = TensorMap("t2_p", (8, 8, 8, 1), group="mri", dataset="T2")
    volumes = domain("volumes_p", ["brain_volume", "gm_volume"])
    constitutional = domain("constitutional_p", ["age", "weight"])
    age = TensorMap("age", (1,), group="phenotypes")
    sex = TensorMap("sex", (2,), interpretation="categorical", group="phenotypes", channel_map={"f": 0, "m": 1})
""")
TINY = ["--predictor_stages", "4", "4", "--predictor_width", "8", "--num_workers", "0", "--batch_size", "6",
        "--valid_ratio", "0.2", "--test_ratio", "0.25", "--epochs", "2", "--learning_rate", "0.001"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("predictor")
    (root / PACKAGE).mkdir()
    (root / PACKAGE / "__init__.py").write_text("")
    (root / PACKAGE / "maps.py").write_text(MAPS)
    sys.path.insert(0, str(root))
    rng = np.random.default_rng(0)
    tensors = root / "tensors"
    tensors.mkdir()
    for index in range(40):
        sex, age = index % 3 == 0, rng.uniform(45, 80)  # a third male: undersampling has work to do
        with h5py.File(tensors / f"s{index:03d}.hd5", "w") as hd5:
            t1 = rng.normal(size=(8, 8, 8, 1)) + 0.05 * age + sex
            hd5.create_dataset("mri/T1", data=t1.astype("float32"))
            if index % 10 >= 3:  # T2 missing for 30 %
                hd5.create_dataset("mri/T2", data=(t1 + rng.normal(size=t1.shape)).astype("float32"))
            for name, value in {"age": age, "sex": int(sex), "weight": 70 + 10 * sex,
                                "brain_volume": 1200 - 3 * age, "gm_volume": 600 - 2 * age}.items():
                hd5.create_dataset(f"phenotypes/{name}/instance_0", data=[value])
    return tensors


def argv(tensors, folder, run_id, *extra):
    return ["--mode", "train", "--family", "predictor", "--tensors", str(tensors), "--output_folder", str(folder),
            "--id", run_id, "--tensormap_prefix", PACKAGE, *TINY, *extra]


@pytest.mark.slow
def test_a_predictor_trains_with_an_optional_t2_and_keeps_every_subject(cohort, tmp_path, caplog):
    run = tmp_path / "legible"
    assert main(argv(cohort, tmp_path, "legible", "--input_tensors", "maps.t1", "maps.t2", "maps.volumes",
                     "maps.constitutional", "--output_tensors", "maps.age", "--optional_tensors", "maps.t2")) == 0
    assert not (run / "skipped_samples.tsv").exists() or "s00" not in (run / "skipped_samples.tsv").read_text()
    assert "leak guard" in caplog.text  # the constitutional domain holds age
    model = load_model(run / "legible.keras", compile=False)
    assert model.spec["zeroed"] == ["constitutional_p"] and model.optional == ("t2_p",)
    performance = pd.read_csv(run / "test_performance.tsv", sep="\t")
    assert set(performance["metric"]) == {"r2", "pearson_r", "mae"} and performance["n"].iloc[0] == 10
    predictions = pd.read_csv(run / "test_predictions.tsv", sep="\t")
    assert predictions["predicted"].between(20, 110).all()  # original units (years), not the scaled target
    mae = performance.set_index("metric").loc["mae", "value"]
    assert mae == pytest.approx(np.mean(np.abs(predictions["true"] - predictions["predicted"])), rel=1e-4)


@pytest.mark.slow
def test_a_classifier_undersamples_and_reports_balanced_accuracy(cohort, tmp_path):
    run = tmp_path / "sex"
    assert main(argv(cohort, tmp_path, "sex", "--input_tensors", "maps.t1", "maps.volumes",
                     "--output_tensors", "maps.sex", "--balance", "undersample")) == 0
    performance = pd.read_csv(run / "test_performance.tsv", sep="\t").set_index("metric")["value"]
    assert set(performance.index) == {"balanced_accuracy", "roc_auc", "macro_f1"}
    assert 0 <= performance["balanced_accuracy"] <= 1


def test_bad_predictor_flags_are_refused_before_any_work(cohort, tmp_path):
    with pytest.raises(SystemExit) as refused:
        main(argv(cohort, tmp_path, "bad", "--input_tensors", "maps.t1", "--output_tensors", "maps.age",
                  "--balance", "oversample"))
    assert refused.value.code == 2
    with pytest.raises(SystemExit) as refused:
        main(argv(cohort, tmp_path, "small", "--input_tensors", "maps.t1", "--output_tensors", "maps.age",
                  "--predictor_stages", "4", "4", "4", "4"))
    assert refused.value.code == 2
    assert not (tmp_path / "small" / "small.keras").exists()
