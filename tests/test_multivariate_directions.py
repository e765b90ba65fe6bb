"""Trait directions: the cross-fitted projection keeps each subject's own trait out of its projection; the direction
GWAS through ``--mode associate --direction_traits``."""

import numpy as np
import pytest
from test_interpret_recipe import maps_root  # noqa: F401 (the fixture registering the tensor maps' package)

from ml4ge.genetics.directions import FOLDS, cross_fitted_projection, direction, fit_direction


def _spread_trait(rng, samples=200, dimensions=12):
    """Latents carrying a trait spread evenly over every dimension, plus covariates moving both."""
    covariates = rng.standard_normal((samples, 2))
    trait = rng.standard_normal(samples) + covariates @ [0.5, -0.3]
    latents = 0.4 * trait[:, None] + rng.standard_normal((samples, dimensions)) + covariates @ rng.standard_normal(
        (2, dimensions))
    return latents, trait, covariates


def test_no_subject_s_own_trait_enters_its_projection():
    rng = np.random.default_rng(0)
    latents, trait, covariates = _spread_trait(rng)
    before = cross_fitted_projection(latents, trait, covariates)
    changed = trait.copy()
    changed[17] += 50.0  # an outlier in one subject's trait
    after = cross_fitted_projection(latents, changed, covariates)
    assert after[17] == pytest.approx(before[17], abs=1e-12)
    assert np.abs(after - before).max() > 1e-3  # the other folds' subjects do see it
    # a projection on the direction fitted on everyone would carry it (what cross-fitting prevents)
    everyone = np.arange(len(trait))
    own = latents[17] @ fit_direction(latents, changed, covariates, everyone)
    assert abs(own - latents[17] @ fit_direction(latents, trait, covariates, everyone)) > 1e-3


def test_a_spread_trait_is_recovered_by_its_direction():
    rng = np.random.default_rng(1)
    latents, trait, covariates = _spread_trait(rng, samples=400)
    found = direction(latents, trait, covariates)
    assert found.r2_cross_fitted > 0.5
    assert np.all(found.weights > 0)  # every dimension carries the trait with the same sign
    assert found.projection_sd == pytest.approx((latents @ found.weights).std())


def test_a_trait_in_latents_the_covariates_dominate_is_recovered():
    """Latents mostly made of the covariates (an encoder's age and head-size axes), the trait in what is left:
    each fold's projection must remove the covariate part the fold fitted. Projecting the raw latents left each
    fold's covariate part times its own weights in the projection, which swamped the trait (R^2 0.01-0.02 on the
    demo's whole-brain spaces for traits their latents carried at 0.4)."""
    rng = np.random.default_rng(3)
    covariates = rng.standard_normal((300, 2))
    residual = rng.standard_normal((300, 10))
    trait = residual[:, 0] - residual[:, 1] + 0.5 * rng.standard_normal(300)
    latents = residual + 1000.0 * covariates @ rng.standard_normal((2, 10))
    assert direction(latents, trait, covariates).r2_cross_fitted > 0.8


def test_a_direction_needs_enough_subjects_and_a_varying_trait():
    rng = np.random.default_rng(2)
    latents, trait, covariates = _spread_trait(rng, samples=2 * FOLDS - 1)
    with pytest.raises(ValueError, match="folds"):
        cross_fitted_projection(latents, trait, covariates)
    latents, trait, covariates = _spread_trait(rng, samples=50)
    with pytest.raises(ValueError, match="constant"):
        direction(latents, np.ones(50), covariates)


@pytest.mark.slow
def test_associate_direction_gwas_finds_a_snp_of_a_spread_trait(tmp_path):
    import pandas as pd
    from test_multivariate import _spread_cohort

    from ml4ge.cli import main

    cohort = _spread_cohort(tmp_path / "cohort")  # rs2200 moves all 8 latents by 0.11 SD per allele
    latents = pd.read_csv(cohort.latents, sep="\t").set_index("sample_id")
    rng = np.random.default_rng(3)
    trait = latents.mean(axis=1) + 0.3 * rng.standard_normal(len(latents))  # a trait the space carries, spread
    trait.rename("spread").to_frame().to_csv(tmp_path / "traits.csv")
    argv = ["--mode", "associate", "--latent_tables", f"t1={cohort.latents}", "--genotypes", str(cohort.genotypes),
            "--covariates_file", str(cohort.covariates), "--output_folder", str(tmp_path), "--id", "gwas",
            "--num_workers", "1", "--phenotypes", str(tmp_path / "traits.csv"), "--direction_traits", "spread"]
    assert main(argv) == 0
    run = tmp_path / "gwas"
    hits = pd.read_csv(run / "associate_hits.tsv", sep="\t")
    assert set(hits[hits.space == "t1"].ID) == {"rs901"}  # one dimension at a time misses rs2200
    assert "rs2200" in set(hits[hits.space == "t1-spread"].ID)
    summary = pd.read_csv(run / "associate_directions.tsv", sep="\t").iloc[0]
    assert summary.direction_space == "t1-spread" and summary.samples == 1500 and summary.r2_cross_fitted > 0.3
    weights = pd.read_csv(run / "directions/t1-spread.tsv", sep="\t")
    assert list(weights.dimension) == [f"latent_{d}" for d in range(8)] and (weights.weight > 0).all()
    assert (run / "sumstats/t1-spread.direction.glm.linear.gz").is_file()
    with pytest.raises(SystemExit) as refused:  # refused before any work
        main([*argv[:-2], "--direction_traits", "absent"])
    assert refused.value.code == 2


@pytest.mark.usefixtures("maps_root")
def test_interpret_maps_a_named_direction(tmp_path):
    """A direction along latent 0 alone gives dimension 0's map; one along latents 0 and 1 changes both regions
    they drive (the hand-built decoder of test_interpret_recipe)."""
    import nibabel as nib
    import pandas as pd
    from test_interpret_recipe import hand_built_decoder, write_atlas, write_latent_table

    from ml4ge.cli import main

    decoder = hand_built_decoder(tmp_path / "decoder_t1_tiny.keras")
    table = write_latent_table(tmp_path / "hidden_t1_tiny_run.tsv")
    atlas, labels = write_atlas(tmp_path)
    for name, weights in (("along0", [2.5, 0.0, 0.0]), ("both", [1.0, 1.0, 0.0])):
        pd.DataFrame({"dimension": [f"latent_{i}" for i in range(3)], "weight": weights}).to_csv(
            tmp_path / f"{name}.tsv", sep="\t", index=False)
    assert main(["--mode", "interpret", "--tensormap_prefix", "perdi_maps", "--output_tensors", "brain.t1",
                 "--model_file", str(decoder), "--latent_tables", f"t1={table}", "--interpret_samples", "30",
                 "--smooth_sigma", "1", "--atlas", str(atlas), "--atlas_labels", str(labels), "--output_folder",
                 str(tmp_path), "--id", "perdi", "--interpret_dimensions", "0", "--interpret_directions",
                 f"along0={tmp_path / 'along0.tsv'}", str(tmp_path / "both.tsv")]) == 0
    maps = tmp_path / "perdi" / "perdi_t1_tiny"
    dimension = nib.load(str(maps / "dim_0.nii.gz")).get_fdata()
    np.testing.assert_allclose(nib.load(str(maps / "direction_along0.nii.gz")).get_fdata(), dimension, rtol=1e-5)
    both = pd.read_csv(maps / "direction_both_regions.tsv", sep="\t")
    assert set(both.region[:2]) == {"back left", "front left"}
    summary = pd.read_csv(tmp_path / "perdi" / "perdi_t1_tiny_summary.tsv", sep="\t")
    assert summary.dimension.astype(str).tolist() == ["0", "along0", "both"]


def _write_sumstats(prefix, best):
    """PLINK2 --glm tables ``<prefix>.latent_<d>.glm.linear.gz`` in which SNP s is most significant in dimension
    ``best[s]``."""
    import gzip

    from ml4ge.genetics.sumstats import columns

    for d in range(3):
        rows = ["\t".join(["1", str(100 * i), snp, "A", "G", "G", "0.3", "ADD", "30", "0.1", "0.05", "2",
                           "1e-9" if best[snp] == d else "0.2", "."]) for i, snp in enumerate(best)]
        with gzip.open(f"{prefix}.latent_{d}.glm.linear.gz", "wt") as handle:
            handle.write("\t".join(columns()) + "\n" + "\n".join(rows) + "\n")


@pytest.mark.usefixtures("maps_root")
def test_interpret_chooses_dimensions_and_directions_by_trait_and_by_snp(tmp_path):
    import nibabel as nib
    import pandas as pd
    from test_interpret_recipe import hand_built_decoder, write_atlas, write_latent_table

    from ml4ge.cli import main

    decoder = hand_built_decoder(tmp_path / "decoder_t1_tiny.keras")
    table = write_latent_table(tmp_path / "hidden_t1_tiny_run.tsv")
    latents = pd.read_csv(table, sep="\t").set_index("sample_id")
    rng = np.random.default_rng(4)
    age = rng.normal(60, 8, len(latents))
    # the trait follows latent 1 (and age, which --covariates age removes)
    pd.DataFrame({"sample_id": latents.index, "age": age,
                  "volume": latents.latent_1 + 0.3 * rng.standard_normal(len(latents)) + 0.05 * age}).to_csv(
        tmp_path / "phenotypes.csv", index=False)
    (tmp_path / "sumstats").mkdir()
    _write_sumstats(tmp_path / "sumstats" / "t1", {"rs1": 2, "rs2": 0})
    atlas, labels = write_atlas(tmp_path)
    assert main(["--mode", "interpret", "--tensormap_prefix", "perdi_maps", "--output_tensors", "brain.t1",
                 "--model_file", str(decoder), "--latent_tables", f"t1={table}", "--smooth_sigma", "1",
                 "--atlas", str(atlas), "--atlas_labels", str(labels), "--output_folder", str(tmp_path), "--id",
                 "chosen", "--phenotypes", str(tmp_path / "phenotypes.csv"), "--covariates", "age",
                 "--interpret_traits", "volume", "--interpret_snps", "rs1", "rs2", "--interpret_sumstats",
                 str(tmp_path / "sumstats" / "t1")]) == 0
    run = tmp_path / "chosen"
    chosen = pd.read_csv(run / "interpret_choices.tsv", sep="\t", dtype={"dimension": str})
    assert list(zip(chosen.route, chosen.target, chosen.dimension)) == [
        ("trait", "volume", "1"), ("trait_direction", "volume", "trait_volume"), ("snp", "rs1", "2"),
        ("snp", "rs2", "0")]
    maps = run / "perdi_t1_tiny"
    assert sorted(p.name for p in maps.glob("*.nii.gz")) == [
        "dim_0.nii.gz", "dim_1.nii.gz", "dim_2.nii.gz", "direction_trait_volume.nii.gz", "mask.nii.gz",
        "mean_reconstruction.nii.gz"]
    assert pd.read_csv(maps / "direction_trait_volume_regions.tsv", sep="\t").region[0] == "front left"
    assert nib.load(str(maps / "direction_trait_volume.nii.gz")).get_fdata().max() > 0


@pytest.mark.parametrize("suffix", [".glm.linear.gz", ".glm.linear"])
def test_interpret_reads_the_best_dimension_from_gzipped_or_uncompressed_sumstats(tmp_path, suffix):
    """associate --uncompressed_sumstats writes plink2's plain .glm.linear; --interpret_sumstats reads either."""
    import gzip

    from ml4ge.interpret.choose import best_dimensions

    header = "#CHROM\tPOS\tID\tREF\tALT\tA1\tA1_FREQ\tTEST\tOBS_CT\tBETA\tSE\tT_STAT\tP\tERRCODE\n"
    for dimension, p in ((0, "0.01"), (3, "2.5e-412")):
        text = header + f"1\t100\trs1\tG\tA\tA\t0.3\tADD\t500\t0.1\t0.02\t5\t{p}\t.\n"
        path = tmp_path / f"t1.latent_{dimension}{suffix}"
        path.write_bytes(gzip.compress(text.encode()) if suffix.endswith(".gz") else text.encode())
    best = best_dimensions(tmp_path / "t1", ["rs1"])
    assert best.to_dict("records") == [{"snp": "rs1", "dimension": 3, "log10p": 411.6}]
