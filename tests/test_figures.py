"""Figures a reader can use: the properties that make them readable, checked on the drawn Figure or written PNG.

No pixel comparisons: each test checks a layout fact (an axis limit, a width ratio, a legend that stays off the
bars, labels and annotations that are present).
"""

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colorbar import Colorbar

from ml4ge import plots
from ml4ge.demo.report import draw_overview
from ml4ge.interpret.outputs import OVERLAY_FRACTION, lightbox, lightbox_cuts, lightbox_figure
from ml4ge.plots_compare import comparison_figure, plot_comparison

SPACES = ["ae_t1", "ae_t2", "dropfuse_t1", "dropfuse_t2", "ae_deep", "brain_volume_only"]
TARGETS = ["age", "ventricle_volume", "hippocampus_asymmetry", "thalamus_volume", "putamen_volume"]


def summary_of(targets, spaces=SPACES, auc=0.9):
    """A comparison summary like compare_summary.tsv: R^2 for ``targets``, ROC AUC for sex (mean ``auc``)."""
    rng = np.random.default_rng(0)
    rows = [(space, target, "r2", rng.uniform(-0.1, 0.95), 0.05) for target in targets for space in spaces]
    rows += [(space, "sex", "roc_auc", auc + 0.01 * i, 0.02) for i, space in enumerate(spaces)]
    return pd.DataFrame(rows, columns=["space", "phenotype", "metric", "mean", "sd"])


def drawn(figure):
    """``figure`` on an Agg canvas, laid out and drawn, with its renderer."""
    FigureCanvasAgg(figure)
    figure.canvas.draw()
    return figure, figure.canvas.get_renderer()


def data_axes(figure):
    return [axis for axis in figure.get_axes() if axis.patches or axis.lines]


def test_comparison_auc_axis_starts_at_chance_and_panels_are_as_wide_as_their_bars():
    figure, _ = drawn(comparison_figure(summary_of(TARGETS)))
    r2, auc = data_axes(figure)
    assert auc.get_ylim()[0] == pytest.approx(0.5)
    assert r2.get_ylim()[0] < 0  # negative R^2 stays visible
    ratio = r2.get_position().width / auc.get_position().width
    assert 4.0 < ratio < 6.0  # five targets against one


def test_comparison_auc_below_chance_is_not_cut_off():
    figure, _ = drawn(comparison_figure(summary_of(TARGETS[:2], auc=0.4)))
    auc = data_axes(figure)[1]
    assert auc.get_ylim()[0] < 0.4 - 0.02  # the bar and its error bar below 0.5 show
    tops = [patch.get_y() + patch.get_height() for patch in auc.patches]
    assert all(patch.get_y() == pytest.approx(0.5) for patch in auc.patches) and min(tops) < 0.5


def test_comparison_width_follows_the_number_of_targets(tmp_path):
    from types import SimpleNamespace

    widths = {}
    for count in (1, 2, 5):
        path = plot_comparison(SimpleNamespace(summary=summary_of(TARGETS[:count])), tmp_path / f"{count}.png")
        widths[count] = matplotlib.image.imread(path).shape[1]
    assert widths[1] < widths[2] < widths[5]
    assert widths[5] < 2000  # the demo's figure was 3480 px wide; now about 1600


def test_comparison_legend_stays_off_the_bars():
    figure, renderer = drawn(comparison_figure(summary_of(TARGETS)))
    legend = figure.legends[0].get_window_extent(renderer)
    for axis in data_axes(figure):
        assert not legend.overlaps(axis.get_window_extent(renderer))
    assert [text.get_text() for text in figure.legends[0].get_texts()] == SPACES


def test_overview_uses_the_same_bars(tmp_path):
    figure, renderer = drawn(draw_overview(summary_of(TARGETS), None, "overview"))
    auc = [axis for axis in figure.get_axes() if axis.get_title() == "ROC AUC"][0]
    assert auc.get_ylim()[0] == pytest.approx(0.5)
    legends = [legend for part in (figure, *figure.subfigs) for legend in part.legends]
    assert len(legends) == 1
    legend = legends[0].get_window_extent(renderer)
    assert not any(legend.overlaps(axis.get_window_extent(renderer)) for axis in data_axes(figure))


def test_learning_curves_label_both_axes_and_keep_the_title_off_the_panels():
    history = pd.DataFrame({"epoch": [0, 1, 2], "loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.5, 2.0],
                            "output_t1_loss": [1.0, 0.8, 0.7], "val_output_t1_loss": [1.1, 0.9, 0.8],
                            "learning_rate": [1e-3, 1e-3, 5e-4]})
    for frame in (history, history[["epoch", "loss", "val_loss"]]):
        figure, renderer = drawn(plots.learning_curves_figure(frame, "run"))
        axes = figure.get_axes()
        assert [axis.get_ylabel() for axis in axes] == ["loss", "output_t1_loss"][: len(axes)]
        assert all(axis.get_xlabel() == "epoch" for axis in axes)
        assert all(float(tick).is_integer() for axis in axes for tick in axis.get_xticks())
        title = figure._suptitle.get_window_extent(renderer)
        for axis in axes:
            assert not title.overlaps(axis.get_tightbbox(renderer))


def test_learning_curves_png(tmp_path):
    pd.DataFrame({"epoch": [0, 1], "loss": [2.0, 1.0], "val_loss": [2.2, 1.4]}).to_csv(tmp_path / "log.csv")
    path = plots.learning_curves(tmp_path / "log.csv", tmp_path / "curves.png", "run")
    assert matplotlib.image.imread(path).shape[1] > 300


def volume_and_mask():
    rng = np.random.default_rng(1)
    volume = rng.random((12, 14, 10, 1)).astype(np.float32) + 1
    mask = np.zeros_like(volume)
    mask[3:9, 3:11, 2:8] = 1
    return volume, mask


def test_reconstructions_show_only_the_mask_and_say_so():
    volume, mask = volume_and_mask()
    figure = plots.reconstruction_figure(volume, volume * 0.9, "s1", mask)
    images = [axis.get_images()[0].get_array() for axis in figure.get_axes()]
    assert len(images) == 6
    shown = int(np.rot90(mask[6, :, :, 0]).sum())  # the sagittal mid slice's brain
    for image in images[::3]:
        assert np.ma.count(image) == shown  # everything outside the mask is hidden, in both rows
    assert plots.MASK_NOTE in figure._supxlabel.get_text()
    limits = {axis.get_images()[0].get_clim() for axis in figure.get_axes()}
    assert len(limits) == 1  # input and reconstruction on one grey scale, so brightness compares across rows
    unmasked = plots.reconstruction_figure(volume, volume, "s1")
    assert unmasked._supxlabel is None and np.ma.count(unmasked.get_axes()[0].get_images()[0].get_array()) == 14 * 10


def test_cross_decoding_rows_name_the_target_and_the_source():
    volume, mask = volume_and_mask()
    figure = plots.reconstruction_figure(volume, volume, "s1", mask, ("target t1", "decoded from t2"))
    titles = [axis.get_title() for axis in figure.get_axes()]
    assert titles[0] == "target t1: sagittal" and titles[3] == "decoded from t2: sagittal"
    assert not any(title.startswith("input") for title in titles)


def edge_letters(axis):
    return "".join(text.get_text() for text in axis.texts)  # left, right, top


def test_reconstruction_planes_carry_their_anatomical_directions():
    volume, mask = volume_and_mask()
    ras = np.diag([3.0, 3.0, 3.0, 1.0])
    axes = plots.reconstruction_figure(volume, volume, "s1", mask, affine=ras).get_axes()
    assert [edge_letters(axis) for axis in axes[:3]] == ["PAS", "LRS", "LRA"]  # sagittal, coronal, axial
    assert [edge_letters(axis) for axis in axes[3:]] == ["PAS", "LRS", "LRA"]
    las = np.diag([-3.0, 3.0, 3.0, 1.0])  # x increasing towards the left: the coronal and axial views flip
    axes = plots.reconstruction_figure(volume, volume, "s1", mask, affine=las).get_axes()
    assert [edge_letters(axis) for axis in axes[:3]] == ["PAS", "RLS", "RLA"]
    assert all(not axis.texts for axis in plots.reconstruction_figure(volume, volume, "s1").get_axes())


def test_loss_masks_come_from_packed_targets():
    volume, mask = volume_and_mask()
    packed = np.concatenate([volume, mask], axis=-1)[None]
    np.testing.assert_array_equal(plots.loss_masks(packed, volume[None]), mask[None])
    assert plots.loss_masks(volume[None], volume[None]) is None
    with pytest.raises(ValueError, match="does not match the sample's grid"):
        plots.reconstruction_figure(volume, volume, "s1", mask[:5])


AFFINE = np.array([[3.0, 0, 0, -30], [0, 3, 0, -40], [0, 0, 3, -18], [0, 0, 0, 1]])


def test_lightbox_cuts_are_in_mm_inside_the_mask():
    mask = np.zeros((20, 24, 16), dtype=bool)
    mask[:, :, 4:13] = True  # world z from -6 to 18 mm
    cuts = lightbox_cuts(mask, AFFINE, 3)
    assert cuts == [0.0, 6.0, 12.0]


def lightbox_inputs():
    mask = np.zeros((20, 24, 16), dtype=bool)
    mask[3:17, 3:21, 2:14] = True
    background = np.where(mask, 100.0, 0.0)
    abs_t = np.zeros(mask.shape)
    abs_t[6:10, 8:12, 6:9] = 8.0
    return abs_t, background, mask


def test_lightbox_is_drawn_by_nilearn_with_mm_cuts_lr_marks_and_a_threshold_colorbar():
    abs_t, background, mask = lightbox_inputs()
    figure, _ = drawn(lightbox_figure(abs_t, background, mask, AFFINE, count=6, title="dim 0"))
    texts = [text.get_text() for axis in figure.get_axes() for text in axis.texts]
    assert texts.count("L") == 6 and texts.count("R") == 6
    assert {f"z={c:.0f}" for c in lightbox_cuts(mask, AFFINE, 6)} <= set(texts)
    bars = [axis for axis in figure.get_axes() if isinstance(getattr(axis, "_colorbar", None), Colorbar)]
    assert len(bars) == 1
    threshold = OVERLAY_FRACTION * 8.0
    assert min(abs(tick - threshold) for tick in bars[0].get_yticks()) < 0.05
    assert f"{threshold:.3g}" in bars[0].get_ylabel()


def test_lightbox_png(tmp_path):
    abs_t, background, mask = lightbox_inputs()
    one_row = matplotlib.image.imread(lightbox(abs_t, background, mask, AFFINE, tmp_path / "a.png", count=4))
    two_rows = matplotlib.image.imread(lightbox(abs_t, background, mask, AFFINE, tmp_path / "dim_0.png", count=8))
    assert two_rows.shape[0] > 1.5 * one_row.shape[0] and two_rows.shape[1] == one_row.shape[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "dim_0.png"]



def scan_best():
    rng = np.random.default_rng(0)
    best = pd.DataFrame({"CHROM": np.repeat(["1", "2"], 200), "POS": np.tile(np.arange(200) * 1000, 2),
                         "ID": [f"rs{i}" for i in range(400)], "LOG10P": rng.exponential(0.5, 400)})
    best.loc[399, "LOG10P"] = 12.0  # a hit at the top right corner, where a legend inside the axes would sit
    return best


def test_manhattan_names_its_threshold_outside_the_data():
    from ml4ge.genetics.plots import manhattan_figure

    figure, renderer = drawn(manhattan_figure(scan_best(), 9.5, title="t1"))
    axis = figure.get_axes()[0]
    assert [text.get_text() for text in axis.get_legend().get_texts()] == ["significance threshold P = 3.2e-10"]
    assert not axis.get_legend().get_window_extent(renderer).overlaps(axis.get_window_extent(renderer))
    assert axis.get_xlabel() == "chromosome" and "latent dimensions" in axis.get_ylabel()


def test_miami_counts_both_halves_upwards():
    from ml4ge.genetics.plots import miami_figure

    best = scan_best()
    figure, _ = drawn(miami_figure(best, best.assign(LOG10P=best.LOG10P / 2), 9.5, 2.0))
    axis = figure.get_axes()[0]
    labels = [label.get_text() for label in axis.get_yticklabels()]
    assert labels and not any(label.startswith(("-", "\N{MINUS SIGN}")) for label in labels)
    assert [text.get_text() for text in axis.get_legend().get_texts()] == [
        "discovery threshold P = 3.2e-10", "replication threshold P = 0.01"]


def test_group_embedding_legend_stays_off_the_scatters():
    from ml4ge.group_metrics import groups_figure, score_table

    rng = np.random.default_rng(0)
    labels = np.repeat(["control", "patient"], 40)
    values = rng.standard_normal((80, 6)) + (labels == "patient")[:, None] * 2.0
    figure, renderer = drawn(groups_figure("t1", values, labels, score_table("t1", values, labels, fits=2)))
    legend = figure.legends[0]
    assert [text.get_text() for text in legend.get_texts()] == ["control (40)", "patient (40)"]
    for axis in figure.get_axes():
        assert not legend.get_window_extent(renderer).overlaps(axis.get_window_extent(renderer))
        assert axis.get_xlabel() and axis.get_ylabel()


def test_adjusted_comparison_names_its_covariates():
    figure = comparison_figure(summary_of(TARGETS[:2]), ["age", "sex"])
    assert "with the covariates age, sex" in figure._suptitle.get_text()
    assert "covariates" not in comparison_figure(summary_of(TARGETS[:2]))._suptitle.get_text()


def test_a_tensorized_volume_gets_the_letters_of_its_own_affine(tmp_path):
    """A subject stored with x increasing towards the left (FSL's MNI header) is drawn with R on the left."""
    import nibabel as nib

    from ml4ge.demo import maps
    from ml4ge.tensorize import Subject, VolumeInput, tensorize_subjects

    tm = maps.t1_5mm
    affine = np.array([[-5.0, 0, 0, 90], [0, 5, 0, -126], [0, 0, 5, -72], [0, 0, 0, 1]])
    volume = np.random.default_rng(0).random((40, 47, 38)).astype(np.float32) + 1
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "t1.nii.gz")
    rows = tensorize_subjects([Subject("1001", (VolumeInput(tensor=tm.name, path=str(tmp_path / "t1.nii.gz"),
                                                            key=tm.key, map_shape=tm.shape),))], tmp_path / "hd5")
    assert {row.status for row in rows} == {"written"}
    stored = plots.volume_affine(tm, tmp_path / "hd5" / "1001.hd5")
    assert nib.aff2axcodes(stored) == ("L", "A", "S")
    sample = np.ones(tm.shape, dtype=np.float32)
    axes = plots.reconstruction_figure(sample, sample, "1001", affine=stored).get_axes()
    assert [edge_letters(axis) for axis in axes[:3]] == ["PAS", "RLS", "RLA"]
