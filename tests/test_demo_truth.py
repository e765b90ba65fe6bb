"""Truth checks of the demo's GWAS: planted SNPs found in summary statistics, hits within the locus window."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from ml4ge.demo.truth import dimension_index, planted_sumstats, snp_truth

TRUTH = {"snps": [{"id": "rs1", "chrom": 1, "pos": 1_000_000, "trait": "thalamus_volume"},
                  {"id": "rs2", "chrom": 2, "pos": 5_000_000, "trait": "putamen_volume"}]}


def write_sumstats(folder, space, dimension, log10p):
    folder.mkdir(exist_ok=True)
    table = pd.DataFrame({"#CHROM": ["1", "2", "2"], "POS": [1_000_000, 5_000_000, 9_000_000],
                          "ID": ["rs1", "rs2", "rs3"], "BETA": [0.1, -0.2, 0.0], "P": [10.0 ** -q for q in log10p]})
    with gzip.open(folder / f"{space}.{dimension}.glm.linear.gz", "wt") as handle:  # PLINK2's columns
        table.to_csv(handle, sep="\t", index=False)


def test_best_dimension_and_hit_window(tmp_path):
    write_sumstats(tmp_path / "s", "ae_t1", "latent_0", [2.0, 1.0, 0.5])
    write_sumstats(tmp_path / "s", "ae_t1", "latent_3", [12.0, 0.5, 0.1])
    write_sumstats(tmp_path / "s", "ae_t2", "latent_1", [3.0, 4.0, 0.2])
    stats = planted_sumstats(tmp_path / "s", ["rs1", "rs2"])
    assert len(stats) == 6 and set(stats.ID) == {"rs1", "rs2"}
    hits = pd.DataFrame({"space": ["ae_t1"], "dimension": ["latent_3"], "CHROM": ["1"], "POS": [1_200_000],
                         "ID": ["rs9"], "LOG10P": [12.5]})
    table = snp_truth(TRUTH, stats, hits, window_kb=250).set_index("id")
    assert table.loc["rs1", "hit"] and table.loc["rs1", "hit_snp"] == "rs9"
    assert (table.loc["rs1", "best_space"], table.loc["rs1", "best_dimension"]) == ("ae_t1", 3)
    assert not table.loc["rs2", "hit"] and table.loc["rs2", "best_log10p"] == 4.0
    assert not snp_truth(TRUTH, stats, hits, window_kb=100).set_index("id").loc["rs1", "hit"]


def test_missing_sumstats_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="run --mode associate first"):
        planted_sumstats(tmp_path, ["rs1"])
    assert dimension_index("latent_12") == 12 and dimension_index(7) == 7


def test_trait_direction_tables_are_not_latent_dimensions(tmp_path):
    write_sumstats(tmp_path / "s", "ae_t1", "latent_0", [2.0, 1.0, 0.5])
    write_sumstats(tmp_path / "s", "ae_t1-thalamus_volume", "direction", [9.0, 1.0, 0.5])  # associate's directions
    stats = planted_sumstats(tmp_path / "s", ["rs1", "rs2"])
    assert set(stats.space) == {"ae_t1"} and len(stats) == 2
