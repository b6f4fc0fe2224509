"""Helpers shared by the app's tests (``from conftest import ...``): open a page through the
navigation with AppTest, read its figures and metrics, make tiny session models, and check the
figure conventions (titles, the one image style)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

import dlgm
from app.figures.style import COMPACT_INK, INK

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
TIMEOUT = 120  # the first run of a process imports torch, plotly and the model
TEST_MODEL = "digits-2d-rank1"  # the pages are tested on the tiny shipped digits model

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


# ---------------------------------------------------------------------------- pages
def open_page(page: str, **state) -> AppTest:
    """The app with ``state`` in its session (the digits model selected unless ``state`` says
    otherwise), switched to ``app/pages/<page>.py``; no exception on the way."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["current_model"] = TEST_MODEL
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page(f"app/pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at) -> list[dict]:
    """The Plotly figures on the page, as JSON dicts."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def chart(at, title_start: str) -> dict:
    """The first figure whose title starts with ``title_start``."""
    found = [c for c in charts(at) if c["layout"]["title"]["text"].startswith(title_start)]
    assert found, [c["layout"]["title"]["text"] for c in charts(at)]
    return found[0]


def array(value) -> np.ndarray:
    """A Plotly JSON array: a list, or a typed array {"dtype", "bdata"(, "shape")}."""
    if isinstance(value, dict) and "bdata" in value:
        a = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            a = a.reshape([int(n) for n in str(shape).split(",")])
        return a
    return np.asarray(value, dtype=float)


def trace_types(at) -> list[str]:
    return [t.get("type", "scatter") for fig in charts(at) for t in fig["data"]]


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def no_errors(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def tiny_entry(name: str, n_latent=(3,), data_shape=(8, 8), likelihood="bernoulli", data="digits"):
    """A small untrained model (of the digits unless ``data`` says otherwise) as a session
    entry named ``name``."""
    from app.session import Entry

    config = dlgm.DLGMConfig(
        data_shape=data_shape,
        n_latent=n_latent,
        gen_hidden=(16,),
        rec_hidden=(16,),
        covariance="rank1",
        likelihood=likelihood,
    )
    model = dlgm.DLGM(config, metadata={"data": data}, seed=0).eval().requires_grad_(False)
    return Entry(name, model, f"trained:{name}", "trained")


def with_model(entry) -> dict:
    """Session state that adds ``entry`` to the session and selects it."""
    return {"user_models": {entry.name: entry}, "current_model": entry.name}


# ---------------------------------------------------------------------------- figures
def titles(fig: go.Figure) -> tuple[str, str, str]:
    return fig.layout.title.text, fig.layout.xaxis.title.text, fig.layout.yaxis.title.text


def assert_labelled(fig: go.Figure) -> None:
    """A figure with a title and both axes titled."""
    assert isinstance(fig, go.Figure)
    assert all(titles(fig)), titles(fig)


def assert_crisp(trace, compact: bool = False) -> None:
    """The app's one image style: a crisp heatmap of grey levels in [0, 1], ink dark (or, if
    ``compact``, the same look as uint8 levels 0..254 with 255 for gaps)."""
    assert isinstance(trace, go.Heatmap)
    assert trace.zsmooth is False
    if compact:
        assert np.asarray(trace.z).dtype == np.uint8
        assert trace.zmin == 0 and trace.zmax == 255
        assert [list(c) for c in trace.colorscale] == [list(c) for c in COMPACT_INK]
        return
    assert trace.zmin == 0 and trace.zmax == 1
    assert [c[1] for c in trace.colorscale] == [c[1] for c in INK]
    assert trace.colorscale[0][1] == "rgb(255,255,255)"  # grey level 0: white paper
    assert trace.colorscale[-1][1] == "rgb(0,0,0)"  # grey level 1: black ink
