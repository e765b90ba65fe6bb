import numpy as np
import pytest

from ml4ge.normalizers import DegenerateSampleError, MinMax, PerSampleZScore, ZScore, brain_zscore


def _volume():
    x = np.zeros((6, 6, 6), dtype=np.float32)
    x[1:5, 1:5, 1:5] = np.arange(64, dtype=np.float32).reshape(4, 4, 4) + 10
    return x


@pytest.mark.parametrize(
    "normalizer", [ZScore(mean=3.0, std=2.0), MinMax(minimum=-1.0, maximum=5.0), PerSampleZScore()]
)
def test_transform_never_modifies_input_and_inverts(normalizer):
    x = _volume()
    before = x.copy()
    y = normalizer.transform(x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(normalizer.inverse_transform(y), x, rtol=1e-5, atol=1e-4)


def test_zscore_fit_learns_statistics_from_data():
    arrays = [np.array([1.0, 2.0]), np.array([3.0, 4.0])]
    normalizer = ZScore().fit(arrays)
    assert normalizer.mean == pytest.approx(2.5)
    assert normalizer.std == pytest.approx(np.std([1, 2, 3, 4]))
    assert ZScore(mean=2.5, std=normalizer.std).transform(np.array([2.5]))[0] == pytest.approx(0.0)


def test_fixed_statistics_are_required():
    with pytest.raises(ValueError, match="call fit"):
        ZScore().transform(np.ones(3))
    with pytest.raises(ValueError, match="call fit"):
        MinMax().transform(np.ones(3))


def test_minmax_fit_maps_range_to_unit_interval():
    normalizer = MinMax().fit([np.array([2.0, 4.0]), np.array([6.0])])
    np.testing.assert_allclose(normalizer.transform(np.array([2.0, 6.0])), [0.0, 1.0], atol=1e-6)


def test_brain_zscore_uses_nonzero_voxels_only():
    x = _volume()
    y = brain_zscore().transform(x)
    brain = x != 0
    assert y[brain].mean() == pytest.approx(0.0, abs=1e-5)
    assert y[brain].std() == pytest.approx(1.0, abs=1e-4)
    # The background takes -mean/std of the brain, as in UDIP; the masked loss ignores it.
    expected_background = -x[brain].mean() / x[brain].std()
    np.testing.assert_allclose(y[~brain], expected_background, rtol=1e-5)


def test_per_sample_zscore_with_explicit_mask_and_empty_brain():
    x = _volume()
    mask = np.zeros_like(x)
    mask[2:4, 2:4, 2:4] = 1
    y = PerSampleZScore().transform(x, mask)
    assert y[mask.astype(bool)].mean() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="no nonzero"):
        brain_zscore().transform(np.zeros((3, 3)))


@pytest.mark.parametrize(
    "brain, why",
    [
        (np.ones((4, 4, 4), bool), "no spread"),  # a binary mask given as T1: every brain voxel is 1
        (np.full((4, 4, 4), 7.0, np.float32), "no spread"),
        (np.full((4, 4, 4), 1000.0, np.float32) + np.float32(1e-5) * np.arange(64).reshape(4, 4, 4), "no spread"),
        (np.where(np.arange(64).reshape(4, 4, 4) == 5, np.inf, 1.0 + np.arange(64).reshape(4, 4, 4)), "not finite"),
    ],
)
def test_brain_zscore_refuses_a_degenerate_brain(brain, why):
    x = np.zeros((6, 6, 6), dtype=brain.dtype)
    x[1:5, 1:5, 1:5] = brain
    with pytest.raises(DegenerateSampleError, match=why):
        brain_zscore().transform(x)
    assert issubclass(DegenerateSampleError, ValueError)  # a data error: the readers skip the sample


def test_brain_zscore_of_a_huge_voxel_keeps_its_spread():
    """One voxel of 3e38 overflowed the float32 std to inf and zeroed the whole input; float64 keeps it finite."""
    x = _volume()
    x[2, 2, 2] = 3e38
    y = brain_zscore().transform(x)
    brain = x != 0
    values = x[brain].astype(np.float64)
    expected = (x.astype(np.float64) - values.mean()) / values.std()
    assert np.all(np.isfinite(y)) and np.count_nonzero(y)
    np.testing.assert_allclose(y, expected, rtol=1e-5)
