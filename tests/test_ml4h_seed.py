"""Acceptance (issue #22): the registration study's ml4h command lines (ml4h model_zoo/registration_reveals_genetics
README) run through ml4ge with only paths, TensorMap names, tiny steps and a 64x64 image changed, and build ml4h's
architecture: the DXA 2 autoencoder, the DXA 2 <-> DXA 5 DropFuse model, then infer_encoders (and ml4h's
infer_hidden name)."""

import textwrap

import numpy as np
import pandas as pd
import pytest

PACKAGE = "seed_dxa_maps"
# ml4h's dxa.dxa_2 / dxa.dxa_5 are (768, 768, 1) with ZeroMeanStd1; here 64x64 so that CPU tests stay small.
MAPS = textwrap.dedent("""
    from ml4ge.normalizers import PerSampleZScore
    from ml4ge.tensormap import TensorMap

    dxa_2 = TensorMap("dxa_1_2", (64, 64, 1), group="ukb_dxa", normalization=PerSampleZScore())
    dxa_5 = TensorMap("dxa_1_5", (64, 64, 1), group="ukb_dxa", normalization=PerSampleZScore())
""")
ML4H_DXA_AE_PARAMETERS = 620_193  # tests/test_ml4h_blocks.py derives it from ml4h's structure
# The seed's flags after --input_tensors/--output_tensors, verbatim but for the tiny steps and epochs.
SEED_MODEL = ("--activation swish --conv_layers 32 --conv_width 31 --dense_blocks 32 32 32 32 32 --dense_layers 256 "
              "--block_size 3 --inspect_model --learning_rate 0.0001 --batch_size 4 --epochs 2 --training_steps 2 "
              "--validation_steps 1 --test_steps 1 --patience 36").split()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    import importlib
    import sys

    root = tmp_path_factory.mktemp("maps")
    (root / PACKAGE).mkdir()
    (root / PACKAGE / "__init__.py").write_text("")
    (root / PACKAGE / "dxa.py").write_text(MAPS)
    sys.path.insert(0, str(root))
    maps = importlib.import_module(f"{PACKAGE}.dxa")
    from ml4ge.synthetic import write_cohort

    write_cohort(root / "tensors", [maps.dxa_2, maps.dxa_5], 24, seed=11)
    return root / "tensors"


def common(tensors, output):
    return ["--tensors", str(tensors), "--output_folder", str(output), "--tensormap_prefix", PACKAGE]


@pytest.mark.slow
def test_seed_registration_commands(cohort, tmp_path):
    from ml4ge.cli import main
    from ml4ge.models.artifacts import load_model

    autoencoder = ["--mode", "train", *common(cohort, tmp_path), "--input_tensors", "dxa.dxa_2",
                   "--output_tensors", "dxa.dxa_2", "--encoder_blocks", "conv_encode", "--merge_blocks",
                   "--decoder_blocks", "conv_decode", *SEED_MODEL, "--id", "dxa_2_autoencoder_256d"]
    assert main(autoencoder) == 0
    run = tmp_path / "dxa_2_autoencoder_256d"
    model = load_model(run / "dxa_2_autoencoder_256d.keras")
    assert model.count_params() == ML4H_DXA_AE_PARAMETERS
    assert "PlateauSchedule(factor=0.5, patience=36" in (run / "log.txt").read_text()  # ml4h's plateau at patience
    assert (run / "architecture_dxa_2_autoencoder_256d.png").is_file()
    assert (run / "inspect_timing_dxa_2_autoencoder_256d.tsv").is_file()

    dropfuse = ["--mode", "train", *common(cohort, tmp_path), "--input_tensors", "dxa.dxa_2", "dxa.dxa_5",
                "--output_tensors", "dxa.dxa_2", "dxa.dxa_5", "--encoder_blocks", "conv_encode", "--merge_blocks",
                "pair", "--decoder_blocks", "conv_decode", "--pairs", "dxa.dxa_2", "dxa.dxa_5", "--pair_loss",
                "contrastive", "--pair_loss_weight", "0.1", "--pair_merge", "dropout", *SEED_MODEL,
                "--id", "dxa_2_5_dropfuse_256d"]
    assert main(dropfuse) == 0
    pair = load_model(tmp_path / "dxa_2_5_dropfuse_256d" / "dxa_2_5_dropfuse_256d.keras")
    # two ml4h DXA autoencoders and the pair loss's temperature
    assert pair.count_params() == 2 * ML4H_DXA_AE_PARAMETERS + 1

    infer = ["--mode", "infer_encoders", *common(cohort, tmp_path), "--input_tensors", "dxa.dxa_2",
             "--output_tensors", "dxa.dxa_2", "--id", "dxa_2_autoencoder_256d",
             "--model_file", str(run / "dxa_2_autoencoder_256d.keras")]
    assert main(infer) == 0
    table = pd.read_csv(run / "hidden_dxa_1_2_dxa_2_autoencoder_256d.tsv", sep="\t", dtype={"sample_id": str})
    assert table.shape == (24, 257) and np.isfinite(table.iloc[:, 1:].to_numpy()).all()
    assert table.iloc[:, 1:].to_numpy().min() >= -0.2785  # ml4h's activated (swish) embedding

    hidden = ["--mode", "infer_hidden", *common(cohort, tmp_path), "--input_tensors", "dxa.dxa_2",
              "--hidden_layer", "embed_dxa_1_2", "--id", "hidden",
              "--model_file", str(run / "dxa_2_autoencoder_256d.keras")]
    assert main(hidden) == 0
    again = pd.read_csv(tmp_path / "hidden" / "hidden_dxa_1_2_hidden.tsv", sep="\t", dtype={"sample_id": str})
    pd.testing.assert_frame_equal(again, table)


def test_infer_hidden_layer_names(cohort, tmp_path):
    from ml4ge.recipes.infer_hidden import InferHiddenSettings, selected_inputs

    base = dict(input_tensors=("dxa.dxa_2", "dxa.dxa_5"), tensormap_prefix=PACKAGE)
    assert selected_inputs(InferHiddenSettings(**base)) == ("dxa.dxa_2", "dxa.dxa_5")  # ml4h's default: embed
    assert selected_inputs(InferHiddenSettings(**base, hidden_layer="embed_dxa_1_5")) == ("dxa.dxa_5",)
    with pytest.raises(ValueError, match="--mode infer_encoders"):
        selected_inputs(InferHiddenSettings(**base, hidden_layer="encode_dxa_1_2_conv_3"))
