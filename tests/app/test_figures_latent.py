"""app/figures/latent.py: the embedding, the posterior on a grid, latent bars."""

import numpy as np
import plotly.graph_objects as go
import pytest
from conftest import assert_labelled

from app.figures import latent as F
from app.figures.style import figure


def test_embedding_figure_one_trace_per_class_with_indices():
    rng = np.random.default_rng(2)
    pts, labels = rng.normal(size=(50, 2)), rng.integers(0, 3, 50)
    plane = rng.normal(size=(16, 2))
    fig = F.embedding_figure(
        pts,
        labels,
        title="emb",
        x_title="PC 1",
        y_title="PC 2",
        plane=plane,
        class_names={0: "zero"},
    )
    assert_labelled(fig)
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
    mark = fig.data[1]
    assert (tuple(mark.x), tuple(mark.y)) == ((1.0,), (2.0,))
    assert mark.hovertemplate.startswith("decoded at (%{x:.2f}")
    with pytest.raises(ValueError):
        F.embedding_figure(np.zeros((5, 3)), title="t")


def test_posterior_figure_traces():
    g = 21
    xs = ys = np.linspace(-5, 5, g)
    xx, yy = np.meshgrid(xs, ys)
    log_post = -0.5 * (xx**2 + (yy - 1) ** 2) - np.log(2 * np.pi)
    log_q = -0.5 * ((xx / 2) ** 2 + yy**2)
    fig = F.posterior_figure(
        xs,
        ys,
        log_post,
        title="posterior",
        log_q={"q (diag)": log_q},
        prior_samples=np.zeros((7, 2)),
        q_samples=np.ones((5, 2)),
        map_point=np.array([0.0, 1.0]),
    )
    assert_labelled(fig)
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
    star = fig.data[4]
    assert (tuple(star.x), tuple(star.y), star.marker.symbol) == ((0.0,), (1.0,), "star")
    assert star.hovertemplate.startswith("MAP (%{x:.2f}")
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


def test_ellipse_points_lie_at_their_mahalanobis_radii():
    mean, cov = np.array([1.0, -2.0]), np.array([[0.5, 0.3], [0.3, 0.4]])
    pts = F.ellipse_points(mean, cov, radii=(1, 2, 3), n=40)
    assert pts.shape == (3 * 41, 2)
    breaks = np.flatnonzero(np.isnan(pts[:, 0]))
    np.testing.assert_array_equal(breaks, [40, 81, 122])  # one closed ellipse per radius
    prec = np.linalg.inv(cov)
    for i, r in enumerate((1, 2, 3)):
        ring = pts[i * 41 : i * 41 + 40] - mean
        dist = np.sqrt(np.einsum("ni,ij,nj->n", ring, prec, ring))
        np.testing.assert_allclose(dist, r, rtol=1e-12)
        np.testing.assert_allclose(ring[0], ring[-1], atol=1e-12)  # closed
    with pytest.raises(np.linalg.LinAlgError):
        F.ellipse_points(mean, np.array([[1.0, 2.0], [2.0, 1.0]]))  # not positive definite


def test_posterior_figure_draws_extra_gaussians_as_dashed_ellipses():
    xs = np.linspace(-1, 1, 5)
    z = np.zeros((5, 5))
    gauss = (np.zeros(2), 0.1 * np.eye(2))
    fig = F.posterior_figure(
        xs,
        xs,
        z,
        title="t",
        log_q={"q (diag)": z},
        ellipses={"q* (diag)": gauss, "q* (full)": gauss},
        map_point=np.zeros(2),
    )
    names = [t.name for t in fig.data]
    assert names == ["p(ξ | v)", "q (diag)", "q* (diag)", "q* (full)", "MAP"]
    q, s1, s2 = fig.data[1], fig.data[2], fig.data[3]
    assert s1.mode == "lines" and s1.showlegend is not False
    colours = {q.line.color, s1.line.color, s2.line.color}
    assert len(colours) == 3  # q and each q* in its own colour
    assert q.line.dash == "solid" and {s1.line.dash, s2.line.dash} == {"dash", "dot"}
    np.testing.assert_allclose(
        np.nanmax(np.hypot(np.asarray(s1.x), np.asarray(s1.y))), 3 * np.sqrt(0.1), rtol=1e-6
    )


def test_latent_bars_figure():
    fig = F.latent_bars_figure({"ε": [0.1, -0.2], "ξ": [1.0, 2.0]}, title="bars")
    assert_labelled(fig)
    assert [type(t).__name__ for t in fig.data] == ["Bar", "Bar"]
    np.testing.assert_array_equal(fig.data[0].x, [1, 2])
    assert fig.layout.barmode == "group"
    with pytest.raises(ValueError):
        F.latent_bars_figure({"a": [1.0], "b": [1.0, 2.0]}, title="t")


def test_embedding_figure_height_and_one_step_build():
    fig = F.embedding_figure(np.zeros((3, 2)), title="t", height=640)
    assert fig.layout.height == 640
    fig = figure(
        [dict(type="scatter", x=[1, 2], y=[3, 4])],
        dict(title=dict(text="t"), xaxis=dict(title=dict(text="x"))),
    )
    assert isinstance(fig.data[0], go.Scatter) and fig.layout.xaxis.title.text == "x"
    with pytest.raises(ValueError):  # still validated
        figure([dict(type="scatter", no_such_property=1)], {})


def test_labels_name_classes_clothes_and_photos():
    from app.labels import label_counts, label_kind, label_name

    assert label_name("mnist", 3) == "class 3" and label_kind("mnist") == "class"
    assert label_name("fashion-mnist", 1) == "Trouser"
    assert label_name("patches", 0) == "photo china.jpg" and label_kind("patches") == "photo"
    assert label_name("patches", 7) == "photo 7"  # not one of the two photos: its number
    assert label_counts("digits", np.array([7, 3, 7])) == "class 3: 1, class 7: 2"
