"""compare: synthetic latent spaces with known signal, through the Python API and the CLI."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml4ge.cli import main
from ml4ge.compare import (
    PAIR_COLUMNS,
    SCORE_COLUMNS,
    SUMMARY_COLUMNS,
    compare_latent_spaces,
    corrected_t_interval,
    load_latents,
    plot_comparison,
)

N = 240


@pytest.fixture
def cohort():
    """An informative space (carries age and sex), a noise space, phenotypes and a covariate."""
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(N)]
    signal = rng.standard_normal((N, 4))
    informative = pd.DataFrame(np.hstack([signal, rng.standard_normal((N, 4))]), index=ids)
    noise = pd.DataFrame(rng.standard_normal((N, 8)), index=ids)
    phenotypes = pd.DataFrame({
        "age": 60 + 5 * signal[:, 0] + 2 * signal[:, 1] + rng.standard_normal(N),
        "sex": (signal[:, 2] + 0.5 * rng.standard_normal(N) > 0).astype(int),
        "site": rng.integers(0, 3, N).astype(float),
    }, index=ids)
    return {"informative": informative, "noise": noise}, phenotypes


def _summary(result, space, phenotype):
    rows = result.summary
    return rows[(rows.space == space) & (rows.phenotype == phenotype)].iloc[0]


def test_informative_space_wins(cohort):
    latents, phenotypes = cohort
    result = compare_latent_spaces(latents, phenotypes, ["age", "sex"], folds=4, pairs=[("informative", "noise")])
    assert _summary(result, "informative", "age")["mean"] > 0.9
    assert abs(_summary(result, "noise", "age")["mean"]) < 0.1
    auc_good, auc_noise = _summary(result, "informative", "sex")["mean"], _summary(result, "noise", "sex")["mean"]
    assert ((result.scores.metric == "roc_auc") <= result.scores.score.between(0, 1)).all()
    assert auc_good > 0.9 and auc_good > auc_noise + 0.2
    assert _summary(result, "informative", "age")["metric"] == "r2"
    assert _summary(result, "informative", "sex")["kind"] == "binary"
    pairs = result.pair_differences.set_index("phenotype")
    for phenotype in ("age", "sex"):
        assert pairs.loc[phenotype, "ci_low"] > 0  # clearly different spaces: the interval excludes 0
        assert pairs.loc[phenotype, "ci_low"] < pairs.loc[phenotype, "difference"] < pairs.loc[phenotype, "ci_high"]
    assert len(result.scores) == 2 * 2 * 4
    assert list(result.scores.columns) == SCORE_COLUMNS
    assert list(result.summary.columns) == SUMMARY_COLUMNS
    assert list(result.pair_differences.columns) == PAIR_COLUMNS
    assert (result.summary.n_samples == N).all()


def test_same_seed_same_numbers_and_paired_folds(cohort):
    latents, phenotypes = cohort
    first = compare_latent_spaces(latents, phenotypes, ["age", "sex"], folds=3, seed=7)
    again = compare_latent_spaces(latents, phenotypes, ["age", "sex"], folds=3, seed=7, n_jobs=2)
    other = compare_latent_spaces(latents, phenotypes, ["age", "sex"], folds=3, seed=8)
    pd.testing.assert_frame_equal(first.scores, again.scores)
    assert not np.allclose(first.scores.score, other.scores.score)
    # identical spaces on the same folds give identical fold scores: the pairing is exact
    twins = compare_latent_spaces({"a": latents["noise"], "b": latents["noise"].copy()}, phenotypes, ["age"],
                                  folds=3, pairs=[("a", "b")])
    difference = twins.pair_differences.iloc[0]
    assert difference["difference"] == 0 and difference["ci_low"] == difference["ci_high"] == 0


def test_only_shared_samples_are_used(cohort):
    latents, phenotypes = cohort
    latents = {"informative": latents["informative"].iloc[:200], "noise": latents["noise"].iloc[40:]}
    phenotypes = phenotypes.copy()
    phenotypes.loc["s50", "age"] = np.nan
    result = compare_latent_spaces(latents, phenotypes, ["age", "sex"], folds=4)
    samples = result.summary.set_index(["space", "phenotype"]).n_samples
    assert samples[("noise", "age")] == 159 and samples[("noise", "sex")] == 160


def test_covariates_baseline(cohort):
    latents, phenotypes = cohort
    phenotypes = phenotypes.assign(confound=phenotypes.age + np.random.default_rng(1).standard_normal(N))
    result = compare_latent_spaces(latents, phenotypes, ["age"], covariates=["confound"], folds=4,
                                   pairs=[("noise", "covariates")])
    assert list(dict.fromkeys(result.summary.space)) == ["informative", "noise", "covariates"]
    assert _summary(result, "covariates", "age")["mean"] > 0.5  # the covariate alone explains age
    assert abs(result.pair_differences.iloc[0]["difference"]) < 0.05  # noise adds nothing beyond it


def test_errors(cohort):
    latents, phenotypes = cohort
    moved = latents["noise"].set_axis([f"other{i}" for i in range(N)])
    with pytest.raises(ValueError, match="share no sample ids"):
        compare_latent_spaces({"a": latents["informative"], "b": moved}, phenotypes, ["age"])
    with pytest.raises(ValueError, match="at least 10 samples"):
        compare_latent_spaces({"a": latents["noise"].iloc[:8]}, phenotypes, ["age"], folds=5)
    with pytest.raises(ValueError, match="smaller class"):
        rare = phenotypes.assign(sex=[1, 1] + [0] * (N - 2))
        compare_latent_spaces(latents, rare, ["sex"], folds=5)
    with pytest.raises(ValueError, match="not found"):
        compare_latent_spaces(latents, phenotypes, ["height"])
    with pytest.raises(ValueError, match="pair names"):
        compare_latent_spaces(latents, phenotypes, ["age"], pairs=[("informative", "t2")])


def test_corrected_interval_is_wider_than_plain_t():
    differences = np.array([0.10, 0.12, 0.08, 0.11, 0.09])
    mean, sd, low, high, t, p = corrected_t_interval(differences, test_train_ratio=0.25)
    plain_half_width = 2.776 * sd / np.sqrt(5)
    assert mean == pytest.approx(0.1) and high - mean > plain_half_width * 1.3
    assert low == pytest.approx(2 * mean - high) and 0 < p < 0.05


def _write_latents(frame: pd.DataFrame, path: Path, genetics: bool = False) -> Path:
    table = frame.set_axis([f"latent_{i}" for i in range(frame.shape[1])], axis=1)
    table.insert(0, "sample_id", frame.index)
    if genetics:
        table = table.rename(columns={"sample_id": "IID"})
        table.insert(0, "FID", frame.index)
    table.to_csv(path, sep="\t", index=False)
    return path


def test_load_latents_both_styles(cohort, tmp_path):
    latents, _ = cohort
    standard = load_latents(_write_latents(latents["noise"], tmp_path / "a.tsv"))
    genetics = load_latents(_write_latents(latents["noise"], tmp_path / "b.tsv", genetics=True))
    pd.testing.assert_frame_equal(standard, genetics)
    assert list(standard.columns) == [f"latent_{i}" for i in range(8)] and standard.index[0] == "s0"
    np.testing.assert_allclose(standard.to_numpy(), latents["noise"].to_numpy())


def test_plot(cohort, tmp_path):
    latents, phenotypes = cohort
    result = compare_latent_spaces(latents, phenotypes, ["age", "sex"], folds=3)
    plot_comparison(result, tmp_path / "bars.png")
    assert (tmp_path / "bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_recipe(cohort, tmp_path):
    latents, phenotypes = cohort
    t1 = _write_latents(latents["informative"], tmp_path / "hidden_t1.tsv")
    t2 = _write_latents(latents["noise"], tmp_path / "hidden_t2.tsv", genetics=True)
    table = tmp_path / "phenotypes.csv"
    phenotypes.rename_axis("sample_id").reset_index().to_csv(table, index=False)
    status = main(["--mode", "compare", "--latent_tables", f"t1={t1}", f"t2={t2}", "--phenotypes", str(table),
                   "--covariates", "site", "--folds", "3", "--output_folder", str(tmp_path / "runs"), "--id", "cmp"])
    assert status == 0
    run = tmp_path / "runs" / "cmp"
    scores = pd.read_csv(run / "compare_scores.tsv", sep="\t")
    assert list(scores.columns) == SCORE_COLUMNS
    assert set(scores.space) == {"t1", "t2", "covariates"} and set(scores.phenotype) == {"age", "sex"}
    assert len(scores) == 3 * 2 * 3 and np.isfinite(scores.score).all()
    summary = pd.read_csv(run / "compare_summary.tsv", sep="\t")
    assert list(summary.columns) == SUMMARY_COLUMNS
    pairs = pd.read_csv(run / "compare_pairs.tsv", sep="\t")
    assert list(pairs.columns) == PAIR_COLUMNS and list(pairs.a) == ["t1", "t1"]  # default: every latent pair
    report = (run / "compare_report.md").read_text()
    assert "| age | r2 |" in report and "Nadeau-Bengio" in report
    assert (run / "compare_bars.png").stat().st_size > 1000
    assert not list(run.glob("*.tmp"))


def test_recipe_validation(cohort, tmp_path, capsys):
    latents, phenotypes = cohort
    t1 = _write_latents(latents["informative"], tmp_path / "t1.tsv")
    table = tmp_path / "phenotypes.csv"
    phenotypes.rename_axis("sample_id").reset_index().to_csv(table, index=False)
    base = ["--mode", "compare", "--output_folder", str(tmp_path / "runs"), "--phenotypes", str(table)]
    cases = {"does not exist": ["--latent_tables", f"t1={tmp_path / 'missing.tsv'}"],
             "needs --latent_tables": [],
             "--pairs names ['t2']": ["--latent_tables", f"t1={t1}", "--pairs", "t1", "t2"],
             "--folds must be at least 2": ["--latent_tables", f"t1={t1}", "--folds", "1"],
             "no column height": ["--latent_tables", f"t1={t1}", "--output_tensors", "height"],
             "no column pc1": ["--latent_tables", f"t1={t1}", "--covariates", "pc1"]}
    for message, extra in cases.items():
        with pytest.raises(SystemExit):
            main(base + extra)
        assert message in capsys.readouterr().err


def test_recipe_reads_phenotypes_from_hd5(tmp_path):
    import h5py

    from ml4ge.hd5 import read_dataset
    from ml4ge.synthetic import write_cohort
    from ml4ge.tensormaps.phenotypes import age, sex

    folder = tmp_path / "hd5"
    paths = write_cohort(folder, [age, sex], n=60, seed=5)
    (folder / "broken.hd5").write_bytes(b"")
    stored = {}
    for path in paths:
        with h5py.File(path, "r") as hd5:
            stored[path.stem] = (float(read_dataset(hd5, age.key)[0]), float(read_dataset(hd5, sex.key)[0]))
    rng = np.random.default_rng(2)
    ids = [*stored, "broken"]
    ages = np.array([stored[i][0] if i in stored else 50.0 for i in ids])
    sexes = np.array([stored[i][1] if i in stored else 0.0 for i in ids])
    latent = pd.DataFrame(np.column_stack([ages + rng.normal(0, 1, len(ids)), sexes * 3 + rng.normal(0, 1, len(ids)),
                                           rng.standard_normal(len(ids))]), index=ids)
    table = _write_latents(latent, tmp_path / "hidden_t1_run.tsv")  # a bare path: named hidden_t1_run
    status = main(["--mode", "compare", "--latent_tables", str(table), "--tensors", str(folder),
                   "--output_tensors", "age", "sex", "--folds", "3", "--num_workers", "0",
                   "--output_folder", str(tmp_path / "runs"), "--id", "hd5"])
    assert status == 0
    run = tmp_path / "runs" / "hd5"
    summary = pd.read_csv(run / "compare_summary.tsv", sep="\t").set_index("phenotype")
    assert summary.loc["age", "space"] == "hidden_t1_run" and summary.loc["age", "mean"] > 0.8
    assert summary.loc["sex", "metric"] == "roc_auc" and summary.loc["sex", "mean"] > 0.8
    assert (summary.n_samples == 60).all()  # the broken file has no phenotypes
    skipped = pd.read_csv(run / "compare_skipped.tsv", sep="\t")
    assert set(skipped.sample_id.astype(str)) == {"broken"} and set(skipped.tensor_map) == {"age", "sex"}
    assert pd.read_csv(run / "compare_pairs.tsv", sep="\t").empty  # one table: nothing to pair


def test_integer_and_string_ids_match_and_duplicates_fail(cohort):
    latents, phenotypes = cohort
    numeric = {name: frame.set_axis(range(N)) for name, frame in latents.items()}
    as_text = phenotypes.set_axis([str(i) for i in range(N)])
    result = compare_latent_spaces(numeric, as_text, ["age"], folds=3)
    assert (result.summary.n_samples == N).all()
    with pytest.raises(ValueError, match="more than once"):
        compare_latent_spaces(numeric, pd.concat([as_text, as_text.iloc[:1]]), ["age"], folds=3)
