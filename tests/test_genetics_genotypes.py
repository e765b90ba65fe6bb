"""PLINK 1 file sets that are not one set (repeated IIDs, a .fam or .bim that does not fit the .bed) are refused
with the true cause, before any work; real files written by bed-reader and edited as text."""

import re

import numpy as np
import pytest
from bed_reader import to_bed

from ml4ge.cli import main
from ml4ge.genetics.genotypes import GenotypeFile, check_genotype_files
from ml4ge.genetics.simulate import write_simulated_cohort

SAMPLES, SNPS = 10, 7


@pytest.fixture
def genotypes(tmp_path):
    """A valid 10-sample, 7-SNP file set; returns its prefix."""
    dosages = np.random.default_rng(0).integers(0, 3, (SAMPLES, SNPS)).astype(np.float32)
    to_bed(tmp_path / "g.bed", dosages, properties={"iid": [f"s{i}" for i in range(SAMPLES)]})
    return tmp_path / "g"


def _edit(prefix, suffix, edit):
    path = prefix.with_name(prefix.name + suffix)
    path.write_text("".join(edit(path.read_text().splitlines(keepends=True))))


def test_a_valid_file_set_opens(genotypes):
    assert check_genotype_files(genotypes) == genotypes
    with GenotypeFile(genotypes) as bed:
        assert len(bed.sample_ids) == SAMPLES and bed.snp_count == SNPS


def test_repeated_iids_are_refused_with_the_ids(genotypes):
    _edit(genotypes, ".fam", lambda rows: [row.replace(" s3 ", " s2 ").replace(" s7 ", " s6 ") for row in rows])
    for check in (check_genotype_files, lambda prefix: GenotypeFile(prefix).__enter__()):
        with pytest.raises(ValueError, match=r"g\.fam: IIDs \['s2', 's6'\] appear more than once"):
            check(genotypes)


def test_a_short_fam_is_named_as_the_cause(genotypes):
    _edit(genotypes, ".fam", lambda rows: rows[:7])  # 7 samples need 2 bytes per SNP, the .bed has 3
    with pytest.raises(ValueError, match=r"the \.fam lists 7 samples, but the \.bed's size fits 9 to 12 samples"):
        GenotypeFile(genotypes).__enter__()


def test_a_short_bim_is_named_as_the_cause(genotypes):
    _edit(genotypes, ".bim", lambda rows: rows[:5])
    with pytest.raises(ValueError, match=r"the \.bim lists 5 SNPs, but the \.bed holds 7 SNPs"):
        check_genotype_files(genotypes)


def test_blank_lines_are_refused(genotypes):
    _edit(genotypes, ".fam", lambda rows: [*rows, "\n"])  # bed-reader would read an 11th sample with IID ''
    with pytest.raises(ValueError, match=r"g\.fam has 1 blank lines"):
        check_genotype_files(genotypes)
    _edit(genotypes, ".fam", lambda rows: rows[:-1])
    _edit(genotypes, ".bim", lambda rows: [*rows, "\n"])
    with pytest.raises(ValueError, match=r"the \.bim lists 8 SNPs, but the \.bed holds 7 SNPs"):
        check_genotype_files(genotypes)


def test_associate_refuses_repeated_iids_before_any_work(tmp_path, capsys):
    cohort = write_simulated_cohort(tmp_path / "cohort", samples=40, snps=20, dimensions=2, planted=())
    _edit(cohort.genotypes, ".fam", lambda rows: [rows[0], rows[0], *rows[2:]])  # sub00001 becomes sub00000
    with pytest.raises(SystemExit) as stop:
        main(["--mode", "associate", "--latent_tables", f"t1={cohort.latents}", "--genotypes",
              str(cohort.genotypes), "--output_folder", str(tmp_path / "runs"), "--id", "dup"])
    assert stop.value.code == 2
    assert re.search(r"IIDs \['sub00000'\] appear more than once", capsys.readouterr().err)
    assert not (tmp_path / "runs/dup").exists()
