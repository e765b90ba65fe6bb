"""PerDI pieces: streaming paired t vs scipy, |t| maps, enrichment vs a literal running sum, atlases, grids,
outputs, and a hand-built decoder whose dimensions each drive one region."""

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from ml4ge.arrays import fit_to_shape
from ml4ge.hd5 import write_tensor
from ml4ge.interpret.grid import map_affine, onto_grid
from ml4ge.interpret.outputs import lightbox, write_nifti
from ml4ge.interpret.perturb import dimensions_per_pass, latent_shifts, perdi_statistics
from ml4ge.interpret.regions import (
    Atlas,
    enrichment_scores,
    merge_hemispheres,
    rank_regions,
    read_label_table,
    without_side,
)
from ml4ge.interpret.voxel_stats import PairedDifferenceStats, abs_t_map
from ml4ge.tensormap import TensorMap


def test_streaming_paired_t_equals_scipy_ttest_rel():
    rng = np.random.default_rng(0)
    original = rng.normal(size=(37, 5, 4, 3))
    perturbed = original + rng.normal(0.3, 1.0, size=original.shape) * rng.uniform(0.1, 2, size=(5, 4, 3))
    stats = PairedDifferenceStats((5, 4, 3))
    for start, stop in ((0, 1), (1, 10), (10, 37)):  # uneven batches, the first of one subject
        stats.update(perturbed[start:stop] - original[start:stop])
    expected = scipy_stats.ttest_rel(perturbed, original, axis=0).statistic
    np.testing.assert_allclose(stats.t(), expected, rtol=1e-9, atol=1e-12)
    assert stats.count == 37


def test_nearly_constant_differences_keep_their_precision():
    differences = 1e4 + np.array([0.0, 1e-3, 2e-3, 3e-3]).reshape(4, 1)
    stats = PairedDifferenceStats((1,))
    stats.update(differences)
    np.testing.assert_allclose(stats.t(), scipy_stats.ttest_rel(differences, np.zeros_like(differences)).statistic,
                               rtol=1e-7)


def test_zero_variance_voxels_and_capping():
    stats = PairedDifferenceStats((3,))
    stats.update(np.array([[0.0, 2.0, 1.0], [0.0, 2.0, 3.0]]))
    t = stats.t()
    assert t[0] == 0 and np.isinf(t[1]) and t[2] == pytest.approx(2.0)
    result = abs_t_map(t, np.array([1, 1, 1]), sigma=0)
    assert result.capped_voxels == 1
    np.testing.assert_allclose(result.values, [0.0, 2.0, 2.0])


def test_abs_t_map_is_smoothed_and_zero_outside_the_mask():
    t = np.zeros((9, 9, 9))
    t[4, 4, 4] = -10.0
    mask = np.zeros_like(t, dtype=bool)
    mask[2:7, 2:7, 2:7] = True
    result = abs_t_map(t, mask, sigma=1.0)
    assert result.values.dtype == np.float32 and result.unsmoothed_max == 10.0
    assert np.all(result.values[~mask] == 0)
    assert 0 < result.values[4, 4, 4] < 10 and result.values[4, 4, 5] > 0
    with pytest.raises(ValueError, match="mask of shape"):
        abs_t_map(t, mask[:5], sigma=1.0)


def literal_running_sum_maximum(abs_t, labels, region):
    """PerDI's KS_statistic notebook, written out with a loop (read at every step: for maps without ties)."""
    labelled = labels > 0
    order = np.argsort(-abs_t[labelled], kind="stable")
    ranked = labels[labelled][order]
    total, size = ranked.size, np.count_nonzero(ranked == region)
    running, best = 0.0, -np.inf
    for label in ranked:
        running += (1 / size - 1 / total) if label == region else -1 / total
        best = max(best, running)
    return best


def test_enrichment_does_not_depend_on_the_order_of_ties():
    """A masked map has many zeros: region 1 (first in file order) must not gain from them."""
    labels = np.repeat([1, 2], 50)
    abs_t = np.zeros(100)
    abs_t[60:70] = 3.0  # ten voxels of region 2 hold all the signal
    scores = enrichment_scores(abs_t, labels, [1, 2])
    assert scores[0] == 0.0 and scores[1] == pytest.approx(10 / 50 - 10 / 100)
    shuffled = np.random.default_rng(0).permutation(100)
    np.testing.assert_allclose(enrichment_scores(abs_t[shuffled], labels[shuffled], [1, 2]), scores)


def test_enrichment_equals_the_literal_running_sum():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=(10, 9, 8))
    abs_t = rng.random(labels.shape) + 2.0 * (labels == 3)
    scores = enrichment_scores(abs_t, labels, [1, 2, 3, 4])
    expected = [literal_running_sum_maximum(abs_t, labels, region) for region in (1, 2, 3, 4)]
    np.testing.assert_allclose(scores, expected, atol=1e-12)
    assert scores[2] == pytest.approx(1 - np.count_nonzero(labels == 3) / np.count_nonzero(labels))


def test_rank_regions_orders_by_enrichment_and_mean():
    labels = np.zeros((6, 6, 6), dtype=np.int32)
    labels[:3], labels[3:] = 1, 2
    labels[0, 0, 0] = 0
    abs_t = np.zeros(labels.shape)
    abs_t[4:] = 5.0
    table = pd.DataFrame({"label": [1, 2, 7], "name": ["a", "b", "absent"], "hemisphere": "both"})
    ranking = rank_regions(abs_t, Atlas(labels, table))
    assert ranking["region"].tolist() == ["b", "a", "absent"]
    assert ranking["ks_rank"].tolist() == [1, 2, 3] and ranking["voxels"].tolist() == [108, 107, 0]
    assert ranking.loc[0, "mean_abs_t"] == pytest.approx(5.0 * 72 / 108) and ranking.loc[0, "max_abs_t"] == 5.0
    assert np.isnan(ranking.loc[2, "ks_enrichment"])
    with pytest.raises(ValueError, match="resample the atlas"):
        rank_regions(abs_t[:3], Atlas(labels, table))


def test_label_table_and_hemisphere_merge(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("label\tname\n1\tLeft Putamen\n2\tRight Putamen\n3\tBrain-Stem\n5\tlateral_ventricle_left\n"
                    "6\tlateral_ventricle_right\n")
    table = read_label_table(path)
    assert table["hemisphere"].tolist() == ["left", "right", "both", "left", "right"]
    assert without_side("Left Lateral Ventricle") == "Lateral Ventricle"
    assert without_side("frontal_lobe_right") == "frontal_lobe"
    labels = np.array([[[0, 1, 2, 3, 5, 6, 9]]])
    merged = merge_hemispheres(Atlas(labels, table))
    assert merged.table["name"].tolist() == ["Putamen", "Brain-Stem", "lateral_ventricle"]
    assert merged.labels.tolist() == [[[0, 1, 1, 2, 3, 3, 0]]]
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\tname\n1\ta\n1\tb\n")
    with pytest.raises(ValueError, match="appears more than once"):
        read_label_table(bad)
    bad.write_text("id\tname\n1\ta\n")
    with pytest.raises(ValueError, match="lacks columns"):
        read_label_table(bad)


def blob_volume(shape, centre, radius=2.5):
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    return (np.linalg.norm(grid - np.asarray(centre), axis=-1) < radius).astype(np.float32) * 100


def centre_of_mass(volume):
    weights = np.clip(volume - volume.min(), 0, None)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in volume.shape], indexing="ij"), axis=-1)
    return (grid * weights[..., None]).reshape(-1, 3).sum(0) / weights.sum()


@pytest.mark.parametrize("resize", [True, False])
def test_map_affine_follows_resampling_and_cropping_on_read(tmp_path, resize):
    source_shape, affine = (30, 36, 28), np.array([[-2.0, 0, 0, 60], [0, 2, 0, -80], [0, 0, 2, -50], [0, 0, 0, 1]])
    volume = blob_volume(source_shape, (9, 20, 15))
    full = TensorMap("full", (*source_shape, 1), group="mri", dataset="T1")
    small = TensorMap("small", (16, 16, 16, 1), group="mri", dataset="T1_16", fallback=full, resize=resize)
    with h5py.File(tmp_path / "s.hd5", "w") as hd5:
        write_tensor(hd5, full.key, volume, attributes={"affine": affine})
        derived = map_affine(small, hd5)
        fitted = small.fit_shape(small.read_raw(hd5))[..., 0]
    world_source = affine @ np.r_[centre_of_mass(volume), 1]
    world_fitted = derived @ np.r_[centre_of_mass(fitted), 1]
    np.testing.assert_allclose(world_fitted, world_source, atol=0.6 if resize else 1e-6)


def test_map_affine_of_a_stored_resampled_dataset_and_of_data_without_one(tmp_path):
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    tm = TensorMap("v", (8, 8, 8, 1), group="mri", resize=True)
    with h5py.File(tmp_path / "s.hd5", "w") as hd5:
        write_tensor(hd5, tm.key, np.ones((8, 8, 8), np.float32), attributes={"affine": affine})
        np.testing.assert_array_equal(map_affine(tm, hd5), affine)
    with h5py.File(tmp_path / "t.hd5", "w") as hd5:
        write_tensor(hd5, tm.key, np.ones((8, 8, 8), np.float32))
        assert map_affine(tm, hd5) is None
        with pytest.raises(ValueError, match="not a 3-D volume"):
            map_affine(TensorMap("s", (1,)), hd5)


def test_atlas_on_a_finer_grid_is_resampled_with_nearest_neighbour():
    coarse_affine = np.diag([4.0, 4.0, 4.0, 1.0])
    fine = np.zeros((16, 16, 16), dtype=np.int16)
    fine[:8], fine[8:] = 1, 2
    fine_image = nib.Nifti1Image(fine, np.diag([2.0, 2.0, 2.0, 1.0]) @ _half_voxel_shift())
    labels = onto_grid(fine_image, (8, 8, 8), coarse_affine)
    assert set(np.unique(labels)) == {1, 2}
    assert np.all(labels[:4] == 1) and np.all(labels[4:] == 2)
    same = onto_grid(nib.Nifti1Image(fine, coarse_affine), (16, 16, 16), coarse_affine)
    np.testing.assert_array_equal(same, fine)


def _half_voxel_shift():
    """Fine voxel centres at -0.5, 1.5, ... so that each coarse (4 mm) voxel holds two fine (2 mm) voxels."""
    shift = np.eye(4)
    shift[:3, 3] = -0.25
    return shift


def test_nifti_and_lightbox_outputs(tmp_path):
    affine = np.array([[-3.0, 0, 0, 90], [0, 3, 0, -126], [0, 0, 3, -72], [0, 0, 0, 1]])
    volume = np.random.default_rng(2).random((10, 12, 9)).astype(np.float32)
    path = write_nifti(volume, affine, tmp_path / "map.nii.gz")
    image = nib.load(str(path))
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), volume)
    np.testing.assert_allclose(image.affine, affine)
    mask = volume > 0.2
    png = lightbox(volume * mask, volume, mask, affine, tmp_path / "map.png", count=5, title="dimension 0")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.nii.gz", "map.png"]


def test_latent_shifts_and_passes():
    latents = np.array([[0.0, 1.0, 5.0], [2.0, 1.0, 5.0], [4.0, 1.0, 5.0]])
    shifts = latent_shifts(latents, [0], 2.0)
    assert shifts == {0: pytest.approx(2.0 * np.std([0, 2, 4]))}
    with pytest.raises(ValueError, match="do not vary"):
        latent_shifts(latents, [1, 2], 1.0)
    with pytest.raises(ValueError, match="outside the latent"):
        latent_shifts(latents, [3], 1.0)
    assert dimensions_per_pass(1000, 10, 16 * 1000 * 4) == 4 and dimensions_per_pass(10**9, 5, 1) == 1


def test_perdi_statistics_match_in_memory_ttest_for_any_pass_size():
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(4, 6, 5))

    def decode(latents):
        return np.tanh(np.einsum("bd,dxy->bxy", latents, weights))

    latents = rng.normal(size=(23, 4)).astype(np.float32)
    shifts = latent_shifts(latents, [0, 2, 3], 1.0)
    mean = np.zeros((6, 5))
    streamed = {d: s.t() for d, s in perdi_statistics(decode, latents, shifts, 5, per_pass=2, mean_image=mean)}
    one_pass = {d: s.t() for d, s in perdi_statistics(decode, latents, shifts, 23, per_pass=3)}
    original = decode(latents)
    for d, shift in shifts.items():
        moved = latents.copy()
        moved[:, d] += shift
        expected = scipy_stats.ttest_rel(decode(moved), original, axis=0).statistic
        np.testing.assert_allclose(streamed[d], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(one_pass[d], streamed[d], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean, original.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert list(streamed) == [0, 2, 3]


def test_fit_shape_grid_helper_is_consistent():
    """The map's voxels are the fitted array's voxels: crop/pad keeps shape, so the map overlays the input."""
    assert fit_to_shape(np.ones((10, 10, 10)), (8, 8, 8, 1)).shape == (8, 8, 8, 1)
