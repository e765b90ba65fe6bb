"""PLINK2/REGENIE exports: every value written into commands.sh is shell-quoted, so the script runs as printed."""

import shlex
import subprocess

import numpy as np
import pandas as pd

from ml4ge.genetics.exports import write_exports
from ml4ge.genetics.inputs import Space


def test_commands_quote_every_value(tmp_path):
    ids = pd.Index([f"s{i}" for i in range(5)], name="sample_id")
    space = Space("t1", pd.DataFrame({"latent_0": np.arange(5.0)}, index=ids),
                  pd.DataFrame({"age": np.arange(5.0) + 40}, index=ids))
    genotypes = tmp_path / "my data $(touch pwned)" / "geno's set"
    written = write_exports(tmp_path / "exports", {"t1": space}, {}, genotypes)
    script = written["commands"].read_text()
    commands = [shlex.split(line) for line in script.splitlines() if line and not line.startswith("#")]
    assert [c[c.index("--bfile") + 1] for c in commands if c[0] == "plink2"] == [str(genotypes)]
    assert [c[c.index("--bed") + 1] for c in commands if c[0] == "regenie"] == [str(genotypes)] * 2
    subprocess.run(["bash", "-n", str(written["commands"])], check=True)  # the script parses
    shimmed = script.replace("plink2 ", "true ").replace("regenie ", "true ")
    subprocess.run(["bash", "-c", shimmed], cwd=tmp_path, check=True)
    assert not (tmp_path / "pwned").exists()
