"""--mode evaluate_groups and ml4ge.group_metrics: silhouette and GMM NMI of known groups in latent tables."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture

from ml4ge.cli import main
from ml4ge.group_metrics import METRIC_COLUMNS, group_labels, score_table, score_tables

GROUP_SIZE = 40
SUBTYPES = ("subtype_a", "subtype_b", "subtype_c")


def planted(seed: int = 0, dimensions: int = 8, separation: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Three groups of GROUP_SIZE whose means differ by ``separation`` SDs along the first two axes."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((3, dimensions))
    centres[1, 0] = centres[2, 1] = separation
    labels = np.repeat(SUBTYPES, GROUP_SIZE)
    values = rng.standard_normal((len(labels), dimensions)) + np.repeat(centres, GROUP_SIZE, axis=0)
    return values, labels


def test_planted_groups_score_high():
    values, labels = planted()
    scores = score_table("salient", values, labels, fits=10, seed=0)
    assert scores.n_samples == 3 * GROUP_SIZE and scores.n_groups == 3 and scores.gmm_components == 3
    assert scores.silhouette > 0.4
    assert scores.nmi_mean > 0.9
    assert scores.nmi_chance < 0.1  # the same clusterings against permuted labels


def test_random_table_scores_at_chance():
    rng = np.random.default_rng(1)
    values = rng.standard_normal((3 * GROUP_SIZE, 8))
    labels = rng.permutation(np.repeat(SUBTYPES, GROUP_SIZE))
    scores = score_table("background", values, labels, fits=10, seed=0)
    assert -0.1 < scores.silhouette < 0.05
    assert scores.nmi_mean < 0.1
    assert abs(scores.nmi_mean - scores.nmi_chance) < 0.05


def test_nmi_is_the_mean_over_seeded_fits():
    values, labels = planted(seed=2, separation=2.0)  # overlapping groups: fits differ
    scores = score_table("t", values, labels, components=4, fits=5, seed=7)
    expected = [normalized_mutual_info_score(labels, GaussianMixture(4, random_state=7 + i).fit_predict(values))
                for i in range(5)]
    assert scores.gmm_components == 4 and scores.gmm_fits == 5
    assert scores.nmi_mean == pytest.approx(np.mean(expected)) and scores.nmi_sd == pytest.approx(np.std(expected))
    assert scores.nmi_sd > 0


def test_collapsed_space_scores_zero():
    labels = np.repeat(SUBTYPES, GROUP_SIZE)
    scores = score_table("collapsed", np.zeros((len(labels), 4)), labels, fits=3)
    assert scores.silhouette == 0.0 and scores.nmi_mean == pytest.approx(0.0, abs=1e-9)


def test_tables_share_their_samples_and_groups_select():
    values, labels = planted()
    ids = [f"s{i}" for i in range(len(labels))]
    frame = pd.DataFrame({"group": labels}, index=ids)
    full = pd.DataFrame(values, index=ids)
    tables = {"full": full, "partial": full.iloc[5:]}
    chosen = group_labels(frame, "group", ("subtype_a", "subtype_b"))
    scores = score_tables(tables, chosen, fits=2)
    assert list(scores.columns) == METRIC_COLUMNS and list(scores.table) == ["full", "partial"]
    assert (scores.n_samples == 2 * GROUP_SIZE - 5).all() and (scores.groups == "subtype_a,subtype_b").all()
    assert scores.silhouette.iloc[0] == scores.silhouette.iloc[1]  # the same rows, the same values
    with pytest.raises(ValueError, match="no value subtype_x"):
        group_labels(frame, "group", ("subtype_x",))
    with pytest.raises(KeyError, match="no group column 'dx'"):
        group_labels(frame, "dx")
    with pytest.raises(ValueError, match="1 group"):
        group_labels(frame, "group", ("subtype_a",))


def _write_table(values: np.ndarray, ids: list[str], path) -> str:
    frame = pd.DataFrame(values, columns=[f"latent_{i}" for i in range(values.shape[1])])
    frame.insert(0, "sample_id", ids)
    frame.to_csv(path, sep="\t", index=False)
    return str(path)


@pytest.fixture
def cohort(tmp_path):
    """Subtypes planted in a salient table, absent from a background table; controls and one sample without
    a salient row in the labels."""
    values, labels = planted(seed=3)
    rng = np.random.default_rng(4)
    ids = [f"p{i}" for i in range(len(labels))]
    salient = _write_table(values[1:], ids[1:], tmp_path / "hidden_t1_run.tsv")  # p0 has no salient row
    background = _write_table(rng.standard_normal(values.shape), ids, tmp_path / "hidden_t1_background_run.tsv")
    controls = [f"c{i}" for i in range(20)]
    table = pd.DataFrame({"sample_id": ids + controls, "group": [*labels, *["control"] * 20]})
    table.to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path, salient, background


def test_recipe_writes_metrics_and_plots(cohort):
    folder, salient, background = cohort
    status = main(["--mode", "evaluate_groups", "--latent_tables", f"salient={salient}", f"background={background}",
                   "--phenotypes", str(folder / "labels.csv"), "--groups", *SUBTYPES, "--gmm_fits", "5",
                   "--output_folder", str(folder / "runs"), "--id", "eval"])
    assert status == 0
    run = folder / "runs" / "eval"
    scores = pd.read_csv(run / "evaluate_groups.tsv", sep="\t").set_index("table")
    assert list(scores.reset_index().columns) == METRIC_COLUMNS
    assert (scores.n_samples == 3 * GROUP_SIZE - 1).all()  # p0 lacks a salient row; the controls are not chosen
    assert scores.loc["salient", "silhouette"] > 0.4 and scores.loc["salient", "nmi_mean"] > 0.8
    assert scores.loc["background", "nmi_mean"] < 0.1 and abs(scores.loc["background", "silhouette"]) < 0.1
    skipped = pd.read_csv(run / "evaluate_groups_skipped.tsv", sep="\t")
    assert skipped.values.tolist() == [["p0", "salient", "not in latent table salient"]]
    for name in ("salient", "background"):
        png = run / f"evaluate_groups_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert not list(run.glob("*.tmp*"))


def test_recipe_refuses_bad_flags(cohort, capsys):
    folder, salient, _ = cohort
    labels = str(folder / "labels.csv")
    base = ["--mode", "evaluate_groups", "--output_folder", str(folder / "runs")]
    cases = {"needs --latent_tables": ["--phenotypes", labels],
             "needs --phenotypes": ["--latent_tables", salient],
             "no group column 'dx'": ["--latent_tables", salient, "--phenotypes", labels, "--group_column", "dx"],
             "has no value subtype_x": ["--latent_tables", salient, "--phenotypes", labels, "--groups", "subtype_x"],
             "must be letters": ["--latent_tables", f"a/b={salient}", "--phenotypes", labels],
             "--gmm_fits must be at least 1": ["--latent_tables", salient, "--phenotypes", labels, "--gmm_fits", "0"],
             "does not exist": ["--latent_tables", str(folder / "missing.tsv"), "--phenotypes", labels]}
    for message, extra in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            main(base + extra)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (folder / "runs").exists()  # refused before any work
