"""infer_encoders (refusals, shards and their merge, genetics style, skipped samples) and infer (TSV, NIfTI)."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from recipe_helpers import TINY_MODEL, write_cohort, write_maps_package

PACKAGE = "infer_maps"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model t1 -> (age, t1) trained for one epoch, and its cohort (one corrupt file added)."""
    from ml4ge.cli import main

    root = tmp_path_factory.mktemp("infer")
    write_maps_package(root, PACKAGE)
    tensors = write_cohort(root, PACKAGE, 12, seed=11)
    argv = ["--mode", "train", "--tensors", str(tensors), "--output_folder", str(root / "runs"), "--id", "sup",
            "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "--output_tensors", "brain.age",
            "brain.t1", "--merge_blocks", "concat", "--decoder_blocks", "dense_decode", "conv_decode",
            "--batch_size", "4", "--epochs", "1", *TINY_MODEL]
    assert main(argv) == 0
    (tensors / "broken.hd5").write_bytes(b"not an hdf5 file")
    return root, tensors, root / "runs" / "sup" / "sup.keras"


def infer_args(mode, tensors, output, run_id, model_file, *extra):
    argv = ["--mode", mode, "--tensors", str(tensors), "--output_folder", str(output), "--id", run_id,
            "--tensormap_prefix", PACKAGE, "--input_tensors", "brain.t1", "--batch_size", "5", "--num_workers", "0"]
    return [*argv, *(["--model_file", str(model_file)] if model_file else []), *extra]


def test_infer_encoders_refuses_without_a_trained_model(trained, tmp_path):
    from ml4ge.cli import parse
    from ml4ge.recipes import validate

    _, tensors, model_file = trained
    settings = parse(infer_args("infer_encoders", tensors, tmp_path, "x", None)).settings
    with pytest.raises(ValueError, match="needs --model_file"):
        validate(settings)
    lonely = tmp_path / "other.keras"
    lonely.write_bytes(model_file.read_bytes())  # a model file without its encoders beside it
    settings = parse(infer_args("infer_encoders", tensors, tmp_path, "x", lonely)).settings
    with pytest.raises(FileNotFoundError, match="encoder_t1_tiny.keras"):
        validate(settings)
    settings = parse(infer_args("infer_encoders", tensors, tmp_path, "x", model_file, "--shard", "2/2")).settings
    with pytest.raises(ValueError, match="0 <= i < n"):
        validate(settings)


def test_shards_merge_to_the_whole_table(trained, tmp_path):
    from ml4ge.cli import main

    _, tensors, model_file = trained
    for shard in ("0/3", "1/3", "2/3"):
        argv = infer_args("infer_encoders", tensors, tmp_path, "lat", model_file, "--shard", shard, "--tsv_style",
                          "genetics")
        assert main(argv) == 0
    assert main(infer_args("infer_encoders", tensors, tmp_path, "whole", model_file, "--tsv_style", "genetics")) == 0
    assert main(["--mode", "merge_shards", "--output_folder", str(tmp_path), "--id", "lat"]) == 0
    merged = pd.read_csv(tmp_path / "lat" / "hidden_t1_tiny_lat.tsv", sep="\t", dtype={"FID": str, "IID": str})
    whole = pd.read_csv(tmp_path / "whole" / "hidden_t1_tiny_whole.tsv", sep="\t", dtype={"FID": str, "IID": str})
    assert list(merged.columns[:3]) == ["FID", "IID", "latent_0"] and (merged["FID"] == merged["IID"]).all()
    assert len(merged) == 12 and merged["IID"].is_unique
    pd.testing.assert_frame_equal(merged.set_index("IID").sort_index(), whole.set_index("IID").sort_index())
    skipped = pd.read_csv(tmp_path / "lat" / "skipped_samples.tsv", sep="\t")
    assert list(skipped["sample_id"]) == ["broken"]


def test_merge_refuses_missing_and_overlapping_shards(tmp_path):
    from ml4ge.latents import find_shards, merge_table

    header = "sample_id\tlatent_0\n"
    (tmp_path / "hidden_a_r.shard_0_of_2.tsv").write_text(header + "1\t0.5\n")
    with pytest.raises(ValueError, match=r"shards \[1\] of 2 are missing"):
        merge_table(tmp_path, "hidden_a_r", find_shards(tmp_path)["hidden_a_r"])
    (tmp_path / "hidden_a_r.shard_1_of_2.tsv").write_text(header + "1\t0.7\n")
    with pytest.raises(ValueError, match="more than one shard"):
        merge_table(tmp_path, "hidden_a_r", find_shards(tmp_path)["hidden_a_r"])
    assert not (tmp_path / "hidden_a_r.tsv").exists()


@pytest.mark.slow
def test_infer_writes_predictions_and_nifti(trained, tmp_path):
    from ml4ge.cli import main

    _, tensors, model_file = trained
    argv = infer_args("infer", tensors, tmp_path, "pred", model_file, "--output_tensors", "brain.age", "brain.t1")
    assert main(argv) == 0
    table = pd.read_csv(tmp_path / "pred" / "inference_pred.tsv", sep="\t", dtype={"sample_id": str})
    assert list(table.columns) == ["sample_id", "age_tiny_prediction", "age_tiny_actual"]
    assert len(table) == 12 and np.isfinite(table.iloc[:, 1:].to_numpy()).all()
    assert table["age_tiny_actual"].between(0, 120).all()  # stored scale, not z-scores
    volume = nib.load(tmp_path / "pred" / "inferred" / "0_t1_tiny.nii.gz")
    assert volume.shape == (8, 8, 8) and np.isfinite(volume.get_fdata()).all()


def test_read_ahead_keeps_order_and_raises_the_source_error():
    from ml4ge.pipeline import read_ahead

    assert list(read_ahead(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise ValueError("sample 7 is corrupt")

    received = []
    with pytest.raises(ValueError, match="sample 7 is corrupt"):
        for item in read_ahead(failing()):
            received.append(item)
    assert received == [1, 2]


def test_read_ahead_stops_and_closes_its_source_when_abandoned():
    import threading

    from ml4ge.pipeline import read_ahead

    produced, closed = [], []

    def source():
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.append(True)

    items = read_ahead(source(), depth=2)
    assert [next(items), next(items)] == [0, 1]
    items.close()
    assert closed == [True] and len(produced) < 10  # read at most depth ahead, then stopped
    assert not any(thread.name == "ml4ge-read-ahead" for thread in threading.enumerate())


def test_latents_do_not_depend_on_reader_processes(trained, tmp_path):
    from ml4ge.cli import main

    _, tensors, model_file = trained
    for workers in ("0", "2"):
        argv = infer_args("infer_encoders", tensors, tmp_path, f"w{workers}", model_file)
        assert main([*argv, "--num_workers", workers]) == 0  # the last --num_workers counts
    in_process = pd.read_csv(tmp_path / "w0" / "hidden_t1_tiny_w0.tsv", sep="\t", dtype={"sample_id": str})
    processes = pd.read_csv(tmp_path / "w2" / "hidden_t1_tiny_w2.tsv", sep="\t", dtype={"sample_id": str})
    assert len(in_process) == 12  # the corrupt file is skipped in both
    pd.testing.assert_frame_equal(in_process, processes)


def test_infer_encoders_with_the_training_id_keeps_the_training_record(trained, capsys):
    """The seed study's ml4h command lines: infer_encoders with the training run's --id and its --output_tensors."""
    import json

    from ml4ge.cli import main

    root, tensors, model_file = trained
    folder = model_file.parent
    trained_record = (folder / "arguments_train.json").read_text()
    argv = infer_args("infer_encoders", tensors, root / "runs", "sup", model_file, "--output_tensors", "brain.age")
    assert main(argv) == 0
    assert "--mode infer_encoders does not use --output_tensors; ignored." in capsys.readouterr().err
    assert (folder / "arguments_train.json").read_text() == trained_record
    assert json.loads((folder / "arguments_infer_encoders.json").read_text())["model_file"] == str(model_file)
    assert (folder / "hidden_t1_tiny_sup.tsv").is_file()
    log = (folder / "log.txt").read_text()
    assert "--mode train started" in log and "--mode infer_encoders started" in log


def _copy_cohort(tensors, folder):
    import shutil

    folder.mkdir()
    for path in tensors.glob("*.hd5"):
        if path.name != "broken.hd5":
            shutil.copy(path, folder / path.name)
    return folder


def test_infer_encoders_skips_files_h5py_raises_type_error_for(trained, tmp_path):
    """A compound-dtype dataset and a group where the dataset should be (h5py: TypeError) are skipped samples."""
    import h5py

    from ml4ge.cli import main

    _, tensors, model_file = trained
    cohort = _copy_cohort(tensors, tmp_path / "tensors")
    with h5py.File(cohort / "compound.hd5", "w") as hd5:
        hd5.create_dataset("ukb_brain_mri/T1/instance_0", data=np.zeros((8, 8, 8), [("a", "f4"), ("b", "i4")]))
    with h5py.File(cohort / "group.hd5", "w") as hd5:
        hd5.create_group("ukb_brain_mri/T1/instance_0/slices")
    assert main(infer_args("infer_encoders", cohort, tmp_path, "typed", model_file)) == 0
    table = pd.read_csv(tmp_path / "typed" / "hidden_t1_tiny_typed.tsv", sep="\t", dtype={"sample_id": str})
    assert len(table) == 12
    skipped = pd.read_csv(tmp_path / "typed" / "skipped_samples.tsv", sep="\t").set_index("sample_id")
    assert sorted(skipped.index) == ["compound", "group"]
    assert skipped["reason"].str.startswith("TypeError: ").all()


def _spoil_affine(path, value):
    """Replace the T1 tensor's ``affine`` attribute (latest file format: attributes over 64 KiB need it)."""
    import h5py

    with h5py.File(path, "a", libver="latest") as hd5:
        hd5["ukb_brain_mri/T1/instance_0"].attrs["affine"] = value


HUGE_AFFINE = "1," * 500_000  # a megabyte of text where 16 numbers belong


@pytest.mark.slow
def test_infer_skips_a_sample_with_a_malformed_affine_and_keeps_the_log_short(trained, tmp_path):
    from ml4ge.cli import main

    _, tensors, model_file = trained
    cohort = _copy_cohort(tensors, tmp_path / "tensors")
    _spoil_affine(cohort / "3.hd5", HUGE_AFFINE)
    _spoil_affine(cohort / "4.hd5", np.arange(5.0))  # numbers, but not 4 x 4
    argv = infer_args("infer", cohort, tmp_path, "aff", model_file, "--output_tensors", "brain.age", "brain.t1")
    assert main(argv) == 0
    folder = tmp_path / "aff"
    table = pd.read_csv(folder / "inference_aff.tsv", sep="\t", dtype={"sample_id": str})
    assert len(table) == 10 and not {"3", "4"} & set(table["sample_id"])
    skipped = pd.read_csv(folder / "skipped_samples.tsv", sep="\t", dtype={"sample_id": str}).set_index("sample_id")
    assert sorted(skipped.index) == ["3", "4"] and (skipped["tensor"] == "t1_tiny").all()
    assert skipped["reason"].str.contains("affine").all() and skipped["reason"].str.len().max() < 500
    assert not (folder / "inferred" / "3_t1_tiny.nii.gz").exists()
    assert (folder / "log.txt").stat().st_size < 20_000
    assert not [p.name for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.mark.slow
def test_failed_infer_leaves_no_temporary_table(trained, tmp_path):
    from ml4ge.cli import main

    _, tensors, model_file = trained
    cohort = _copy_cohort(tensors, tmp_path / "tensors")
    for path in cohort.glob("*.hd5"):
        _spoil_affine(path, HUGE_AFFINE)
    argv = infer_args("infer", cohort, tmp_path, "bad", model_file, "--output_tensors", "brain.age", "brain.t1")
    assert main(argv) == 1
    folder = tmp_path / "bad"
    assert not (folder / "inference_bad.tsv").exists()
    assert not [p.name for p in folder.rglob("*") if ".tmp" in p.name]
    assert "none of the 12 samples" in (folder / "log.txt").read_text()
    assert (folder / "log.txt").stat().st_size < 20_000


def _model_copy(model_file, folder):
    """The model's .keras files copied to ``folder``; returns the copied model file."""
    import shutil

    folder.mkdir()
    for path in model_file.parent.glob("*.keras"):
        shutil.copy(path, folder / path.name)
    return folder / model_file.name


def _save_encoder(path, input_name, shape):
    import keras

    inputs = keras.Input(shape, name=input_name)
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs))).save(path)


def test_infer_encoders_refuses_an_encoder_file_of_another_map(trained, tmp_path):
    from ml4ge.cli import parse
    from ml4ge.recipes import validate

    _, tensors, model_file = trained
    copy = _model_copy(model_file, tmp_path / "model")
    settings = parse(infer_args("infer_encoders", tensors, tmp_path, "x", copy)).settings
    validate(settings)  # the model's own encoder passes
    _save_encoder(copy.parent / "encoder_t1_tiny.keras", "input_t2_tiny", (8, 8, 8, 1))
    with pytest.raises(ValueError, match=r"encoder_t1_tiny.keras takes input_t2_tiny \(8, 8, 8, 1\).*t1_tiny"):
        validate(settings)
    _save_encoder(copy.parent / "encoder_t1_tiny.keras", "input_t1_tiny", (4, 4, 4, 1))
    with pytest.raises(ValueError, match=r"takes input_t1_tiny \(4, 4, 4, 1\).*\(8, 8, 8, 1\)"):
        validate(settings)


WIDE_MAPS = """
from ml4ge.tensormap import TensorMap

t1 = TensorMap("t1_tiny", (16, 16, 16, 1), group="ukb_brain_mri", dataset="T1")
age = TensorMap("age_tiny", (1,), group="phenotypes")
"""


def test_infer_and_infer_encoders_refuse_maps_the_model_was_not_trained_on(trained, tmp_path, monkeypatch):
    """A map of the same name but another shape, or a map the model never saw, is refused before any work."""
    from ml4ge.cli import parse
    from ml4ge.recipes import validate

    _, tensors, model_file = trained
    (tmp_path / "wide_maps").mkdir()
    (tmp_path / "wide_maps" / "__init__.py").write_text("")
    (tmp_path / "wide_maps" / "brain.py").write_text(WIDE_MAPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    wide = ["--tensormap_prefix", "wide_maps"]
    for mode, extra in (("infer_encoders", []), ("infer", ["--output_tensors", "brain.age"])):
        settings = parse(infer_args(mode, tensors, tmp_path, "x", model_file, *extra, *wide)).settings
        with pytest.raises(ValueError, match=r"t1_tiny .*\(16, 16, 16, 1\).*\(8, 8, 8, 1\)"):
            validate(settings)
    unknown = infer_args("infer", tensors, tmp_path, "x", model_file, "--output_tensors", "brain.t2")
    with pytest.raises(ValueError, match=r"--output_tensors t2_tiny: the model .* gives age_tiny, t1_tiny"):
        validate(parse(unknown).settings)
    lacking = infer_args("infer", tensors, tmp_path, "x", model_file, "--output_tensors", "brain.age",
                         "--input_tensors", "brain.t2")
    with pytest.raises(ValueError, match=r"--input_tensors t2_tiny: the model .* takes t1_tiny"):
        validate(parse(lacking).settings)
