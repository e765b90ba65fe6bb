"""``--mode train --family predictor`` end to end: an optional T2 missing for 30 % of subjects, a tabular domain,
regression and classification targets, the test report."""

import numpy as np
import pandas as pd
import pytest
from predictor_helpers import PACKAGE, TINY, write_predictor_cohort

from ml4ge.cli import main
from ml4ge.models.artifacts import load_model


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_predictor_cohort(tmp_path_factory.mktemp("predictor"))


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
    assert "BatchNorm: the moving statistics are recomputed from" in caplog.text  # the family's precise BN
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
