"""AppTest: The Models page: the card, live training, a run ended by a rerun, step mode, uploads.

Each test opens the page through the navigation (``conftest.open_page``, the tiny shipped digits
model unless a test selects another), checks it runs without an exception, then sets a widget,
reruns and checks what changed.
"""

import numpy as np
import pytest
from conftest import array, charts, open_page, tiny_entry, trace_types, with_model

import dlgm


def test_models_page_shows_the_card():
    at = open_page("models")
    assert at.title[0].value == "Models"
    assert at.subheader[0].value == "digits-2d-rank1"
    arch = at.table[0].value
    assert arch.loc["recognition covariance", "value"] == "rank1"
    assert arch.loc["total latents K", "value"] == "2"
    assert "scatter" not in trace_types(at)  # the training history: drawn when opened
    at.session_state["models_history"] = True  # open the "Training history" expander
    at.run()
    assert not at.exception, [e.value for e in at.exception]
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
    trainer = Trainer(entry.model, load_dataset("digits", "train").x, batch_size=100, device="cpu")
    for _ in range(3):
        trainer.step()
    log = {
        "name": "half",
        "epochs": 2,
        "history": [],
        "status": "running",
        "seconds": 0.5,
        "trainer": trainer,
    }
    at = open_page(
        "models", models_tab="Train a new model", models_train_log=log, **with_model(entry)
    )
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


def test_models_train_the_nlgbn_with_a_delayed_u():
    """No hidden widths + a probit input activation: the NLGBN T(h) = A probit(h) + b; u_delay
    reaches the rank-one run (the card records it) and u is still 0 after the first epoch."""
    at = open_page("models", models_tab="Train a new model")
    at.text_input(key="train_name").input("nlgbn")
    at.text_input(key="train_hidden").input("")
    at.selectbox(key="train_act").set_value("probit")
    at.selectbox(key="train_cov").set_value("rank1")
    at.number_input(key="train_u_delay").set_value(1)
    at.number_input(key="train_epochs").set_value(1)
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    model = at.session_state["user_models"]["nlgbn"].model
    assert model.config.gen_hidden == () and model.config.rec_hidden == (200,)
    assert model.config.input_activation == "probit" and model.config.covariance == "rank1"
    assert model.metadata["training"]["u_delay"] == 1
    assert not model.head_u.weight.any()  # u = 0 for the first epoch


def test_models_u_delay_is_ignored_for_a_diagonal_covariance():
    at = open_page("models", models_tab="Train a new model")
    at.text_input(key="train_name").input("diag")
    at.text_input(key="train_hidden").input("16")
    at.selectbox(key="train_cov").set_value("diag")
    at.number_input(key="train_u_delay").set_value(3)
    at.number_input(key="train_epochs").set_value(1)
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    model = at.session_state["user_models"]["diag"].model
    assert model.config.input_activation is None  # the default: T_l is a plain MLP
    assert model.metadata["training"]["u_delay"] == 0


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
