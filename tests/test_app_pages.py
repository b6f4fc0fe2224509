"""AppTest tests of the Models, Embedding, Posterior and Samples pages (app/pages/*.py).

Each test starts the app from ``streamlit_app.py``, switches to a page, checks that it runs
without an exception, then sets a widget, reruns and checks what changed. They use the shipped
digits model (8x8 images, 2 latents) and tiny session models, so each takes about a second
once torch and the app are imported.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

import dlgm
from app.common import Entry

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"
TIMEOUT = 120  # the first run of a process imports torch, plotly and the model

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


def open_page(page: str, **state) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, at.exception
    at.switch_page(f"app/pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at) -> list[dict]:
    """The Plotly figures on the page, as JSON dicts."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


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


def tiny_entry(name: str, n_latent=(3,), data_shape=(8, 8)) -> Entry:
    config = dlgm.DLGMConfig(data_shape=data_shape, n_latent=n_latent, gen_hidden=(16,),
                             rec_hidden=(16,), covariance="rank1")
    model = dlgm.DLGM(config, metadata={"data": "digits"}, seed=0).eval().requires_grad_(False)
    return Entry(name, model, f"trained:{name}", "trained")


def with_model(entry: Entry) -> dict:
    """Session state that adds ``entry`` to the session and selects it."""
    return {"user_models": {entry.name: entry}, "current_model": entry.name}


# ---------------------------------------------------------------------------- Models
def test_models_page_shows_the_card():
    at = open_page("models")
    assert at.title[0].value == "Models"
    assert at.subheader[0].value == "digits-2d-rank1"
    arch = at.table[0].value
    assert arch.loc["recognition covariance", "value"] == "rank1"
    assert arch.loc["total latents K", "value"] == "2"
    assert "scatter" in trace_types(at)  # the training history chart


def test_models_train_two_epochs_adds_a_session_model():
    at = open_page("models", models_tab="Train a new model")
    at.text_input(key="train_name").input("tiny")
    at.text_input(key="train_hidden").input("32")
    at.number_input(key="train_epochs").set_value(2)
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert "tiny" in at.sidebar.selectbox(key="model_picker").options
    assert at.sidebar.selectbox(key="model_picker").value == "tiny"  # selected after the run
    log = at.session_state["models_train_log"]
    assert log["status"] == "finished" and log["history"][-1]["epoch"] == pytest.approx(2.0)
    assert "Trained 'tiny'" in at.success[0].value
    epochs = array(charts(at)[0]["data"][0]["x"])  # the chart of the run
    assert len(epochs) >= 2 and epochs[-1] == pytest.approx(2.0)
    model = at.session_state["user_models"]["tiny"].model
    assert model.metadata["training"]["steps"] == 2 * 15  # 1437 digits, minibatch 100
    assert model.config.gen_hidden == (32,)


def test_models_run_ended_by_a_rerun_keeps_the_model():
    """Stop (or any click) reruns the script, which ends the loop; the next run reports it.
    Here: 3 updates of 100 images out of 1437 = 0.21 epochs."""
    from dlgm.data import load_dataset
    from dlgm.train import Trainer

    entry = tiny_entry("half")
    entry.model.requires_grad_(True)
    trainer = Trainer(entry.model, load_dataset("digits", "train").x, batch_size=100,
                      device="cpu")
    for _ in range(3):
        trainer.step()
    log = {"name": "half", "epochs": 2, "history": [], "status": "running", "seconds": 0.5,
           "trainer": trainer}
    at = open_page("models", models_tab="Train a new model", models_train_log=log,
                   **with_model(entry))
    assert "Stopped 'half' after 0.21 of 2 epochs" in at.success[0].value
    model = at.session_state["user_models"]["half"].model
    assert model.metadata["training"]["steps"] == 3
    assert not any(p.requires_grad for p in model.parameters())
    assert "trainer" not in at.session_state["models_train_log"]


def test_models_bad_settings_show_the_config_error():
    at = open_page("models", models_tab="Train a new model")
    at.text_input(key="train_latents").input("0")
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception
    assert "n_latent" in at.error[0].value
    at.text_input(key="train_latents").input("two")
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception and "whole numbers" in at.error[0].value


def test_models_step_mode_shows_eps_xi_and_reconstruction():
    at = open_page("models", models_tab="Step mode")
    next(b for b in at.button if b.label.startswith("Start step mode")).click().run()
    assert not at.exception
    next(b for b in at.button if b.label == "One step").click().run()
    assert not at.exception, [e.value for e in at.exception]
    state = at.session_state["models_step"]
    assert state["trainer"].step_count == 1 and len(state["losses"]) == 1
    assert trace_types(at).count("bar") == 3  # eps, mu, xi
    assert trace_types(at).count("heatmap") == 2  # the digit and its reconstruction
    before = array(charts(at)[2]["data"][2]["y"])
    next(b for b in at.button if b.label == "10 steps").click().run()
    assert at.session_state["models_step"]["trainer"].step_count == 11
    assert "digits-2d-rank1-steps" in at.sidebar.selectbox(key="model_picker").options
    assert not np.array_equal(array(charts(at)[2]["data"][2]["y"]), before)  # xi moved


def test_models_upload_accepts_a_checkpoint_and_rejects_a_pickle():
    entry = tiny_entry("up")
    at = open_page("models", models_tab="Upload / download")
    assert at.get("download_button")
    at.file_uploader(key="upload_ckpt").upload("mine.safetensors", dlgm.to_bytes(entry.model))
    at.run()
    assert not at.exception and not at.error
    assert at.sidebar.selectbox(key="model_picker").value == "mine"
    assert "Loaded mine.safetensors" in at.success[0].value
    at.file_uploader(key="upload_ckpt").clear().upload("evil.safetensors", b"\x80\x04K\x01.")
    at.run()
    assert not at.exception
    assert "pickle" in at.error[0].value


# ---------------------------------------------------------------------------- Embedding
def test_embedding_loads_with_a_scatter_chart():
    at = open_page("embedding")
    types = trace_types(at)
    assert types.count("scattergl") == 11  # ten digit classes + the clickable plane
    fig = charts(at)[0]
    assert fig["layout"]["xaxis"]["title"]["text"] == "ξ₁"
    assert at.info  # the hint beside the chart


def test_embedding_manifold_and_pca_for_more_latents():
    at = open_page("embedding", **with_model(tiny_entry("k3", n_latent=(3,))))
    fig = charts(at)[0]
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("PC 1")
    at.segmented_control(key="emb_view").set_value("Manifold").run()
    assert not at.exception
    assert trace_types(at) == ["heatmap"]
    assert charts(at)[0]["layout"]["title"]["text"].startswith("Pixel means decoded on a 15")


# ---------------------------------------------------------------------------- Posterior
def test_posterior_metric_changes_with_the_image():
    at = open_page("posterior")
    first = metric(at, "log p(v)")
    assert float(first) < 0
    assert {"ELBO", "KL(q ‖ p(ξ | v))", "gap log p(v) − ELBO"} <= {m.label for m in at.metric}
    post = [[t["type"] for t in fig["data"]] for fig in charts(at)][-1]
    assert post == ["contour", "contour", "scatter", "scatter", "scatter"]  # p, q, samples, MAP
    at.number_input(key="post_index").set_value(7).run()
    assert not at.exception
    assert metric(at, "log p(v)") != first


def test_posterior_grid_controls_and_twins():
    at = open_page("posterior")
    at.slider(key="post_grid").set_value(31).run()
    assert not at.exception
    post = charts(at)[-1]["data"][0]
    assert post["type"] == "contour" and array(post["z"]).shape == (31, 31)
    # a session model named like a covariance twin of the pretrained digits-2d-rank1
    twin = tiny_entry("digits-2d-rank1-joint", n_latent=(2,))
    at2 = open_page("posterior", **with_model(twin), post_grid=31)
    stems = [n for n in at2.sidebar.selectbox(key="model_picker").options
             if n.startswith("digits-2d-")]
    panels = sum(m.label == "log p(v)" for m in at2.metric)
    assert panels == len(stems) >= 2  # one panel and one set of numbers per twin
    at2.toggle(key="post_twins").set_value(False).run()
    assert not at2.exception
    assert sum(m.label == "log p(v)" for m in at2.metric) == 1


def test_posterior_explains_models_without_two_latents():
    at = open_page("posterior", **with_model(tiny_entry("k3")))
    assert "exactly 2 latents" in at.info[0].value
    assert not at.metric


# ---------------------------------------------------------------------------- Samples
def test_samples_seed_changes_the_images():
    at = open_page("samples")
    assert trace_types(at) == ["heatmap"] * 4
    before = array(charts(at)[0]["data"][0]["z"])
    at.number_input(key="smp_seed").set_value(3).run()
    assert not at.exception
    after = array(charts(at)[0]["data"][0]["z"])
    assert after.shape == before.shape == (6 * 9 - 1, 6 * 9 - 1)  # 36 images of 8x8, 1px gaps
    assert not np.array_equal(after, before)
    assert "one stochastic layer" in at.info[0].value


def test_samples_resample_from_a_layer():
    at = open_page("samples", **with_model(tiny_entry("deep", n_latent=(3, 2))))
    assert trace_types(at) == ["heatmap"] * 5
    top = array(charts(at)[-1]["data"][0]["z"])
    at.select_slider(key="smp_layer").set_value(1).run()
    assert not at.exception
    assert not np.array_equal(array(charts(at)[-1]["data"][0]["z"]), top)


def test_samples_number_survives_a_page_change():
    at = open_page("samples")
    at.select_slider(key="smp_n").set_value(16).run()
    at.switch_page("app/pages/models.py").run()
    at.switch_page("app/pages/samples.py").run()
    assert at.select_slider(key="smp_n").value == 16


def test_server_settings_for_many_sessions():
    """The server never runs a full garbage collection after every script run (about 0.2 s
    with the GIL held, once torch and plotly are loaded: most of the server's time with 20
    sessions), and the warm-up freezes what is loaded so far out of the collector's way."""
    import gc

    from app import limits

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((APP.parent / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    assert limits.TORCH_THREADS >= 1
    try:
        limits.warm_up(modules=("json", "no_such_module_here"), defaults=False)  # one skipped
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


# ---------------------------------------------------------------------------- server warm-up
def test_warm_up_fills_the_caches_that_first_visits_read(monkeypatch):
    """``app.shared.warm_defaults`` (run by the server's warm-up) computes the default model's
    first-visit results through the pages' own cached functions: afterwards the pages draw
    without computing any of them again."""
    from app import shared

    for f in (shared.live_results, shared.log_px_cached, shared.elbo_cached, shared.panel,
              shared.grid, shared.samples, shared.image_panel, shared.embedding,
              shared.embedding_chart, shared.ancestral_samples, shared.grid_chart):
        f.clear()
    assert shared.warm_defaults() == ["likelihoods", "posterior", "embedding_page",
                                      "samples_page", "table"]

    def computed_again(*args, **kwargs):
        raise AssertionError("computed again: the warm-up's result was not found")

    for name in ("log_likelihood", "posterior_grid", "posterior_figure", "k_curve_figure",
                 "embedding_figure", "image_grid_figure", "ancestral"):
        monkeypatch.setattr(shared, name, computed_again)
    for page, n_charts in (("likelihoods", 4), ("posterior", 3), ("embedding", 1),
                           ("samples", 4)):
        assert len(open_page(page).get("plotly_chart")) == n_charts, page


def test_warm_up_failures_are_swallowed(monkeypatch):
    """A part of the warm-up that fails is skipped (the page computes it itself), and a
    warm-up whose defaults fail altogether still returns normally."""
    import gc

    from app import limits, shared

    def broken(*args, **kwargs):
        raise RuntimeError("broken")

    shared.live_results.clear()
    shared.log_px_cached.clear()
    monkeypatch.setattr(shared, "log_likelihood", broken)
    assert "likelihoods" not in shared.warm_defaults()
    assert shared.warm_defaults(name="no-such-model") == []
    monkeypatch.setattr(shared, "warm_defaults", broken)
    try:
        limits.warm_up(modules=("json",))  # must not raise
    finally:
        gc.unfreeze()
    shared.live_results.clear()
    shared.log_px_cached.clear()


def test_shared_figures_follow_their_content():
    """Figures keyed by content: the same images or history give the stored figure, other
    content a new one."""
    from app import shared

    a = np.zeros((4, 64), np.float32)
    b = a.copy()
    b[0, 0] = 1.0
    kw = dict(shape=(8, 8), title="t", height=200)
    assert shared.image_grid_chart(a, **kw) is shared.image_grid_chart(a.copy(), **kw)
    assert shared.image_grid_chart(b, **kw) is not shared.image_grid_chart(a, **kw)
    history = [{"epoch": 1.0, "free_energy": 90.0, "valid_elbo": -91.0}]
    first = shared.history_chart(history, "h")
    assert shared.history_chart([dict(h) for h in history], "h") is first
    assert shared.history_chart(history + [{"epoch": 2.0, "free_energy": 80.0}], "h") is not first
