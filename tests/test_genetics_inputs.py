"""The phenotypes of a scan from real latent and covariate files: ids with surrounding spaces, empty covariates."""

import numpy as np
import pandas as pd
import pytest

from ml4ge.compare import load_latents
from ml4ge.genetics.inputs import assemble_spaces, covariate_frame
from ml4ge.readers import read_table

IDS = [f"sub{i:03d}" for i in range(30)]


@pytest.fixture
def tables(tmp_path):
    """Latent and covariate TSVs of 30 samples whose ids carry spaces (as spreadsheets export them)."""
    rng = np.random.default_rng(0)
    latents = pd.DataFrame({"sample_id": [f" {i}" for i in IDS], "latent_0": rng.standard_normal(30),
                            "latent_1": rng.standard_normal(30)})
    covariates = pd.DataFrame({"sample_id": [f"{i}  " for i in IDS], "age": rng.uniform(40, 80, 30),
                               "sex": rng.integers(0, 2, 30)})
    latents.to_csv(tmp_path / "latents.tsv", sep="\t", index=False)
    covariates.to_csv(tmp_path / "covariates.tsv", sep="\t", index=False)
    return tmp_path / "latents.tsv", tmp_path / "covariates.tsv"


def test_ids_with_surrounding_spaces_are_the_same_subjects(tables):
    latents, covariates = tables
    frame = covariate_frame(read_table(str(covariates)), ["age", "sex"])
    assert list(frame.index) == IDS
    spaces = assemble_spaces({"t1": load_latents(latents)}, frame, IDS)
    assert list(spaces["t1"].phenotypes.index) == IDS and spaces["t1"].covariates.notna().all().all()


def test_ids_that_differ_only_by_spaces_are_refused(tables, tmp_path):
    latents, covariates = tables
    table = pd.read_csv(latents, sep="\t", dtype={"sample_id": str})
    table.loc[1, "sample_id"] = "sub000 "  # row 0 is " sub000"
    table.to_csv(tmp_path / "twice.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"latent table 't1': sample id 'sub000' appears more than once"):
        assemble_spaces({"t1": load_latents(tmp_path / "twice.tsv")}, pd.DataFrame(index=pd.Index([])), IDS)


def test_an_empty_covariate_is_named(tables, tmp_path):
    _, covariates = tables
    pd.read_csv(covariates, sep="\t").assign(PC1=np.nan).to_csv(tmp_path / "empty.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"covariate 'PC1' has no value for any sample"):
        covariate_frame(read_table(str(tmp_path / "empty.tsv")), ["age", "PC1"])


def test_a_covariate_empty_on_the_genotyped_samples_is_named(tables):
    latents, covariates = tables
    frame = covariate_frame(read_table(str(covariates)), ["age", "sex"])
    frame.loc[IDS[:25], "sex"] = np.nan  # values only for samples the genotypes lack
    with pytest.raises(ValueError, match=r"covariates \['sex'\] have no value for any of its 25 genotyped"):
        assemble_spaces({"t1": load_latents(latents)}, frame, IDS[:25])
