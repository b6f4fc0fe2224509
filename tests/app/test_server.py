"""app/server.py and the server's settings: GC, the warm-up after the first page, what the
warm-up computes (through the pages' own cached functions), and config.toml."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_MODEL, open_page

from app import limits, server
from app.compute import embedding, likelihoods, models, posterior, samples

ROOT = Path(__file__).resolve().parents[2]
COMPUTED = (
    likelihoods.live_results,
    likelihoods.log_px,
    likelihoods.elbo,
    posterior.panel,
    posterior.grid,
    posterior.samples,
    posterior.image_panel,
    embedding.embedding,
    embedding.embedding_chart,
    samples.ancestral_samples,
    samples.grid_chart,
)


def test_server_settings_for_many_sessions():
    """The server never runs a full garbage collection after every script run (about 0.2 s
    with the GIL held, once torch and plotly are loaded: most of the server's time with 20
    sessions), and the warm-up freezes what is loaded so far out of the collector's way. No
    file watcher (it walked the .venv that `make run` makes inside the project) and no Deploy
    button."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    assert config["server"]["fileWatcherType"] == "none"
    assert config["client"]["toolbarMode"] == "viewer"
    assert limits.TORCH_THREADS >= 1
    try:
        server.warm_up(modules=("json", "no_such_module_here"), defaults=False)  # one skipped
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_warm_up_fills_the_caches_that_first_visits_read(monkeypatch):
    """``server.warm_defaults`` (run by the warm-up) computes a model's first-visit results
    through the pages' own cached functions: afterwards the pages draw without computing any of
    them again."""
    for f in COMPUTED:
        f.clear()
    assert server.warm_defaults(TEST_MODEL) == ["likelihoods", "posterior", "embedding", "samples"]

    def computed_again(*args, **kwargs):
        raise AssertionError("computed again: the warm-up's result was not found")

    for module, name in (
        (likelihoods, "log_likelihood"),
        (likelihoods, "k_curve_figure"),
        (posterior, "posterior_grid"),
        (posterior, "posterior_figure"),
        (embedding, "embedding_figure"),
        (samples, "image_grid_figure"),
        (samples, "ancestral"),
    ):
        monkeypatch.setattr(module, name, computed_again)
    for page, n_charts in (("likelihoods", 6), ("posterior", 3), ("embedding", 1), ("samples", 4)):
        assert len(open_page(page).get("plotly_chart")) == n_charts, page


def test_warm_up_failures_are_swallowed(monkeypatch):
    """A page whose warm-up fails is skipped (the page computes it itself), and a warm-up
    whose defaults fail altogether still returns normally."""

    def broken(*args, **kwargs):
        raise RuntimeError("broken")

    likelihoods.live_results.clear()
    likelihoods.log_px.clear()
    monkeypatch.setattr(likelihoods, "log_likelihood", broken)
    assert "likelihoods" not in server.warm_defaults(TEST_MODEL)
    assert server.warm_defaults(name="no-such-model") == []
    monkeypatch.setattr(server, "warm_defaults", broken)
    try:
        server.warm_up(modules=("json",))  # must not raise
    finally:
        gc.unfreeze()
    likelihoods.live_results.clear()
    likelihoods.log_px.clear()


def test_shared_figures_follow_their_content():
    """Figures keyed by content: the same images or history give the stored figure, other
    content a new one."""
    a = np.zeros((4, 64), np.float32)
    b = a.copy()
    b[0, 0] = 1.0
    args = ((8, 8), 200, "t")
    assert samples.grid_chart(a, *args) is samples.grid_chart(a.copy(), *args)
    assert samples.grid_chart(b, *args) is not samples.grid_chart(a, *args)
    history = [{"epoch": 1.0, "free_energy": 90.0, "valid_elbo": -91.0}]
    first = models.history_chart(history, "h")
    assert models.history_chart([dict(h) for h in history], "h") is first
    assert models.history_chart(history + [{"epoch": 2.0, "free_energy": 80.0}], "h") is not first
