"""Pure figure builders for the Imputation, Gradient estimators and Likelihoods pages.

Arrays in, Plotly figures out: no Streamlit, no model. Every figure has a title and labelled
axes; images are drawn as ``go.Heatmap`` (``zsmooth=False``, reversed greys, equal aspect) so
that pixels stay crisp. Several images share one heatmap: :func:`mosaic` lays them out on a
grid with one-pixel gaps (NaN, drawn as the background).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from app.figures import figure

MISSING_COLOUR = "rgba(255, 110, 0, 0.32)"  # tint over missing pixels
_GAP = 1  # pixels between tiles
_TILE_PX = 64  # screen pixels per tile row (sets the figure height)
_PLOT_WIDTH_PX = 800  # about the plotting width of a wide page (caps the height of long strips)
_COLOURS = {"pseudo-gibbs": "#1f77b4", "mwg": "#d62728", "importance": "#2ca02c",
            "score": "#d62728", "reparam": "#1f77b4", "price": "#2ca02c"}
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c")
ESTIMATOR_NAMES = {"score": "score function (REINFORCE)",
                   "reparam": "Gaussian backpropagation (reparameterisation)",
                   "price": "Bonnet / Price theorems"}


# ---------------------------------------------------------------------------- images
def mosaic(tiles: np.ndarray, gap: int = _GAP, fill: float = np.nan,
           row_gap: int | None = None) -> np.ndarray:
    """Lay out images on a grid.

    Parameters
    ----------
    tiles : ndarray, (R, C, H, W)
        R rows of C images each.
    gap : int
        Pixels between neighbouring columns (filled with ``fill``).
    row_gap : int, optional
        Pixels between neighbouring rows; ``gap`` by default.

    Returns
    -------
    ndarray, (R * (H + row_gap) - row_gap, C * (W + gap) - gap), float32
        (what a figure sends: half the bytes of float64, and grey levels need no more)
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    if tiles.ndim != 4:
        raise ValueError(f"tiles has shape {tiles.shape}; expected (rows, cols, H, W)")
    R, C, H, W = tiles.shape
    g = gap if row_gap is None else row_gap
    out = np.full((R * (H + g) - g, C * (W + gap) - gap), fill, dtype=np.float32)
    for r in range(R):
        for c in range(C):
            out[r * (H + g):r * (H + g) + H, c * (W + gap):c * (W + gap) + W] = tiles[r, c]
    return out


def _image_layout(title: str, x_title: str, y_title: str, shape, n_rows: int, n_cols: int,
                  col_labels=None, row_labels=None, tile_px: int = _TILE_PX) -> dict:
    """Equal aspect, y down, ticks at tile centres, white gaps; height from the row count."""
    H, W = shape
    x_ticks, y_ticks = dict(showticklabels=False), dict(showticklabels=False)
    if col_labels is not None:
        x_ticks = dict(tickvals=[c * (W + _GAP) + (W - 1) / 2 for c in range(n_cols)],
                       ticktext=list(col_labels))
    if row_labels is not None:
        y_ticks = dict(tickvals=[r * (H + _GAP) + (H - 1) / 2 for r in range(n_rows)],
                       ticktext=list(row_labels))
    return dict(
        xaxis=dict(title=dict(text=x_title), showgrid=False, zeroline=False, constrain="domain",
                   ticks="", **x_ticks),
        yaxis=dict(title=dict(text=y_title), showgrid=False, zeroline=False,
                   autorange="reversed", scaleanchor="x", scaleratio=1, constrain="domain",
                   ticks="", **y_ticks),
        title=dict(text=title), plot_bgcolor="white", margin=dict(l=10, r=10, t=50, b=10),
        height=int(110 + min(n_rows * tile_px * max(1.0, H / W),
                             _PLOT_WIDTH_PX * n_rows * (H + 1) / (n_cols * (W + 1)))))


def _heatmap(z: np.ndarray, name: str = "pixels") -> dict:
    return dict(type="heatmap", z=z, colorscale="Greys", reversescale=True, zmin=0.0, zmax=1.0,
                zsmooth=False, showscale=False, name=name, hoverongaps=False,
                hovertemplate="value %{z:.2f}<extra></extra>")


def _missing_overlay(m: np.ndarray) -> dict:
    """A tint over the pixels where ``m`` is 1 (NaN elsewhere: transparent)."""
    z = np.where(m > 0.5, np.float32(1.0), np.float32(np.nan))
    return dict(type="heatmap", z=z, colorscale=[[0, MISSING_COLOUR], [1, MISSING_COLOUR]],
                zmin=0, zmax=1, zsmooth=False, showscale=False, name="missing",
                hoverinfo="skip", hoverongaps=False)


def imputation_strip_figure(strips: Mapping[str, np.ndarray], mask: np.ndarray,
                            col_labels: Sequence[str], *, marked: Sequence[bool] | None = None,
                            title: str = "Imputation chains", tile_px: int = _TILE_PX,
                            _axis_titles=("iteration", "chain")) -> go.Figure:
    """Fig. 5-style strips: one row per chain, one column per iteration, missing pixels tinted.

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

    Returns
    -------
    go.Figure with a heatmap of the images and one of the tint.
    """
    if not strips:
        raise ValueError("strips is empty: give at least one row of images")
    rows = [np.asarray(v, dtype=float) for v in strips.values()]
    C, H, W = rows[0].shape
    if any(r.shape != (C, H, W) for r in rows) or len(col_labels) != C:
        raise ValueError("every strip must have shape (C, H, W) with C = len(col_labels)")
    mask = np.asarray(mask, dtype=bool).reshape(H, W)
    marked = np.ones(C, bool) if marked is None else np.asarray(marked, dtype=bool)
    tiles = np.stack(rows)  # (R, C, H, W)
    tint = np.where(marked[None, :, None, None], mask[None, None], False)  # (1, C, H, W)
    tint = np.broadcast_to(tint, tiles.shape)
    return figure([_heatmap(mosaic(tiles)), _missing_overlay(mosaic(tint, fill=0.0))],
                  _image_layout(title, *_axis_titles, (H, W), len(rows), C, col_labels,
                                list(strips), tile_px))


def masked_image_figure(image: np.ndarray, mask: np.ndarray, title: str = "Image and mask",
                        tile_px: int = 180) -> go.Figure:
    """The image, then what the chains see (missing pixels grey and tinted), side by side.
    The title gets the count of missing pixels.

    Parameters
    ----------
    image : ndarray, (H, W), values in [0, 1]
    mask : ndarray of bool, (H, W); True = missing
    """
    image = np.asarray(image, dtype=float)
    mask = np.asarray(mask, dtype=bool).reshape(image.shape)
    observed = np.where(mask, 0.5, image)
    title = f"{title} ({int(mask.sum())} of {mask.size} pixels missing)"
    strips = {"": np.stack([image, observed])}
    return imputation_strip_figure(strips, mask, ["image", "observed"], marked=[False, True],
                                   title=title, tile_px=tile_px,
                                   _axis_titles=("view", "test image"))


def image_gallery_figure(images: np.ndarray, labels: Sequence[str], *, n_cols: int = 6,
                         title: str = "Images") -> go.Figure:
    """Images on a grid with a label above each (e.g. the worst-modelled digits and their NLL).

    Parameters
    ----------
    images : ndarray, (N, H, W), values in [0, 1], N >= 1
    labels : sequence of str, (N,)
    n_cols : int
    """
    images = np.asarray(images, dtype=float)
    if images.ndim != 3 or len(images) == 0 or len(labels) != len(images):
        raise ValueError("give images of shape (N, H, W), N >= 1, and N labels")
    N, H, W = images.shape
    n_cols = max(1, min(n_cols, N))
    n_rows = -(-N // n_cols)
    g = max(1, round(H / 4))  # room above every row for its labels
    tiles = np.full((n_rows * n_cols, H + g, W), np.nan)
    tiles[:N, g:] = images
    z = mosaic(tiles.reshape(n_rows, n_cols, H + g, W), row_gap=0)  # (n_rows * (H + g), ...)
    layout = _image_layout(title, "images, ranked left to right, top to bottom", "row",
                           (H + g, W), n_rows, n_cols)
    layout["annotations"] = [
        dict(x=c * (W + _GAP) + (W - 1) / 2, y=r * (H + g) + g - 0.6, text=text,
             showarrow=False, yanchor="bottom", font=dict(size=10))
        for (r, c), text in ((divmod(i, n_cols), text) for i, text in enumerate(labels))]
    layout["height"] = int(110 + n_rows * 1.5 * _TILE_PX * max(1.0, (H + g) / W))
    return figure([_heatmap(z)], layout)


# ---------------------------------------------------------------------------- imputation
def error_curves_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                        metric: str = "cross-entropy (nats per missing pixel)",
                        title: str = "Error on the missing pixels") -> go.Figure:
    """One line per chain: an error on the missing pixels against the iteration.

    Parameters
    ----------
    curves : mapping of str to (steps (T+1,), values (T+1,))
    metric : str
        The y-axis title.
    """
    data = []
    last = 0
    for i, (name, (steps, values)) in enumerate(curves.items()):
        steps = np.asarray(steps)
        last = max(last, int(steps.max()) if steps.size else 0)
        data.append(dict(type="scatter", x=steps, y=np.asarray(values, dtype=float),
                         mode="lines+markers", name=name,
                         line=dict(color=_COLOURS.get(name, _PALETTE[i % 3]))))
    return figure(data, dict(
        xaxis=dict(title=dict(text="iteration"), dtick=1 if last <= 15 else None,
                   rangemode="tozero"),
        yaxis=dict(title=dict(text=metric)), title=dict(text=title),
        legend=dict(title=dict(text="chain")), height=340, margin=dict(l=10, r=10, t=50, b=10)))


# ---------------------------------------------------------------------------- estimators
def variance_figure(ks: np.ndarray, variances: Mapping[str, np.ndarray], *,
                    y_title: str = "variance of the gradient estimate (per coordinate)",
                    title: str = "Gradient variance against the latent dimension K",
                    reference: str | None = "score") -> go.Figure:
    """Variance of each estimator against K on log-log axes, with O(K) and O(1) guides.

    Parameters
    ----------
    ks : ndarray of int, (n_K,)
    variances : mapping of estimator name to ndarray, (n_K,)
        Values <= 0 (e.g. exactly zero for a linear f) cannot be drawn on a log scale; they
        are left out and the legend says so.
    reference : str, optional
        An estimator whose first point anchors dashed "O(K)" and "O(1)" guide lines.
    """
    ks = np.asarray(ks, dtype=float)
    data = []
    for name, v in variances.items():
        v = np.asarray(v, dtype=float)
        shown = np.where(v > 0, v, np.nan)
        label = ESTIMATOR_NAMES.get(name, name)
        if np.all(v <= 0):
            label += " (exactly 0: not drawn on a log scale)"
        data.append(dict(type="scatter", x=ks, y=shown, mode="lines+markers", name=label,
                         line=dict(color=_COLOURS.get(name))))
    ref = variances.get(reference) if reference else None
    if ref is not None and len(ks) > 1 and np.asarray(ref, dtype=float)[0] > 0:
        v0 = float(np.asarray(ref, dtype=float)[0])
        guides = (("O(K) guide", v0 * ks / ks[0], "dash"),
                  ("O(1) guide", np.full_like(ks, v0), "dot"))
        for guide, y, dash in guides:
            data.append(dict(type="scatter", x=ks, y=y, mode="lines", name=guide,
                             line=dict(color="grey", dash=dash, width=1)))
    return figure(data, dict(
        xaxis=dict(type="log", title=dict(text="latent dimension K"), tickvals=ks),
        yaxis=dict(type="log", title=dict(text=y_title), exponentformat="power"),
        title=dict(text=title), legend=dict(title=dict(text="estimator")), height=440,
        margin=dict(l=10, r=10, t=50, b=10)))


# ---------------------------------------------------------------------------- likelihoods
def table1_figure(rows: Sequence[Mapping]) -> go.Figure:
    """Test NLLs as horizontal bars, each labelled with its binarisation and K.

    Parameters
    ----------
    rows : sequence of dict
        Each with ``model`` (str), ``nll`` (float, nats per example), ``source`` ("paper" or
        anything else, e.g. "this app"), ``binarisation`` (str) and ``k`` (str or int:
        importance samples, or "not stated").
    """
    data = []
    for source in dict.fromkeys(r["source"] for r in rows):
        sub = [r for r in rows if r["source"] == source]
        data.append(dict(
            type="bar", x=[float(r["nll"]) for r in sub], y=[r["model"] for r in sub],
            orientation="h", name=source,
            text=[f"{float(r['nll']):.2f}  ({r['binarisation']}; K = {r['k']})" for r in sub],
            textposition="auto",
            marker=dict(color="#9aa5b1" if source == "paper" else "#1f77b4")))
    return figure(data, dict(
        xaxis=dict(title=dict(text="test -log p(v), nats per example (lower is better)")),
        yaxis=dict(title=dict(text="model"), autorange="reversed"),
        title=dict(text="Test negative log-likelihood (Table 1)"), barmode="group",
        legend=dict(title=dict(text="source")), height=int(140 + 34 * len(rows)),
        margin=dict(l=10, r=10, t=50, b=10)))


def k_curve_figure(ks: np.ndarray, log_px: np.ndarray, elbo: float, *,
                   sem: np.ndarray | None = None, chosen: int | None = None,
                   title: str = "Importance-sampled log p(v) against K") -> go.Figure:
    """The mean importance-sampled log p(v) for each K, above the ELBO (a dashed line).

    Parameters
    ----------
    ks : ndarray of int, (n_K,)
    log_px : ndarray, (n_K,)
        Mean over test images of the estimate with K samples, nats per example.
    elbo : float
        Mean ELBO over the same images, nats per example.
    sem : ndarray, (n_K,), optional
        Standard errors over images (error bars).
    chosen : int, optional
        The K to highlight.
    """
    ks = np.asarray(ks, dtype=float)
    log_px = np.asarray(log_px, dtype=float)
    err = None if sem is None else dict(type="data", array=np.asarray(sem, dtype=float))
    data = [
        dict(type="scatter", x=ks, y=log_px, error_y=err, mode="lines+markers",
             name="importance-sampled log p(v)", line=dict(color="#1f77b4")),
        dict(type="scatter", x=[ks.min(), ks.max()] if len(ks) else [], y=[elbo, elbo],
             mode="lines", name="ELBO", line=dict(color="#d62728", dash="dash")),
    ]
    if chosen is not None and chosen in ks:
        i = int(np.flatnonzero(ks == chosen)[0])
        data.append(dict(type="scatter", x=[ks[i]], y=[log_px[i]], mode="markers",
                         name=f"K = {chosen}",
                         marker=dict(size=14, symbol="circle-open", color="black")))
    return figure(data, dict(
        xaxis=dict(type="log", title=dict(text="importance samples K"), tickvals=ks),
        yaxis=dict(title=dict(text="mean log p(v), nats per example")),
        title=dict(text=title), height=380, margin=dict(l=10, r=10, t=50, b=10)))


def nll_histogram_figure(nll: np.ndarray, *, n_bins: int = 40,
                         title: str = "Per-example test NLL") -> go.Figure:
    """Histogram of -log p(v) per test image (nats), with the mean marked."""
    nll = np.asarray(nll, dtype=float)
    layout = dict(xaxis=dict(title=dict(text="-log p(v), nats per example")),
                  yaxis=dict(title=dict(text="number of test images")),
                  title=dict(text=title), height=340, bargap=0.05,
                  margin=dict(l=10, r=10, t=50, b=10))
    if len(nll):  # the mean as a dashed line over the whole height (what add_vline draws)
        mean = float(nll.mean())
        layout["shapes"] = [dict(type="line", x0=mean, x1=mean, xref="x", y0=0, y1=1,
                                 yref="y domain", line=dict(color="#d62728", dash="dash"))]
        layout["annotations"] = [dict(text=f"mean {mean:.2f}", x=mean, xref="x", y=1,
                                      yref="y domain", xanchor="left", yanchor="top",
                                      showarrow=False)]
    return figure([dict(type="histogram", x=nll, nbinsx=n_bins, name="test images",
                        marker=dict(color="#1f77b4"))], layout)


# ---------------------------------------------------------------------------- mask helpers
def painted_mask(rgba: np.ndarray | None, shape: tuple[int, int],
                 threshold: float = 0.3) -> np.ndarray:
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
