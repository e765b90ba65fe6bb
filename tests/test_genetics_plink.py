"""The scan's numbers against PLINK2 --glm on the same files (skipped only where plink2 is not installed)."""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from ml4ge.compare import load_latents
from ml4ge.genetics.exports import write_exports
from ml4ge.genetics.genotypes import GenotypeFile
from ml4ge.genetics.inputs import assemble_spaces, covariate_frame
from ml4ge.genetics.scan import HIT_COLUMNS, ScanSettings, scan
from ml4ge.genetics.simulate import write_simulated_cohort
from ml4ge.readers import read_table


@pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 is not installed (.ci/run installs it)")
def test_scan_matches_plink2_glm(tmp_path):
    cohort = write_simulated_cohort(tmp_path / "cohort", samples=400, snps=300, dimensions=3, missing=0.04,
                                    planted=((20, 1, 1.0),), seed=3)
    latents = load_latents(cohort.latents)
    covariates = covariate_frame(read_table(str(cohort.covariates)), ["age", "sex", "PC1", "PC2"])
    with GenotypeFile(cohort.genotypes) as genotypes:
        spaces = assemble_spaces({"t1": latents}, covariates, genotypes.sample_ids)
        write_exports(tmp_path / "exports", spaces, dict(zip(genotypes.sample_ids, genotypes.family_ids)),
                      cohort.genotypes)
        result = scan(genotypes, spaces, ScanSettings(maf=0.01, geno=0.1, chunk=128), threshold_log10=0.0,
                      lookup=[f"rs{i + 1}" for i in range(300)])["t1"]
    ours = result.table("lookup", HIT_COLUMNS)
    # --glm omit-ref counts the ALT allele, the .bim's fifth column, as bed-reader's count_A1 does.
    subprocess.run(["plink2", "--bfile", str(cohort.genotypes), "--pheno", str(tmp_path / "exports/t1.pheno.tsv"),
                    "--covar", str(tmp_path / "exports/covariates.tsv"), "--glm", "omit-ref", "hide-covar", "log10",
                    "--maf", "0.01", "--geno", "0.1", "--threads", "1", "--out", str(tmp_path / "plink")],
                   check=True, capture_output=True)
    for dimension in ("latent_0", "latent_1", "latent_2"):
        theirs = pd.read_csv(tmp_path / f"plink.{dimension}.glm.linear", sep="\t")
        mine = ours[ours.dimension == dimension].set_index("ID").loc[theirs.ID]
        assert len(theirs) == 300 and (theirs.A1.to_numpy() == mine.A1.to_numpy()).all()
        assert (theirs.OBS_CT.to_numpy() == mine.N.to_numpy()).all()
        for column, their_column in (("BETA", "BETA"), ("SE", "SE"), ("T_STAT", "T_STAT"), ("LOG10P", "LOG10_P")):
            np.testing.assert_allclose(mine[column].to_numpy(), theirs[their_column].to_numpy(), rtol=2e-5,
                                       atol=1e-6, err_msg=f"{dimension} {column}")
    assert ours.set_index(["dimension", "ID"]).loc[("latent_1", "rs21"), "LOG10P"] > 8
