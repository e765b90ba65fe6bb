"""``--mode associate``: a GWAS of every latent dimension (method: :mod:`ml4ge.genetics`).

Inputs:
    --latent_tables name=path ...    latent TSVs from infer_encoders (``sample_id`` or ``FID IID`` first).
    --genotypes PREFIX               PLINK 1 .bed/.bim/.fam; the .fam IID is the sample id.
    --covariates_file table.tsv      covariates keyed by sample id; ``--covariates`` picks columns (default: all).
    --sample_csv ids.csv             only these samples.
    --replication_genotypes PREFIX   a second cohort to replicate the hits in, or
    --replication_samples ids.csv    samples held out of discovery for replication.
    --maf 0.01 --geno 0.1            SNP filters; --impute mean-imputes missing calls; --rint transforms latents.
    --log10_p                        LOG10_P instead of P in the summary statistics (plink2 --glm log10).
    --uncompressed_sumstats          ``<space>.<dimension>.glm.linear`` (no gzip), as plink2 writes them.
    --no_plots                       no Manhattan or Miami plot (each costs a small scan noticeable time).
    --significance P                 hit threshold (default 5e-8 / total latent dimensions over all tables).
    --clump_kb 250 --snp_chunk 10000 --num_workers N (bed-reader, BLAS and table-writer threads).
    --multivariate --permuted_snps 20000   the omnibus (MOSTest) and min-P tests per SNP over each latent space,
                                     calibrated on permuted genotypes (:mod:`ml4ge.genetics.omnibus`); their hit
                                     threshold is 5e-8 / number of latent tables.
    --phenotypes p.csv --direction_traits T ...   the GWAS of each space's cross-fitted projection on each trait's
                                     direction (:mod:`ml4ge.genetics.directions`), scanned as a one-dimension space
                                     ``<space>-<trait>`` beside the others.

Outputs in ``<output_folder>/<id>/``: ``sumstats/<space>.<dimension>.glm.linear.gz`` (``.glm.linear``, not
gzipped, with --uncompressed_sumstats), PLINK2 ``--glm``'s table
(``#CHROM POS ID REF ALT A1 A1_FREQ TEST OBS_CT BETA SE T_STAT P ERRCODE``, :mod:`ml4ge.genetics.sumstats`),
``associate_hits.tsv`` (``space dimension CHROM POS ID A1 A2 A1_FREQ N BETA SE T_STAT LOG10P``: A1 counted, A2
the other allele), ``associate_loci.tsv``, ``associate_replication.tsv`` (with a replication cohort),
``associate_counts.tsv`` and ``.json`` (the headline numbers that compare quotes),
``associate_untestable.tsv`` (dimensions left out of the scan, e.g. constant ones, with the reason),
``manhattan_<space>.png``, ``miami_<space>.png`` and, with --multivariate, ``sumstats/<space>.glm.omnibus.gz`` (one
table per space, :mod:`ml4ge.genetics.multivariate`), ``associate_omnibus_hits.tsv``, ``associate_omnibus_loci.tsv``
(``dimension`` is the test: omnibus or minp), ``manhattan_<space>_omnibus.png`` and their counts in
``associate_counts``; with --direction_traits, ``associate_directions.tsv`` (per space and trait: samples,
cross-fitted R^2, projection SD) and ``directions/<space>-<trait>.tsv`` (the direction fitted on every subject, for
``interpret --interpret_directions``); ``exports/`` (PLINK2/REGENIE phenotype and covariate files and
``commands.sh``, which runs from any folder).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.atomic import write_table, write_text
from ml4ge.genetics.exports import write_exports
from ml4ge.genetics.genotypes import GenotypeFile, check_genotype_files
from ml4ge.genetics.inputs import assemble_spaces, check_space_name, covariate_frame
from ml4ge.genetics.loci import clump, headline_counts, replicate
from ml4ge.genetics.multivariate import HIT_COLUMNS as OMNIBUS_HIT_COLUMNS
from ml4ge.genetics.multivariate import omnibus_file_name
from ml4ge.genetics.plots import manhattan, miami
from ml4ge.genetics.scan import HIT_COLUMNS, ScanSettings, scan, sumstats_path
from ml4ge.latents import latent_tables, load_latents
from ml4ge.readers import read_table
from ml4ge.recipes.settings import RunSettings
from ml4ge.splits import read_ids

log = logging.getLogger(__name__)

GENOME_WIDE = 5e-8
REPLICATION_ALPHA = 0.05


@flag_settings
class AssociateSettings(RunSettings):
    """The flags of ``--mode associate``: latents, genotypes, covariates, filters and replication."""

    mode = "associate"
    latent_tables: tuple[str, ...]
    genotypes: str | None
    covariates_file: str | None
    covariates: tuple[str, ...]
    sample_csv: str | None
    replication_genotypes: str | None
    replication_samples: str | None
    maf: float
    geno: float
    rint: bool
    impute: bool
    log10_p: bool
    uncompressed_sumstats: bool
    no_plots: bool
    snp_chunk: int
    clump_kb: float
    significance: float | None
    multivariate: bool
    permuted_snps: int
    eigen_floor: float
    phenotypes: str | None
    direction_traits: tuple[str, ...]


Settings = AssociateSettings


def validate(args: AssociateSettings) -> None:
    """Raises ValueError/FileNotFoundError before any work when the flags cannot work."""
    names = latent_tables(args.latent_tables)
    if not names:
        raise ValueError("--mode associate needs --latent_tables name=path ... (TSVs written by infer_encoders).")
    for name in names:
        check_space_name(name)
    if not args.genotypes:
        raise ValueError("--mode associate needs --genotypes PREFIX (PLINK 1 .bed/.bim/.fam).")
    check_genotype_files(args.genotypes)
    if args.replication_genotypes and args.replication_samples:
        raise ValueError("give --replication_genotypes or --replication_samples, not both.")
    if args.replication_genotypes:
        check_genotype_files(args.replication_genotypes)
    if args.replication_samples and not Path(args.replication_samples).is_file():
        raise FileNotFoundError(f"--replication_samples {args.replication_samples!r} does not exist.")
    _validate_covariates(args)  # --maf, --geno, --snp_chunk, ...: the flags' bounds (ml4ge.arguments)
    _validate_directions(args, names)


def _validate_directions(args: AssociateSettings, names) -> None:
    """--direction_traits name numeric --phenotypes columns whose space names can name files."""
    if not args.direction_traits:
        return
    if args.replication_genotypes or args.replication_samples:
        raise ValueError("--direction_traits cannot be replicated yet (the directions are fitted on discovery); "
                         "run the replication without them.")
    if not args.phenotypes or not Path(args.phenotypes).is_file():
        raise FileNotFoundError(f"--direction_traits needs --phenotypes, a CSV/TSV of the traits keyed by sample id; "
                                f"got {args.phenotypes!r}.")
    table = read_table(str(args.phenotypes))
    missing = [t for t in args.direction_traits if t not in table.columns]
    if missing:
        raise ValueError(f"--direction_traits {missing} are not columns of {args.phenotypes}; it has "
                         f"{', '.join(map(str, table.columns))}.")
    for name in names:
        for trait in args.direction_traits:
            check_space_name(f"{name}-{trait}")
    trait_frame(args)


def trait_frame(args: AssociateSettings) -> pd.DataFrame:
    """The --direction_traits of --phenotypes as numbers indexed by sample id (two-level text coded 0/1)."""
    return covariate_frame(read_table(str(args.phenotypes)), args.direction_traits)


def _validate_covariates(args: AssociateSettings) -> None:
    """The covariate file exists and its chosen columns can be used (named, numeric or two-level, not empty)."""
    if not args.covariates_file:
        if args.covariates:
            raise ValueError("--covariates names columns of --covariates_file; give that file.")
        return
    if not Path(args.covariates_file).is_file():
        raise FileNotFoundError(f"--covariates_file {args.covariates_file!r} does not exist.")
    table = read_table(str(args.covariates_file))
    missing = [c for c in args.covariates if c not in table.columns]
    if missing:
        raise ValueError(f"--covariates {missing} are not columns of {args.covariates_file}; it has "
                         f"{', '.join(map(str, table.columns))}.")
    covariate_frame(table, args.covariates)


def load_inputs(args: AssociateSettings):
    """The latent frames, the covariate frame and the sample filter of the flags."""
    latents = {name: load_latents(path) for name, path in latent_tables(args.latent_tables).items()}
    if args.covariates_file:
        covariates = covariate_frame(read_table(str(args.covariates_file)), args.covariates)
    else:
        log.warning("no --covariates_file: the scan adjusts for nothing but the intercept (usually add age, sex "
                    "and genetic PCs).")
        covariates = pd.DataFrame(index=pd.Index([], dtype=str))
    keep = read_ids(args.sample_csv) if args.sample_csv else None
    return latents, covariates, keep


def discovery_and_replication_ids(args, genotype_ids, keep):
    """Sample filters of discovery and (for --replication_samples) replication."""
    if not args.replication_samples:
        return keep, keep
    held_out = set(read_ids(args.replication_samples, genotype_ids))
    base = list(genotype_ids) if keep is None else list(keep)
    discovery = [i for i in base if i not in held_out]
    replication = [i for i in base if i in held_out]
    if not discovery or not replication:
        raise ValueError(f"--replication_samples leaves {len(discovery)} discovery and {len(replication)} "
                         "replication samples; both need samples.")
    return discovery, replication


def _directions(folder: Path, args: AssociateSettings, spaces) -> dict:
    """The direction spaces of every latent space and trait; their summary and directions are written."""
    from ml4ge.genetics.directions import direction_spaces  # scikit-learn: imported only when directions are asked

    made, summary, tables = direction_spaces(spaces, trait_frame(args), args.direction_traits, args.random_seed)
    write_table(summary, folder / "associate_directions.tsv")
    (folder / "directions").mkdir(exist_ok=True)
    for name, table in tables.items():
        write_table(table, folder / "directions" / f"{name}.tsv")
    log.info("directions: %s", "; ".join(f"{r.direction_space} R2 {r.r2_cross_fitted:.2f} over {r.samples} samples"
                                         for r in summary.itertuples()))
    return made


def settings_of(args: AssociateSettings, spaces: int = 1, multivariate: bool = False) -> ScanSettings:
    return ScanSettings(maf=args.maf, geno=args.geno, impute=args.impute, chunk=args.snp_chunk,
                        threads=max(1, args.num_workers), log10=args.log10_p, compress=not args.uncompressed_sumstats,
                        multivariate=multivariate,
                        permuted_snps=args.permuted_snps, omnibus_log10=-np.log10(GENOME_WIDE / max(spaces, 1)),
                        eigen_floor=args.eigen_floor)


def run(args: AssociateSettings) -> int:
    """Scan, find loci, replicate, plot, export; returns 0."""
    folder = run_folder(args)
    latents, covariates, keep = load_inputs(args)
    with threadpool_limits(max(1, args.num_workers), user_api="blas"), \
            GenotypeFile(args.genotypes, max(1, args.num_workers)) as genotypes:
        discovery_ids, replication_ids = discovery_and_replication_ids(args, genotypes.sample_ids, keep)
        spaces = assemble_spaces(latents, covariates, genotypes.sample_ids, discovery_ids, args.rint)
        if args.direction_traits:
            spaces.update(_directions(folder, args, spaces))
        dimensions = sum(len(space.dimensions) for space in spaces.values())  # the tested ones (Bonferroni)
        significance = args.significance or GENOME_WIDE / dimensions
        threshold = -np.log10(significance)
        log.info("scanning %d SNPs x %d latent dimensions (%s); hit threshold P < %.3g", genotypes.snp_count,
                 dimensions, ", ".join(f"{n}: {len(s.phenotypes)} samples" for n, s in spaces.items()), significance)
        with ThreadPoolExecutor(1) as pool:  # the exports (Python's text formatting) beside the scan
            exported = pool.submit(write_exports, folder / "exports", spaces,
                                   dict(zip(genotypes.sample_ids, genotypes.family_ids)), Path(args.genotypes))
            results = scan(genotypes, spaces, settings_of(args, len(spaces), args.multivariate), threshold,
                           folder / "sumstats")
            exported.result()
        hits, loci = clump(pd.concat([r.table("hits", HIT_COLUMNS) for r in results.values()], ignore_index=True),
                           args.clump_kb)
        replication = _replicate(args, genotypes, latents, covariates, replication_ids, hits, threshold)
    facts = {name: {"dimensions": len(space.dimensions), "dimensions_untestable": len(space.untestable),
                    "samples": len(space.phenotypes), **results[name].counts, "threshold_p": significance}
             for name, space in spaces.items()}
    if args.multivariate:
        omnibus_outputs(folder, args, results, facts, len(spaces))
    if replication is not None:
        for name in facts:
            facts[name].update(replication_samples=replication["samples"].get(name, 0),
                               replication_threshold_p=replication["threshold_p"])
    counts = headline_counts(facts, hits, loci, None if replication is None else replication["table"])
    write_table(untestable_table(spaces), folder / "associate_untestable.tsv")
    _write_outputs(folder, args, results, hits, loci, replication, counts, threshold)
    remove_stale_outputs(folder, spaces, replication is not None, args.multivariate, bool(args.direction_traits),
                         plots=not args.no_plots, compressed=not args.uncompressed_sumstats)
    print(counts.to_string(index=False))
    return 0


# The per-space and optional outputs (and the summary statistics under their name before PLINK2's format).
STALE_PATTERNS = ("sumstats/*.glm.linear.gz", "sumstats/*.glm.linear", "sumstats/*.glm.omnibus",
                  "sumstats/*.glm.linear.tsv.gz", "manhattan_*.png", "miami_*.png",
                  "exports/*.pheno.tsv", "exports/covariates.tsv", "associate_replication.tsv",
                  "sumstats/*.glm.omnibus.gz", "associate_omnibus_hits.tsv", "associate_omnibus_loci.tsv",
                  "associate_directions.tsv", "directions/*.tsv")


def remove_stale_outputs(folder: Path, spaces, replicated: bool, multivariate: bool = False,
                         directions: bool = False, plots: bool = True, compressed: bool = True) -> None:
    """Delete the outputs of an earlier run in ``folder`` that this one did not write (a rerun with fewer
    dimensions, other tables, no covariates, no replication, no plots or other compression), so no file beside the
    new ones is out of date."""
    current = set()
    if any(space.covariates.shape[1] for space in spaces.values()):
        current.add(folder / "exports/covariates.tsv")
    if replicated:
        current |= {folder / "associate_replication.tsv", *(folder / f"miami_{name}.png" for name in spaces)}
    if directions:
        current |= {folder / "associate_directions.tsv",
                    *(folder / "directions" / f"{name}.tsv" for name, s in spaces.items() if s.dimensions == [
                        "direction"])}
    if multivariate:
        current |= {folder / "associate_omnibus_hits.tsv", folder / "associate_omnibus_loci.tsv",
                    *(folder / "sumstats" / omnibus_file_name(name, compressed) for name in spaces),
                    *(folder / f"manhattan_{name}_omnibus.png" for name in spaces)}
    for name, space in spaces.items():
        current |= {folder / f"manhattan_{name}.png", folder / "exports" / f"{name}.pheno.tsv",
                    *(sumstats_path(folder / "sumstats", name, dimension, compressed)
                      for dimension in space.dimensions)}
    if not plots:
        current = {path for path in current if path.suffix != ".png"}
    stale = sorted({path for pattern in STALE_PATTERNS for path in folder.glob(pattern)} - current)
    for path in stale:
        path.unlink()
    if stale:
        log.info("removed %d outputs of an earlier run that this run does not write: %s", len(stale),
                 ", ".join(str(path.relative_to(folder)) for path in stale[:10]))


def untestable_table(spaces) -> pd.DataFrame:
    """``space dimension reason`` of every dimension left out of the scan (header only when none was)."""
    rows = [(name, dimension, reason) for name, space in spaces.items() for dimension, reason in
            space.untestable.items()]
    return pd.DataFrame(rows, columns=["space", "dimension", "reason"])


def _replicate(args, genotypes, latents, covariates, replication_ids, hits, threshold) -> dict | None:
    """Scan the replication cohort for the hit SNPs (all SNPs kept for the Miami plot); None without one."""
    if not (args.replication_genotypes or args.replication_samples):
        return None
    with GenotypeFile(args.replication_genotypes or args.genotypes, max(1, args.num_workers)) as other:
        keep = replication_ids if args.replication_samples else (read_ids(args.sample_csv) if args.sample_csv
                                                                 else None)
        spaces = assemble_spaces(latents, covariates, other.sample_ids, keep, args.rint)
        results = scan(other, spaces, settings_of(args), threshold, lookup=set(hits.ID))
    lookups = pd.concat([r.table("lookup", HIT_COLUMNS) for r in results.values()], ignore_index=True)
    table, threshold_p = replicate(hits, lookups, REPLICATION_ALPHA)
    return {"table": table, "threshold_p": threshold_p, "results": results,
            "samples": {name: len(space.phenotypes) for name, space in spaces.items()}}


def _write_outputs(folder: Path, args, results, hits, loci, replication, counts, threshold) -> None:
    write_table(hits, folder / "associate_hits.tsv")
    write_table(loci, folder / "associate_loci.tsv")
    write_table(counts, folder / "associate_counts.tsv")
    write_text(folder / "associate_counts.json", json.dumps(counts.to_dict(orient="records"), indent=2, default=int))
    if not args.no_plots:
        _plots(folder, args, results, loci, replication, threshold)
    if replication is not None:
        write_table(replication["table"], folder / "associate_replication.tsv")
    log.info("associate: %s", "; ".join(f"{r.space}: {r.significant_pairs} pairs, {r.loci} loci"
                                        for r in counts.itertuples()))


def _plots(folder: Path, args, results, loci, replication, threshold) -> None:
    """Each space's Manhattan plot, and its Miami plot with a replication."""
    for name, result in results.items():
        best = result.table("best", ["CHROM", "POS", "ID", "LOG10P"])
        own_loci = loci[loci.space == name]
        manhattan(best, threshold, folder / f"manhattan_{name}.png", own_loci, f"{args.id}: {name}")
        if replication is not None:
            other = replication["results"][name].table("best", ["CHROM", "POS", "ID", "LOG10P"])
            miami(best, other, threshold, -np.log10(replication["threshold_p"]), folder / f"miami_{name}.png",
                  own_loci, f"{args.id}: {name}, discovery (up) and replication (down)")


def omnibus_outputs(folder: Path, args, results, facts: dict, spaces: int) -> None:
    """Write the omnibus and min-P hits, their loci and Manhattan plots; add their counts and nulls to ``facts``."""
    hits = pd.concat([r.table("omnibus_hits", OMNIBUS_HIT_COLUMNS) for r in results.values()], ignore_index=True)
    clumped = [clump(hits[hits.dimension == test], args.clump_kb) for test in ("omnibus", "minp")]  # each its own
    hits, loci = (pd.concat(parts, ignore_index=True) for parts in zip(*clumped))
    threshold_p = GENOME_WIDE / max(spaces, 1)
    for name, result in results.items():
        if result.null is None:  # a one-dimension space (a direction): its own scan is the test
            continue
        for test in ("omnibus", "minp"):
            own = hits[(hits.space == name) & (hits.dimension == test)]
            facts[name][f"{test}_snps"] = own.ID.nunique()
            facts[name][f"{test}_loci"] = int(own.locus.nunique()) if len(own) else 0
        null = result.null
        facts[name].update(null.facts(), omnibus_threshold_p=threshold_p,
                           minp_threshold_per_dimension_p=threshold_p / null.effective_dimensions)
        if args.no_plots:
            continue
        best = result.table("omnibus_best", ["CHROM", "POS", "ID", "LOG10P"])
        own_loci = loci[(loci.space == name) & (loci.dimension == "omnibus")]
        manhattan(best, -np.log10(threshold_p), folder / f"manhattan_{name}_omnibus.png", own_loci,
                  f"{args.id}: {name}, omnibus test over {null.rank} dimensions")
    write_table(hits, folder / "associate_omnibus_hits.tsv")
    write_table(loci, folder / "associate_omnibus_loci.tsv")
