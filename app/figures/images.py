"""Images: one image, grids of images, imputation strips, galleries, and painted masks.

Every image is a ``go.Heatmap`` made by :func:`image_trace` (crisp, :data:`~app.figures.style.INK`
on :data:`~app.figures.style.IMAGE_BACKGROUND`), and every set of images is laid out by one
tiler, :func:`tile_images`, with NaN gaps between tiles (drawn as the background).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from app.figures.style import (
    COMPACT_INK,
    IMAGE_BACKGROUND,
    INK,
    INK_LEVELS,
    MARGIN,
    MARGIN_TIGHT,
    MISSING_COLOUR,
    MODEBAR,
    axis,
    figure,
)

TILE_PX = 64  # screen pixels per row of tiles in strips and galleries (sets their height)
_PLOT_WIDTH_PX = 800  # about the plotting width of a wide page (caps the height of long strips)


# ---------------------------------------------------------------------------- tiling
def as_images(images, shape=None) -> np.ndarray:
    """(N, D) with ``shape`` = (H, W), or (N, H, W) -> float32 (N, H, W)."""
    a = np.asarray(images, dtype=np.float32)
    if a.ndim == 2:
        if shape is None:
            side = math.isqrt(a.shape[1])
            if side * side != a.shape[1]:
                raise ValueError(f"images of {a.shape[1]} pixels are not square; pass shape")
            shape = (side, side)
        a = a.reshape(len(a), *shape)
    if a.ndim != 3:
        raise ValueError(f"images have shape {a.shape}; expected (N, D) or (N, H, W)")
    return a


def tile_images(
    images, shape=None, *, n_cols=None, pad=1, row_pad=None, pad_value=np.nan
) -> np.ndarray:
    """Tile images row by row into one array, ``pad`` pixels of ``pad_value`` between tiles.

    Parameters
    ----------
    images : array, (N, D) or (N, H, W)
        Grey levels (any range); (N, D) needs ``shape`` unless D is a perfect square.
    shape : tuple (H, W), optional
    n_cols : int, optional
        Tiles per row; default ceil(sqrt(N)).
    pad : int
        Gap between neighbouring columns of tiles, in pixels (none around the border).
    row_pad : int, optional
        Gap between neighbouring rows of tiles; ``pad`` by default.
    pad_value : float
        Value of the gaps; NaN is drawn transparent by Plotly.

    Returns
    -------
    ndarray, float32, (rows * (H + row_pad) - row_pad, n_cols * (W + pad) - pad)
        Unused tiles of the last row are filled with ``pad_value``.
    """
    a = as_images(images, shape)  # (N, H, W)
    n, h, w = a.shape
    rp = pad if row_pad is None else row_pad
    n_cols = max(1, min(n_cols or math.ceil(math.sqrt(max(n, 1))), max(n, 1)))
    n_rows = max(1, math.ceil(n / n_cols))
    out = np.full((n_rows * (h + rp) - rp, n_cols * (w + pad) - pad), pad_value, dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, n_cols)
        out[r * (h + rp) : r * (h + rp) + h, c * (w + pad) : c * (w + pad) + w] = a[k]
    return out


# ---------------------------------------------------------------------------- one image
def image_trace(z, *, hover: str, name: str = "pixels", compact: bool = False, **kwargs) -> dict:
    """The app's image style: a crisp heatmap of grey levels in [0, 1], ink dark, no scale.

    ``compact``: the same look sent as one byte a pixel (uint8 levels 0..``INK_LEVELS``, 255
    for NaN gaps; a quarter of float32's bytes) for figures redrawn on every click."""
    if compact:
        return dict(
            type="heatmap",
            z=compact_levels(z),
            zmin=0,
            zmax=255,
            colorscale=COMPACT_INK,
            zsmooth=False,
            showscale=False,
            name=name,
            hovertemplate=hover,
            **kwargs,
        )
    return dict(
        type="heatmap",
        z=z,
        zmin=0.0,
        zmax=1.0,
        colorscale=INK,
        zsmooth=False,
        showscale=False,
        name=name,
        hoverongaps=False,
        hovertemplate=hover,
        **kwargs,
    )


def compact_levels(z) -> np.ndarray:
    """Grey levels in [0, 1] (NaN: gap) -> uint8 levels 0..``INK_LEVELS``, 255 for gaps."""
    z = np.asarray(z, dtype=np.float32)
    levels = np.rint(np.clip(np.nan_to_num(z, nan=0.0), 0.0, 1.0) * INK_LEVELS)
    return np.where(np.isnan(z), 255, levels).astype(np.uint8)


def _image_axes(x_title, y_title, numeric: bool, show_ticks: bool) -> dict:
    """Layout entries ``xaxis`` and ``yaxis`` of an image: square pixels, row 0 on top."""
    return dict(
        xaxis=axis(
            x_title, showgrid=False, zeroline=False, showticklabels=show_ticks, constrain="domain"
        ),
        yaxis=axis(
            y_title,
            showgrid=False,
            zeroline=False,
            showticklabels=show_ticks,
            scaleanchor="x",
            scaleratio=1,
            constrain="domain",
            autorange=True if numeric else "reversed",
        ),
    )


def image_figure(
    image,
    *,
    title: str,
    x_title="pixel column",
    y_title="pixel row",
    zmin=0.0,
    zmax=1.0,
    x_range=None,
    y_range=None,
    x=None,
    y=None,
    height=None,
    colorbar=False,
    hover_label="grey level",
) -> go.Figure:
    """One grey-level image as a crisp heatmap (ink dark, square pixels, row 0 on top).

    Parameters
    ----------
    image : array, (H, W)
        Values in [zmin, zmax]; NaN is drawn transparent.
    title, x_title, y_title : str
    zmin, zmax : float
        The colour range (white to black).
    x_range, y_range : (float, float), optional
        Give both to draw the image over numeric coordinates (e.g. latent positions): column
        centres spread evenly over ``x_range``, row 0 at the top of ``y_range``.
    x, y : array, (W,) and (H,), optional
        Or give the coordinate of every column and of every row (row 0 first, so ``y`` is
        descending for an upright image).
    height : int, optional
        Figure height in pixels.
    colorbar : bool
        Show the colour bar.
    hover_label : str
        Name of the value in the hover text.

    Returns
    -------
    go.Figure with one ``Heatmap`` trace whose ``z`` is the image, (H, W).
    """
    z = np.asarray(image, dtype=np.float32)
    if z.ndim != 2:
        raise ValueError(f"image has shape {z.shape}; expected (H, W)")
    h, w = z.shape
    if x_range is not None and y_range is not None:
        x, y = _centres(x_range, w), _centres(y_range, h)[::-1]  # row 0 at the top
    numeric = x is not None and y is not None
    kwargs = {}
    if numeric:
        kwargs["x"], kwargs["y"] = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if kwargs["x"].shape != (w,) or kwargs["y"].shape != (h,):
            raise ValueError(f"x and y need {w} and {h} coordinates for an image of {z.shape}")
        hover = f"x=%{{x:.2f}}<br>y=%{{y:.2f}}<br>{hover_label}=%{{z:.3f}}<extra></extra>"
    else:
        hover = f"column %{{x}}, row %{{y}}<br>{hover_label}=%{{z:.3f}}<extra></extra>"
    trace = image_trace(z, hover=hover, **kwargs)
    trace.update(zmin=zmin, zmax=zmax, showscale=colorbar)
    layout = dict(
        title=dict(text=title),
        modebar=MODEBAR,
        margin=MARGIN,
        plot_bgcolor=IMAGE_BACKGROUND,
        **_image_axes(x_title, y_title, numeric, show_ticks=numeric),
    )
    if height:
        layout["height"] = height
    return figure([trace], layout)


def _centres(extent, n: int) -> np.ndarray:
    lo, hi = float(extent[0]), float(extent[1])
    step = (hi - lo) / n
    return lo + step * (np.arange(n) + 0.5)


# ---------------------------------------------------------------------------- grids
def image_grid_figure(
    images,
    *,
    title: str,
    shape=None,
    n_cols=None,
    pad=1,
    height=None,
    x_title="images, left to right",
    y_title="images, top to bottom",
) -> go.Figure:
    """A grid of images tiled into one crisp heatmap (see :func:`tile_images`).

    Parameters
    ----------
    images : array, (N, D) or (N, H, W)
        Grey levels in [0, 1].
    title : str
    shape : (H, W), optional
        Image shape when ``images`` is (N, D).
    n_cols : int, optional
        Images per row (default ceil(sqrt(N))).
    pad : int
        Transparent gap between images, in pixels.
    height : int, optional

    Returns
    -------
    go.Figure with one ``Heatmap``; ``z`` has the shape of ``tile_images(...)``.
    """
    tiled = tile_images(images, shape, n_cols=n_cols, pad=pad)
    return image_figure(tiled, title=title, x_title=x_title, y_title=y_title, height=height)


def manifold_figure(
    images, coords, *, title: str, shape=None, x_title="ξ₁", y_title="ξ₂", pad=1, height=None
) -> go.Figure:
    """Images decoded on an n x n lattice of latent positions, tiled by position.

    Parameters
    ----------
    images : array, (n * n, D) or (n * n, H, W)
        ``images[i * n + j]`` is decoded at ``(coords[j], coords[i])``: i indexes the second
        coordinate (y), j the first (x), both ascending.
    coords : array, (n,)
        Lattice positions along each axis, ascending and evenly spaced.
    title, x_title, y_title : str
    shape : (H, W), optional
    pad : int
        Transparent gap between tiles, in pixels.
    height : int, optional

    Returns
    -------
    go.Figure with one ``Heatmap`` over numeric axes: each tile is centred on its latent
    position (largest y at the top), so the axes read in latent units.
    """
    coords = np.asarray(coords, dtype=np.float64)
    n = len(coords)
    a = as_images(images, shape)  # (n*n, H, W)
    if len(a) != n * n:
        raise ValueError(f"{len(a)} images for a {n} x {n} lattice")
    h, w = a.shape[1:]
    rows = a.reshape(n, n, h, w)[::-1]  # top row of the picture = largest y
    tiled = tile_images(rows.reshape(n * n, h, w), n_cols=n, pad=pad)
    step = coords[1] - coords[0] if n > 1 else 1.0
    # pixel p of tile j sits at coords[j] + (p - (size - 1) / 2) * step / (size + pad): linear in
    # the picture's pixel index, so every tile is centred on its latent position.
    x = coords[0] + (np.arange(tiled.shape[1]) - (w - 1) / 2) * step / (w + pad)
    y = coords[-1] - (np.arange(tiled.shape[0]) - (h - 1) / 2) * step / (h + pad)
    return image_figure(
        tiled,
        title=title,
        x_title=x_title,
        y_title=y_title,
        x=x,
        y=y,
        height=height,
        hover_label="pixel mean",
    )


# ---------------------------------------------------------------------------- labelled tiles
def _tiles_layout(
    title: str,
    x_title: str,
    y_title: str,
    shape,
    n_rows: int,
    n_cols: int,
    col_labels=None,
    row_labels=None,
    tile_px: int = TILE_PX,
) -> dict:
    """Equal aspect, y down, ticks at tile centres; height from the row count."""
    H, W = shape
    x_ticks, y_ticks = dict(showticklabels=False), dict(showticklabels=False)
    if col_labels is not None:
        x_ticks = dict(
            tickvals=[c * (W + 1) + (W - 1) / 2 for c in range(n_cols)], ticktext=list(col_labels)
        )
    if row_labels is not None:
        y_ticks = dict(
            tickvals=[r * (H + 1) + (H - 1) / 2 for r in range(n_rows)], ticktext=list(row_labels)
        )
    return dict(
        xaxis=axis(
            x_title, showgrid=False, zeroline=False, constrain="domain", ticks="", **x_ticks
        ),
        yaxis=axis(
            y_title,
            showgrid=False,
            zeroline=False,
            autorange="reversed",
            scaleanchor="x",
            scaleratio=1,
            constrain="domain",
            ticks="",
            **y_ticks,
        ),
        title=dict(text=title),
        plot_bgcolor=IMAGE_BACKGROUND,
        margin=MARGIN_TIGHT,
        height=int(
            110
            + min(
                n_rows * tile_px * max(1.0, H / W),
                _PLOT_WIDTH_PX * n_rows * (H + 1) / (n_cols * (W + 1)),
            )
        ),
    )


def _missing_overlay(m: np.ndarray) -> dict:
    """A tint over the pixels where ``m`` is 1, transparent where it is 0 (uint8)."""
    z = (np.asarray(m) > 0.5).astype(np.uint8)
    return dict(
        type="heatmap",
        z=z,
        colorscale=[[0, "rgba(0,0,0,0)"], [1, MISSING_COLOUR]],
        zmin=0,
        zmax=1,
        zsmooth=False,
        showscale=False,
        name="missing",
        hoverinfo="skip",
    )


def imputation_strip_figure(
    strips,
    mask: np.ndarray,
    col_labels: Sequence[str],
    *,
    marked: Sequence[bool] | None = None,
    title: str = "Imputation chains",
    tile_px: int = TILE_PX,
    axis_titles=("iteration", "chain"),
) -> go.Figure:
    """Fig. 5-style strips: one row per chain, one column per iteration, missing pixels tinted.

    Redrawn on every step, so sent compact (``image_trace(..., compact=True)``: uint8 levels).

    Parameters
    ----------
    strips : mapping of str to ndarray, each (C, H, W)
        Row label (e.g. the method) -> C images in [0, 1]. All rows have the same C.
    mask : ndarray of bool, (H, W)
        True = missing; tinted on every column whose ``marked`` entry is true.
    col_labels : sequence of str, (C,)
        Column labels (e.g. "truth", "0", "1", ...).
    marked : sequence of bool, (C,), optional
        Columns that get the missing-pixel tint (all by default).
    title : str
    tile_px : int
        Screen height of one row of tiles, in pixels.
    axis_titles : (str, str)
        Titles of the x axis (columns) and the y axis (rows).

    Returns
    -------
    go.Figure with a heatmap of the images and one of the tint.
    """
    if not strips:
        raise ValueError("strips is empty: give at least one row of images")
    rows = [np.asarray(v, dtype=np.float32) for v in strips.values()]
    C, H, W = rows[0].shape
    if any(r.shape != (C, H, W) for r in rows) or len(col_labels) != C:
        raise ValueError("every strip must have shape (C, H, W) with C = len(col_labels)")
    mask = np.asarray(mask, dtype=bool).reshape(H, W)
    marked = np.ones(C, bool) if marked is None else np.asarray(marked, dtype=bool)
    tiles = np.concatenate(rows)  # (R * C, H, W), row by row
    tint = np.where(marked[:, None, None], mask[None], False)  # (C, H, W)
    tint = np.tile(tint, (len(rows), 1, 1)).astype(np.float32)  # (R * C, H, W)
    return figure(
        [
            image_trace(
                tile_images(tiles, n_cols=C),
                compact=True,
                hover=f"grey level %{{z}} / {INK_LEVELS}<extra></extra>",
            ),
            _missing_overlay(tile_images(tint, n_cols=C, pad_value=0.0)),
        ],
        _tiles_layout(title, *axis_titles, (H, W), len(rows), C, col_labels, list(strips), tile_px),
    )


def masked_image_figure(
    image: np.ndarray, mask: np.ndarray, title: str = "Image and mask", tile_px: int = 180
) -> go.Figure:
    """The image, then what the chains see (missing pixels grey and tinted), side by side.
    The title gets the count of missing pixels.

    Parameters
    ----------
    image : ndarray, (H, W), values in [0, 1]
    mask : ndarray of bool, (H, W); True = missing
    """
    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool).reshape(image.shape)
    observed = np.where(mask, 0.5, image)
    title = f"{title} ({int(mask.sum())} of {mask.size} pixels missing)"
    strips = {"": np.stack([image, observed])}
    return imputation_strip_figure(
        strips,
        mask,
        ["image", "observed"],
        marked=[False, True],
        title=title,
        tile_px=tile_px,
        axis_titles=("view", "test image"),
    )


def image_gallery_figure(
    images: np.ndarray, labels: Sequence[str], *, n_cols: int = 6, title: str = "Images"
) -> go.Figure:
    """Images on a grid with a label above each (e.g. the worst-modelled digits and their NLL).

    Parameters
    ----------
    images : ndarray, (N, H, W), values in [0, 1], N >= 1
    labels : sequence of str, (N,)
    n_cols : int
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or len(images) == 0 or len(labels) != len(images):
        raise ValueError("give images of shape (N, H, W), N >= 1, and N labels")
    N, H, W = images.shape
    n_cols = max(1, min(n_cols, N))
    n_rows = -(-N // n_cols)
    g = max(1, round(H / 4))  # room above every row for its labels
    tiles = np.full((n_rows * n_cols, H + g, W), np.nan, dtype=np.float32)
    tiles[:N, g:] = images
    z = tile_images(tiles, n_cols=n_cols, row_pad=0)  # (n_rows * (H + g), ...)
    layout = _tiles_layout(
        title, "images, ranked left to right, top to bottom", "row", (H + g, W), n_rows, n_cols
    )
    layout["annotations"] = [
        dict(
            x=c * (W + 1) + (W - 1) / 2,
            y=r * (H + g) + g - 0.6,
            text=text,
            showarrow=False,
            yanchor="bottom",
            font=dict(size=10),
        )
        for (r, c), text in ((divmod(i, n_cols), text) for i, text in enumerate(labels))
    ]
    layout["height"] = int(110 + n_rows * 1.5 * TILE_PX * max(1.0, (H + g) / W))
    return figure([image_trace(z, hover="value %{z:.2f}<extra></extra>")], layout)


# ---------------------------------------------------------------------------- masks
def painted_mask(
    rgba: np.ndarray | None, shape: tuple[int, int], threshold: float = 0.3
) -> np.ndarray:
    """Turn mouse strokes on a canvas into a missing-pixel mask of the image's size.

    Parameters
    ----------
    rgba : ndarray, (h, w, 4), uint8 or float, or None
        The canvas's RGBA pixels (only the strokes: the background image is not part of it).
        ``None`` (nothing drawn yet) gives an empty mask.
    shape : (H, W)
        The image's shape; the canvas is averaged down to it (box filter).
    threshold : float
        A pixel is missing when at least this fraction of its canvas area is painted.

    Returns
    -------
    ndarray of bool, (H, W); True = missing.
    """
    H, W = (int(s) for s in shape)
    if rgba is None:
        return np.zeros((H, W), bool)
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"canvas data has shape {rgba.shape}; expected (h, w, 4)")
    painted = (rgba[..., 3] > 0).astype(float)  # (h, w), 1 where a stroke covers it
    h, w = painted.shape
    rows = np.minimum((np.arange(h) * H) // h, H - 1)  # canvas row -> image row
    cols = np.minimum((np.arange(w) * W) // w, W - 1)
    total = np.zeros((H, W))
    count = np.zeros((H, W))
    np.add.at(total, (rows[:, None], cols[None, :]), painted)
    np.add.at(count, (rows[:, None], cols[None, :]), 1.0)
    return total / np.maximum(count, 1.0) >= threshold
