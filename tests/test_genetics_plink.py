"""The scan's numbers against PLINK2 --glm on the same files (skipped only where plink2 is not installed)."""

import gzip
import os
import shutil
import subprocess
import sys

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
@pytest.mark.parametrize("p_values", ["exact", "tabulated"])
def test_scan_matches_plink2_glm(tmp_path, monkeypatch, p_values):
    """Both ways to the P values (ml4ge.genetics.student_t): the table serves chunks of many values, here forced."""
    from ml4ge.genetics import student_t

    monkeypatch.setattr(student_t, "TABLE_FROM", 0 if p_values == "tabulated" else 10**12)
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


PLINK2 = pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 is not installed (.ci/run installs it)")


def _with_untestable_snps(cohort, covariates_file, prefix):
    """The cohort's genotypes with SNPs that PLINK2 writes as NA rows: rs1 constant, rs2 called in 5 samples (fewer
    than the model's predictors), rs4 equal to the sex covariate (collinear)."""
    from bed_reader import open_bed, to_bed

    with open_bed(f"{cohort.genotypes}.bed") as bed:
        dosages = bed.read(dtype="float32")
        properties = {key: getattr(bed, key) for key in ("fid", "iid", "father", "mother", "sex", "pheno",
                                                         "chromosome", "sid", "cm_position", "bp_position",
                                                         "allele_1", "allele_2")}
    sex = pd.read_csv(covariates_file, sep="\t", dtype={"IID": str}).set_index("IID").loc[properties["iid"], "sex"]
    dosages[:, 0] = 2.0
    dosages[:, 1] = np.nan
    dosages[:5, 1] = 1.0
    dosages[:, 3] = sex.to_numpy() - sex.min()
    to_bed(f"{prefix}.bed", dosages, properties=properties)
    return prefix


@pytest.fixture(scope="module")
def plink_and_ours(tmp_path_factory):
    """One cohort scanned by ml4ge (P and log10 tables) and by plink2 --glm (the same two), no SNP filters."""
    from ml4ge.genetics.scan import scan

    root = tmp_path_factory.mktemp("sumstats")
    cohort = write_simulated_cohort(root / "cohort", samples=120, snps=60, dimensions=2, missing=0.04,
                                    planted=((20, 1, 1.5),), seed=5)
    latents = load_latents(cohort.latents)
    covariates = covariate_frame(read_table(str(cohort.covariates)), ["age", "sex", "PC1", "PC2"])
    with GenotypeFile(cohort.genotypes) as genotypes:
        spaces = assemble_spaces({"t1": latents}, covariates, genotypes.sample_ids)
        write_exports(root / "exports", spaces, dict(zip(genotypes.sample_ids, genotypes.family_ids)),
                      root / "modified")
    bfile = _with_untestable_snps(cohort, root / "exports/covariates.tsv", root / "modified")
    with GenotypeFile(bfile) as genotypes:
        for log10 in (False, True):
            scan(genotypes, spaces, ScanSettings(maf=0.0, geno=1.0, chunk=16, log10=log10), threshold_log10=99.0,
                 sumstats_folder=root / f"ours_log10_{log10}")
    for log10 in (False, True):
        subprocess.run(["plink2", "--bfile", str(bfile), "--pheno", str(root / "exports/t1.pheno.tsv"),
                        "--covar", str(root / "exports/covariates.tsv"), "--glm", "omit-ref", "hide-covar",
                        "cols=+a1freq", *(["log10"] if log10 else []), "--threads", "1",
                        "--out", str(root / f"plink_log10_{log10}")], check=True, capture_output=True)
    return root


@PLINK2
@pytest.mark.parametrize("log10", [False, True])
def test_sumstats_are_plink2_glm_tables(plink_and_ours, log10):
    """ml4ge's and plink2's tables read by the same parser: same file names, columns, rows, NA rows and values."""
    from ml4ge.genetics.sumstats import columns, file_name, read_sumstats

    root = plink_and_ours
    for dimension in ("latent_0", "latent_1"):
        ours_path = root / f"ours_log10_{log10}" / file_name("t1", dimension)
        assert ours_path.name == f"t1.{dimension}.glm.linear.gz"
        mine = read_sumstats(ours_path)
        theirs = read_sumstats(root / f"plink_log10_{log10}.{dimension}.glm.linear")
        assert list(mine.columns) == list(theirs.columns) == [*columns(log10), "LOG10P"]
        assert len(mine) == len(theirs) == 60
        for column in ("#CHROM", "POS", "ID", "REF", "ALT", "A1", "TEST", "OBS_CT", "ERRCODE"):
            assert mine[column].tolist() == theirs[column].tolist(), column
        assert {"CONST_OMITTED_ALLELE", "SAMPLE_CT<=PREDICTOR_CT", "CORR_TOO_HIGH"} <= set(mine.ERRCODE)
        numbers = ["A1_FREQ", "BETA", "SE", "T_STAT", "LOG10_P" if log10 else "P", "LOG10P"]
        for column in numbers:
            np.testing.assert_allclose(mine[column].to_numpy(float), theirs[column].to_numpy(float), rtol=2e-5,
                                       atol=1e-6, equal_nan=True, err_msg=f"{dimension} {column}")
        assert mine.loc[mine.ERRCODE != ".", "BETA"].isna().all() and mine.loc[mine.ERRCODE == ".", "P" if not log10
                                                                                else "LOG10_P"].notna().all()


@PLINK2
def test_exported_commands_run_from_any_folder(plink_and_ours, tmp_path):
    """commands.sh, run from an unrelated folder, finds its inputs and writes beside itself (regenie, not
    installed here, is a stand-in that checks the paths it is given exist and writes step 1's prediction list)."""
    from ml4ge.genetics.sumstats import columns, read_sumstats

    root = plink_and_ours
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "regenie").write_text(
        '#!/usr/bin/env bash\nset -e\nwhile [ $# -gt 0 ]; do case "$1" in\n'
        '  --bed) test -f "$2.bed"; shift 2;;\n  --phenoFile|--covarFile|--pred) test -f "$2"; shift 2;;\n'
        '  --out) out="$2"; shift 2;;\n  *) shift;;\nesac; done\ntouch "${out}_pred.list"\n')
    (tools / "regenie").chmod(0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}
    subprocess.run(["bash", str(root / "exports/commands.sh")], cwd=elsewhere, env=env, check=True,
                   capture_output=True)
    assert not list(elsewhere.iterdir())
    table = read_sumstats(root / "exports/t1.latent_0.glm.linear")
    assert list(table.columns) == [*columns(), "LOG10P"]
    assert (root / "exports/t1_step1_pred.list").is_file()


def _scanned_tables(cohort, folder, runs: dict, before=lambda run: None) -> dict:
    """run -> {file name: bytes} of the tables each ``runs[run]`` (ScanSettings) writes for the cohort's space;
    ``before(run)`` is called before each scan."""
    latents = load_latents(cohort.latents)
    covariates = covariate_frame(read_table(str(cohort.covariates)), ["age", "sex"])
    tables = {}
    with GenotypeFile(cohort.genotypes) as genotypes:
        spaces = assemble_spaces({"t1": latents}, covariates, genotypes.sample_ids)
        for run, settings in runs.items():
            before(run)
            scan(genotypes, spaces, settings, threshold_log10=99.0, sumstats_folder=folder / str(run))
            tables[run] = {path.name: path.read_bytes() for path in sorted((folder / str(run)).iterdir())}
    return tables


def test_writer_threads_write_the_same_tables_as_one(tmp_path):
    """The tables of many dimensions are dealt to writer threads; each table's rows stay in chunk order, so the
    files are byte for byte those of one thread (omnibus table included)."""
    cohort = write_simulated_cohort(tmp_path / "cohort", samples=150, snps=250, dimensions=5, missing=0.03,
                                    planted=((20, 1, 1.0),), seed=7)
    tables = _scanned_tables(cohort, tmp_path, {threads: ScanSettings(chunk=17, threads=threads, multivariate=True,
                                                                      permuted_snps=250) for threads in (1, 3)})
    assert len(tables[1]) == 6 and tables[1].keys() == tables[3].keys()
    for name, content in tables[1].items():
        assert gzip.decompress(content).count(b"\n") == 251, name  # the header and every SNP
        assert gzip.decompress(tables[3][name]) == gzip.decompress(content), name


def test_the_compiled_table_writer_writes_the_same_tables(tmp_path, monkeypatch):
    """A run of many numbers writes its tables with ml4ge.genetics.compiled_text: the same bytes as the numpy
    writer, a P below double precision included."""
    from ml4ge.genetics import text

    cohort = write_simulated_cohort(tmp_path / "cohort", samples=300, snps=300, dimensions=4, missing=0.05,
                                    planted=((20, 1, 100.0),), seed=8)
    settings = ScanSettings(chunk=64, threads=2, compress=False)
    tables = _scanned_tables(cohort, tmp_path, {10**12: settings, 0: settings},
                             before=lambda compiled_from: monkeypatch.setattr(text, "COMPILED_FROM", compiled_from))
    assert len(tables[0]) == 4 and tables[0] == tables[10**12]
    planted = tables[0]["t1.latent_1.glm.linear"].decode()
    p_text = planted.split("\trs21\t")[1].split("\n")[0].split("\t")[-2]
    assert int(p_text.split("e-")[1]) > 308, p_text  # written from its -log10: not a double


def test_the_command_exits_with_every_table_complete(tmp_path):
    """``ml4ge`` exits without Python's final collection (ml4ge.cli.console_main); every gzip table, written by
    the compiled writer (numba loaded), is complete when the process ends, and so is the log."""
    cohort = write_simulated_cohort(tmp_path / "cohort", samples=200, snps=3000, dimensions=3, seed=9)
    entry = ("import sys; from ml4ge.genetics import text; text.COMPILED_FROM = 0; "
             "from ml4ge.cli import console_main; sys.argv[0] = 'ml4ge'; console_main()")
    result = subprocess.run([sys.executable, "-c", entry, "--mode", "associate", "--latent_tables",
                             f"t1={cohort.latents}", "--genotypes", str(cohort.genotypes), "--covariates_file",
                             str(cohort.covariates), "--output_folder", str(tmp_path), "--id", "gwas", "--no_plots"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    tables = sorted((tmp_path / "gwas" / "sumstats").glob("t1.*.glm.linear.gz"))
    assert len(tables) == 3
    for table in tables:
        assert gzip.decompress(table.read_bytes()).count(b"\n") == 3001, table.name  # the header and every SNP
    assert "associate: t1:" in (tmp_path / "gwas" / "log.txt").read_text()
