"""The ViT blocks through the recipes (issue #15 item 4): --vit_* flags, the brain tokens taken from the training
split before building, the patch-masked loss of ViT outputs, and train -> resume -> infer_encoders -> infer ->
interpret -> associate -> compare on a tiny cohort with affines."""

import h5py
import keras
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from recipe_helpers import write_maps_package

from ml4ge.cli import main, parse_settings
from ml4ge.hd5 import write_tensor
from ml4ge.models.artifacts import load_model
from ml4ge.models.config import ConvConfig, DenseConfig, ModelConfig
from ml4ge.models.factory import Architecture, build_model
from ml4ge.models.vit_config import ViTConfig
from ml4ge.models.vit_loss import PatchMaskedMeanSquaredError
from ml4ge.models.vit_tokens import brain_tokens, union_mask
from ml4ge.recipes.train import block_losses, prepared_architecture
from ml4ge.synthetic import ellipsoid_volume

PACKAGE = "vit_through_recipes"
SHAPE = (8, 8, 8)
AFFINE = np.array([[-4.0, 0, 0, 16], [0, 4, 0, -20], [0, 0, 4, -12], [0, 0, 0, 1]])
SAMPLES = 24
# 2x2x2 patches: a 4x4x4 grid of 64 tokens, whose corners lie outside every ellipsoid of the cohort.
TINY_VIT_FLAGS = ["--vit_patch", "2", "2", "2", "--vit_width", "8", "--vit_depth", "1", "--vit_heads", "2",
                  "--vit_mlp_ratio", "2", "--vit_decoder_width", "8", "--vit_decoder_depth", "1",
                  "--vit_decoder_heads", "2"]
VIT_BLOCKS = ["--encoder_blocks", "vit_encode", "--decoder_blocks", "vit_decode"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """``(maps, tensors folder)``: SAMPLES HD5 files of T1 ellipsoids with affines and voxel sizes."""
    import importlib
    import sys

    root = write_maps_package(tmp_path_factory.mktemp("vit_maps"), PACKAGE)
    sys.path.insert(0, str(root))
    folder = root / "tensors"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(SAMPLES):
        with h5py.File(folder / f"s{i:02d}.hd5", "w") as hd5:
            write_tensor(hd5, "ukb_brain_mri/T1", ellipsoid_volume(SHAPE, rng), instance=0,
                         attributes={"affine": AFFINE, "voxel_size": np.array([4.0, 4.0, 4.0])})
    yield importlib.import_module(f"{PACKAGE}.brain"), folder
    sys.path.remove(str(root))


def train_settings(tensors, tmp_path, *extra):
    return parse_settings(["--mode", "train", "--tensors", str(tensors), "--output_folder", str(tmp_path),
                           "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "--output_tensors",
                           "brain.t1", "--num_workers", "0", *extra])


def test_vit_flags_reach_the_blocks_config(cohort, tmp_path):
    from ml4ge.models.presets import settings_from_args

    _, tensors = cohort
    config, _ = settings_from_args(train_settings(tensors, tmp_path, *VIT_BLOCKS, *TINY_VIT_FLAGS))
    assert config.vit == ViTConfig(patch=(2, 2, 2), width=8, depth=1, heads=2, mlp_ratio=2, decoder_width=8,
                                   decoder_depth=1, decoder_heads=2)
    defaults, _ = settings_from_args(train_settings(tensors, tmp_path, *VIT_BLOCKS))
    assert defaults.vit == ViTConfig()  # without a preset the flags' defaults (UDIP-ViT's sizes) apply


def refusal(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--vit_width", "0"], "--vit_width must be at least 1, got 0"),
    (["--vit_patch", "2", "0", "2"], "each value of --vit_patch must be at least 1, got 0"),
    (["--vit_width", "10", "--vit_heads", "4"], "change --vit_width or --vit_heads"),
    (["--vit_decoder_width", "6", "--vit_decoder_heads", "4"], "change --vit_decoder_width or --vit_decoder_heads"),
])
def test_bad_vit_flags_are_refused_before_work(cohort, tmp_path, capsys, extra, message):
    _, tensors = cohort
    argv = ["--mode", "train", "--tensors", str(tensors), "--output_folder", str(tmp_path), "--id", "bad",
            "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "--output_tensors", "brain.t1",
            *VIT_BLOCKS, *extra]
    assert message in refusal(capsys, argv)
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_the_architecture_takes_the_brain_tokens_of_the_training_split(cohort):
    maps, tensors = cohort
    paths = sorted(tensors.glob("*.hd5"))[:10]
    config = ModelConfig(vit=ViTConfig(patch=(2, 2, 2), width=8, depth=1, heads=2, decoder_width=8,
                                       decoder_depth=1, decoder_heads=2))
    vit = Architecture("autoencoder", ("vit_encode",), ("concat",), ("vit_decode",), config)
    prepared = prepared_architecture(vit, paths, [maps.t1], [maps.t1]).config.vit
    expected = brain_tokens(union_mask(paths, maps.t1), (2, 2, 2)).tolist()
    assert list(prepared.kept("t1_tiny")) == expected and 8 <= len(expected) < 64
    conv = Architecture("autoencoder", ("conv_encode",), ("concat",), ("conv_decode",), config)
    assert prepared_architecture(conv, paths, [maps.t1], [maps.t1]).config == config


def test_vit_outputs_train_with_the_patch_masked_loss(cohort):
    maps, _ = cohort
    config = ModelConfig(vit=ViTConfig(patch=(2, 4, 2), width=8, depth=1, heads=2, decoder_width=8,
                                       decoder_depth=1, decoder_heads=2))
    vit = build_model([maps.t1], [maps.t1, maps.age], ["vit_encode"], ["concat"], ["vit_decode", "dense_decode"],
                      config)
    t1, age = block_losses(vit, [maps.t1, maps.age])
    assert isinstance(t1.loss, PatchMaskedMeanSquaredError) and t1.loss.patch == (2, 4, 2)
    assert age.loss == "mse"  # a dense decoder keeps the map's own loss
    conv = build_model([maps.t1], [maps.t1], ["conv_encode"], ["concat"], ["conv_decode"],
                       ModelConfig(conv=ConvConfig(layers=(2,), stages=(2,)), dense=DenseConfig(widths=(4,))))
    assert block_losses(conv, [maps.t1])[0].loss == "masked_mse"


def write_genotypes(folder, ids, snps=40, seed=0):
    """A PLINK 1 set of ``ids`` and covariates (age, sex) for them: the prefix and the covariate file."""
    from bed_reader import to_bed

    rng = np.random.default_rng(seed)
    dosages = rng.binomial(2, rng.uniform(0.2, 0.5, snps), size=(len(ids), snps)).astype(np.float32)
    properties = {"fid": ids, "iid": ids, "sid": [f"rs{i + 1}" for i in range(snps)],
                  "chromosome": ["1"] * snps, "bp_position": 10_000 + 1_000 * np.arange(snps),
                  "allele_1": ["A"] * snps, "allele_2": ["G"] * snps}
    to_bed(folder / "genotypes.bed", dosages, properties=properties)
    covariates = pd.DataFrame({"sample_id": ids, "age": rng.uniform(45, 80, len(ids)),
                               "sex": rng.integers(0, 2, len(ids))})
    covariates.to_csv(folder / "covariates.csv", index=False)
    return folder / "genotypes", folder / "covariates.csv"


def write_atlas(folder):
    labels = np.zeros(SHAPE, dtype=np.int16)
    labels[:4, :, 1:7], labels[4:, :, 1:7] = 1, 2
    nib.save(nib.Nifti1Image(labels, AFFINE), str(folder / "atlas.nii.gz"))
    pd.DataFrame({"label": [1, 2], "name": ["left half", "right half"]}).to_csv(folder / "labels.tsv", sep="\t",
                                                                               index=False)
    return folder / "atlas.nii.gz", folder / "labels.tsv"


@pytest.mark.slow
def test_a_vit_autoencoder_through_every_recipe(cohort, tmp_path):
    """train with the ViT blocks and --vit_* flags (brain tokens of the training split, patch loss), resume it,
    then infer_encoders, infer, interpret, associate and compare on what it saved."""
    maps, tensors = cohort
    common = ["--tensors", str(tensors), "--output_folder", str(tmp_path), "--tensormap_prefix", PACKAGE,
              "--input_tensors", "brain.t1", "--num_workers", "0", "--batch_size", "4"]
    train = ["--mode", "train", *common, "--id", "vit", "--output_tensors", "brain.t1", *VIT_BLOCKS,
             *TINY_VIT_FLAGS, "--valid_ratio", "0.25", "--test_ratio", "0.17", "--learning_rate", "1e-3"]
    assert main([*train, "--epochs", "2", "--keep_checkpoints"]) == 0  # so that the rerun below resumes
    run = tmp_path / "vit"
    model = load_model(run / "vit.keras")
    train_paths = [tensors / f"{sample}.hd5" for sample in pd.read_csv(run / "train.csv").iloc[:, 0].astype(str)]
    kept = brain_tokens(union_mask(train_paths, maps.t1), (2, 2, 2)).tolist()
    assert model.spec["config"]["vit"]["kept_tokens"] == [["t1_tiny", kept]] and len(kept) < 64
    assert model.encoders["t1_tiny"].get_layer("encode_t1_tiny_keep_0").output.shape == (None, len(kept), 8)
    loss = model.loss[maps.t1.output_name]  # the saved, compiled loss
    assert isinstance(loss, PatchMaskedMeanSquaredError) and loss.patch == (2, 2, 2)

    assert main([*train, "--epochs", "2"]) == 0  # resumes: the same split, so the same token set and shapes
    assert "resumed from the backup of epoch 2" in (run / "log.txt").read_text()
    log = pd.read_csv(run / "training_log.csv")
    assert log["epoch"].tolist() == [0, 1] and np.isfinite(log["loss"]).all()
    assert load_model(run / "vit.keras").spec["config"]["vit"]["kept_tokens"] == [["t1_tiny", kept]]

    assert main(["--mode", "infer_encoders", *common, "--id", "lat", "--model_file", str(run / "vit.keras"),
                 "--tsv_style", "genetics"]) == 0
    table = pd.read_csv(tmp_path / "lat" / "hidden_t1_tiny_lat.tsv", sep="\t")
    assert list(table.columns[:2]) == ["FID", "IID"] and table.shape == (SAMPLES, 2 + 8)
    assert np.isfinite(table.iloc[:, 2:].to_numpy()).all() and table.iloc[:, 2:].std().min() > 0

    assert main(["--mode", "infer", *common, "--id", "rec", "--model_file", str(run / "vit.keras"),
                 "--output_tensors", "brain.t1"]) == 0
    volume = nib.load(tmp_path / "rec" / "inferred" / "s00_t1_tiny.nii.gz")
    assert volume.shape == SHAPE and np.isfinite(volume.get_fdata()).all()
    np.testing.assert_allclose(volume.affine, AFFINE)  # the source's grid
    outside = np.ones(64, bool)
    outside[kept] = False  # patches outside the kept set are predicted as zero
    patches = volume.get_fdata().reshape(4, 2, 4, 2, 4, 2).transpose(0, 2, 4, 1, 3, 5).reshape(64, 8)
    assert not patches[outside].any() and np.abs(patches[kept]).sum() > 0

    atlas, labels = write_atlas(tmp_path)
    assert main(["--mode", "interpret", *common, "--output_tensors", "brain.t1", "--id", "perdi", "--model_file",
                 str(run / "vit.keras"), "--interpret_dimensions", "0", "3", "--smooth_sigma", "0", "--atlas",
                 str(atlas), "--atlas_labels", str(labels)]) == 0
    for dimension in (0, 3):
        image = nib.load(tmp_path / "perdi" / "perdi_t1_tiny" / f"dim_{dimension}.nii.gz")
        assert image.shape == SHAPE and image.get_fdata().max() > 0
        ranking = pd.read_csv(tmp_path / "perdi" / "perdi_t1_tiny" / f"dim_{dimension}_regions.tsv", sep="\t")
        assert sorted(ranking["region"]) == ["left half", "right half"] and ranking["ks_rank"].tolist() == [1, 2]

    ids = [f"s{i:02d}" for i in range(SAMPLES)]
    genotypes, covariates = write_genotypes(tmp_path, ids)
    latents = tmp_path / "lat" / "hidden_t1_tiny_lat.tsv"
    assert main(["--mode", "associate", "--latent_tables", f"vit={latents}", "--genotypes", str(genotypes),
                 "--covariates_file", str(covariates), "--maf", "0.05", "--output_folder", str(tmp_path), "--id",
                 "gwas", "--num_workers", "1"]) == 0
    counts = pd.read_csv(tmp_path / "gwas" / "associate_counts.tsv", sep="\t")
    assert len(counts) >= 1

    phenotypes = pd.read_csv(covariates).assign(trait=np.random.default_rng(1).normal(size=SAMPLES))
    phenotypes.to_csv(tmp_path / "phenotypes.csv", index=False)
    assert main(["--mode", "compare", "--latent_tables", f"vit={latents}", "--phenotypes",
                 str(tmp_path / "phenotypes.csv"), "--covariates", "age", "sex", "--folds", "2", "--output_folder",
                 str(tmp_path), "--id", "cmp"]) == 0
    assert any((tmp_path / "cmp").glob("*.tsv"))


def test_a_keras_loss_of_a_loaded_vit_is_the_patch_loss(cohort, tmp_path):
    """block_losses reads the saved spec: a ViT model loaded to fine-tune keeps training with the patch loss."""
    from ml4ge.models.artifacts import save_model

    maps, _ = cohort
    config = ModelConfig(vit=ViTConfig(patch=(4, 4, 4), width=8, depth=1, heads=2, decoder_width=8,
                                       decoder_depth=1, decoder_heads=2))
    model = build_model([maps.t1], [maps.t1], ["vit_encode"], ["concat"], ["vit_decode"], config)
    loaded = load_model(save_model(model, tmp_path, "vit")["full"])
    (t1,) = block_losses(loaded, [maps.t1])
    assert isinstance(t1.loss, PatchMaskedMeanSquaredError) and t1.loss.patch == (4, 4, 4)
    assert isinstance(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(t1.loss)),
                      PatchMaskedMeanSquaredError)


def test_an_augmented_map_is_warned_that_its_brain_tokens_come_from_unaugmented_masks(cohort, caplog):
    from dataclasses import replace

    maps, tensors = cohort
    shifted = replace(maps.t1, augmentations=(lambda x, rng: np.roll(x, int(rng.integers(-2, 3)), axis=0),))
    config = ModelConfig(vit=ViTConfig(patch=(2, 2, 2), width=8, depth=1, heads=2, decoder_width=8,
                                       decoder_depth=1, decoder_heads=2))
    vit = Architecture("autoencoder", ("vit_encode",), ("concat",), ("vit_decode",), config)
    paths = sorted(tensors.glob("*.hd5"))[:4]
    with caplog.at_level("WARNING", logger="ml4ge.models.vit"):
        prepared = prepared_architecture(vit, paths, [shifted], [shifted]).config.vit
    assert prepared.kept("t1_tiny") == tuple(brain_tokens(union_mask(paths, maps.t1), (2, 2, 2)).tolist())
    warnings = [r.getMessage() for r in caplog.records if "without augmentation" in r.getMessage()]
    assert len(warnings) == 1 and "t1_tiny" in warnings[0]  # once per map: the decoder finds its set taken
