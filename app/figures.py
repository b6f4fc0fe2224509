"""Pure figure builders for the DLGM Lab pages: numpy arrays in, Plotly figures out.

Nothing here imports streamlit or torch, so every builder can be unit-tested on plain arrays
(``tests/test_figures.py``). Conventions shared by all builders:

- every figure has a title and titled axes;
- images are ``go.Heatmap`` traces drawn crisp (``zsmooth=False``), ink dark (grey level 1 is
  black, 0 white: :data:`INK`), square pixels (``scaleanchor``), row 0 at the top;
- grids of images are tiled into one heatmap by :func:`tile_images`, with NaN gaps between
  tiles (drawn transparent);
- latent-space figures use the paper's xi-space names: ``"ξ₁"``, ``"ξ₂"``.

Pages pass the figures to ``st.plotly_chart`` (see ``app.widgets.show_figure``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

INK = [[0.0, "rgb(255,255,255)"], [1.0, "rgb(0,0,0)"]]  # greys reversed: grey level 1 is ink
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf")
XI_TITLES = ("ξ₁", "ξ₂")
_MARGIN = dict(l=50, r=30, t=50, b=45)
_MODEBAR = dict(orientation="v")  # beside the plot, never over a long title


def figure(data: Sequence[Mapping], layout: Mapping) -> go.Figure:
    """One validated ``go.Figure`` from trace dicts (each with its ``type``) and a layout dict.

    Every builder here makes its figure in this one call: building it up with
    ``update_layout`` / ``update_xaxes`` / ``add_trace`` parses property paths on every call
    and was 5-10x slower (10-35 ms a figure), which a shared server pays on every rerun of
    every session."""
    return go.Figure(data=list(data), layout=dict(layout))


class FrozenFigure(go.Figure):
    """A figure whose serialised form is computed once: made by :func:`freeze`.

    ``st.plotly_chart`` turns a figure into JSON through ``to_dict()`` (a deep copy of every
    trace and of the layout, then base64 for every array) on every rerun: 5-15 ms for a page's
    figures, paid again by every session. A frozen figure does that once and ``to_dict()`` then
    hands out the stored result (the same JSON), so a figure kept in ``st.cache_resource`` costs
    almost nothing to show again. Do not modify it: the stored form would not follow."""

    def to_dict(self) -> dict:
        spec = self.__dict__.get("_frozen")
        if spec is None:
            spec = self._frozen = super().to_dict()
        # New dicts for the figure and each trace (``plotly.io.to_json`` pops each trace's
        # ``uid``); the values, arrays already base64-encoded, are shared and never modified.
        out = {"data": [dict(trace) for trace in spec["data"]], "layout": spec["layout"]}
        if "frames" in spec:
            out["frames"] = spec["frames"]
        return out


def freeze(fig: go.Figure) -> FrozenFigure:
    """``fig`` itself, made a :class:`FrozenFigure` (serialised now; no copy): for figures that
    are cached and shown many times. ``fig`` must not be modified afterwards."""
    if not isinstance(fig, FrozenFigure):
        fig.__class__ = FrozenFigure
    fig.to_dict()
    return fig


def _axis(title: str, **kwargs) -> dict:
    return dict(title=dict(text=title), **kwargs)


def _as_images(images, shape=None) -> np.ndarray:
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


def tile_images(images, shape=None, *, n_cols=None, pad=1, pad_value=np.nan) -> np.ndarray:
    """Tile images row by row into one array, ``pad`` pixels of ``pad_value`` between tiles.

    Parameters
    ----------
    images : array, (N, D) or (N, H, W)
        Grey levels (any range); (N, D) needs ``shape`` unless D is a perfect square.
    shape : tuple (H, W), optional
    n_cols : int, optional
        Tiles per row; default ceil(sqrt(N)).
    pad : int
        Gap between tiles, in pixels (none around the border).
    pad_value : float
        Value of the gaps; NaN is drawn transparent by Plotly.

    Returns
    -------
    ndarray, float32, (rows * (H + pad) - pad, n_cols * (W + pad) - pad)
        Unused tiles of the last row are filled with ``pad_value``.
    """
    a = _as_images(images, shape)  # (N, H, W)
    n, h, w = a.shape
    n_cols = max(1, min(n_cols or math.ceil(math.sqrt(max(n, 1))), max(n, 1)))
    n_rows = max(1, math.ceil(n / n_cols))
    out = np.full((n_rows * (h + pad) - pad, n_cols * (w + pad) - pad), pad_value,
                  dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, n_cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = a[k]
    return out


def _image_axes(x_title, y_title, numeric: bool, show_ticks: bool) -> dict:
    """Layout entries ``xaxis`` and ``yaxis`` of an image: square pixels, row 0 on top."""
    return dict(
        xaxis=_axis(x_title, showgrid=False, zeroline=False, showticklabels=show_ticks,
                    constrain="domain"),
        yaxis=_axis(y_title, showgrid=False, zeroline=False, showticklabels=show_ticks,
                    scaleanchor="x", scaleratio=1, constrain="domain",
                    autorange=True if numeric else "reversed"))


def image_figure(image, *, title: str, x_title="pixel column", y_title="pixel row", zmin=0.0,
                 zmax=1.0, x_range=None, y_range=None, x=None, y=None, height=None,
                 colorbar=False, hover_label="grey level") -> go.Figure:
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
    layout = dict(title=dict(text=title), modebar=_MODEBAR, margin=_MARGIN,
                  plot_bgcolor="rgb(214,226,240)",  # the gaps between tiles
                  **_image_axes(x_title, y_title, numeric, show_ticks=numeric))
    if height:
        layout["height"] = height
    return figure([dict(type="heatmap", z=z, zmin=zmin, zmax=zmax, colorscale=INK,
                        zsmooth=False, showscale=colorbar, hovertemplate=hover, **kwargs)],
                  layout)


def _centres(extent, n: int) -> np.ndarray:
    lo, hi = float(extent[0]), float(extent[1])
    step = (hi - lo) / n
    return lo + step * (np.arange(n) + 0.5)


def image_grid_figure(images, *, title: str, shape=None, n_cols=None, pad=1, height=None,
                      x_title="images, left to right", y_title="images, top to bottom"
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


def manifold_figure(images, coords, *, title: str, shape=None, x_title=XI_TITLES[0],
                    y_title=XI_TITLES[1], pad=1, height=None) -> go.Figure:
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
    a = _as_images(images, shape)  # (n*n, H, W)
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
    return image_figure(tiled, title=title, x_title=x_title, y_title=y_title, x=x, y=y,
                        height=height, hover_label="pixel mean")


def embedding_figure(points, labels=None, *, title: str, x_title=XI_TITLES[0],
                     y_title=XI_TITLES[1], plane=None, marked=None, marker_size=5,
                     class_names: Mapping | None = None, height=None) -> go.Figure:
    """A 2-D embedding as a WebGL scatter coloured by class (the paper's Fig. 3b).

    Parameters
    ----------
    points : array, (N, 2)
        Positions (posterior means, or their top two principal components).
    labels : array of int, (N,), optional
        Classes: one trace per class (legend entries toggle them). None: one trace.
    title, x_title, y_title : str
    plane : array, (M, 2), optional
        Positions of an invisible, clickable lattice drawn over the data (last trace, named
        ``"plane"``, no ``customdata``): a click on empty space selects its nearest node. The
        axes then show exactly the lattice's bounding box.
    marked : array, (2,), optional
        A position to mark with a cross (e.g. the decoded one).
    marker_size : float
    class_names : mapping, optional
        Label -> legend name (default ``"class <label>"``).
    height : int, optional
        Figure height in pixels.

    Returns
    -------
    go.Figure of ``Scattergl`` traces. Each data trace carries ``customdata`` = the row
    indices of its points in ``points``, so a selection maps back to the data.
    """
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points have shape {pts.shape}; expected (N, 2)")
    idx = np.arange(len(pts))
    groups = [(None, idx)] if labels is None else [
        (c, idx[np.asarray(labels) == c]) for c in np.unique(np.asarray(labels))]
    data = []
    for k, (c, rows) in enumerate(groups):
        name = "images" if c is None else (class_names or {}).get(c, f"class {c}")
        data.append(dict(
            type="scattergl", x=pts[rows, 0], y=pts[rows, 1], mode="markers", name=name,
            customdata=rows,
            marker=dict(size=marker_size, color=CLASS_COLOURS[k % len(CLASS_COLOURS)],
                        opacity=0.75),
            hovertemplate=f"{name}<br>image #%{{customdata}}<br>({x_title}, {y_title}) = "
                          "(%{x:.2f}, %{y:.2f})<extra></extra>"))
    if marked is not None:
        m = np.asarray(marked, dtype=np.float64).reshape(2)
        data.append(dict(type="scatter", x=[m[0]], y=[m[1]], mode="markers",
                         name="decoded position",
                         marker=dict(symbol="x-thin", size=16, color="black",
                                     line=dict(width=3)),
                         hovertemplate="decoded at (%{x:.2f}, %{y:.2f})<extra></extra>"))
    xaxis = _axis(x_title, zeroline=False, constrain="domain")
    yaxis = _axis(y_title, zeroline=False, scaleanchor="x", scaleratio=1, constrain="domain")
    if plane is not None:
        grid = np.asarray(plane, dtype=np.float32).reshape(-1, 2)
        data.append(dict(
            type="scattergl", x=grid[:, 0], y=grid[:, 1], mode="markers", name="plane",
            showlegend=False, marker=dict(size=4, color="rgba(0,0,0,0)", opacity=0),
            hovertemplate="decode (%{x:.2f}, %{y:.2f})<extra></extra>"))
        # show exactly the lattice, so that every click lands near a node
        lo, hi = grid.min(0).astype(np.float64), grid.max(0).astype(np.float64)
        pad = 0.02 * (hi - lo)
        xaxis["range"] = [lo[0] - pad[0], hi[0] + pad[0]]
        yaxis["range"] = [lo[1] - pad[1], hi[1] + pad[1]]
    # No dragmode here: Streamlit's default (pan) keeps a click a point selection; box and lasso
    # are in the mode bar. Legend below the plot, clear of the mode bar.
    layout = dict(title=dict(text=title), modebar=_MODEBAR, margin=_MARGIN, hovermode="closest",
                  legend=dict(title=dict(text="class"), orientation="h", yanchor="top", y=-0.12,
                              x=0),
                  xaxis=xaxis, yaxis=yaxis)
    if height:
        layout["height"] = height
    return figure(data, layout)


def _distance_levels(log_density) -> np.ndarray:
    """sqrt(-2 (log q - max log q)): the Mahalanobis distance when q is Gaussian, so contour
    levels 1, 2, 3 are q's 1-, 2- and 3-sigma ellipses."""
    a = np.asarray(log_density, dtype=np.float64)
    return np.sqrt(np.maximum(-2.0 * (a - np.nanmax(a)), 0.0))


def posterior_figure(xs, ys, log_post, *, title: str, log_q: Mapping | None = None,
                     prior_samples=None, q_samples=None, map_point=None, x_title=XI_TITLES[0],
                     y_title=XI_TITLES[1], view=None, height=None) -> go.Figure:
    """The true posterior on a grid, with recognition-model contours and samples (Fig. 2).

    Parameters
    ----------
    xs, ys : array, (G,)
        Grid coordinates; ``log_post[i, j]`` is at ``(xs[j], ys[i])``.
    log_post : array, (G, G)
        log p(xi | v), nats (normalised on the grid). Drawn as filled contours of the density.
    title : str
    log_q : mapping name -> array (G, G), optional
        Recognition densities log q(xi | v) on the same grid; each is drawn as line contours at
        its 1-, 2- and 3-sigma ellipses (exact for a Gaussian q), one colour per entry.
    prior_samples, q_samples : array, (S, 2), optional
        Samples from the prior N(0, I) and from q, drawn as dots.
    map_point : array, (2,), optional
        The posterior mode, drawn as a star.
    x_title, y_title : str
    view : (x0, x1, y0, y1), optional
        Axis ranges (e.g. zoomed on the posterior); default the whole grid.
    height : int, optional

    Returns
    -------
    go.Figure: a ``Contour`` (filled, the true posterior) first, then one line ``Contour`` per
    ``log_q`` entry, then ``Scatter`` traces for the prior samples, q samples and the MAP.
    """
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    lp = np.asarray(log_post, dtype=np.float64)
    if lp.shape != (len(ys), len(xs)):
        raise ValueError(f"log_post has shape {lp.shape}; expected ({len(ys)}, {len(xs)})")
    data = [dict(
        type="contour", x=xs, y=ys, z=np.exp(lp).astype(np.float32), name="p(ξ | v)",
        colorscale="Blues", ncontours=14,
        contours=dict(coloring="fill", showlines=False), line=dict(width=0),
        colorbar=dict(title=dict(text="p(ξ | v)", side="right"), thickness=12),
        hovertemplate="(%{x:.2f}, %{y:.2f})<br>p(ξ | v) = %{z:.3g}<extra>true posterior</extra>")]
    q_colours = ("#d62728", "#ff7f0e", "#2ca02c", "#9467bd")
    for k, (name, lq) in enumerate((log_q or {}).items()):
        colour = q_colours[k % len(q_colours)]
        data.append(dict(
            type="contour", x=xs, y=ys, z=_distance_levels(lq).astype(np.float32), name=name,
            showscale=False, showlegend=True,
            contours=dict(coloring="none", start=1, end=3, size=1, showlabels=False),
            line=dict(color=colour, width=2, dash="solid" if k == 0 else "dash"),
            hovertemplate=f"{name}: %{{z:.1f}} σ<extra></extra>"))
    for pts, name, style in ((prior_samples, "prior samples", dict(color="#7f7f7f", size=4)),
                             (q_samples, "q samples", dict(color="#d62728", size=4))):
        if pts is not None:
            p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
            data.append(dict(type="scatter", x=p[:, 0], y=p[:, 1], mode="markers", name=name,
                             marker=dict(opacity=0.6, **style),
                             hovertemplate=name + " (%{x:.2f}, %{y:.2f})<extra></extra>"))
    if map_point is not None:
        m = np.asarray(map_point, dtype=np.float64).reshape(2)
        data.append(dict(type="scatter", x=[m[0]], y=[m[1]], mode="markers", name="MAP",
                         marker=dict(symbol="star", size=16, color="gold",
                                     line=dict(color="black", width=1)),
                         hovertemplate="MAP (%{x:.2f}, %{y:.2f})<extra></extra>"))
    x0, x1, y0, y1 = view if view is not None else (xs[0], xs[-1], ys[0], ys[-1])
    layout = dict(title=dict(text=title), modebar=_MODEBAR, margin=dict(_MARGIN, b=20),
                  legend=dict(orientation="h", yanchor="top", y=-0.16, x=0),
                  xaxis=_axis(x_title, range=[x0, x1], zeroline=False, constrain="domain"),
                  yaxis=_axis(y_title, range=[y0, y1], zeroline=False, scaleanchor="x",
                              scaleratio=1, constrain="domain"))
    if height:
        layout["height"] = height
    return figure(data, layout)


def zoom_box(points, *, margin=0.15, min_half_width=0.5) -> tuple[float, float, float, float]:
    """A square view (x0, x1, y0, y1) around points (N, 2): their bounding box grown by
    ``margin`` of its size on each side, at least ``2 * min_half_width`` wide."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    lo, hi = p.min(0), p.max(0)
    centre = (lo + hi) / 2
    half = max(float((hi - lo).max()) * (0.5 + margin), min_half_width)
    return centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half


def curves_figure(x, series: Mapping[str, Sequence], *, title: str, x_title="epoch",
                  y_title="nats per example", height=None) -> go.Figure:
    """Line chart of one or more series against a shared x (e.g. a training curve).

    Parameters
    ----------
    x : array, (T,)
    series : mapping name -> array (T,)
        Missing values (None or NaN) leave gaps.
    title, x_title, y_title : str
    height : int, optional

    Returns
    -------
    go.Figure with one ``Scatter`` (lines and markers) per series, in the mapping's order.
    """
    xv = np.asarray(x, dtype=np.float64)
    data = []
    for name, values in series.items():
        y = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        if y.shape != xv.shape:
            raise ValueError(f"series {name!r} has {y.shape} values for x of {xv.shape}")
        data.append(dict(type="scatter", x=xv, y=y, mode="lines+markers", name=name,
                         marker=dict(size=4), connectgaps=True))
    layout = dict(title=dict(text=title), modebar=_MODEBAR, margin=_MARGIN,
                  hovermode="x unified",
                  legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
                  xaxis=_axis(x_title), yaxis=_axis(y_title))
    if height:
        layout["height"] = height
    return figure(data, layout)


def latent_bars_figure(values: Mapping[str, Sequence], *, title: str, x_title="latent k",
                       y_title="value", height=None) -> go.Figure:
    """Grouped bars comparing vectors over latent indices (e.g. eps, mu and xi = mu + R eps).

    Parameters
    ----------
    values : mapping name -> array (K,)
        All of the same length K.
    title, x_title, y_title : str
    height : int, optional

    Returns
    -------
    go.Figure with one ``Bar`` trace per entry, x = 1..K.
    """
    data = []
    k = None
    for name, v in values.items():
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        if k is not None and len(v) != k:
            raise ValueError(f"{name!r} has {len(v)} values; expected {k}")
        k = len(v)
        data.append(dict(type="bar", x=np.arange(1, k + 1), y=v, name=name,
                         hovertemplate=f"{name}[%{{x}}] = %{{y:.3f}}<extra></extra>"))
    layout = dict(title=dict(text=title), barmode="group", modebar=_MODEBAR, margin=_MARGIN,
                  legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
                  xaxis=_axis(x_title, dtick=1 if (k or 0) <= 20 else None),
                  yaxis=_axis(y_title))
    if height:
        layout["height"] = height
    return figure(data, layout)
