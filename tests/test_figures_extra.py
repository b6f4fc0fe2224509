"""Unit tests of the pure figure builders of the Imputation, Estimators and Likelihoods pages."""

import numpy as np
import plotly.graph_objects as go
import pytest

from app import figures_extra as fx


def _titles(fig: go.Figure) -> tuple[str, str, str]:
    return fig.layout.title.text, fig.layout.xaxis.title.text, fig.layout.yaxis.title.text


def _assert_labelled(fig: go.Figure) -> None:
    assert all(_titles(fig)), _titles(fig)


def _assert_crisp_image(trace) -> None:
    assert isinstance(trace, go.Heatmap)
    assert trace.zsmooth is False
    assert trace.reversescale is True


# ---------------------------------------------------------------------------- mosaic
def test_mosaic_layout_and_gaps():
    tiles = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)
    m = fx.mosaic(tiles)
    assert m.shape == (2 * 5 - 1, 3 * 6 - 1)
    np.testing.assert_array_equal(m[5:9, 12:17], tiles[1, 2])  # row 1, column 2
    assert np.isnan(m[4]).all() and np.isnan(m[:, 5]).all()  # the gaps


def test_mosaic_row_gap():
    m = fx.mosaic(np.ones((2, 1, 3, 3)), row_gap=2)
    assert m.shape == (8, 3) and np.isnan(m[3:5]).all() and not np.isnan(m[5:]).any()


def test_mosaic_rejects_wrong_rank():
    with pytest.raises(ValueError, match="rows, cols"):
        fx.mosaic(np.zeros((3, 4, 5)))


# ---------------------------------------------------------------------------- imputation
def test_imputation_strip_figure():
    rng = np.random.default_rng(0)
    H, W, C = 8, 6, 5
    strips = {"pseudo-Gibbs": rng.random((C, H, W)), "MWG": rng.random((C, H, W))}
    mask = np.zeros((H, W), bool)
    mask[2:5, 1:3] = True
    labels = ["truth", "0", "1", "2", "3"]
    fig = fx.imputation_strip_figure(strips, mask, labels, marked=[False] + [True] * 4,
                                     title="chains")
    _assert_labelled(fig)
    assert fig.layout.title.text == "chains"
    image, tint = fig.data
    _assert_crisp_image(image)
    assert np.asarray(image.z).shape == (2 * (H + 1) - 1, C * (W + 1) - 1)
    tz = np.asarray(tint.z, dtype=float)
    assert np.nansum(tz) == 4 * mask.sum() * 2  # tinted in 4 marked columns of 2 rows
    assert np.isnan(tz[:H, :W]).all()  # the truth column is not tinted
    assert list(fig.layout.xaxis.ticktext) == labels
    assert list(fig.layout.yaxis.ticktext) == list(strips)
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.autorange == "reversed"


def test_imputation_strip_figure_validates():
    with pytest.raises(ValueError):
        fx.imputation_strip_figure({}, np.zeros((2, 2), bool), [])
    with pytest.raises(ValueError):
        fx.imputation_strip_figure({"a": np.zeros((3, 2, 2))}, np.zeros((2, 2), bool), ["x"])


@pytest.mark.parametrize("n_missing", [0, 5, 16])
def test_masked_image_figure(n_missing):
    image = np.linspace(0, 1, 16).reshape(4, 4)
    mask = np.zeros(16, bool)
    mask[:n_missing] = True
    fig = fx.masked_image_figure(image, mask.reshape(4, 4), title="seen")
    _assert_labelled(fig)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (4, 9)
    np.testing.assert_allclose(z[:, :4], image)  # left: the image, untouched
    assert np.nansum(np.asarray(fig.data[1].z, dtype=float)) == n_missing  # right: tinted
    assert f"({n_missing} of 16 pixels missing)" in fig.layout.title.text


def test_error_curves_figure():
    steps = np.arange(6)
    curves = {"pseudo-gibbs": (steps, np.linspace(1, 0.5, 6)), "mwg": (steps, np.ones(6))}
    fig = fx.error_curves_figure(curves, metric="cross-entropy", title="errors")
    _assert_labelled(fig)
    assert [t.name for t in fig.data] == ["pseudo-gibbs", "mwg"]
    assert all(len(t.x) == 6 and len(t.y) == 6 for t in fig.data)
    assert fig.layout.yaxis.title.text == "cross-entropy"


# ---------------------------------------------------------------------------- estimators
def test_variance_figure_log_axes_and_guides():
    ks = np.array([1, 2, 5, 10])
    v = {"score": 0.5 * ks, "reparam": np.full(4, 0.4), "price": np.zeros(4)}
    fig = fx.variance_figure(ks, v, title="var")
    _assert_labelled(fig)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    names = [t.name for t in fig.data]
    assert len(fig.data) == 5  # three estimators and two guides
    assert "not drawn" in names[2]  # the all-zero estimator says why it is missing
    assert np.isnan(np.asarray(fig.data[2].y, dtype=float)).all()
    np.testing.assert_allclose(fig.data[3].y, 0.5 * ks)  # O(K) guide through score's first point
    np.testing.assert_allclose(fig.data[4].y, np.full(4, 0.5))


def test_variance_figure_without_reference():
    fig = fx.variance_figure(np.array([1, 10]), {"reparam": np.array([1.0, 1.0])},
                             reference=None)
    assert len(fig.data) == 1 and len(fig.data[0].x) == 2


# ---------------------------------------------------------------------------- likelihoods
def test_table1_figure():
    rows = [{"model": "FA", "nll": 106.0, "source": "paper", "binarisation": "static",
             "k": "not stated"},
            {"model": "mine", "nll": 90.5, "source": "this app", "binarisation": "dynamic",
             "k": 5000}]
    fig = fx.table1_figure(rows)
    _assert_labelled(fig)
    assert [t.name for t in fig.data] == ["paper", "this app"]
    assert list(fig.data[1].x) == [90.5] and list(fig.data[1].y) == ["mine"]
    assert "K = 5000" in fig.data[1].text[0] and "dynamic" in fig.data[1].text[0]
    assert "K = not stated" in fig.data[0].text[0]


def test_k_curve_figure():
    ks = np.array([1, 10, 100])
    fig = fx.k_curve_figure(ks, np.array([-25.0, -24.0, -23.8]), -25.1,
                            sem=np.array([0.1, 0.1, 0.1]), chosen=10, title="k")
    _assert_labelled(fig)
    assert fig.layout.xaxis.type == "log"
    est, elbo, chosen = fig.data
    assert len(est.y) == 3 and list(elbo.y) == [-25.1, -25.1]
    assert list(chosen.x) == [10.0] and list(chosen.y) == [-24.0]


def test_nll_histogram_figure():
    nll = np.random.default_rng(0).normal(90, 5, 200)
    fig = fx.nll_histogram_figure(nll, title="hist")
    _assert_labelled(fig)
    assert isinstance(fig.data[0], go.Histogram) and len(fig.data[0].x) == 200
    assert fig.layout.shapes[0].x0 == pytest.approx(nll.mean())  # the mean line


def test_image_gallery_figure():
    images = np.random.default_rng(0).random((7, 5, 4))
    labels = [f"#{i}" for i in range(7)]
    fig = fx.image_gallery_figure(images, labels, n_cols=3, title="worst")
    _assert_labelled(fig)
    _assert_crisp_image(fig.data[0])
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (3 * (5 + 1), 3 * 5 - 1)  # a blank pixel row above each row for labels
    assert np.isnan(z[0]).all()
    np.testing.assert_allclose(z[1:6, 5:9], images[1])
    assert [a.text for a in fig.layout.annotations] == labels
    with pytest.raises(ValueError):
        fx.image_gallery_figure(images, labels[:3])


# ---------------------------------------------------------------------------- masks
def test_painted_mask_downsamples_strokes():
    rgba = np.zeros((80, 40, 4), np.uint8)
    rgba[0:20, 0:10, 3] = 200  # exactly image pixel (0, 0) of a (4, 4) image
    rgba[40:42, 30:40, 3] = 255  # 2 of 20 canvas rows of pixel (2, 3): below the threshold
    m = fx.painted_mask(rgba, (4, 4))
    assert m.shape == (4, 4) and m.dtype == bool
    assert m[0, 0] and m.sum() == 1
    assert fx.painted_mask(rgba, (4, 4), threshold=0.05).sum() == 2
    assert not fx.painted_mask(None, (3, 5)).any()
    with pytest.raises(ValueError):
        fx.painted_mask(np.zeros((4, 4)), (2, 2))
