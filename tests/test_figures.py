"""Unit tests of app/figures.py: pure numpy in, Plotly figures out."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from app import figures as F


def _titles(fig: go.Figure) -> tuple[str, str, str]:
    return fig.layout.title.text, fig.layout.xaxis.title.text, fig.layout.yaxis.title.text


def _assert_labelled(fig: go.Figure) -> None:
    assert isinstance(fig, go.Figure)
    title, x, y = _titles(fig)
    assert title and x and y


def _assert_crisp(trace) -> None:
    assert isinstance(trace, go.Heatmap)
    assert trace.zsmooth is False
    assert trace.zmin == 0 and trace.zmax == 1
    assert trace.colorscale[0][1] == "rgb(255,255,255)"  # grey level 0: white paper
    assert trace.colorscale[-1][1] == "rgb(0,0,0)"  # grey level 1: black ink


@pytest.mark.parametrize(("n", "n_cols", "pad", "expected"), [
    (4, None, 1, (17, 17)), (5, None, 1, (17, 26)), (3, 3, 0, (8, 24)), (1, None, 2, (8, 8))])
def test_tile_images_shape_and_gaps(n, n_cols, pad, expected):
    images = np.arange(n * 64, dtype=np.float32).reshape(n, 64)
    tiled = F.tile_images(images, (8, 8), n_cols=n_cols, pad=pad)
    assert tiled.shape == expected
    np.testing.assert_array_equal(tiled[:8, :8], images[0].reshape(8, 8))
    assert np.isnan(tiled).sum() == tiled.size - n * 64  # everything else is gap


def test_tile_images_row_major_order():
    images = np.stack([np.full((2, 3), k, np.float32) for k in range(6)])  # (6, 2, 3)
    tiled = F.tile_images(images, n_cols=3, pad=0)
    assert tiled.shape == (4, 9)
    np.testing.assert_array_equal(tiled[0, ::3], [0, 1, 2])
    np.testing.assert_array_equal(tiled[2, ::3], [3, 4, 5])


def test_tile_images_rejects_non_square_without_shape():
    with pytest.raises(ValueError, match="not square"):
        F.tile_images(np.zeros((2, 10)))


def test_image_figure_pixel_axes():
    img = np.random.default_rng(0).random((8, 8))
    fig = F.image_figure(img, title="one image")
    _assert_labelled(fig)
    assert len(fig.data) == 1
    _assert_crisp(fig.data[0])
    np.testing.assert_allclose(np.asarray(fig.data[0].z), img, rtol=1e-6)
    assert fig.layout.yaxis.autorange == "reversed"  # row 0 on top
    assert fig.layout.yaxis.scaleanchor == "x"  # square pixels


def test_image_figure_numeric_axes_put_row_0_on_top():
    img = np.arange(12, dtype=np.float32).reshape(3, 4) / 12
    fig = F.image_figure(img, title="t", x_range=(-2, 2), y_range=(-3, 3))
    h = fig.data[0]
    np.testing.assert_allclose(np.asarray(h.z), img)
    np.testing.assert_allclose(h.x, [-1.5, -0.5, 0.5, 1.5])
    np.testing.assert_allclose(h.y, [2, 0, -2])  # row 0 at the largest y
    with pytest.raises(ValueError, match="coordinates"):
        F.image_figure(img, title="t", x=np.arange(3), y=np.arange(3))


def test_image_figure_rejects_vectors():
    with pytest.raises(ValueError):
        F.image_figure(np.zeros(64), title="t")


def test_image_grid_figure():
    images = np.random.default_rng(1).random((10, 28 * 28)).astype(np.float32)
    fig = F.image_grid_figure(images, shape=(28, 28), n_cols=5, title="samples")
    _assert_labelled(fig)
    assert len(fig.data) == 1
    _assert_crisp(fig.data[0])
    assert np.asarray(fig.data[0].z).shape == (2 * 29 - 1, 5 * 29 - 1)


@pytest.mark.parametrize("pad", [0, 1])
def test_manifold_figure_centres_tiles_on_their_positions(pad):
    n, coords = 3, np.array([-1.0, 0.0, 1.0])
    # image k (decoded at (coords[j], coords[i]), k = i * n + j) is filled with k / 10
    images = np.stack([np.full((2, 2), k / 10, np.float32) for k in range(n * n)])
    fig = F.manifold_figure(images, coords, title="manifold", x_title="ξ₁", y_title="ξ₂",
                            pad=pad)
    _assert_labelled(fig)
    h = fig.data[0]
    z, x, y = np.asarray(h.z), np.asarray(h.x), np.asarray(h.y)
    side = 3 * 2 + 2 * pad
    assert z.shape == (side, side) and x.shape == (side,) and y.shape == (side,)
    assert z[0, 0] == pytest.approx(0.6)  # top left: (-1, 1), k = 6
    assert z[-1, -1] == pytest.approx(0.2)  # bottom right: (1, -1), k = 2
    for k in range(n * n):  # the mean coordinate of each tile's pixels is its position
        i, j = divmod(k, n)
        rows, cols = np.nonzero(np.isclose(z, k / 10))
        assert x[cols].mean() == pytest.approx(coords[j])
        assert y[rows].mean() == pytest.approx(coords[i])
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) < 0)


def test_manifold_figure_checks_count():
    with pytest.raises(ValueError, match="lattice"):
        F.manifold_figure(np.zeros((8, 4)), np.arange(3), title="t")


def test_embedding_figure_one_trace_per_class_with_indices():
    rng = np.random.default_rng(2)
    pts, labels = rng.normal(size=(50, 2)), rng.integers(0, 3, 50)
    plane = rng.normal(size=(16, 2))
    fig = F.embedding_figure(pts, labels, title="emb", x_title="PC 1", y_title="PC 2",
                             plane=plane, class_names={0: "zero"})
    _assert_labelled(fig)
    data = [t for t in fig.data if t.name != "plane"]
    assert len(data) == 3 and all(isinstance(t, go.Scattergl) for t in fig.data)
    assert data[0].name == "zero" and data[1].name == "class 1"
    rows = np.concatenate([np.asarray(t.customdata) for t in data])
    assert sorted(rows.tolist()) == list(range(50))
    for t in data:  # customdata maps each point back to its row
        np.testing.assert_allclose(np.asarray(t.x), pts[np.asarray(t.customdata), 0], rtol=1e-6)
    grid = fig.data[-1]
    assert grid.name == "plane" and grid.customdata is None and grid.marker.opacity == 0
    assert len(grid.x) == 16
    x0, x1 = fig.layout.xaxis.range  # the axes show the lattice (and so every click hits it)
    assert x0 < plane[:, 0].min() < plane[:, 0].max() < x1


def test_embedding_figure_without_labels_and_marked():
    fig = F.embedding_figure(np.zeros((5, 2)), title="t", marked=(1.0, 2.0))
    assert [t.name for t in fig.data] == ["images", "decoded position"]
    with pytest.raises(ValueError):
        F.embedding_figure(np.zeros((5, 3)), title="t")


def test_posterior_figure_traces():
    g = 21
    xs = ys = np.linspace(-5, 5, g)
    xx, yy = np.meshgrid(xs, ys)
    log_post = -0.5 * (xx**2 + (yy - 1) ** 2) - np.log(2 * np.pi)
    log_q = -0.5 * ((xx / 2) ** 2 + yy**2)
    fig = F.posterior_figure(xs, ys, log_post, title="posterior", log_q={"q (diag)": log_q},
                             prior_samples=np.zeros((7, 2)), q_samples=np.ones((5, 2)),
                             map_point=np.array([0.0, 1.0]))
    _assert_labelled(fig)
    kinds = [type(t).__name__ for t in fig.data]
    assert kinds == ["Contour", "Contour", "Scatter", "Scatter", "Scatter"]
    assert [t.name for t in fig.data[2:]] == ["prior samples", "q samples", "MAP"]
    filled, lines = fig.data[0], fig.data[1]
    assert filled.contours.coloring == "fill" and lines.contours.coloring == "none"
    np.testing.assert_allclose(np.asarray(filled.z), np.exp(log_post), rtol=1e-6)
    # q's contour values are Mahalanobis distances: 0 at its mode, 1 at one sigma
    d = np.asarray(lines.z)
    assert d.shape == (g, g) and d.min() == 0
    assert d[10, 10 + 4] == pytest.approx(1.0)  # xi_1 = 2 = one sigma of N(0, 2^2)
    assert (lines.contours.start, lines.contours.end, lines.contours.size) == (1, 3, 1)
    assert len(fig.data[2].x) == 7 and len(fig.data[3].x) == 5
    assert fig.layout.yaxis.scaleanchor == "x"


def test_posterior_figure_view_and_zoom_box():
    xs = np.linspace(-5, 5, 11)
    box = F.zoom_box([[0.0, 0.0], [1.0, 2.0]], margin=0.25)
    assert box == pytest.approx((-1.0, 2.0, -0.5, 2.5))  # square, centred, 1.5x the extent
    assert F.zoom_box([[1.0, 1.0]], min_half_width=0.5) == pytest.approx((0.5, 1.5, 0.5, 1.5))
    fig = F.posterior_figure(xs, xs, np.zeros((11, 11)), title="t", view=box)
    assert tuple(fig.layout.xaxis.range) == pytest.approx(box[:2])
    assert tuple(fig.layout.yaxis.range) == pytest.approx(box[2:])
    full = F.posterior_figure(xs, xs, np.zeros((11, 11)), title="t")
    assert tuple(full.layout.xaxis.range) == (-5, 5)


def test_posterior_figure_two_recognition_models_and_shape_check():
    xs = np.linspace(-1, 1, 5)
    z = np.zeros((5, 5))
    fig = F.posterior_figure(xs, xs, z, title="t", log_q={"diag": z, "rank1": z})
    assert [t.name for t in fig.data[1:]] == ["diag", "rank1"]
    assert fig.data[1].line.color != fig.data[2].line.color
    with pytest.raises(ValueError, match="shape"):
        F.posterior_figure(xs, xs, np.zeros((4, 5)), title="t")


def test_curves_figure_gaps_and_order():
    fig = F.curves_figure([0.5, 1.0, 1.5], {"F": [3.0, 2.0, 1.0], "valid": [None, 2.5, None]},
                          title="training", x_title="epoch", y_title="nats")
    _assert_labelled(fig)
    assert [t.name for t in fig.data] == ["F", "valid"]
    assert np.isnan(np.asarray(fig.data[1].y, dtype=float)[0])
    with pytest.raises(ValueError):
        F.curves_figure([1, 2], {"F": [1.0]}, title="t")


def test_latent_bars_figure():
    fig = F.latent_bars_figure({"ε": [0.1, -0.2], "ξ": [1.0, 2.0]}, title="bars")
    _assert_labelled(fig)
    assert [type(t).__name__ for t in fig.data] == ["Bar", "Bar"]
    np.testing.assert_array_equal(fig.data[0].x, [1, 2])
    assert fig.layout.barmode == "group"
    with pytest.raises(ValueError):
        F.latent_bars_figure({"a": [1.0], "b": [1.0, 2.0]}, title="t")


def test_embedding_figure_height_and_one_step_build():
    fig = F.embedding_figure(np.zeros((3, 2)), title="t", height=640)
    assert fig.layout.height == 640
    fig = F.figure([dict(type="scatter", x=[1, 2], y=[3, 4])],
                   dict(title=dict(text="t"), xaxis=dict(title=dict(text="x"))))
    assert isinstance(fig.data[0], go.Scatter) and fig.layout.xaxis.title.text == "x"
    with pytest.raises(ValueError):  # still validated
        F.figure([dict(type="scatter", no_such_property=1)], {})


def test_freeze_serialises_once_and_shows_the_same_json():
    import plotly.io as pio
    from plotly.tools import return_figure_from_figure_or_data

    rng = np.random.default_rng(0)
    xs = np.linspace(-3, 3, 21)

    def build():
        return F.posterior_figure(xs, xs, rng.normal(size=(21, 21)), title="p",
                                  log_q={"q": rng.normal(size=(21, 21))},
                                  q_samples=rng.normal(size=(5, 2)), map_point=[0.0, 0.0])

    rng = np.random.default_rng(0)
    expected = pio.to_json(build(), validate=False)
    rng = np.random.default_rng(0)
    fig = build()
    frozen = F.freeze(fig)
    assert frozen is fig and isinstance(frozen, F.FrozenFigure) and isinstance(fig, go.Figure)
    assert len(frozen.data) == 4  # still a complete figure
    # What st.plotly_chart does with it, twice: the same JSON each time, nothing consumed.
    for _ in range(2):
        shown = return_figure_from_figure_or_data(frozen, validate_figure=True)
        assert pio.to_json(shown, validate=False) == expected
    a, b = frozen.to_dict(), frozen.to_dict()
    assert a["data"][0] is not b["data"][0]  # fresh trace dicts (to_json pops their "uid")
    assert F.freeze(frozen) is frozen
