"""--mode associate end to end on a simulated cohort with planted effects, its refusals, and compare quoting it."""

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from ml4ge.cli import main
from ml4ge.genetics.simulate import write_simulated_cohort
from ml4ge.genetics.sumstats import read_sumstats

ROOT = Path(__file__).resolve().parents[1]
PLANTED = ((10, 0, 0.9), (700, 2, 0.9), (701, 2, 0.9))  # rs701 and rs702 lie 1 kb apart: one locus


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("associate")
    simulated = write_simulated_cohort(folder, samples=800, snps=1200, dimensions=4, planted=PLANTED, seed=5)
    ids = pd.read_csv(simulated.latents, sep="\t").sample_id
    ids[500:].to_frame().to_csv(folder / "replication.csv", index=False)
    return simulated, folder


def _args(cohort, tmp_path, *extra):
    simulated, _ = cohort
    return ["--mode", "associate", "--latent_tables", f"t1={simulated.latents}", "--genotypes",
            str(simulated.genotypes), "--covariates_file", str(simulated.covariates), "--output_folder",
            str(tmp_path), "--id", "gwas", "--snp_chunk", "256", "--num_workers", "1", *extra]


@pytest.mark.slow
def test_associate_finds_planted_snps_replicates_them_and_compare_quotes_the_counts(cohort, tmp_path, capsys):
    simulated, folder = cohort
    assert main(_args(cohort, tmp_path, "--replication_samples", str(folder / "replication.csv"))) == 0
    run = tmp_path / "gwas"
    hits = pd.read_csv(run / "associate_hits.tsv", sep="\t")
    found = set(zip(hits.ID, hits.dimension))
    assert {("rs11", "latent_0"), ("rs701", "latent_2"), ("rs702", "latent_2")} <= found
    assert (hits.LOG10P >= -np.log10(5e-8 / 4)).all() and len(hits) <= 5
    loci = pd.read_csv(run / "associate_loci.tsv", sep="\t")
    assert set(loci.ID) >= {"rs11"} and len(loci) <= 3
    counts = json.loads((run / "associate_counts.json").read_text())[0]
    assert counts["space"] == "t1" and counts["samples"] == 500 and counts["replication_samples"] == 300
    assert counts["significant_pairs"] == len(hits) and counts["loci"] == len(loci)
    assert counts["replicated_pairs"] >= 2 and counts["snps_tested"] == 1200
    sumstats = read_sumstats(run / "sumstats/t1.latent_2.glm.linear.gz")  # PLINK2 --glm's table, LOG10P added
    assert list(sumstats.columns) == ["#CHROM", "POS", "ID", "REF", "ALT", "A1", "A1_FREQ", "TEST", "OBS_CT", "BETA",
                                      "SE", "T_STAT", "P", "ERRCODE", "LOG10P"]
    assert len(sumstats) == 1200 and 450 < sumstats.OBS_CT.min() and sumstats.OBS_CT.max() <= 500  # 2% missing
    assert np.median(sumstats.T_STAT.drop(index=[700, 701]) ** 2) == pytest.approx(0.455, abs=0.08)
    for name in ("manhattan_t1.png", "miami_t1.png"):
        assert imread(run / name).shape[1] > 800
    pheno = pd.read_csv(run / "exports/t1.pheno.tsv", sep="\t")
    assert list(pheno.columns[:2]) == ["FID", "IID"] and len(pheno) == 500

    phenotypes = pd.read_csv(simulated.covariates, sep="\t")[["sample_id", "age", "sex"]]
    phenotypes.to_csv(folder / "phenotypes.csv", index=False)
    capsys.readouterr()
    status = main(["--mode", "compare", "--latent_tables", f"t1={simulated.latents}", "--phenotypes",
                   str(folder / "phenotypes.csv"), "--output_tensors", "age", "--association_counts",
                   str(run / "associate_counts.tsv"), "--output_folder", str(tmp_path), "--id", "compare",
                   "--num_workers", "1"])
    assert status == 0
    genetics = pd.read_csv(tmp_path / "compare/compare_genetics.tsv", sep="\t")
    assert genetics.loc[0, "significant_pairs"] == len(hits) and genetics.loc[0, "loci"] == len(loci)
    assert "## Genetic signal" in (tmp_path / "compare/compare_report.md").read_text()


def test_refusals_before_work(cohort, tmp_path, capsys):
    simulated, folder = cohort
    cases = [
        (["--genotypes", str(folder / "nothing")], "missing .*nothing.bed"),
        (["--maf", "0.7"], r"--maf .*0\.5.*0\.7"),  # the flag's bounds (ml4ge.arguments) refuse it
        (["--replication_samples", str(folder / "replication.csv"), "--replication_genotypes",
          str(simulated.genotypes)], "not both"),
        (["--covariates", "height"], r"--covariates \['height'\] are not columns"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as stop:
            main(_args(cohort, tmp_path, *extra))
        assert stop.value.code == 2
        assert re.search(message, capsys.readouterr().err)


def test_mismatched_ids_and_missing_latents_fail_with_a_reason(cohort, tmp_path, capsys):
    simulated, folder = cohort
    table = pd.read_csv(simulated.latents, sep="\t")
    table.assign(sample_id="x" + table.sample_id).to_csv(folder / "other_ids.tsv", sep="\t", index=False)
    with_nan = table.copy()
    with_nan.loc[3, "latent_1"] = np.nan
    with_nan.to_csv(folder / "with_nan.tsv", sep="\t", index=False)
    for path, message in ((folder / "other_ids.tsv", "no sample id of latent table 't1'"),
                          (folder / "with_nan.tsv", "1 samples have missing latent values")):
        args = _args(cohort, tmp_path)
        args[args.index("--latent_tables") + 1] = f"t1={path}"
        args[args.index("--id") + 1] = path.stem  # one run per input: a changed rerun of one id is refused
        assert main(args) == 1
        assert message in capsys.readouterr().err


def _with_table(cohort, tmp_path, table: pd.DataFrame, name: str, *extra):
    """Arguments of a run on ``table`` written beside the cohort, in its own run id."""
    path = tmp_path / f"{name}.tsv"
    table.to_csv(path, sep="\t", index=False)
    args = _args(cohort, tmp_path, *extra)
    args[args.index("--latent_tables") + 1] = f"t1={path}"
    args[args.index("--id") + 1] = name
    return args


@pytest.mark.slow
def test_constant_dimension_is_reported_untestable_and_never_gets_p_values(cohort, tmp_path):
    simulated, _ = cohort
    table = pd.read_csv(simulated.latents, sep="\t").assign(latent_3=1.0)
    assert main(_with_table(cohort, tmp_path, table, "constant")) == 0
    run = tmp_path / "constant"
    untestable = pd.read_csv(run / "associate_untestable.tsv", sep="\t")
    assert untestable.to_dict("records") == [{"space": "t1", "dimension": "latent_3",
                                              "reason": "constant (every sample has the same value)"}]
    assert sorted(p.name for p in (run / "sumstats").iterdir()) == [f"t1.latent_{d}.glm.linear.gz"
                                                                     for d in range(3)]
    hits = pd.read_csv(run / "associate_hits.tsv", sep="\t")
    assert "latent_3" not in set(hits.dimension) and len(hits) <= 5
    counts = json.loads((run / "associate_counts.json").read_text())[0]
    assert counts["dimensions"] == 3 and counts["dimensions_untestable"] == 1
    assert "latent_3" not in pd.read_csv(run / "exports/t1.pheno.tsv", sep="\t").columns


def test_a_table_without_a_testable_dimension_is_refused(cohort, tmp_path, capsys):
    simulated, _ = cohort
    table = pd.read_csv(simulated.latents, sep="\t")
    table = table.assign(latent_0=0.0, latent_1=5.0, latent_2=-1.0, latent_3=1e6)
    assert main(_with_table(cohort, tmp_path, table, "all_constant")) == 1
    assert "no dimension of latent table 't1' can be tested" in capsys.readouterr().err
    assert not (tmp_path / "all_constant/sumstats").exists()


def test_an_empty_covariate_is_refused_before_work_with_its_name(cohort, tmp_path, capsys):
    simulated, _ = cohort
    covariates = pd.read_csv(simulated.covariates, sep="\t").assign(PC2=np.nan)
    covariates.to_csv(tmp_path / "empty_pc2.tsv", sep="\t", index=False)
    args = _args(cohort, tmp_path, "--covariates", "age", "PC2")
    args[args.index("--covariates_file") + 1] = str(tmp_path / "empty_pc2.tsv")
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    assert "covariate 'PC2' has no value for any sample" in capsys.readouterr().err


@pytest.mark.slow
def test_a_rerun_with_fewer_dimensions_leaves_no_output_of_the_old_run(cohort, tmp_path):
    simulated, folder = cohort
    table = pd.read_csv(simulated.latents, sep="\t")
    args = _with_table(cohort, tmp_path, table, "rerun", "--replication_samples", str(folder / "replication.csv"))
    assert main(args) == 0
    run = tmp_path / "rerun"
    assert len(list((run / "sumstats").iterdir())) == 4 and (run / "miami_t1.png").is_file()
    args = _with_table(cohort, tmp_path, table[["sample_id", "latent_0", "latent_1"]], "rerun", "--overwrite")
    assert main(args) == 0
    assert sorted(p.name for p in (run / "sumstats").iterdir()) == ["t1.latent_0.glm.linear.gz",
                                                                     "t1.latent_1.glm.linear.gz"]
    assert not (run / "miami_t1.png").exists() and not (run / "associate_replication.tsv").exists()
    assert (run / "manhattan_t1.png").is_file()


@pytest.mark.slow
def test_no_plots_draws_none_removes_an_earlier_runs_and_writes_the_same_tables(cohort, tmp_path):
    assert main(_args(cohort, tmp_path)) == 0
    run = tmp_path / "gwas"
    hits, sumstats = (run / "associate_hits.tsv").read_text(), read_sumstats(run / "sumstats/t1.latent_0.glm.linear.gz")
    assert (run / "manhattan_t1.png").is_file()
    assert main(_args(cohort, tmp_path, "--no_plots", "--overwrite")) == 0
    assert not list(run.glob("*.png"))
    assert (run / "associate_hits.tsv").read_text() == hits
    pd.testing.assert_frame_equal(read_sumstats(run / "sumstats/t1.latent_0.glm.linear.gz"), sumstats)


@pytest.mark.parametrize("name", ["../outside", "a/b", "..", ".hidden", "t1;touch x", "$(id)", "", "t 1"])
def test_table_names_that_are_not_file_names_are_refused_before_work(cohort, tmp_path, capsys, name):
    simulated, _ = cohort
    args = _args(cohort, tmp_path)
    args[args.index("--latent_tables") + 1] = f"{name}={simulated.latents}"
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    assert f"--latent_tables name {name!r} cannot name files" in capsys.readouterr().err
    assert not (tmp_path / "gwas").exists() and not (tmp_path.parent / "outside.pheno.tsv").exists()


@pytest.mark.slow
def test_uncompressed_sumstats_hold_the_same_bytes_under_plink2s_name_and_replace_the_gzipped_ones(cohort, tmp_path):
    assert main(_args(cohort, tmp_path)) == 0
    sumstats = tmp_path / "gwas" / "sumstats"
    gzipped = {path.name.removesuffix(".gz"): gzip.decompress(path.read_bytes()) for path in sumstats.iterdir()}
    assert main(_args(cohort, tmp_path, "--uncompressed_sumstats", "--overwrite")) == 0
    assert {path.name: path.read_bytes() for path in sumstats.iterdir()} == gzipped
    assert sorted(gzipped) == [f"t1.latent_{d}.glm.linear" for d in range(4)]

def test_the_associate_recipe_imports_no_modelling_or_plotting_library():
    """A scan's start-up is part of its wall time (plink2 starts in milliseconds): the entry point and the recipe
    load neither Keras/TensorFlow nor matplotlib, scikit-learn or scipy.stats (imported where a plot,
    --direction_traits or --rint needs them), nor the image machinery (scipy.ndimage). --multivariate's null fit
    does without scipy.stats too (about 0.5 s)."""
    heavy = ("keras", "tensorflow", "matplotlib", "sklearn", "scipy.stats", "scipy.ndimage")
    code = ("import sys, numpy, ml4ge.cli, ml4ge.recipes.associate, ml4ge.genetics.omnibus as o; "
            "o.fit_gamma(numpy.arange(1.0, 500.0)); "
            f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
