"""AppTest: The Imputation page: stepping, sessions' own chains, masks and edge cases.

Each test opens the page through the navigation (``conftest.open_page``, the tiny shipped digits
model unless a test selects another), checks it runs without an exception, then sets a widget,
reruns and checks what changed.
"""

import pytest
from conftest import AppTest, array, chart, metric, no_errors, open_page


@pytest.fixture
def imputation() -> AppTest:
    return open_page("imputation")


def test_imputation_steps_advance_the_chains(imputation):
    at = imputation
    assert metric(at, "Iteration") == "0"
    strip0 = chart(at, "Imputation chains")
    for _ in range(3):
        at.button(key="imp_step").click().run()
        no_errors(at)
    assert metric(at, "Iteration") == "3"
    strip3 = chart(at, "Imputation chains")
    assert strip3["layout"]["title"]["text"] == "Imputation chains, iteration 3"
    assert strip3["layout"]["xaxis"]["ticktext"] == ["truth", "0", "1", "2", "3"]
    assert len(strip3["layout"]["xaxis"]["ticktext"]) > len(strip0["layout"]["xaxis"]["ticktext"])
    assert strip3["layout"]["yaxis"]["ticktext"] == [
        "pseudo-Gibbs (paper)",
        "Metropolis-within-Gibbs (exact)",
        "importance resampling",
    ]
    errors = chart(at, "Error on the missing pixels")
    assert len(errors["data"]) == 3 and all(len(array(t["y"])) == 4 for t in errors["data"])
    assert metric(at, "MWG acceptance rate").endswith("%")


def test_imputation_sessions_step_their_own_chains():
    """Two sessions start from the server's shared step-0 chains, each on its own copy: one
    stepping leaves the other at step 0, and the same steps give the same strip (the figures
    are shared by signature and step count)."""
    a, b = open_page("imputation"), open_page("imputation")
    for _ in range(2):
        a.button(key="imp_step").click().run()
    no_errors(a)
    b.run()
    assert metric(a, "Iteration") == "2" and metric(b, "Iteration") == "0"
    for _ in range(2):
        b.button(key="imp_step").click().run()
    no_errors(b)
    strip_a, strip_b = chart(a, "Imputation chains"), chart(b, "Imputation chains")
    assert strip_a == strip_b
    assert metric(a, "MWG acceptance rate") == metric(b, "MWG acceptance rate")
    a.button(key="imp_step").click().run()
    assert metric(a, "Iteration") == "3" and metric(b, "Iteration") == "2"


def test_imputation_mask_change_restarts_and_edge_cases(imputation):
    at = imputation
    at.button(key="imp_step").click().run()
    assert metric(at, "Iteration") == "1"
    at.button(key="imp_80").click().run()  # the 80% preset: a new mask restarts the chains
    assert at.slider(key="imp_rate").value == 80
    assert metric(at, "Iteration") == "0"
    at.slider(key="imp_rate").set_value(0).run()
    no_errors(at)
    assert any("Nothing is missing" in i.value for i in at.info)
    at.button(key="imp_step").click().run()
    no_errors(at)
    assert metric(at, "Iteration") == "1"
    at.radio(key="imp_mask_kind").set_value("Missing square").run()
    size = at.slider(key="imp_size")
    size.set_value(size.max).run()
    at.slider(key="imp_top").set_value(0).run()
    at.slider(key="imp_left").set_value(0).run()
    no_errors(at)
    assert any("Everything is missing" in i.value for i in at.info)
    at.button(key="imp_step").click().run()
    no_errors(at)
    assert metric(at, "Iteration") == "1"


def test_imputation_paint_mode_without_strokes(imputation):
    at = imputation
    at.radio(key="imp_mask_kind").set_value("Paint with the mouse").run()
    no_errors(at)
    assert any("Nothing is missing" in i.value for i in at.info)


PATCHES_MODEL = "patches-2d-rank1"  # the shipped Gaussian model of 8x8 grey photo patches


def test_imputation_of_grey_patches_reports_squared_error():
    """A Gaussian model's chains are scored by squared error on grey levels: no cross-entropy
    or pixel error rate (those need binary pixels), pixel means rather than probabilities."""
    at = open_page("imputation", current_model=PATCHES_MODEL)
    no_errors(at)
    assert any("grey levels" in c.value and "patches test image 0" in c.value for c in at.caption)
    assert any("; photo " in c.value for c in at.caption)  # its source photo, not a "label"
    assert not [r for r in at.radio if r.key == "imp_metric"]
    shown = at.radio(key="imp_shown")
    assert shown.options == ["pixel means E[v | xi]", "sampled pixels"]
    for _ in range(2):
        at.button(key="imp_step").click().run()
    no_errors(at)
    assert any("squared error of the pixel means" in c.value for c in at.caption)
    errors = chart(at, "Error on the missing pixels")
    assert errors["layout"]["yaxis"]["title"]["text"].startswith("mean squared error")
    for trace in errors["data"]:
        y = array(trace["y"])
        assert len(y) == 3 and ((0 <= y) & (y <= 1)).all()  # grey levels in [0, 1]
    strip = chart(at, "Imputation chains, iteration 2")
    assert array(strip["data"][0]["z"]).shape[0] > 8  # tiles of 8x8 patches, one row per chain
    shown.set_value("samples").run()
    no_errors(at)
