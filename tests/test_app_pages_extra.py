"""AppTest of the Imputation, Gradient estimators and Likelihoods pages (through the navigation).

Each test loads the app, switches to a page, checks it renders without an exception, then sets
a widget and checks what changed. The default model (pretrained/digits-2d-rank1) is tiny.
"""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
TIMEOUT = 120


def _page(path: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(path).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _chart(at: AppTest, title_start: str) -> dict:
    found = [c for c in _charts(at) if c["layout"]["title"]["text"].startswith(title_start)]
    assert found, [c["layout"]["title"]["text"] for c in _charts(at)]
    return found[0]


def _arr(v) -> np.ndarray:
    """A data array of a Plotly JSON spec (plain list, or Plotly 6's base64 ``bdata``)."""
    if isinstance(v, dict) and "bdata" in v:
        out = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return out.reshape([int(n) for n in str(v["shape"]).split(",")]) if "shape" in v else out
    return np.asarray(v)


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# ---------------------------------------------------------------------------- imputation
@pytest.fixture
def imputation() -> AppTest:
    return _page("app/pages/imputation.py")


def test_imputation_steps_advance_the_chains(imputation):
    at = imputation
    assert _metric(at, "Iteration") == "0"
    strip0 = _chart(at, "Imputation chains")
    for _ in range(3):
        at.button(key="imp_step").click().run()
        _no_errors(at)
    assert _metric(at, "Iteration") == "3"
    strip3 = _chart(at, "Imputation chains")
    assert strip3["layout"]["title"]["text"] == "Imputation chains, iteration 3"
    assert strip3["layout"]["xaxis"]["ticktext"] == ["truth", "0", "1", "2", "3"]
    assert len(strip3["layout"]["xaxis"]["ticktext"]) > len(strip0["layout"]["xaxis"]["ticktext"])
    assert strip3["layout"]["yaxis"]["ticktext"] == [
        "pseudo-Gibbs (paper)", "Metropolis-within-Gibbs (exact)", "importance resampling"]
    errors = _chart(at, "Error on the missing pixels")
    assert len(errors["data"]) == 3 and all(len(_arr(t["y"])) == 4 for t in errors["data"])
    assert _metric(at, "MWG acceptance rate").endswith("%")


def test_imputation_sessions_step_their_own_chains():
    """Two sessions start from the server's shared step-0 chains, each on its own copy: one
    stepping leaves the other at step 0, and the same steps give the same strip (the figures
    are shared by signature and step count)."""
    a, b = _page("app/pages/imputation.py"), _page("app/pages/imputation.py")
    for _ in range(2):
        a.button(key="imp_step").click().run()
    _no_errors(a)
    b.run()
    assert _metric(a, "Iteration") == "2" and _metric(b, "Iteration") == "0"
    for _ in range(2):
        b.button(key="imp_step").click().run()
    _no_errors(b)
    strip_a, strip_b = _chart(a, "Imputation chains"), _chart(b, "Imputation chains")
    assert strip_a == strip_b
    assert _metric(a, "MWG acceptance rate") == _metric(b, "MWG acceptance rate")
    a.button(key="imp_step").click().run()
    assert _metric(a, "Iteration") == "3" and _metric(b, "Iteration") == "2"


def test_imputation_mask_change_restarts_and_edge_cases(imputation):
    at = imputation
    at.button(key="imp_step").click().run()
    assert _metric(at, "Iteration") == "1"
    at.button(key="imp_80").click().run()  # the 80% preset: a new mask restarts the chains
    assert at.slider(key="imp_rate").value == 80
    assert _metric(at, "Iteration") == "0"
    at.slider(key="imp_rate").set_value(0).run()
    _no_errors(at)
    assert any("Nothing is missing" in i.value for i in at.info)
    at.button(key="imp_step").click().run()
    _no_errors(at)
    assert _metric(at, "Iteration") == "1"
    at.radio(key="imp_mask_kind").set_value("Missing square").run()
    size = at.slider(key="imp_size")
    size.set_value(size.max).run()
    at.slider(key="imp_top").set_value(0).run()
    at.slider(key="imp_left").set_value(0).run()
    _no_errors(at)
    assert any("Everything is missing" in i.value for i in at.info)
    at.button(key="imp_step").click().run()
    _no_errors(at)
    assert _metric(at, "Iteration") == "1"


def test_imputation_paint_mode_without_strokes(imputation):
    at = imputation
    at.radio(key="imp_mask_kind").set_value("Paint with the mouse").run()
    _no_errors(at)
    assert any("Nothing is missing" in i.value for i in at.info)


# ---------------------------------------------------------------------------- estimators
def test_estimators_chart_follows_function_and_k():
    at = _page("app/pages/estimators.py")
    chart = _chart(at, "Variance of")
    np.testing.assert_array_equal(_arr(chart["data"][0]["x"]), [1, 2, 5, 10, 20, 50, 100])
    score = _arr(chart["data"][0]["y"])
    assert score[-1] > 10 * score[0]  # the score function's variance grows with K

    at.select_slider(key="est_kmax").set_value(20).run()
    _no_errors(at)
    np.testing.assert_array_equal(_arr(_chart(at, "Variance of")["data"][0]["x"]),
                                  [1, 2, 5, 10, 20])
    table = at.dataframe[0].value
    assert "variance at K=20" in table.columns

    at.selectbox(key="est_f").set_value("sin").run()
    _no_errors(at)
    chart = _chart(at, "Variance of")
    assert "f = sin" in chart["layout"]["title"]["text"]
    assert not np.allclose(_arr(chart["data"][0]["y"]), score[:5])


# ---------------------------------------------------------------------------- likelihoods
def test_likelihoods_k_slider_changes_the_estimate():
    at = _page("app/pages/likelihoods.py")
    table = at.dataframe[0].value
    assert {"Factor analysis", "DLGM, rank-one covariance"} <= set(table["model"])
    assert "digits-2d-rank1" in set(table["model"])
    at.slider(key="ll_n").set_value(50).run()
    at.select_slider(key="ll_k").set_value(1).run()
    _no_errors(at)
    nll_1 = _metric(at, "Test NLL, K = 1")
    at.select_slider(key="ll_k").set_value(20).run()
    _no_errors(at)
    nll_20 = _metric(at, "Test NLL, K = 20")
    assert nll_1 != nll_20
    curve = _chart(at, "Importance-sampled log p(v)")
    np.testing.assert_array_equal(_arr(curve["data"][0]["x"]), [1, 2, 5, 10, 20])
    assert len(_chart(at, "Worst-modelled")["layout"]["annotations"]) == 12
