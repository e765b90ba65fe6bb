"""Property tests of the HD5 reader: random corruptions of a valid sample end in a reported skip or the right values.

Each example writes one tiny file and reads it with :func:`ml4ge.batch_reading.read_sample` in this process.
"Right values" means: what the valid file gives (truncation, bit flips, attributes), or the stored values as
float32 (dtype and shape changes). Anything else (an uncaught exception, NaN/Inf in a batch) fails the property;
pytest-timeout catches a hang.

Bit flips are tested on files in HDF5's latest format (``libver="latest"``), whose metadata carry checksums, with
the Fletcher32 data checksums of :func:`ml4ge.hd5.write_tensor`. In the default (earliest) format about 1 flip in
300 lands in unchecked metadata (a datatype's byte order, say) and reads as other finite values: no reader can see
that, so writers should use the latest format.
"""

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml4ge.batch_reading import read_sample
from ml4ge.hd5 import write_tensor
from ml4ge.recipes.infer import affine_of
from ml4ge.skipped import SampleError
from ml4ge.tensormap import TensorMap

VOL = TensorMap("vol", (4, 4, 4, 1), group="mri")
AGE = TensorMap("age", (1,), group="phenotypes")
VOLUME = np.random.default_rng(0).random((4, 4, 4)).astype(np.float32) + 1
AGE_VALUE = 50.0
PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.timeout(300)


def _write_valid(path: Path, libver: str = "latest") -> Path:
    with h5py.File(path, "w", libver=libver) as hd5:
        write_tensor(hd5, "mri/vol", VOLUME, instance=0, attributes={"affine": np.eye(4)})
        write_tensor(hd5, "phenotypes/age", AGE_VALUE, instance=0)
    return path


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> bytes:
    return _write_valid(tmp_path_factory.mktemp("valid") / "valid.hd5").read_bytes()


def _read(content: bytes | None = None, make=None):
    """``read_sample`` of a file holding ``content`` or made by ``make(path)``: ``(inputs, outputs)`` or the
    SampleError. Any other exception propagates and fails the property."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sample.hd5"
        if make is not None:
            make(path)
        else:
            path.write_bytes(content)
        try:
            return read_sample(path, [VOL], [AGE])
        except SampleError as error:
            assert error.sample_id == "sample" and error.reason and len(error.reason) < 400
            return error


def _assert_valid_values(result) -> None:
    """A read that succeeds gives exactly the valid file's values."""
    if isinstance(result, SampleError):
        return
    inputs, outputs = result
    np.testing.assert_array_equal(inputs["input_vol"][..., 0], VOLUME)
    assert outputs["output_age"].tolist() == [AGE_VALUE]


@PROPERTY
@given(data=st.data())
def test_truncated_file_is_skipped(valid, data):
    length = data.draw(st.integers(0, len(valid) - 1), label="length")
    result = _read(valid[:length])
    assert isinstance(result, SampleError)
    assert result.tensor == "(file)" or length > 0


@PROPERTY
@given(data=st.data())
def test_flipped_bits_are_skipped_or_harmless(valid, data):
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 7)), min_size=1,
                               max_size=4), label="flips")
    content = bytearray(valid)
    for position, bit in flips:
        content[position] ^= 1 << bit
    _assert_valid_values(_read(bytes(content)))


DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "int64", "float16", "float32", "float64", "bool",
          "complex64", "S8", "O", [("a", "f4"), ("b", "i4")]]


def _stored(dtype, rng) -> np.ndarray:
    """The valid volume re-stored as ``dtype`` (strings of its numbers, records, ...)."""
    if dtype == "O":
        return np.array([str(v) for v in VOLUME.ravel()], dtype=h5py.string_dtype()).reshape(VOLUME.shape)
    if dtype == "S8":
        return np.char.mod(b"%.3f", VOLUME).astype("S8")
    if isinstance(dtype, list):
        return np.zeros(VOLUME.shape, dtype)
    return (VOLUME * rng.integers(1, 100)).astype(dtype)


@PROPERTY
@given(dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_changed_dtype_reads_its_values_or_is_skipped(dtype, seed):
    stored = _stored(dtype, np.random.default_rng(seed))

    def make(path):
        with h5py.File(path, "w") as hd5:
            hd5.create_dataset("mri/vol/instance_0", data=stored)
            write_tensor(hd5, "phenotypes/age", AGE_VALUE, instance=0)

    result = _read(make=make)
    if isinstance(result, SampleError):
        assert result.tensor == "vol"
        return
    assert stored.dtype.kind != "c", "complex values must be refused, not cast to their real part"
    expected = stored.astype(np.float32) if stored.dtype != object else stored.astype(np.float64)
    np.testing.assert_array_equal(result[0]["input_vol"][..., 0], expected.astype(np.float32))
    assert np.all(np.isfinite(result[0]["input_vol"]))


@PROPERTY
@given(shape=st.one_of(st.none(), st.lists(st.integers(0, 6), min_size=0, max_size=4)), seed=st.integers(0, 2**16))
def test_changed_shape_is_fitted_or_skipped(shape, seed):
    """Any rank and size, empty ones and a null dataspace (``shape=None``) included."""
    stored = np.random.default_rng(seed).random(shape or ()).astype(np.float32) + 1

    def make(path):
        with h5py.File(path, "w") as hd5:
            hd5.create_dataset("mri/vol/instance_0", data=stored if shape is not None else h5py.Empty("f4"))
            write_tensor(hd5, "phenotypes/age", AGE_VALUE, instance=0)

    result = _read(make=make)
    if isinstance(result, SampleError):
        assert result.tensor == "vol"
        return
    values = result[0]["input_vol"]
    assert values.shape == VOL.shape and values.dtype == np.float32 and np.all(np.isfinite(values))
    assert shape is not None and stored.size > 0  # an empty dataset is never read as a volume of padding
    assert set(np.unique(values)) <= set(np.unique(stored)) | {0.0}  # crop/pad keeps stored values, pads zeros


GARBAGE = st.one_of(
    st.text(st.characters(exclude_characters="\x00"), max_size=50),  # HDF5 strings end at a NUL
    st.binary(min_size=1, max_size=50).map(np.void), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=40).map(np.float32),
    st.integers(0, 5).map(lambda n: "9," * (10_000 * n)),  # up to 100 kB of text
)


@PROPERTY
@given(attributes=st.dictionaries(st.sampled_from(["affine", "date", "source", "voxel_size", "x"]), GARBAGE,
                                  max_size=4))
def test_attribute_garbage_leaves_values_and_gives_a_clear_affine_error(attributes):
    def make(path):
        _write_valid(path)
        with h5py.File(path, "a", libver="latest") as hd5:
            for name, value in attributes.items():
                hd5["mri/vol/instance_0"].attrs[name] = value
                hd5["mri"].attrs[name] = value

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sample.hd5"
        make(path)
        result = read_sample(path, [VOL], [AGE])  # attributes never change the values nor fail the sample
        _assert_valid_values(result)
        with h5py.File(path, "r") as hd5:
            try:
                affine = affine_of(VOL, hd5)
            except ValueError as error:
                assert "malformed affine" in str(error) and len(str(error)) < 400
            else:
                assert affine.shape == (4, 4) and np.all(np.isfinite(affine))
