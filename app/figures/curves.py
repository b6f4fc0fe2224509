"""Numbers against a variable: training curves, imputation errors, estimator variances,
importance-sampled likelihoods against K, per-image NLLs, the paper's Table 1 and Fig. 2c, and
the inference gap's two parts per model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from app.figures.style import (
    BLUE,
    COLOURS,
    GREEN,
    MARGIN,
    MARGIN_TIGHT,
    MODEBAR,
    ORANGE,
    PAPER_GREY,
    RED,
    SERIES,
    axis,
    figure,
)

ESTIMATOR_NAMES = {
    "score": "score function (REINFORCE)",
    "reparam": "Gaussian backpropagation (reparameterisation)",
    "price": "Bonnet / Price theorems",
}


def curves_figure(
    x,
    series: Mapping[str, Sequence],
    *,
    title: str,
    x_title="epoch",
    y_title="nats per example",
    height=None,
) -> go.Figure:
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
        data.append(
            dict(
                type="scatter",
                x=xv,
                y=y,
                mode="lines+markers",
                name=name,
                marker=dict(size=4),
                connectgaps=True,
            )
        )
    layout = dict(
        title=dict(text=title),
        modebar=MODEBAR,
        margin=MARGIN,
        hovermode="x unified",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
        xaxis=axis(x_title),
        yaxis=axis(y_title),
    )
    if height:
        layout["height"] = height
    return figure(data, layout)


def history_figure(history: Sequence[Mapping], title: str) -> go.Figure:
    """Train free energy and test -ELBO per report of a training run, against epochs.

    Parameters
    ----------
    history : sequence of dict
        Each with ``epoch``, ``free_energy`` (nats per example) and optionally ``valid_elbo``.
    """
    epochs = [h["epoch"] for h in history]
    valid = [None if h.get("valid_elbo") is None else -h["valid_elbo"] for h in history]
    series = {"train free energy F (eq. 13)": [h["free_energy"] for h in history]}
    if any(v is not None for v in valid):
        series["test −ELBO (end of epoch)"] = valid
    return curves_figure(
        epochs, series, title=title, x_title="epoch", y_title="nats per example", height=340
    )


def error_curves_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    metric: str = "cross-entropy (nats per missing pixel)",
    title: str = "Error on the missing pixels",
) -> go.Figure:
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
        data.append(
            dict(
                type="scatter",
                x=steps,
                y=np.asarray(values, dtype=float),
                mode="lines+markers",
                name=name,
                line=dict(color=COLOURS.get(name, SERIES[i % len(SERIES)])),
            )
        )
    return figure(
        data,
        dict(
            xaxis=dict(
                title=dict(text="iteration"), dtick=1 if last <= 15 else None, rangemode="tozero"
            ),
            yaxis=dict(title=dict(text=metric)),
            title=dict(text=title),
            legend=dict(title=dict(text="chain")),
            height=340,
            margin=MARGIN_TIGHT,
        ),
    )


def variance_figure(
    ks: np.ndarray,
    variances: Mapping[str, np.ndarray],
    *,
    y_title: str = "variance of the gradient estimate (per coordinate)",
    title: str = "Gradient variance against the latent dimension K",
    reference: str | None = "score",
) -> go.Figure:
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
        data.append(
            dict(
                type="scatter",
                x=ks,
                y=shown,
                mode="lines+markers",
                name=label,
                line=dict(color=COLOURS.get(name)),
            )
        )
    ref = variances.get(reference) if reference else None
    if ref is not None and len(ks) > 1 and np.asarray(ref, dtype=float)[0] > 0:
        v0 = float(np.asarray(ref, dtype=float)[0])
        guides = (
            ("O(K) guide", v0 * ks / ks[0], "dash"),
            ("O(1) guide", np.full_like(ks, v0), "dot"),
        )
        for guide, y, dash in guides:
            data.append(
                dict(
                    type="scatter",
                    x=ks,
                    y=y,
                    mode="lines",
                    name=guide,
                    line=dict(color="grey", dash=dash, width=1),
                )
            )
    return figure(
        data,
        dict(
            xaxis=dict(type="log", title=dict(text="latent dimension K"), tickvals=ks),
            yaxis=dict(type="log", title=dict(text=y_title), exponentformat="power"),
            title=dict(text=title),
            legend=dict(title=dict(text="estimator")),
            height=440,
            margin=MARGIN_TIGHT,
        ),
    )


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
        data.append(
            dict(
                type="bar",
                x=[float(r["nll"]) for r in sub],
                y=[r["model"] for r in sub],
                orientation="h",
                name=source,
                text=[f"{float(r['nll']):.2f}  ({r['binarisation']}; K = {r['k']})" for r in sub],
                textposition="auto",
                marker=dict(color=PAPER_GREY if source == "paper" else BLUE),
            )
        )
    return figure(
        data,
        dict(
            xaxis=dict(title=dict(text="test -log p(v), nats per example (lower is better)")),
            yaxis=dict(title=dict(text="model"), autorange="reversed"),
            title=dict(text="Test negative log-likelihood (Table 1)"),
            barmode="group",
            legend=dict(title=dict(text="source")),
            height=int(140 + 34 * len(rows)),
            margin=MARGIN_TIGHT,
        ),
    )


FIG2C_COLOURS = {  # the paper's four methods of Fig. 2c, and rank-one with its bound on u
    "factor analysis": PAPER_GREY,
    "wake-sleep": GREEN,
    "DLGM diagonal": BLUE,
    "DLGM rank-one": RED,
    "DLGM rank-one, u^T D^-1 u <= 1": ORANGE,
}


def paired_text(diff: float | None, se: float | None, *, reference: bool = False) -> str:
    """A paired difference as the tables and hovers write it: "+1.69 ± 0.05" (nats),
    "reference" for the row the others are paired against, "not paired" without one."""
    if reference:
        return "reference"
    if diff is None or se is None:
        return "not paired"
    return f"{diff:+.2f} ± {se:.2f}"


def fig2c_figure(rows: Sequence[Mapping], *, title: str) -> go.Figure:
    """Fig. 2c: one horizontal bar per method, top to bottom, with +- 1 standard error.

    Parameters
    ----------
    rows : sequence of dict
        Each with ``method`` (str; those of :data:`FIG2C_COLOURS` get their colour),
        ``nll`` and ``nll_se`` (float, nats per image) and ``vs_rank1`` / ``vs_rank1_se``
        (float or None: the paired difference against DLGM rank-one, shown on hover).
    title : str
    """
    hover = [
        f"{r['nll']:.2f} ± {r['nll_se']:.2f} nats<br>vs DLGM rank-one (paired, nats): "
        + paired_text(
            r.get("vs_rank1"), r.get("vs_rank1_se"), reference=r["method"] == "DLGM rank-one"
        )
        for r in rows
    ]
    return figure(
        [
            dict(
                type="bar",
                x=[float(r["nll"]) for r in rows],
                y=[r["method"] for r in rows],
                orientation="h",
                error_x=dict(type="data", array=[float(r["nll_se"]) for r in rows]),
                text=[f"{float(r['nll']):.2f}" for r in rows],
                textposition="inside",
                hovertext=hover,
                hoverinfo="text",
                marker=dict(color=[FIG2C_COLOURS.get(r["method"], PAPER_GREY) for r in rows]),
                showlegend=False,
            )
        ],
        dict(
            xaxis=dict(title=dict(text="test -log p(v), nats per image (lower is better)")),
            yaxis=dict(title=dict(text="method"), autorange="reversed"),
            title=dict(text=title),
            height=int(140 + 40 * len(rows)),
            margin=MARGIN_TIGHT,
        ),
    )


GAP_PARTS = (  # key, legend name, what it is (hover), colour
    ("approximation_gap", "approximation gap", "log p(v) − ELBO(q*)", BLUE),
    ("amortisation_gap", "amortisation gap", "ELBO(q*) − ELBO(q)", ORANGE),
)


def gap_bars_figure(rows: Sequence[Mapping], *, title: str) -> go.Figure:
    """Where the nats go: for each model, the approximation gap and the amortisation gap as
    stacked horizontal bars whose sum is the whole gap log p(v) − ELBO(q).

    Parameters
    ----------
    rows : sequence of dict
        One per bar, top to bottom: ``model`` (str, the bar's label; unique), and for each of
        ``approximation_gap`` and ``amortisation_gap`` the mean over images (float, nats per
        image) and optionally ``<key>_se``, its standard error (error bars).
    title : str

    Returns
    -------
    go.Figure with two ``Bar`` traces (approximation, then amortisation), stacked
    (``barmode="relative"``: a slightly negative Monte Carlo estimate is drawn below 0).
    """
    labels = [str(r["model"]) for r in rows]
    if len(set(labels)) != len(labels):
        raise ValueError(f"bar labels must be unique; got {labels}")
    data = []
    for key, name, formula, colour in GAP_PARTS:
        values = [float(r[key]) for r in rows]
        se = [float(r.get(f"{key}_se", np.nan)) for r in rows]
        data.append(
            dict(
                type="bar",
                x=values,
                y=labels,
                orientation="h",
                name=name,
                marker=dict(color=colour),
                error_x=dict(type="data", array=np.nan_to_num(se), visible=not np.isnan(se).all()),
                text=[f"{v:.2f}" for v in values],
                textposition="inside",
                customdata=se,
                hovertemplate=f"%{{y}}<br>{name}, {formula}: "
                "%{x:.3f} ± %{customdata:.3f} nats<extra></extra>",
            )
        )
    return figure(
        data,
        dict(
            xaxis=dict(title=dict(text="nats per image (mean ± s.e. over images)")),
            yaxis=dict(title=dict(text="model"), autorange="reversed"),
            title=dict(text=title),
            barmode="relative",
            legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1),
            height=int(150 + 34 * len(rows)),
            margin=MARGIN_TIGHT,
        ),
    )


def k_curve_figure(
    ks: np.ndarray,
    log_px: np.ndarray,
    elbo: float,
    *,
    sem: np.ndarray | None = None,
    chosen: int | None = None,
    title: str = "Importance-sampled log p(v) against K",
) -> go.Figure:
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
        dict(
            type="scatter",
            x=ks,
            y=log_px,
            error_y=err,
            mode="lines+markers",
            name="importance-sampled log p(v)",
            line=dict(color=BLUE),
        ),
        dict(
            type="scatter",
            x=[ks.min(), ks.max()] if len(ks) else [],
            y=[elbo, elbo],
            mode="lines",
            name="ELBO",
            line=dict(color=RED, dash="dash"),
        ),
    ]
    if chosen is not None and chosen in ks:
        i = int(np.flatnonzero(ks == chosen)[0])
        data.append(
            dict(
                type="scatter",
                x=[ks[i]],
                y=[log_px[i]],
                mode="markers",
                name=f"K = {chosen}",
                marker=dict(size=14, symbol="circle-open", color="black"),
            )
        )
    return figure(
        data,
        dict(
            xaxis=dict(type="log", title=dict(text="importance samples K"), tickvals=ks),
            yaxis=dict(title=dict(text="mean log p(v), nats per example")),
            title=dict(text=title),
            height=380,
            margin=MARGIN_TIGHT,
        ),
    )


def nll_histogram_figure(
    nll: np.ndarray, *, n_bins: int = 40, title: str = "Per-example test NLL"
) -> go.Figure:
    """Histogram of -log p(v) per test image (nats), with the mean marked."""
    nll = np.asarray(nll, dtype=float)
    layout = dict(
        xaxis=dict(title=dict(text="-log p(v), nats per example")),
        yaxis=dict(title=dict(text="number of test images")),
        title=dict(text=title),
        height=340,
        bargap=0.05,
        margin=MARGIN_TIGHT,
    )
    if len(nll):  # the mean as a dashed line over the whole height (what add_vline draws)
        mean = float(nll.mean())
        layout["shapes"] = [
            dict(
                type="line",
                x0=mean,
                x1=mean,
                xref="x",
                y0=0,
                y1=1,
                yref="y domain",
                line=dict(color=RED, dash="dash"),
            )
        ]
        layout["annotations"] = [
            dict(
                text=f"mean {mean:.2f}",
                x=mean,
                xref="x",
                y=1,
                yref="y domain",
                xanchor="left",
                yanchor="top",
                showarrow=False,
            )
        ]
    return figure(
        [dict(type="histogram", x=nll, nbinsx=n_bins, name="test images", marker=dict(color=BLUE))],
        layout,
    )
