"""app/figures/images.py: one image, grids (one tiler), strips, galleries, painted masks."""

import numpy as np
import pytest
from conftest import assert_crisp, assert_labelled

from app.figures import images as F


@pytest.mark.parametrize(
    ("n", "n_cols", "pad", "expected"),
    [(4, None, 1, (17, 17)), (5, None, 1, (17, 26)), (3, 3, 0, (8, 24)), (1, None, 2, (8, 8))],
)
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
    assert_labelled(fig)
    assert len(fig.data) == 1
    assert_crisp(fig.data[0])
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
    assert_labelled(fig)
    assert len(fig.data) == 1
    assert_crisp(fig.data[0])
    assert np.asarray(fig.data[0].z).shape == (2 * 29 - 1, 5 * 29 - 1)


@pytest.mark.parametrize("pad", [0, 1])
def test_manifold_figure_centres_tiles_on_their_positions(pad):
    n, coords = 3, np.array([-1.0, 0.0, 1.0])
    # image k (decoded at (coords[j], coords[i]), k = i * n + j) is filled with k / 10
    images = np.stack([np.full((2, 2), k / 10, np.float32) for k in range(n * n)])
    fig = F.manifold_figure(images, coords, title="manifold", x_title="ξ₁", y_title="ξ₂", pad=pad)
    assert_labelled(fig)
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


def test_tile_images_rows_of_tiles_and_gaps():
    """Rows of C images (what the imputation strips tile): row r, column c is image r * C + c."""
    tiles = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)
    m = F.tile_images(tiles.reshape(6, 4, 5), n_cols=3)
    assert m.shape == (2 * 5 - 1, 3 * 6 - 1)
    np.testing.assert_array_equal(m[5:9, 12:17], tiles[1, 2])  # row 1, column 2
    assert np.isnan(m[4]).all() and np.isnan(m[:, 5]).all()  # the gaps


def test_tile_images_row_pad():
    m = F.tile_images(np.ones((2, 3, 3)), n_cols=1, row_pad=2)
    assert m.shape == (8, 3) and np.isnan(m[3:5]).all() and not np.isnan(m[5:]).any()
    m = F.tile_images(np.ones((4, 3, 3)), n_cols=2, row_pad=0)
    assert m.shape == (6, 7) and not np.isnan(m[:, [0, 1, 2, 4, 5, 6]]).any()


def test_tile_images_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\(N, D\) or \(N, H, W\)"):
        F.tile_images(np.zeros((2, 3, 4, 5)))


def test_imputation_strip_figure():
    rng = np.random.default_rng(0)
    H, W, C = 8, 6, 5
    strips = {"pseudo-Gibbs": rng.random((C, H, W)), "MWG": rng.random((C, H, W))}
    mask = np.zeros((H, W), bool)
    mask[2:5, 1:3] = True
    labels = ["truth", "0", "1", "2", "3"]
    fig = F.imputation_strip_figure(
        strips, mask, labels, marked=[False] + [True] * 4, title="chains"
    )
    assert_labelled(fig)
    assert fig.layout.title.text == "chains"
    image, tint = fig.data
    assert_crisp(image, compact=True)  # redrawn on every step: one byte a pixel
    z = np.asarray(image.z)
    assert z.shape == (2 * (H + 1) - 1, C * (W + 1) - 1)
    np.testing.assert_array_equal(
        z[H + 1 :, W + 1 : 2 * W + 1], np.rint(strips["MWG"][1] * 254)
    )  # row 1, column 1
    assert (z[H] == 255).all() and (z[:, W] == 255).all()  # the gaps
    tz = np.asarray(tint.z)
    assert tz.dtype == np.uint8 and tint.colorscale[0][1] == "rgba(0,0,0,0)"  # 0: transparent
    assert tz.sum() == 4 * mask.sum() * 2  # tinted in 4 marked columns of 2 rows
    assert (tz[:H, :W] == 0).all()  # the truth column is not tinted
    assert list(fig.layout.xaxis.ticktext) == labels
    assert list(fig.layout.yaxis.ticktext) == list(strips)
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.autorange == "reversed"


def test_imputation_strip_figure_validates():
    with pytest.raises(ValueError):
        F.imputation_strip_figure({}, np.zeros((2, 2), bool), [])
    with pytest.raises(ValueError):
        F.imputation_strip_figure({"a": np.zeros((3, 2, 2))}, np.zeros((2, 2), bool), ["x"])


@pytest.mark.parametrize("n_missing", [0, 5, 16])
def test_masked_image_figure(n_missing):
    image = np.linspace(0, 1, 16).reshape(4, 4)
    mask = np.zeros(16, bool)
    mask[:n_missing] = True
    fig = F.masked_image_figure(image, mask.reshape(4, 4), title="seen")
    assert_labelled(fig)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (4, 9)
    np.testing.assert_allclose(z[:, :4] / 254, image, atol=0.5 / 254)  # left: the image
    assert (z[:, 4] == 255).all()  # the gap
    assert np.asarray(fig.data[1].z, dtype=float).sum() == n_missing  # right: tinted
    assert f"({n_missing} of 16 pixels missing)" in fig.layout.title.text


def test_image_gallery_figure():
    images = np.random.default_rng(0).random((7, 5, 4))
    labels = [f"#{i}" for i in range(7)]
    fig = F.image_gallery_figure(images, labels, n_cols=3, title="worst")
    assert_labelled(fig)
    assert_crisp(fig.data[0])
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (3 * (5 + 1), 3 * 5 - 1)  # a blank pixel row above each row for labels
    assert np.isnan(z[0]).all()
    np.testing.assert_allclose(z[1:6, 5:9], images[1])
    assert [a.text for a in fig.layout.annotations] == labels
    with pytest.raises(ValueError):
        F.image_gallery_figure(images, labels[:3])


def test_painted_mask_downsamples_strokes():
    rgba = np.zeros((80, 40, 4), np.uint8)
    rgba[0:20, 0:10, 3] = 200  # exactly image pixel (0, 0) of a (4, 4) image
    rgba[40:42, 30:40, 3] = 255  # 2 of 20 canvas rows of pixel (2, 3): below the threshold
    m = F.painted_mask(rgba, (4, 4))
    assert m.shape == (4, 4) and m.dtype == bool
    assert m[0, 0] and m.sum() == 1
    assert F.painted_mask(rgba, (4, 4), threshold=0.05).sum() == 2
    assert not F.painted_mask(None, (3, 5)).any()
    with pytest.raises(ValueError):
        F.painted_mask(np.zeros((4, 4)), (2, 2))


def test_compact_levels_keep_the_image_style():
    """One byte a pixel: 0 -> 0 (white), 1 -> 254 (black), NaN gaps -> 255 (background); the
    colour scale draws them in the colours of the float style."""
    from app.figures.style import COMPACT_INK, IMAGE_BACKGROUND, INK

    z = F.compact_levels(np.array([[0.0, 0.5, 1.0, np.nan, 2.0, -1.0]]))
    assert z.dtype == np.uint8 and z.tolist() == [[0, 127, 254, 255, 254, 0]]
    assert COMPACT_INK[0][1] == INK[0][1] and COMPACT_INK[1] == [254 / 255, INK[1][1]]
    assert COMPACT_INK[-1] == [1.0, IMAGE_BACKGROUND]
    positions = [p for p, _ in COMPACT_INK]
    assert positions == sorted(positions) and 254 / 255 < positions[3] < 1.0
