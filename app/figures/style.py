"""How every figure of the app is built and styled: one call, one image style, one palette.

``figure`` builds a validated figure in one call; ``freeze`` serialises a figure once so that a
cached figure costs almost nothing to show again. The image style (:data:`INK` on
:data:`IMAGE_BACKGROUND`) and the colours (:data:`PALETTE` and the named :data:`COLOURS`) are
defined here only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

# Images: grey level 0 is white paper, 1 black ink; NaN (gaps between tiles) shows the
# background.
INK = [[0.0, "rgb(255,255,255)"], [1.0, "rgb(0,0,0)"]]
IMAGE_BACKGROUND = "rgb(214,226,240)"
# The same look for images sent one byte a pixel (figures redrawn on every click): grey levels
# 0..1 as 0..254 (:data:`INK_LEVELS`), 255 for the gaps, drawn in the background colour.
INK_LEVELS = 254
COMPACT_INK = [
    [0.0, INK[0][1]],
    [254 / 255, INK[1][1]],
    [254.5 / 255, INK[1][1]],
    [254.5 / 255, IMAGE_BACKGROUND],
    [1.0, IMAGE_BACKGROUND],
]
MISSING_COLOUR = "rgba(255, 110, 0, 0.32)"  # tint over missing pixels
# One palette (Plotly's / D3's category10) for classes, methods and estimators.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
BLUE, ORANGE, GREEN, RED, PURPLE = PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3], PALETTE[4]
GREY = PALETTE[7]
PAPER_GREY = "#9aa5b1"  # bars of the paper's own numbers
COLOURS = {
    "pseudo-gibbs": BLUE,
    "mwg": RED,
    "importance": GREEN,  # imputation chains
    "score": RED,
    "reparam": BLUE,
    "price": GREEN,
}  # gradient estimators
SERIES = (BLUE, RED, GREEN)  # curves without a named colour, in order
MARGIN = dict(l=50, r=30, t=50, b=45)
MARGIN_TIGHT = dict(l=10, r=10, t=50, b=10)
MODEBAR = dict(orientation="v")  # beside the plot, never over a long title


def figure(data: Sequence[Mapping], layout: Mapping) -> go.Figure:
    """One validated ``go.Figure`` from trace dicts (each with its ``type``) and a layout dict.

    Every builder makes its figure in this one call: building it up with ``update_layout`` /
    ``update_xaxes`` / ``add_trace`` parses property paths on every call and was 5-10x slower
    (10-35 ms a figure), which a shared server pays on every rerun of every session."""
    return go.Figure(data=list(data), layout=dict(layout))


def axis(title: str, **kwargs) -> dict:
    """A layout axis with a title."""
    return dict(title=dict(text=title), **kwargs)


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
