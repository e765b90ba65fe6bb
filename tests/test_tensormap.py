import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest

from ml4ge.hd5 import open_sample, write_tensor
from ml4ge.lookup import catalogue, resolve, resolve_all
from ml4ge.registry import UnknownNameError
from ml4ge.synthetic import write_cohort
from ml4ge.tensormap import DEFAULTS, Interpretation, TensorMap
from ml4ge.tensormaps.phenotypes import from_table


def test_defaults_come_from_the_interpretation_table(volume_map, scalar_map, category_map):
    assert scalar_map.loss == DEFAULTS[(Interpretation.CONTINUOUS, False)].loss == "mse"
    assert volume_map.loss == "masked_mse" and volume_map.activation == "linear"
    assert category_map.loss == "categorical_crossentropy" and category_map.activation == "softmax"
    custom = TensorMap("custom", (1,), loss="logcosh", activation="relu", metrics=("mae",))
    assert (custom.loss, custom.activation, custom.metrics) == ("logcosh", "relu", ("mae",))


def test_keras_names_derive_from_the_unique_name():
    tm = TensorMap("my.module t1", (1,))
    assert tm.input_name == "input_my_module_t1" and tm.output_name == "output_my_module_t1"
    assert tm == TensorMap("my.module t1", (2,)) and len({tm, TensorMap("other", (1,))}) == 2


def test_invalid_definitions_are_refused():
    with pytest.raises(ValueError, match="channel_map has 2 labels"):
        TensorMap("c", (3,), interpretation="categorical", channel_map={"a": 0, "b": 1})
    with pytest.raises(ValueError, match="mask must be"):
        TensorMap("m", (4, 4, 1), mask="brain")


def test_tensor_reads_masks_normalizes_and_packs_target(tmp_path, volume_map):
    write_cohort(tmp_path, [volume_map], n=1, seed=0)
    with open_sample(tmp_path / "0.hd5") as hd5:
        raw = volume_map.read_raw(hd5)
        x, mask = volume_map.tensor(hd5)
    assert x.shape == mask.shape == (12, 14, 10, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(mask[..., 0], (raw != 0).astype(np.float32))
    assert x[mask == 1].mean() == pytest.approx(0.0, abs=1e-4)
    target = volume_map.target(x, mask)
    assert target.shape == (12, 14, 10, 2)
    np.testing.assert_array_equal(target[..., 1:], mask)


def test_mask_from_another_tensormap(tmp_path):
    brain = TensorMap("brain", (6, 6, 6, 1), group="mri")
    image = TensorMap("image", (6, 6, 6, 1), group="mri", mask=brain)
    seg = np.zeros((6, 6, 6), dtype=np.float32)
    seg[2:4, 2:4, 2:4] = 1
    with h5py.File(tmp_path / "s.hd5", "w") as hd5:
        write_tensor(hd5, image.key, np.ones((6, 6, 6)))
        write_tensor(hd5, brain.key, seg)
    with open_sample(tmp_path / "s.hd5") as hd5:
        _, mask = image.tensor(hd5)
    assert mask.sum() == 8


def test_categorical_index_becomes_one_hot_and_bad_values_are_rejected(tmp_path, category_map, scalar_map):
    with h5py.File(tmp_path / "s.hd5", "w") as hd5:
        write_tensor(hd5, category_map.key, 2)
        write_tensor(hd5, scalar_map.key, np.nan)
        write_tensor(hd5, "phenotypes/big", 7)
    with open_sample(tmp_path / "s.hd5") as hd5:
        np.testing.assert_array_equal(category_map.tensor(hd5)[0], [0, 0, 1])
        with pytest.raises(ValueError, match="NaN or Inf"):
            scalar_map.tensor(hd5)
        with pytest.raises(ValueError, match="category index 7"):
            category_map.with_changes(name="big", dataset="big").tensor(hd5)


def test_validator_and_training_only_augmentation(tmp_path, scalar_map):
    def positive(tm, raw):
        if raw.min() <= 0:
            raise ValueError(f"{tm.name}: must be positive")

    def add_one(x, rng):
        return x + 1

    tm = scalar_map.with_changes(name="checked", validator=positive, augmentations=(add_one,), dataset="score")
    with h5py.File(tmp_path / "s.hd5", "w") as hd5:
        write_tensor(hd5, tm.key, 4.0)
        write_tensor(hd5, "phenotypes/negative", -1.0)
    with open_sample(tmp_path / "s.hd5") as hd5:
        assert tm.tensor(hd5)[0][0] == 4.0
        assert tm.tensor(hd5, augment=True)[0][0] == 5.0
        with pytest.raises(ValueError, match="must be positive"):
            tm.with_changes(name="neg", dataset="negative").tensor(hd5)


def test_phenotype_from_a_table_keyed_by_sample_id(tmp_path):
    table = tmp_path / "phenotypes.tsv"
    pd.DataFrame({"eid": ["1001", "1002"], "grip": [31.5, None]}).to_csv(table, sep="\t", index=False)
    grip = from_table("grip", table)
    with h5py.File(tmp_path / "1001.hd5", "w"):
        pass
    with open_sample(tmp_path / "1001.hd5") as hd5:
        assert grip.tensor(hd5, "1001")[0][0] == pytest.approx(31.5)
        with pytest.raises(KeyError, match="has no 'grip' value"):
            grip.tensor(hd5, "1002")
        with pytest.raises(KeyError, match="sample '9' not in"):
            grip.tensor(hd5, "9")


def test_catalogue_has_mri_and_phenotype_maps_with_unique_names():
    maps = catalogue()
    assert maps["t1"].shape == (182, 218, 182, 1) and maps["t2"].shape == (182, 218, 182, 1)
    assert maps["t1_64"].shape == (64, 64, 64, 1) and maps["t1_64"].fallback is maps["t1"]
    assert maps["t1_96"].shape == (96, 96, 96, 1)
    assert maps["t1_axial_slices"].shape == (182, 218, 16)
    assert maps["sex"].interpretation == Interpretation.CATEGORICAL
    assert {"age", "bmi", "t1_brain_mask", "t2_brain_mask"} <= set(maps)


def test_importing_the_catalogue_reads_no_files():
    code = (
        "import builtins, io, os\n"
        "opened = []\n"
        "real_open = io.open\n"
        "def spy(file, *a, **k):\n"
        "    opened.append(str(file)); return real_open(file, *a, **k)\n"
        "builtins.open = spy\n"
        "import h5py\n"
        "real_file = h5py.File\n"
        "h5py.File = lambda *a, **k: opened.append(str(a[0])) or real_file(*a, **k)\n"
        "from ml4ge.lookup import catalogue\n"
        "catalogue()\n"
        "data = [f for f in opened if f.endswith(('.nii', '.nii.gz', '.csv', '.tsv', '.hd5', '.h5'))]\n"
        "assert not data, data\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_names_fail_with_closest_matches():
    with pytest.raises(UnknownNameError, match="Did you mean .*'t1_64'"):
        resolve("t1_46")
    with pytest.raises(UnknownNameError, match="cannot import module 'no_such_pkg.maps'"):
        resolve("maps.t1", prefix="no_such_pkg")


def test_user_catalogue_through_tensormap_prefix(tmp_path, monkeypatch):
    package = tmp_path / "lab_maps"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "brain.py").write_text(
        "from ml4ge.tensormap import TensorMap\n"
        "t1_small = TensorMap('lab_t1_small', (8, 8, 8, 1), group='mri')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    tm = resolve("brain.t1_small", prefix="lab_maps")
    assert tm.name == "lab_t1_small"
    assert resolve("lab_maps.brain.t1_small") is tm
    with pytest.raises(UnknownNameError, match="Did you mean brain.t1_small"):
        resolve("brain.t1_smal", prefix="lab_maps")
    assert [t.name for t in resolve_all(["t1", "brain.t1_small"], prefix="lab_maps")] == ["t1", "lab_t1_small"]
