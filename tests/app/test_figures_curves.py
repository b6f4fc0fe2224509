"""app/figures/curves.py: curves, errors, variances, likelihoods against K, Table 1, Fig. 2c,
gaps."""

import numpy as np
import plotly.graph_objects as go
import pytest
from conftest import assert_labelled

from app.figures import curves as F


def test_curves_figure_gaps_and_order():
    fig = F.curves_figure(
        [0.5, 1.0, 1.5],
        {"F": [3.0, 2.0, 1.0], "valid": [None, 2.5, None]},
        title="training",
        x_title="epoch",
        y_title="nats",
    )
    assert_labelled(fig)
    assert [t.name for t in fig.data] == ["F", "valid"]
    assert np.isnan(np.asarray(fig.data[1].y, dtype=float)[0])
    with pytest.raises(ValueError):
        F.curves_figure([1, 2], {"F": [1.0]}, title="t")


def test_error_curves_figure():
    steps = np.arange(6)
    curves = {"pseudo-gibbs": (steps, np.linspace(1, 0.5, 6)), "mwg": (steps, np.ones(6))}
    fig = F.error_curves_figure(curves, metric="cross-entropy", title="errors")
    assert_labelled(fig)
    assert [t.name for t in fig.data] == ["pseudo-gibbs", "mwg"]
    assert all(len(t.x) == 6 and len(t.y) == 6 for t in fig.data)
    assert fig.layout.yaxis.title.text == "cross-entropy"


def test_variance_figure_log_axes_and_guides():
    ks = np.array([1, 2, 5, 10])
    v = {"score": 0.5 * ks, "reparam": np.full(4, 0.4), "price": np.zeros(4)}
    fig = F.variance_figure(ks, v, title="var")
    assert_labelled(fig)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    names = [t.name for t in fig.data]
    assert len(fig.data) == 5  # three estimators and two guides
    assert "not drawn" in names[2]  # the all-zero estimator says why it is missing
    assert np.isnan(np.asarray(fig.data[2].y, dtype=float)).all()
    np.testing.assert_allclose(fig.data[3].y, 0.5 * ks)  # O(K) guide through score's first point
    np.testing.assert_allclose(fig.data[4].y, np.full(4, 0.5))


def test_variance_figure_without_reference():
    fig = F.variance_figure(np.array([1, 10]), {"reparam": np.array([1.0, 1.0])}, reference=None)
    assert len(fig.data) == 1 and len(fig.data[0].x) == 2


def test_table1_figure():
    rows = [
        {
            "model": "FA",
            "nll": 106.0,
            "source": "paper",
            "binarisation": "static",
            "k": "not stated",
        },
        {"model": "mine", "nll": 90.5, "source": "this app", "binarisation": "dynamic", "k": 5000},
    ]
    fig = F.table1_figure(rows)
    assert_labelled(fig)
    assert [t.name for t in fig.data] == ["paper", "this app"]
    assert list(fig.data[1].x) == [90.5] and list(fig.data[1].y) == ["mine"]
    assert "K = 5000" in fig.data[1].text[0] and "dynamic" in fig.data[1].text[0]
    assert "K = not stated" in fig.data[0].text[0]


def test_fig2c_figure_bars_errors_and_colours():
    rows = [
        {
            "method": "factor analysis",
            "nll": 110.0,
            "nll_se": 0.3,
            "vs_rank1": 14.5,
            "vs_rank1_se": 0.1,
        },
        {
            "method": "DLGM diagonal",
            "nll": 95.2,
            "nll_se": 0.25,
            "vs_rank1": -0.3,
            "vs_rank1_se": 0.05,
        },
        {
            "method": "DLGM rank-one",
            "nll": 95.5,
            "nll_se": 0.26,
            "vs_rank1": None,
            "vs_rank1_se": None,
        },
        {
            "method": "something else",
            "nll": 99.0,
            "nll_se": 0.2,
            "vs_rank1": None,
            "vs_rank1_se": None,
        },
    ]
    fig = F.fig2c_figure(rows, title="Fig. 2c here")
    assert_labelled(fig)
    (bars,) = fig.data
    assert list(bars.y) == [r["method"] for r in rows] and list(bars.x) == [110.0, 95.2, 95.5, 99.0]
    assert list(bars.error_x.array) == [0.3, 0.25, 0.26, 0.2]
    colours = list(bars.marker.color)
    assert colours[:3] == [F.FIG2C_COLOURS[r["method"]] for r in rows[:3]]
    assert len(set(F.FIG2C_COLOURS.values())) == len(F.FIG2C_COLOURS)  # methods tell apart
    assert bars.hovertext[1].endswith("-0.30 ± 0.05") and bars.hovertext[2].endswith("reference")
    assert bars.hovertext[3].endswith("not paired")
    assert fig.layout.yaxis.autorange == "reversed"  # first row on top, as in the table


def test_paired_text():
    assert F.paired_text(1.6949, 0.0512) == "+1.69 ± 0.05"
    assert F.paired_text(-0.3, 0.05) == "-0.30 ± 0.05"
    assert F.paired_text(None, None) == F.paired_text(0.1, None) == "not paired"
    assert F.paired_text(None, None, reference=True) == "reference"


def test_gap_bars_figure_stacks_the_two_gaps():
    rows = [
        {
            "model": "m-diag",
            "approximation_gap": 0.7,
            "approximation_gap_se": 0.1,
            "amortisation_gap": 5.2,
            "amortisation_gap_se": 0.4,
        },
        {"model": "m-rank1", "approximation_gap": -0.01, "amortisation_gap": 5.6},
    ]
    fig = F.gap_bars_figure(rows, title="Where the nats go")
    assert_labelled(fig)
    assert fig.layout.barmode == "relative"  # stacked; a negative MC estimate goes below 0
    approx, amort = fig.data
    assert (approx.name, amort.name) == ("approximation gap", "amortisation gap")
    assert "ELBO(q*)" in approx.hovertemplate and "ELBO(q)" in amort.hovertemplate
    assert list(approx.y) == ["m-diag", "m-rank1"] and approx.orientation == "h"
    assert list(approx.x) == [0.7, -0.01] and list(amort.x) == [5.2, 5.6]
    np.testing.assert_allclose(np.asarray(amort.error_x.array), [0.4, 0.0])  # no s.e.: none
    assert approx.marker.color != amort.marker.color
    with pytest.raises(ValueError, match="unique"):
        F.gap_bars_figure(rows + rows[:1], title="t")


def test_k_curve_figure():
    ks = np.array([1, 10, 100])
    fig = F.k_curve_figure(
        ks,
        np.array([-25.0, -24.0, -23.8]),
        -25.1,
        sem=np.array([0.1, 0.1, 0.1]),
        chosen=10,
        title="k",
    )
    assert_labelled(fig)
    assert fig.layout.xaxis.type == "log"
    est, elbo, chosen = fig.data
    assert len(est.y) == 3 and list(elbo.y) == [-25.1, -25.1]
    assert list(chosen.x) == [10.0] and list(chosen.y) == [-24.0]


def test_nll_histogram_figure():
    nll = np.random.default_rng(0).normal(90, 5, 200)
    fig = F.nll_histogram_figure(nll, title="hist")
    assert_labelled(fig)
    assert isinstance(fig.data[0], go.Histogram) and len(fig.data[0].x) == 200
    assert fig.layout.shapes[0].x0 == pytest.approx(nll.mean())  # the mean line
