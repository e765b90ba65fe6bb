"""--mode export of the encoders that are not CNN encoder files (#20 item 12): a ViT autoencoder's, a VAE's (the
means, and the log-variances beside them) and a cVAE's salient and background encoders. Each SavedModel loads in a
fresh Python that cannot import ml4ge and gives the latents that infer_encoders writes."""

import importlib
import sys

import numpy as np
import pandas as pd
import pytest
from recipe_helpers import TINY_MODEL, write_cohort, write_maps_package
from test_encoder_files import PLAIN_KERAS, PLAIN_TF, plain_python

from ml4ge.cli import main

PACKAGE = "export_family_maps"
TINY_VIT = ["--encoder_blocks", "vit_encode", "--decoder_blocks", "vit_decode", "--vit_patch", "2", "2", "2",
            "--vit_width", "8", "--vit_depth", "1", "--vit_heads", "2", "--vit_mlp_ratio", "2",
            "--vit_decoder_width", "8", "--vit_decoder_depth", "1", "--vit_decoder_heads", "2"]
# run id -> the flags of its one short training run (the cVAE's groups are added by the fixture)
RUNS = {"vit": TINY_VIT, "vae": ["--family", "vae"], "cvae": ["--family", "cvae", "--salient_size", "3",
                                                             "--background_size", "5"]}
# run id -> {exported folder: the latent table infer_encoders writes for it}
EXPORTED = {"vit": {"encoder_t1_tiny": "hidden_t1_tiny"},
            "vae": {"encoder_t1_tiny": "hidden_t1_tiny", "encoder_t1_tiny_log_var": "hidden_t1_tiny_log_var"},
            "cvae": {"encoder_t1_tiny": "hidden_t1_tiny", "encoder_t1_tiny_background": "hidden_t1_tiny_background"}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each model of RUNS trained one epoch on 12 samples, its latents (infer_encoders) and its export."""
    root = write_maps_package(tmp_path_factory.mktemp("maps"), PACKAGE)
    sys.path.insert(0, str(root))
    tensors = write_cohort(root, PACKAGE, 12, seed=3)
    out = tmp_path_factory.mktemp("runs")
    ids = sorted(path.stem for path in tensors.glob("*.hd5"))
    pd.DataFrame({"sample_id": ids[::2]}).to_csv(out / "target.csv", index=False)  # every split holds both groups
    pd.DataFrame({"sample_id": ids[1::2]}).to_csv(out / "background.csv", index=False)
    groups = ["--target_csv", str(out / "target.csv"), "--background_csv", str(out / "background.csv")]
    common = ["--tensors", str(tensors), "--output_folder", str(out), "--tensormap_prefix", PACKAGE,
              "--input_tensors", "brain.t1"]
    for run_id, flags in RUNS.items():
        assert main(["--mode", "train", *common, "--id", run_id, "--output_tensors", "brain.t1", "--epochs", "1",
                     "--batch_size", "2", "--valid_ratio", "0.25", "--test_ratio", "0.25", *TINY_MODEL, *flags,
                     *(groups if run_id == "cvae" else [])]) == 0
        model_file = str(out / run_id / f"{run_id}.keras")
        assert main(["--mode", "infer_encoders", *common, "--id", f"{run_id}_lat", "--model_file", model_file,
                     "--num_workers", "0"]) == 0
        assert main(["--mode", "export", *common, "--id", f"{run_id}_served", "--model_file", model_file]) == 0
    return out, tensors


def first_samples(tensors, folder):
    """The first four samples of t1 as ml4ge reads them, saved for another process, and their ids."""
    import h5py

    tm = importlib.import_module(f"{PACKAGE}.brain").t1
    ids = sorted(path.stem for path in tensors.glob("*.hd5"))[:4]
    arrays = []
    for sample_id in ids:
        with h5py.File(tensors / f"{sample_id}.hd5", "r") as hd5:
            arrays.append(tm.tensor(hd5, sample_id)[0])
    np.save(folder / "t1.npy", np.stack(arrays).astype("float32"))
    return ids, folder / "t1.npy"


def table(path, ids):
    return pd.read_csv(path, sep="\t", dtype={"sample_id": str}).set_index("sample_id").loc[ids].to_numpy()


@pytest.mark.slow
@pytest.mark.parametrize("run_id", list(RUNS))
def test_exported_family_encoders_load_without_ml4ge_and_give_the_latents(runs, run_id, tmp_path):
    out, tensors = runs
    ids, batch = first_samples(tensors, tmp_path)
    served = out / f"{run_id}_served"
    assert sorted(p.name for p in served.iterdir() if p.is_dir()) == sorted(EXPORTED[run_id])
    for folder, stem in EXPORTED[run_id].items():
        answer = plain_python(PLAIN_TF, served / folder, batch)
        assert not answer["ml4ge"]
        expected = table(out / f"{run_id}_lat" / f"{stem}_{run_id}_lat.tsv", ids)
        np.testing.assert_allclose(np.array(answer["out"]), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("run_id", ["vae", "cvae"])
def test_exported_variational_encoders_are_keras_files_of_stock_layers(runs, run_id, tmp_path):
    """The VAE families write no encoder files of their own: export writes each exported encoder as a .keras file
    too, and with CNN blocks it holds stock Keras layers only."""
    out, tensors = runs
    ids, batch = first_samples(tensors, tmp_path)
    for folder, stem in EXPORTED[run_id].items():
        answer = plain_python(PLAIN_KERAS, out / f"{run_id}_served" / f"{folder}.keras", batch)
        assert not answer["ml4ge"] and answer["classes"] == ["keras"]
        expected = table(out / f"{run_id}_lat" / f"{stem}_{run_id}_lat.tsv", ids)
        np.testing.assert_allclose(np.array(answer["out"]), expected, rtol=1e-4, atol=1e-5)


def test_a_vit_encoder_that_pads_and_keeps_some_tokens_exports(tmp_path):
    """The ViT's own layers trace into a SavedModel: a shape the patch does not divide (central pad) and a kept-token
    subset (as the brain tokens make it); the export gives the Keras encoder's latents without ml4ge."""
    from ml4ge.models.config import ModelConfig
    from ml4ge.models.factory import build_model
    from ml4ge.models.vit_config import ViTConfig
    from ml4ge.recipes.export import export_encoder
    from ml4ge.tensormap import TensorMap

    tm = TensorMap("odd", (7, 9, 5, 1), group="mri")
    vit = ViTConfig(patch=(2, 2, 2), width=8, depth=1, heads=2, mlp_ratio=2, decoder_width=8, decoder_depth=1,
                    decoder_heads=2)
    model = build_model([tm], [tm], ["vit_encode"], ["concat"], ["vit_decode"],
                        ModelConfig(vit=vit.with_kept(tm.name, [0, 3, 5, 17, 30])))
    encoder = model.encoders[tm.name]
    assert {"CentralCropPad", "KeepTokens"} <= {type(layer).__name__ for layer in encoder.layers}
    x = np.random.default_rng(0).normal(size=(3, *tm.shape)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    answer = plain_python(PLAIN_TF, export_encoder(encoder, tmp_path / "encoder_odd"), tmp_path / "x.npy")
    assert not answer["ml4ge"]
    np.testing.assert_allclose(np.array(answer["out"]), encoder.predict_on_batch(x), rtol=1e-5, atol=1e-6)
