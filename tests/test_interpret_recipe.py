"""--mode interpret end to end: a hand-built decoder whose latent dimensions each drive one region (saved and
loaded as .keras), a factory-built autoencoder trained a step on HD5 files with affines, and refusals."""

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from recipe_helpers import TINY_MODEL, write_maps_package

from ml4ge.cli import main, parse_settings
from ml4ge.hd5 import write_tensor

SHAPE = (8, 8, 8)
AFFINE = np.array([[-4.0, 0, 0, 16], [0, 4, 0, -20], [0, 0, 4, -12], [0, 0, 0, 1]])
REGIONS = {1: (slice(0, 4), slice(0, 4)), 2: (slice(0, 4), slice(4, 8)), 3: (slice(4, 8), slice(0, 4)),
           4: (slice(4, 8), slice(4, 8))}
DRIVES = {0: 3, 1: 1}  # latent dimension -> the atlas label it changes; dimension 2 changes region 4 weakly


@pytest.fixture(scope="module")
def maps_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("maps")
    write_maps_package(root, "perdi_maps")
    import sys

    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))


def atlas_labels() -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.int16)
    for label, (x, y) in REGIONS.items():
        labels[x, y, 1:7] = label
    return labels


def write_atlas(folder) -> tuple:
    atlas, table = folder / "atlas.nii.gz", folder / "atlas_labels.tsv"
    nib.save(nib.Nifti1Image(atlas_labels(), AFFINE), str(atlas))
    pd.DataFrame({"label": [1, 2, 3, 4], "name": ["front left", "front right", "back left", "back right"],
                  "hemisphere": ["left", "right", "left", "right"]}).to_csv(table, sep="\t", index=False)
    return atlas, table


def hand_built_decoder(path):
    """``volume = 1 + tanh(z) @ W``: row d of W is 1 on the region dimension d drives (0.2 for dimension 2)."""
    import keras

    weights = np.zeros((3, int(np.prod(SHAPE))), dtype=np.float32)
    labels = atlas_labels().reshape(-1)
    for dimension, label in DRIVES.items():
        weights[dimension, labels == label] = 1.0
    weights[2, labels == 4] = 0.2
    latent = keras.Input((3,), name="latent_t1_tiny")
    dense = keras.layers.Dense(weights.shape[1], name="wire")
    volume = keras.layers.Reshape((*SHAPE, 1))(dense(keras.layers.Activation("tanh")(latent)))
    model = keras.Model(latent, volume, name="decode_t1_tiny")
    dense.set_weights([weights, np.ones(weights.shape[1], dtype=np.float32)])
    model.save(path)
    return path


def write_latent_table(path, n=40, seed=0):
    latents = np.random.default_rng(seed).normal(size=(n, 3))
    frame = pd.DataFrame(latents, columns=[f"latent_{i}" for i in range(3)])
    frame.insert(0, "sample_id", [f"s{i:03d}" for i in range(n)])
    frame.to_csv(path, sep="\t", index=False)
    return path


def test_each_dimension_ranks_the_region_it_drives_first(tmp_path, maps_root):
    decoder = hand_built_decoder(tmp_path / "decoder_t1_tiny.keras")
    table = write_latent_table(tmp_path / "hidden_t1_tiny_run.tsv")
    atlas, labels = write_atlas(tmp_path)
    status = main(["--mode", "interpret", "--tensormap_prefix", "perdi_maps", "--output_tensors", "brain.t1",
                   "--model_file", str(decoder), "--latent_tables", f"t1={table}", "--interpret_samples", "30",
                   "--smooth_sigma", "1", "--atlas", str(atlas), "--atlas_labels", str(labels), "--batch_size", "7",
                   "--lightbox_slices", "3", "--interpret_top_regions", "2", "--output_folder", str(tmp_path),
                   "--id", "perdi", "--interpret_memory_mb", "0.01"])
    assert status == 0
    run = tmp_path / "perdi"
    maps = run / "perdi_t1_tiny"
    mask = atlas_labels() > 0
    for dimension, label in DRIVES.items():
        image = nib.load(str(maps / f"dim_{dimension}.nii.gz"))
        assert image.shape == SHAPE
        np.testing.assert_allclose(image.affine, AFFINE)
        values = image.get_fdata()
        assert np.all(values[~mask] == 0) and values[mask].max() > 0
        ranking = pd.read_csv(maps / f"dim_{dimension}_regions.tsv", sep="\t")
        expected = pd.read_csv(labels, sep="\t").set_index("label").loc[label, "name"]
        assert ranking.loc[0, "region"] == expected and ranking.loc[0, "ks_rank"] == 1
        assert ranking.sort_values("mean_rank")["region"].iloc[0] == expected
        assert (maps / f"dim_{dimension}.png").stat().st_size > 0
    summary = pd.read_csv(run / "perdi_t1_tiny_summary.tsv", sep="\t")
    assert summary["dimension"].tolist() == [0, 1, 2] and summary["subjects"].eq(30).all()
    assert summary["top_region_ks"].tolist() == ["back left", "front left", "back right"]
    top = pd.read_csv(run / "perdi_t1_tiny_top_regions.tsv", sep="\t")
    assert len(top) == 6 and top.groupby("dimension").size().eq(2).all()
    ids = pd.read_csv(run / "interpreted_samples.tsv", sep="\t")["sample_id"]
    assert ids.tolist() == [f"s{i:03d}" for i in range(30)]


def test_merged_hemispheres_and_an_explicit_mask(tmp_path, maps_root):
    decoder = hand_built_decoder(tmp_path / "decoder_t1_tiny.keras")
    table = write_latent_table(tmp_path / "hidden.tsv", n=12)
    atlas, labels = write_atlas(tmp_path)
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[:, :, 2:6] = 1
    nib.save(nib.Nifti1Image(mask, AFFINE), str(tmp_path / "mask.nii.gz"))
    pd.DataFrame({"label": [1, 2, 3, 4], "name": ["front left", "front right", "back left", "back right"],
                  "hemisphere": ["left", "right", "left", "right"]}).to_csv(labels, sep="\t", index=False)
    assert main(["--mode", "interpret", "--tensormap_prefix", "perdi_maps", "--output_tensors", "brain.t1",
                 "--model_file", str(decoder), "--latent_tables", str(table), "--interpret_dimensions", "0",
                 "--atlas", str(atlas), "--atlas_labels", str(labels), "--merge_hemispheres", "--interpret_mask",
                 str(tmp_path / "mask.nii.gz"), "--smooth_sigma", "0", "--output_folder", str(tmp_path),
                 "--id", "merged"]) == 0
    values = nib.load(str(tmp_path / "merged" / "perdi_t1_tiny" / "dim_0.nii.gz")).get_fdata()
    assert np.all(values[:, :, :2] == 0) and np.all(values[:, :, 6:] == 0)
    ranking = pd.read_csv(tmp_path / "merged" / "perdi_t1_tiny" / "dim_0_regions.tsv", sep="\t")
    assert ranking["region"].tolist() == ["back", "front"] and ranking["hemisphere"].eq("both").all()


def refusal(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_refusals_before_any_work(tmp_path, maps_root, capsys):
    decoder = hand_built_decoder(tmp_path / "decoder_t1_tiny.keras")
    table = write_latent_table(tmp_path / "hidden.tsv", n=5)
    atlas, labels = write_atlas(tmp_path)
    base = ["--mode", "interpret", "--tensormap_prefix", "perdi_maps", "--model_file", str(decoder),
            "--output_folder", str(tmp_path)]
    good = [*base, "--output_tensors", "brain.t1", "--latent_tables", str(table), "--atlas", str(atlas),
            "--atlas_labels", str(labels)]
    assert parse_settings(good).mode == "interpret"
    assert "one --output_tensors" in refusal(capsys, base + ["--latent_tables", str(table)])
    assert "needs latents" in refusal(capsys, [*base, "--output_tensors", "brain.t1"])
    assert "go together" in refusal(capsys, [*base, "--output_tensors", "brain.t1", "--latent_tables", str(table),
                                             "--atlas", str(atlas)])
    assert "latent_0..latent_2" in refusal(capsys, [*good, "--interpret_dimensions", "0", "3"])
    assert "--perturb_sd 0.0" in refusal(capsys, [*good, "--perturb_sd", "0"])
    assert "data's grid" in refusal(capsys, [*base, "--output_tensors", "brain.t1", "--latent_tables", str(table)])
    assert "one-channel 3-D volumes" in refusal(capsys, [*good, "--output_tensors", "brain.age"])
    assert "needs --model_file" in refusal(capsys, ["--mode", "interpret", "--output_tensors", "brain.t1"])


def write_cohort_with_affines(folder, n, seed=0):
    from ml4ge.synthetic import ellipsoid_volume

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        with h5py.File(folder / f"s{i:02d}.hd5", "w") as hd5:
            for dataset in ("T1", "T2"):
                write_tensor(hd5, f"ukb_brain_mri/{dataset}", ellipsoid_volume(SHAPE, rng), instance=0,
                             attributes={"affine": AFFINE, "voxel_size": np.array([4.0, 4.0, 4.0])})
    return folder


@pytest.mark.slow
def test_trained_autoencoder_from_tensors(tmp_path, maps_root):
    """A factory-built AE trained one step; latents computed with its encoder; mask from the data."""
    from ml4ge.lookup import resolve_all
    from ml4ge.models.artifacts import save_model
    from ml4ge.models.factory import build_model, compile_model
    from ml4ge.pipeline import iterate_batches

    tensors = write_cohort_with_affines(tmp_path / "tensors", 10)
    (t1,) = resolve_all(["brain.t1"], "perdi_maps")
    from ml4ge.arguments import build_parser
    from ml4ge.models.config import ModelConfig

    args = build_parser().parse_args(["--mode", "train", *TINY_MODEL])

    parts = build_model([t1], [t1], ["conv_encode"], ["concat"], ["conv_decode"], ModelConfig.from_args(args))
    compile_model(parts, [t1], learning_rate=1e-3, run_eagerly=True)
    paths = sorted(tensors.glob("*.hd5"))
    for _, inputs, outputs in iterate_batches(paths, [t1], [t1], batch_size=10, num_workers=0):
        parts.train_on_batch(inputs, outputs)
    save_model(parts, tmp_path / "ae", "ae")
    status = main(["--mode", "interpret", "--tensormap_prefix", "perdi_maps", "--tensors", str(tensors),
                   "--input_tensors", "brain.t1", "--output_tensors", "brain.t1", "--model_file",
                   str(tmp_path / "ae" / "ae.keras"), "--interpret_dimensions", "0", "5", "--smooth_sigma", "1",
                   "--batch_size", "4", "--num_workers", "0", "--output_folder", str(tmp_path), "--id", "ae_perdi"])
    assert status == 0
    maps = tmp_path / "ae_perdi" / "perdi_t1_tiny"
    mask = nib.load(str(maps / "mask.nii.gz")).get_fdata() > 0
    expected_mask = np.zeros(SHAPE, dtype=bool)
    for path in paths:
        with h5py.File(path) as hd5:
            expected_mask |= hd5["ukb_brain_mri/T1/instance_0"][()] != 0
    np.testing.assert_array_equal(mask, expected_mask)
    for dimension in (0, 5):
        image = nib.load(str(maps / f"dim_{dimension}.nii.gz"))
        assert image.shape == SHAPE
        np.testing.assert_allclose(image.affine, AFFINE)
        assert np.all(image.get_fdata()[~mask] == 0) and image.get_fdata()[mask].max() > 0
    summary = pd.read_csv(tmp_path / "ae_perdi" / "perdi_t1_tiny_summary.tsv", sep="\t")
    assert summary["subjects"].tolist() == [10, 10] and "top_region_ks" not in summary.columns
