"""Latent-space figures: the 2-D embedding (Fig. 3b), the true posterior against q on a grid
(Fig. 2), and vectors over latent indices (eps, mu and xi = mu + R eps)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from app.figures.style import GREY, MARGIN, MODEBAR, PALETTE, RED, axis, figure

XI_TITLES = ("ξ₁", "ξ₂")
_Q_COLOURS = (PALETTE[3], PALETTE[1], PALETTE[2], PALETTE[4])  # red, orange, green, purple
_ELLIPSE_DASHES = ("dash", "dot", "dashdot")


def embedding_figure(
    points,
    labels=None,
    *,
    title: str,
    x_title=XI_TITLES[0],
    y_title=XI_TITLES[1],
    plane=None,
    marked=None,
    marker_size=5,
    class_names: Mapping | None = None,
    legend_title: str = "class",
    height=None,
) -> go.Figure:
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
    legend_title : str
        What a label is (``app.labels.label_kind``: "class", or "photo" for patches).
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
    groups = (
        [(None, idx)]
        if labels is None
        else [(c, idx[np.asarray(labels) == c]) for c in np.unique(np.asarray(labels))]
    )
    data = []
    for k, (c, rows) in enumerate(groups):
        name = "images" if c is None else (class_names or {}).get(c, f"class {c}")
        data.append(
            dict(
                type="scattergl",
                x=pts[rows, 0],
                y=pts[rows, 1],
                mode="markers",
                name=name,
                customdata=rows,
                marker=dict(size=marker_size, color=PALETTE[k % len(PALETTE)], opacity=0.75),
                hovertemplate=f"{name}<br>image #%{{customdata}}<br>({x_title}, {y_title}) = "
                "(%{x:.2f}, %{y:.2f})<extra></extra>",
            )
        )
    if marked is not None:
        data.append(
            _one_point(
                marked,
                "decoded position",
                dict(symbol="x-thin", size=16, color="black", line=dict(width=3)),
                "decoded at",
            )
        )
    xaxis = axis(x_title, zeroline=False, constrain="domain")
    yaxis = axis(y_title, zeroline=False, scaleanchor="x", scaleratio=1, constrain="domain")
    if plane is not None:
        grid = np.asarray(plane, dtype=np.float32).reshape(-1, 2)
        data.append(
            dict(
                type="scattergl",
                x=grid[:, 0],
                y=grid[:, 1],
                mode="markers",
                name="plane",
                showlegend=False,
                marker=dict(size=4, color="rgba(0,0,0,0)", opacity=0),
                hovertemplate="decode (%{x:.2f}, %{y:.2f})<extra></extra>",
            )
        )
        # show exactly the lattice, so that every click lands near a node
        lo, hi = grid.min(0).astype(np.float64), grid.max(0).astype(np.float64)
        pad = 0.02 * (hi - lo)
        xaxis["range"] = [lo[0] - pad[0], hi[0] + pad[0]]
        yaxis["range"] = [lo[1] - pad[1], hi[1] + pad[1]]
    # No dragmode here: Streamlit's default (pan) keeps a click a point selection; box and lasso
    # are in the mode bar. Legend below the plot, clear of the mode bar.
    layout = dict(
        title=dict(text=title),
        modebar=MODEBAR,
        margin=MARGIN,
        hovermode="closest",
        legend=dict(title=dict(text=legend_title), orientation="h", yanchor="top", y=-0.12, x=0),
        xaxis=xaxis,
        yaxis=yaxis,
    )
    if height:
        layout["height"] = height
    return figure(data, layout)


def _one_point(point, name: str, marker: dict, hover: str) -> dict:
    """A Plotly trace of one marked 2-D point (the decoded position, the MAP), hover
    ``"{hover} (x, y)"``."""
    m = np.asarray(point, dtype=np.float64).reshape(2)
    return dict(
        type="scatter",
        x=[m[0]],
        y=[m[1]],
        mode="markers",
        name=name,
        marker=marker,
        hovertemplate=hover + " (%{x:.2f}, %{y:.2f})<extra></extra>",
    )


def _distance_levels(log_density) -> np.ndarray:
    """sqrt(-2 (log q - max log q)): the Mahalanobis distance when q is Gaussian, so contour
    levels 1, 2, 3 are q's 1-, 2- and 3-sigma ellipses."""
    a = np.asarray(log_density, dtype=np.float64)
    return np.sqrt(np.maximum(-2.0 * (a - np.nanmax(a)), 0.0))


def ellipse_points(mean, cov, radii=(1, 2, 3), n: int = 73) -> np.ndarray:
    """The 1-, 2- and 3-sigma ellipses of N(mean, cov) in 2-D as one polyline.

    Parameters
    ----------
    mean : array, (2,)
    cov : array, (2, 2)
        Symmetric positive definite.
    radii : sequence of float
        Mahalanobis radii of the ellipses.
    n : int
        Points per ellipse (the first is repeated at the end, closing it).

    Returns
    -------
    array, (len(radii) * (n + 1), 2): each ellipse's n points followed by a row of NaN (a break
    in a Plotly line).
    """
    m = np.asarray(mean, dtype=np.float64).reshape(2)
    c = np.asarray(cov, dtype=np.float64).reshape(2, 2)
    chol = np.linalg.cholesky(c)  # raises LinAlgError unless positive definite
    t = np.linspace(0.0, 2.0 * np.pi, n)
    circle = np.stack([np.cos(t), np.sin(t)], axis=1)  # (n, 2), closed: t[0] and t[-1] agree
    gap = np.full((1, 2), np.nan)
    return np.concatenate([np.concatenate([m + r * circle @ chol.T, gap]) for r in radii])


def posterior_figure(
    xs,
    ys,
    log_post,
    *,
    title: str,
    log_q: Mapping | None = None,
    ellipses: Mapping | None = None,
    prior_samples=None,
    q_samples=None,
    map_point=None,
    x_title=XI_TITLES[0],
    y_title=XI_TITLES[1],
    view=None,
    height=None,
) -> go.Figure:
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
    ellipses : mapping name -> (mean (2,), cov (2, 2)), optional
        Further Gaussians (e.g. the best Gaussian q* for this image), drawn exactly (not on the
        grid) as dashed 1-, 2- and 3-sigma ellipses, in the colours after ``log_q``'s.
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
    ``log_q`` entry, one line ``Scatter`` per ``ellipses`` entry, then ``Scatter`` traces for
    the prior samples, q samples and the MAP.
    """
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    lp = np.asarray(log_post, dtype=np.float64)
    if lp.shape != (len(ys), len(xs)):
        raise ValueError(f"log_post has shape {lp.shape}; expected ({len(ys)}, {len(xs)})")
    data = [
        dict(
            type="contour",
            x=xs,
            y=ys,
            z=np.exp(lp).astype(np.float32),
            name="p(ξ | v)",
            colorscale="Blues",
            ncontours=14,
            contours=dict(coloring="fill", showlines=False),
            line=dict(width=0),
            colorbar=dict(title=dict(text="p(ξ | v)", side="right"), thickness=12),
            hovertemplate=(
                "(%{x:.2f}, %{y:.2f})<br>p(ξ | v) = %{z:.3g}<extra>true posterior</extra>"
            ),
        )
    ]
    for k, (name, lq) in enumerate((log_q or {}).items()):
        colour = _Q_COLOURS[k % len(_Q_COLOURS)]
        data.append(
            dict(
                type="contour",
                x=xs,
                y=ys,
                z=_distance_levels(lq).astype(np.float32),
                name=name,
                showscale=False,
                showlegend=True,
                contours=dict(coloring="none", start=1, end=3, size=1, showlabels=False),
                line=dict(color=colour, width=2, dash="solid" if k == 0 else "dash"),
                hovertemplate=f"{name}: %{{z:.1f}} σ<extra></extra>",
            )
        )
    n_q = len(log_q or {})
    for k, (name, (mean, cov)) in enumerate((ellipses or {}).items()):
        pts = ellipse_points(mean, cov)
        data.append(
            dict(
                type="scatter",
                x=pts[:, 0],
                y=pts[:, 1],
                mode="lines",
                name=name,
                line=dict(
                    color=_Q_COLOURS[(n_q + k) % len(_Q_COLOURS)],
                    width=2,
                    dash=_ELLIPSE_DASHES[k % len(_ELLIPSE_DASHES)],
                ),
                hovertemplate=f"{name}: 1, 2, 3 σ<extra></extra>",
            )
        )
    for pts, name, style in (
        (prior_samples, "prior samples", dict(color=GREY, size=4)),
        (q_samples, "q samples", dict(color=RED, size=4)),
    ):
        if pts is not None:
            p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
            data.append(
                dict(
                    type="scatter",
                    x=p[:, 0],
                    y=p[:, 1],
                    mode="markers",
                    name=name,
                    marker=dict(opacity=0.6, **style),
                    hovertemplate=name + " (%{x:.2f}, %{y:.2f})<extra></extra>",
                )
            )
    if map_point is not None:
        data.append(
            _one_point(
                map_point,
                "MAP",
                dict(symbol="star", size=16, color="gold", line=dict(color="black", width=1)),
                "MAP",
            )
        )
    x0, x1, y0, y1 = view if view is not None else (xs[0], xs[-1], ys[0], ys[-1])
    layout = dict(
        title=dict(text=title),
        modebar=MODEBAR,
        margin=dict(MARGIN, b=20),
        legend=dict(orientation="h", yanchor="top", y=-0.16, x=0),
        xaxis=axis(x_title, range=[x0, x1], zeroline=False, constrain="domain"),
        yaxis=axis(
            y_title,
            range=[y0, y1],
            zeroline=False,
            scaleanchor="x",
            scaleratio=1,
            constrain="domain",
        ),
    )
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


def latent_bars_figure(
    values: Mapping[str, Sequence], *, title: str, x_title="latent k", y_title="value", height=None
) -> go.Figure:
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
        data.append(
            dict(
                type="bar",
                x=np.arange(1, k + 1),
                y=v,
                name=name,
                hovertemplate=f"{name}[%{{x}}] = %{{y:.3f}}<extra></extra>",
            )
        )
    layout = dict(
        title=dict(text=title),
        barmode="group",
        modebar=MODEBAR,
        margin=MARGIN,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
        xaxis=axis(x_title, dtick=1 if (k or 0) <= 20 else None),
        yaxis=axis(y_title),
    )
    if height:
        layout["height"] = height
    return figure(data, layout)
