"""Genetic association of learned endophenotypes: a streamed multi-phenotype OLS scan (PLINK2 ``--glm`` numbers),
hits, distance-clumped loci, replication, Manhattan/Miami plots and phenotype/covariate exports for PLINK2/REGENIE.

Modules (one job each): :mod:`~ml4ge.genetics.genotypes` (PLINK 1 files in SNP chunks, sample matching),
:mod:`~ml4ge.genetics.glm` (OLS of every phenotype on every SNP of a chunk), :mod:`~ml4ge.genetics.inputs` (latent
and covariate tables), :mod:`~ml4ge.genetics.scan` (the streamed scan and its outputs), :mod:`~ml4ge.genetics.loci`
(hits, loci, replication, counts), :mod:`~ml4ge.genetics.plots` and :mod:`~ml4ge.genetics.exports`.
"""
