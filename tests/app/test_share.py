"""Links to views: the widgets that define a view are bound to the URL (``bind="query-params"``),
the model picker (``app.picker``) too, and the sidebar shows the link (``app.widgets``).

AppTest does not play the browser's part: a widget the test changes is not written to
``at.query_params`` (the browser writes the URL itself; ``tests/test_browser.py`` checks that in
Chromium). What the server writes (a link's values, a value set by a button, a new model) is
there, and each widget's element carries its URL parameter (``query_param_key``), which is what
tells the browser to write it.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import (
    APP,
    TEST_MODEL,
    TIMEOUT,
    AppTest,
    charts,
    no_errors,
    open_page,
    tiny_entry,
)

import dlgm
from app.compute.posterior import GRID, RADIUS
from app.widgets import view_url

BASE = "http://dlgm.test"
SCORE, REPARAM = "score function (REINFORCE)", "Gaussian backpropagation (reparameterisation)"
MWG, IMPORTANCE = "Metropolis-within-Gibbs (exact)", "importance resampling"
# page -> {URL parameter (the widget's key): (its value in the URL, the widget's value)}; none
# of them the widget's default (a default value is left out of the URL).
LINKS = {
    "models": {"model": (TEST_MODEL, TEST_MODEL), "models_tab": ("Step mode", "Step mode")},
    "embedding": {
        "model": (TEST_MODEL, TEST_MODEL),
        "emb_n": ("100", 100),
        "emb_view": ("Manifold", "Manifold"),
        "emb_radius": ("2.5", 2.5),
        "emb_side": ("9", 9),
    },
    "posterior": {
        "model": (TEST_MODEL, TEST_MODEL),
        "post_index": ("7", 7),
        "post_grid": ("31", 31),
        "post_radius": ("4.5", 4.5),
        "post_samples": ("50", 50),
        "post_seed": ("3", 3),
        "post_zoom": ("false", False),
        "post_twins": ("false", False),
        "post_qstar": ("true", True),
        "post_qstar_full": ("true", True),
    },
    "samples": {"model": (TEST_MODEL, TEST_MODEL), "smp_n": ("25", 25), "smp_seed": ("5", 5)},
    "imputation": {
        "model": (TEST_MODEL, TEST_MODEL),
        "imp_index": ("5", 5),
        "imp_mask_kind": ("Missing square", "Missing square"),
        "imp_size": ("3", 3),
        "imp_top": ("1", 1),
        "imp_left": ("0", 0),
        "imp_methods": ([MWG, IMPORTANCE], ["mwg", "importance"]),
        "imp_init": ("zeros", "zeros"),
        "imp_particles": ("50", 50),
        "imp_seed": ("4", 4),
        "imp_shown": ("sampled pixels", "samples"),
    },
    "estimators": {
        "est_f": ("linear", "linear"),
        "est_kmax": ("20", 20),
        "est_which": ([SCORE, REPARAM], ["score", "reparam"]),
        "est_s": ("5", 5),
        "est_r": ("40", 40),
        "est_target": ("d E[f] / d sigma", "sigma"),
        "est_loo": ("true", True),
        "est_mu": ("0.5", 0.5),
        "est_sigma": ("1.5", 1.5),
        "est_seed": ("3", 3),
    },
    "likelihoods": {
        "model": (TEST_MODEL, TEST_MODEL),
        "ll_n": ("50", 50),
        "ll_k": ("10", 10),
        "ll_seed": ("2", 2),
        "ll_gap_n": ("30", 30),
        "ll_gap_steps": ("50", 50),
        "ll_gap_family": ("full", "full"),
    },
}
# Bound but at their defaults in LINKS (so not in the URL): the image source (a test image) and
# the missing-pixel controls of the other mask kinds are not drawn there.
BOUND_AT_DEFAULT = {"posterior": {"post_source"}}
# Widgets with a key that are not bound, on purpose: buttons, the drawing canvas, the imputation
# chains' error view (it lives in the chains' fragment, which reruns without the link), the
# training form and step mode (a run cannot travel in a link), the "Training history" expander.
UNBOUND = {"post_index_random", "imp_60", "imp_80", "imp_step", "imp_run", "imp_play"}
UNBOUND |= {"imp_reset", "imp_metric", "step_from", "step_opt", "step_lr", "step_batch"}
UNBOUND |= {"step_seed", "step_start", "upload_ckpt", "download_ckpt"}


def open_link(page: str, params: dict, **state) -> AppTest:
    """The app opened on ``/<page>?<params>`` (values: a string or a list of strings), as a
    link opens it in a fresh browser; ``state`` in its session first."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.context["url"] = f"{BASE}/{'' if page == 'models' else page}"
    for k, v in state.items():
        at.session_state[k] = v
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(f"app/pages/{page}.py").run()
    no_errors(at)
    return at


def widgets(at) -> dict:
    """Every keyed widget on the page (main area and sidebar) by its key."""
    return {n.key: n for n in at if getattr(n, "key", None) and hasattr(n, "proto")}


def bound_keys(at) -> set[str]:
    """The keys of the widgets that tell the browser to write them into the URL."""
    return {k for k, w in widgets(at).items() if getattr(w.proto, "query_param_key", "")}


def link(at) -> str:
    """The link shown in the sidebar."""
    (code,) = at.sidebar.code
    return code.value


def link_params(at) -> dict[str, list[str]]:
    return parse_qs(urlsplit(link(at)).query)


def as_list(url_value) -> list[str]:
    return url_value if isinstance(url_value, list) else [url_value]


# ---------------------------------------------------------------------------- the link itself
def test_view_url_joins_the_page_and_its_parameters():
    assert view_url(f"{BASE}/posterior", {"model": ["a b"], "post_index": ["7"]}) == (
        f"{BASE}/posterior?model=a+b&post_index=7"
    )
    assert view_url(BASE, {"m": ["x", "y"]}) == f"{BASE}/?m=x&m=y"  # a list: repeated
    assert view_url(f"{BASE}/samples?old=1#top", {}) == f"{BASE}/samples"  # its own query: gone
    assert view_url(None, {"k": ["d E[f] / d mu"]}) == "?k=d+E%5Bf%5D+%2F+d+mu"
    assert parse_qs(urlsplit(view_url(BASE, {"k": ["d E[f] / d mu"]})).query) == {
        "k": ["d E[f] / d mu"]
    }


# ---------------------------------------------------------------------------- opening a link
@pytest.mark.parametrize("page", list(LINKS))
def test_a_link_opens_its_view(page):
    """Every page opened from a link shows the link's values in its widgets, binds exactly the
    widgets that define its view, and shows the same link in the sidebar."""
    link_values = LINKS[page]
    at = open_link(page, {k: url for k, (url, _) in link_values.items()})
    shown = widgets(at)
    for key, (_, value) in link_values.items():
        if key == "models_tab":
            continue  # a container, not a widget: checked by what the tab shows, below
        assert shown[key].value == value, key
    assert bound_keys(at) == (set(link_values) | BOUND_AT_DEFAULT.get(page, set())) - {"models_tab"}
    assert not (bound_keys(at) & UNBOUND)
    assert link(at).startswith(f"{BASE}/{'' if page == 'models' else page}?")
    assert link_params(at) == {k: as_list(url) for k, (url, _) in link_values.items()}
    if page == "models":
        assert any(b.label.startswith("Start step mode") for b in at.button)  # the linked tab


def test_a_link_to_an_unknown_model_warns_and_falls_back():
    at = open_link("posterior", {"model": "trained-elsewhere", "post_index": "4"})
    (warning,) = at.warning
    assert "'trained-elsewhere'" in warning.value and "live only in that tab" in warning.value
    picker = at.sidebar.selectbox(key="model")
    assert picker.value == "mnist-2d-rank1"  # the default model
    assert "model" not in at.query_params and "model" not in link_params(at)
    assert at.query_params["post_index"] == "4"  # the rest of the link still applies
    at.run()
    assert at.warning  # still said while the default model stands in for it
    picker.set_value(TEST_MODEL).run()
    no_errors(at)
    assert not at.warning


def test_bad_values_in_a_link_fall_back_to_the_defaults():
    """Values a widget cannot take (out of range, not a number, not a boolean) are ignored:
    the widget keeps its default and the parameter leaves the URL and the link."""
    bad = {"post_index": "99999", "post_grid": "abc", "post_radius": "100", "post_zoom": "maybe"}
    at = open_link("posterior", {"model": TEST_MODEL, **bad})
    assert at.number_input(key="post_index").value == 0
    assert at.slider(key="post_grid").value == GRID and at.slider(key="post_radius").value == RADIUS
    assert at.toggle(key="post_zoom").value is True
    assert at.query_params == {"model": TEST_MODEL}
    assert link_params(at) == {"model": [TEST_MODEL]}


def test_the_link_follows_values_the_server_sets():
    """The "Random" image and the rate presets set widget values from the server: the URL and
    the link follow at once."""
    at = open_link("posterior", {"model": TEST_MODEL})
    assert "post_index" not in at.query_params
    at.button(key="post_index_random").click().run()
    no_errors(at)
    index = at.number_input(key="post_index").value
    if index != 0:  # 0 is the default, which the URL leaves out
        assert at.query_params["post_index"] == str(index)
        assert link_params(at)["post_index"] == [str(index)]
    imp = open_link("imputation", {"model": TEST_MODEL})
    imp.button(key="imp_80").click().run()
    no_errors(imp)
    assert imp.query_params["imp_rate"] == "80" and link_params(imp)["imp_rate"] == ["80"]


def test_a_tab_model_is_selected_in_the_url_with_a_note():
    """A model uploaded in this tab is selected (the picker's pending mechanism) and written to
    the URL; the picker and the link say that no link can carry it."""
    at = open_link("models", {"models_tab": "Upload / download"})
    at.file_uploader(key="upload_ckpt").upload(
        "mine.safetensors", dlgm.to_bytes(tiny_entry("x").model)
    )
    at.run()
    no_errors(at)
    assert at.sidebar.selectbox(key="model").value == "mine"
    assert at.query_params["model"] == "mine" and link_params(at)["model"] == ["mine"]
    notes = [c.value for c in at.sidebar.caption if "lives only in this browser tab" in c.value]
    assert len(notes) == 2  # under the picker and under the link


def test_the_model_stays_across_pages_and_leaves_model_free_links():
    """The picker is one widget of the main script: a page change keeps the linked model in
    use (the model card's heading, the posterior's panel titles), not only on show."""
    at = open_link("posterior", {"model": TEST_MODEL, "post_index": "7"})
    at.switch_page("app/pages/models.py").run()
    no_errors(at)
    assert at.subheader[0].value == TEST_MODEL  # the card of the model in use
    assert link_params(at) == {"model": [TEST_MODEL]}  # the posterior's index stays behind
    at.switch_page("app/pages/estimators.py").run()
    no_errors(at)
    assert not at.sidebar.selectbox and "model" not in link_params(at)
    at.switch_page("app/pages/posterior.py").run()
    no_errors(at)
    assert at.sidebar.selectbox(key="model").value == TEST_MODEL
    titles = [c["layout"]["title"]["text"] for c in charts(at)]
    assert any(t.startswith(f"{TEST_MODEL}:") for t in titles)  # the panel of the model in use
    assert not any(t.startswith("mnist") for t in titles)
    assert at.number_input(key="post_index").value == 7
    assert link_params(at) == {"model": [TEST_MODEL], "post_index": ["7"]}


def test_open_page_still_selects_the_model_of_the_session():
    """``conftest.open_page`` selects a model through ``st.session_state`` (no link): the picker
    shows it on every page."""
    at = open_page("samples")
    assert at.sidebar.selectbox(key="model").value == TEST_MODEL
