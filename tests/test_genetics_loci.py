"""Distance clumping, replication with allele flips, headline counts, PLINK2/REGENIE exports and the plots."""

import numpy as np
import pandas as pd
from matplotlib.image import imread

from ml4ge.genetics.exports import genetics_table, write_exports
from ml4ge.genetics.inputs import Space, rank_inverse_normal
from ml4ge.genetics.loci import clump, headline_counts, replicate
from ml4ge.genetics.plots import manhattan, miami


def _hits():
    rows = [  # space, dimension, CHROM, POS, ID, A1, A2, BETA, LOG10P
        ("t1", "latent_0", "1", 100_000, "rs1", "A", "G", 0.5, 20.0),
        ("t1", "latent_3", "1", 150_000, "rs2", "C", "T", -0.3, 12.0),  # within 250 kb of rs1
        ("t1", "latent_3", "1", 100_000, "rs1", "A", "G", 0.2, 9.0),  # same SNP, another dimension
        ("t1", "latent_1", "1", 900_000, "rs3", "A", "C", 0.4, 11.0),  # far: its own locus
        ("t1", "latent_1", "2", 150_000, "rs4", "G", "T", 0.4, 10.0),  # other chromosome
        ("t2", "latent_0", "1", 150_000, "rs2", "C", "T", 0.3, 10.0),  # another space: loci counted apart
    ]
    frame = pd.DataFrame(rows, columns=["space", "dimension", "CHROM", "POS", "ID", "A1", "A2", "BETA", "LOG10P"])
    return frame.assign(N=1000)


def test_clump_groups_hits_within_the_window_across_dimensions():
    hits, loci = clump(_hits(), window_kb=250)
    t1 = loci[loci.space == "t1"].set_index("locus")
    assert list(t1.ID) == ["rs1", "rs3", "rs4"]
    assert t1.loc[1, "snps"] == 2 and t1.loc[1, "pairs"] == 3 and t1.loc[1, "dimensions"] == "latent_0,latent_3"
    assert (t1.loc[1, "start"], t1.loc[1, "end"]) == (100_000, 150_000)
    assert list(loci[loci.space == "t2"].ID) == ["rs2"]
    assert hits.set_index(["space", "dimension", "ID"]).loc[("t1", "latent_3", "rs2"), "locus"] == 1
    _, narrow = clump(_hits(), window_kb=10)
    assert (narrow.space == "t1").sum() == 4


def test_replication_needs_the_same_sign_and_flips_swapped_alleles():
    hits, loci = clump(_hits(), window_kb=250)
    lookup = hits[["space", "dimension", "ID", "A1", "A2", "BETA", "LOG10P", "N"]].copy()
    lookup["N"] = 500
    lookup.loc[lookup.ID == "rs3", ["BETA", "LOG10P"]] = [-0.4, 5.0]  # opposite sign
    lookup.loc[lookup.ID == "rs4", ["A1", "A2", "BETA"]] = ["T", "G", -0.4]  # swapped alleles: same effect
    lookup.loc[lookup.ID == "rs2", "LOG10P"] = 1.0  # not significant after Bonferroni over 6 hits
    table, threshold = replicate(hits, lookup)
    assert threshold == 0.05 / 6
    by_id = table[table.space == "t1"].set_index(["dimension", "ID"])
    assert by_id.loc[("latent_1", "rs4"), "replicated"] and by_id.loc[("latent_1", "rs4"), "replication_BETA"] == 0.4
    assert not by_id.loc[("latent_1", "rs3"), "replicated"] and not by_id.loc[("latent_1", "rs3"), "same_sign"]
    assert not by_id.loc[("latent_3", "rs2"), "replicated"]
    facts = {"t1": {"dimensions": 4}, "t2": {"dimensions": 2}}
    counts = headline_counts(facts, hits, loci, table).set_index("space")
    assert counts.loc["t1", ["significant_pairs", "significant_snps", "loci"]].tolist() == [5, 4, 3]
    assert counts.loc["t1", "replicated_pairs"] == 3 and counts.loc["t1", "replicated_loci"] == 2


def test_exports_have_fid_iid_na_and_no_minus_nine(tmp_path):
    ids = pd.Index(["a", "b", "c"], name="sample_id")
    phenotypes = pd.DataFrame({"latent_0": [-9.0, 0.5, 1.5]}, index=ids)
    covariates = pd.DataFrame({"age": [50.0, np.nan, 70.0]}, index=ids)
    table = genetics_table(phenotypes, {"a": "fam1"})
    assert list(table.columns) == ["FID", "IID", "latent_0"] and list(table.FID) == ["fam1", "b", "c"]
    assert table.latent_0[0] == -8.9999999
    written = write_exports(tmp_path, {"t1": Space("t1", phenotypes, covariates)}, {}, tmp_path / "geno")
    covariate_text = written["covariates"].read_text().splitlines()
    assert covariate_text[0] == "FID\tIID\tage" and covariate_text[2] == "b\tb\tNA"
    assert "\t-9\t" not in written["t1"].read_text() and not written["t1"].read_text().count("\t-9\n")
    assert "plink2 --bfile" in written["commands"].read_text() and "regenie --step 1" in written["commands"].read_text()


def test_rank_inverse_normal_is_normal_scores_of_ranks():
    values = np.random.default_rng(0).exponential(size=(999, 2))
    transformed = rank_inverse_normal(values)
    assert abs(transformed.mean()) < 1e-9 and abs(transformed.std() - 1) < 0.02
    assert (np.argsort(transformed[:, 0]) == np.argsort(values[:, 0])).all()


def test_manhattan_and_miami_are_written(tmp_path):
    rng = np.random.default_rng(0)
    best = pd.DataFrame({"CHROM": np.repeat(["1", "2", "X"], 100), "POS": np.tile(np.arange(100) * 1000, 3),
                         "ID": [f"rs{i}" for i in range(300)], "LOG10P": rng.exponential(0.5, 300)})
    best.loc[5, "LOG10P"] = 12.0
    _, loci = clump(best.assign(space="t1", dimension="latent_0").iloc[[5]], 250)
    manhattan(best, 7.3, tmp_path / "manhattan.png", loci, "t1")
    miami(best, best.assign(LOG10P=best.LOG10P / 2), 7.3, 2.0, tmp_path / "miami.png", loci)
    for name in ("manhattan.png", "miami.png"):
        image = imread(tmp_path / name)
        assert image.shape[0] > 300 and image.shape[1] > 800 and image.std() > 0.05
