"""Likelihoods (paper Table 1, Fig. 2c): test log-likelihoods of the loaded models beside the
paper's, and Fig. 2c's four methods on one architecture as ``experiments/fig2c.py`` ships them.

Every number is labelled with its data set, its binarisation and K, the number of importance
samples behind it. For the selected model, a K slider recomputes the importance-sampled
estimate of log p(v) live on a few hundred test images and shows it tighten above the ELBO.
Below, the inference gap log p(v) - ELBO(q) of each shipped model split into its approximation
and amortisation parts (the table ``experiments/gaps.py`` ships), and the same for the selected
model computed live, in chunks of images with a progress bar and a Stop button.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from app.compute import likelihoods as compute
from app.lessons import lesson_ui
from app.session import Entry, all_model_names, get_entry, model_picker_ui, test_data_ui
from app.widgets import show_figure
from dlgm.data import eval_seed
from dlgm.gap import FAMILIES, own_family

GAP_STATE = "ll_gap_run_state"  # {"request", "running", "done"}: no widget owns it

PAPER_BINARISATION = "static (Larochelle & Murray)"
PAPER_ROWS = (  # Table 1 of Rezende et al. (2014): -ln p(v) on the binarised MNIST test set
    ("Factor analysis", 106.00),
    ("NLGBN (Frey & Hinton, 1999)", 95.80),
    ("Wake-sleep (Dayan, 2000)", 91.3),
    ("DLGM, diagonal covariance", 87.30),
    ("DLGM, rank-one covariance", 86.60),
)


def binarisation_label(model) -> str:
    """How the model's training and test images were binarised (from its card)."""
    if not model.config.binary:
        return "none: grey levels (Gaussian pixels)"
    trained = model.metadata.get("binarization") or {}
    kind = str(trained.get("kind", "not recorded"))
    if kind == "static":
        kind += f" (seed {trained.get('seed', 0)})"
    return f"train {kind}; test static (seed {eval_seed(model)})"


def model_rows(paired: dict | None = None) -> list[dict]:
    """One row per model this session can see, from its card; ``paired``: the shipped table of
    paired differences (``pretrained/paired.json``), shown where it is of the card's weights."""
    rows = []
    for name in all_model_names():
        entry = get_entry(name)
        meta, cfg = entry.model.metadata, entry.model.config
        k = meta.get("eval_k")
        nll = float(meta["test_nll"]) if meta.get("test_nll") is not None else math.nan
        shipped = entry.source == "pretrained" and k is not None
        rows.append(
            {
                "model": name,
                "source": f"this app ({entry.source})",
                "data": entry.data_name,
                "pixels": entry.model.n_pixels,
                "latents": sum(cfg.n_latent),
                "covariance": cfg.covariance,
                "binarisation": binarisation_label(entry.model),
                "k": int(k) if k is not None else "not recorded",
                "test images": meta.get("eval_n", "not evaluated"),
                "nll": nll,
                "nll_se": float(meta.get("test_nll_se") or math.nan),
                "paired": compute.paired_cell(paired, name, nll),
                "elbo": float(meta["test_elbo"]) if meta.get("test_elbo") is not None else math.nan,
                "reproduce": f"python -m dlgm eval --model pretrained/{name} --k {int(k)}"
                if shipped
                else "",
            }
        )
    return rows


def measured_rows(paired: dict | None, shown: set[str]) -> list[dict]:
    """The rows of ``paired`` whose model does not ship (e.g. wake-sleep): measured by the
    experiments, with the command that trained them."""
    rows = []
    for name, r in ((paired or {}).get("models") or {}).items():
        if name in shown:
            continue
        how = r.get("eval_binarization") or {}  # the training's kind and the test's seed
        rows.append(
            {
                "model": name,
                "source": f"experiments ({r['path']}, not shipped)",
                "data": r["data"],
                "pixels": r["pixels"],
                "latents": r["latents"],
                "covariance": r["covariance"],
                "binarisation": f"train {how.get('kind', 'not recorded')}; "
                f"test static (seed {how.get('eval_seed', 1)})",
                "k": r["k"],
                "test images": r["n"],
                "nll": r["nll"],
                "nll_se": r["nll_se"],
                "paired": compute.paired_cell(paired, name, r["nll"]),
                "elbo": r["elbo"],
                "reproduce": r.get("command") or "",
            }
        )
    return rows


def per_dimension(rows: list[dict]) -> list[dict]:
    """``rows`` with ``nll_dim``: the NLL per pixel (nats per dimension, NLL / pixels)."""
    return [r | {"nll_dim": r["nll"] / r["pixels"]} for r in rows]


def paper_rows() -> list[dict]:
    return [
        {
            "model": name,
            "source": "paper",
            "data": "mnist",
            "pixels": 784,
            "latents": 200 if name.startswith("DLGM") else "not stated",
            "covariance": "diag" if "diagonal" in name else "rank1" if "rank-one" in name else "",
            "binarisation": PAPER_BINARISATION,
            "k": "not stated",
            "test images": 10_000,
            "nll": nll,
            "nll_se": math.nan,
            "paired": "",
            "elbo": math.nan,
            "reproduce": "",
        }
        for name, nll in PAPER_ROWS
    ]


def table_section() -> None:
    st.subheader("Table 1: test negative log-likelihood")
    paired = compute.shipped_paired()
    ours = model_rows(paired)
    rows = per_dimension(paper_rows() + ours + measured_rows(paired, {r["model"] for r in ours}))
    reference = (paired or {}).get("reference", "rank-one")
    columns = [
        "model",
        "source",
        "data",
        "nll",
        "nll_se",
        "paired",
        "nll_dim",
        "elbo",
        "k",
        "binarisation",
        "test images",
        "pixels",
        "latents",
        "covariance",
        "reproduce",
    ]
    table = pd.DataFrame(rows)[columns].astype({"latents": str, "k": str, "test images": str})
    table = table.rename(
        columns={
            "k": "importance samples K",
            "nll": "test NLL (nats)",
            "nll_se": "± s.e.",
            "paired": f"vs {reference} (paired, nats)",
            "nll_dim": "test NLL per dimension (nats)",
            "elbo": "test ELBO (nats)",
        }
    )
    st.dataframe(table, hide_index=True)
    comparable = [r for r in rows if r["data"] == "mnist" and not math.isnan(r["nll"])]
    rows_key = tuple(tuple(sorted((k, str(v)) for k, v in r.items())) for r in comparable)
    st.plotly_chart(compute.table1_chart(rows_key, comparable), key="ll_table1")
    others = sorted({r["data"] for r in rows if r["data"] != "mnist"})
    grey = sorted({r["data"] for r in rows if r["binarisation"].startswith("none")})
    st.caption(
        "Paper rows: the statically binarised MNIST of Larochelle & Murray (2011), as in Uria "
        "et al. (2014); the paper does not state how many importance samples K it used, and "
        "its DLGM rows are two deterministic layers of 200 units and 200 latents. Rows of "
        "this app come from the model cards (NaN: not evaluated yet); ± s.e. is the standard "
        "error over the test images. The paired column is the mean and standard error of the "
        f"per-image NLL differences against {reference} on the same images and binarisation "
        "(shipped in pretrained/paired.json by "
        f"`{(paired or {}).get('command', 'python experiments/evaluate_cards.py --table')}`; "
        "blank where a card has changed since). Each shipped card is reproduced by the "
        "command in its reproduce column; rows from experiments/ give the command that "
        "trained them (see experiments/RESULTS.md)."
        + (
            f" Only MNIST models are charted: models of {', '.join(others)} have other "
            "pixel counts, so their NLLs are not comparable."
            if others
            else ""
        )
        + (
            f" Models of grey levels ({', '.join(grey)}: Gaussian pixels) have a density, "
            "not a probability: their NLL can be negative and is not comparable with that of "
            "binary images. Per dimension is the NLL divided by the number of pixels."
            if grey
            else ""
        )
    )


def fig2c_section() -> None:
    """Fig. 2c: the paper's four methods with one smaller architecture, as shipped by
    ``experiments/fig2c.py`` (its models are not shipped; the rank-one one is)."""
    st.subheader("Fig. 2c: factor analysis, wake-sleep and the DLGMs on one architecture")
    table = compute.shipped_fig2c()
    rows = compute.fig2c_rows(table)
    if not rows:
        st.info(
            "pretrained/fig2c.json is missing or unreadable; "
            "`python experiments/fig2c.py --write pretrained/fig2c.json` makes it."
        )
        return
    frame = pd.DataFrame(
        [
            {
                "method": r["method"],
                "test NLL (nats)": r["nll"],
                "± s.e.": r["nll_se"],
                "vs DLGM rank-one (paired, nats)": r["paired"],
                "test ELBO (nats)": r.get("elbo"),
                "training": r["training"],
                "model": str(r.get("model", "")),
            }
            for r in rows
        ]
    )
    st.dataframe(frame, hide_index=True)
    charted = [r for r in rows if not r["side_note"]]
    if charted:
        key = tuple(tuple(sorted((k, str(v)) for k, v in r.items())) for r in charted)
        title = f"Fig. 2c on this machine ({charted[0].get('n', '?')} test images)"
        st.plotly_chart(compute.fig2c_chart(key, charted, title), key="ll_fig2c")
    st.caption(
        f"The paper's Fig. 2c compares the four methods with one architecture: "
        f"{table.get('architecture', '100 latents and 300 hidden units')}. Protocol: "
        f"{table.get('protocol', 'not recorded')}. Made by `{table.get('command', '')}` on "
        f"{table.get('machine', 'an unrecorded machine')}; the models other than the shipped "
        "mnist-fig2c-rank1 live in the git-ignored runs/ and are remade by that command. "
        "Factor analysis is the paper's: a DLGM with one stochastic layer and a linear T, "
        "Bernoulli pixels. The rank-one row with u^T D^-1 u <= 1 is not in the paper: it is "
        "the bound that stops rank-one's q collapsing onto one direction (experiments/"
        "RESULTS.md, rank-one vs diagonal). The Gaussian FA row (a side note, not charted) is "
        "a density of dequantised grey levels, not a model of binary images. The paper gives "
        "Fig. 2c as a chart without numbers; see experiments/RESULTS.md, Fig. 2c."
    )


def live_section(entry: Entry):
    """The live estimate against K; returns the test images (None if unavailable)."""
    model = entry.model
    data = test_data_ui(entry)
    if data is None:
        return None
    st.subheader(f"Live estimate for {entry.name}")
    c1, c2, c3 = st.columns(3)
    n_max = len(data)
    n_default, k_default, seed_default = compute.live_defaults(n_max)  # warmed up by the server
    n_images = c1.slider(
        "Test images",
        min(10, n_max),
        min(1000, n_max),
        n_default,
        step=10 if n_max >= 20 else 1,
        key="ll_n",
        bind="query-params",
    )
    k = c2.select_slider(
        "Importance samples K", compute.K_CHOICES, value=k_default, key="ll_k", bind="query-params"
    )
    seed = int(
        c3.number_input("Seed", 0, 1_000_000, seed_default, key="ll_seed", bind="query-params")
    )
    binary = model.config.binary
    with st.spinner(f"Importance sampling with K up to {k} on {n_images} images..."):
        live = compute.live_results(model, entry.name, entry.data_name, n_images, k, seed)
    log_px_mean, elbo_mean = live["log_px_mean"], live["elbo_mean"]
    label = (
        f"{entry.data_name} test images 0-{n_images - 1}, "
        + (f"statically binarised here with seed {eval_seed(model)}" if binary else "grey levels")
        + f" (model card: {binarisation_label(model)})."
    )
    m1, m2, m3, *m4 = st.columns(3 if binary else 4)
    m1.metric(
        f"Test NLL, K = {k}",
        f"{-log_px_mean:.2f} nats",
        help="Mean of -log p(v) over the chosen test images, importance sampled with the "
        "recognition model as proposal (a stochastic upper bound on the NLL).",
    )
    if m4:  # continuous data: a density per image, and per dimension
        m4[0].metric(
            f"Test NLL per dimension, K = {k}",
            f"{-log_px_mean / model.n_pixels:.3f} nats",
            help=f"The NLL per image divided by its {model.n_pixels} pixels. Grey levels "
            "have a density (Gaussian pixels), so the NLL can be negative.",
        )
    m2.metric("Negative ELBO", f"{-elbo_mean:.2f} nats")
    m3.metric(
        "log p(v) above the ELBO",
        f"{log_px_mean - elbo_mean:.2f} nats",
        help="Grows with K towards KL(q || posterior), averaged over images.",
    )
    st.caption(label)
    st.plotly_chart(live["k_curve"], key="ll_k_curve")
    st.caption(
        "The same images for every K; each K uses fresh importance samples, so small "
        "wiggles are Monte Carlo noise. The estimate is a lower bound on log p(v) in "
        "expectation and approaches it as K grows."
    )
    left, right = st.columns(2)
    left.plotly_chart(live["histogram"], key="ll_hist")
    right.plotly_chart(live["worst"], key="ll_worst")
    return data


def _stop_gaps() -> None:
    st.session_state.get(GAP_STATE, {})["running"] = False


def live_gaps_ui(entry: Entry, data) -> dict | None:
    """Widgets, then the live gaps of the selected model once asked for: computed in chunks of
    images (each cached) with a progress bar; Stop (or any click) ends the run and keeps the
    finished chunks, which a new Compute reuses. Returns its row, or None."""
    model = entry.model
    own = own_family(model)
    c1, c2, c3 = st.columns(3)
    n_max = min(200, len(data))
    n = int(
        c1.slider(
            "Test images",
            min(10, n_max),
            n_max,
            min(compute.GAP_N, n_max),
            step=10 if n_max >= 20 else 1,
            key="ll_gap_n",
            bind="query-params",
        )
    )
    steps = int(
        c2.select_slider(
            "Adam steps of q*",
            compute.GAP_STEPS,
            value=compute.GAP_STEPS_DEFAULT,
            key="ll_gap_steps",
            bind="query-params",
        )
    )
    family = c3.selectbox(
        "q* family",
        FAMILIES,
        index=FAMILIES.index(own),
        key="ll_gap_family",
        bind="query-params",
        help=f"The recognition model's own family is {own!r}; another family asks what q* "
        "of that family would reach for this model (full: any Gaussian).",
    )
    state = st.session_state.setdefault(GAP_STATE, {})
    request = (entry.model_id, n, steps, family)
    if st.button(
        f"Compute the gaps of {entry.name}", key="ll_gap_run", icon=":material/play_arrow:"
    ):
        state.update(request=request, running=True, done=0)
    if state.get("request") != request:
        state["running"] = False
        st.caption(
            f"Fits q* to each of the first {n} test images ({steps} Adam steps of "
            f"{compute.GAP_SAMPLES} samples, lr {compute.GAP_LR} decayed to 0, from q), "
            f"{compute.GAP_CHUNK} images at a time: about 3 s of CPU per chunk for the "
            "200-latent models at 100 steps, 6 s at 300, 1 s for the 2-latent ones."
        )
        return None
    chunks = compute.gap_chunks(n)
    args = (model, entry.data_name)
    parts = []
    if state.get("running"):
        stop = st.empty()
        stop.button("Stop", key="ll_gap_stop", icon=":material/stop:", on_click=_stop_gaps)
        bar = st.progress(0.0, text=f"Fitting q* for {entry.name}...")
        for i, (a, b) in enumerate(chunks):
            parts.append(compute.gap_chunk(*args, a, b, family, steps, compute.GAP_SEED))
            state["done"] = i + 1
            bar.progress(b / n, text=f"q* fitted for {b} of {n} images")
        state["running"] = False
        stop.empty()
        bar.empty()
    else:
        for a, b in chunks[: state.get("done", 0)]:
            parts.append(compute.gap_chunk(*args, a, b, family, steps, compute.GAP_SEED))
        if len(parts) < len(chunks):
            st.info(
                f"Stopped after {chunks[len(parts) - 1][1] if parts else 0} of {n} images; "
                "the chart and table above show those. Compute goes on from there (finished "
                "images are kept)."
            )
    if not parts:
        return None
    done = chunks[len(parts) - 1][1]
    return compute.live_gap_row(
        f"{entry.name} (live, {done} images)",
        parts,
        family=family,
        steps=steps,
        log_px_method=compute.gap_log_px_method(model),
    )


def gaps_section(entry: Entry, data) -> None:
    st.subheader("Where the nats go: the inference gap")
    st.markdown(
        "The gap between log p(v) and the ELBO of the recognition model's q has two parts "
        "(Cremer, Li & Duvenaud, 2018). Let q* be the Gaussian of q's own family (diagonal or "
        "rank-one) with the highest ELBO for one image alone, fitted by Adam from q "
        "(`dlgm.gap.optimal_q`). Then log p(v) − ELBO(q) = **approximation gap** "
        "log p(v) − ELBO(q*) (no Gaussian of the family matches the true posterior) + "
        "**amortisation gap** ELBO(q*) − ELBO(q) (the encoder, one network for every image, "
        "does not find the family's best member). Nats per image, mean ± standard error over "
        "test images."
    )
    chart = st.container()
    table = compute.shipped_gaps()
    live = live_gaps_ui(entry, data) if data is not None else None
    rows = compute.shipped_gap_rows(table) + ([live] if live else [])
    if not rows:
        chart.info(
            "No gap table is shipped (pretrained/gaps.json; `python experiments/gaps.py` "
            "writes it); compute the selected model's gaps below."
        )
        return
    key = tuple(tuple(sorted((k, str(v)) for k, v in r.items())) for r in rows)
    show_figure(
        compute.gap_chart(key, rows, "Approximation and amortisation gaps"),
        where=chart,
        key="ll_gaps",
    )
    chart.dataframe(pd.DataFrame(compute.gap_table(rows)), hide_index=True)
    if table:
        chart.caption(
            f"Shipped rows: {table['protocol']} Computed by `{table['command']}` on "
            f"{table['machine']}. Rows marked live: this page's computation for the selected "
            f"model, with {compute.GAP_ELBO_SAMPLES:,} draws for both ELBOs and lr "
            f"{compute.GAP_LR} (fewer steps than the shipped rows, so its amortisation gaps "
            "can be a little smaller)."
        )


def main() -> None:
    st.title("Likelihoods")
    st.markdown(
        "How well do the models explain held-out images? -log p(v) in nats per image (lower "
        "is better), estimated by importance sampling with the recognition model as the "
        "proposal: log p(v) ~ log (1/K) sum_k p(v, xi_k) / q(xi_k | v). With K = 1 this is "
        "a one-sample ELBO; as K grows it tightens towards log p(v)."
    )
    lesson_ui("likelihoods")
    entry = model_picker_ui()
    table_section()
    fig2c_section()
    if len(entry.model.data_shape) != 2:
        st.warning(f"{entry.name} is not an image model; the live estimates need one.")
        gaps_section(entry, None)
        return
    gaps_section(entry, live_section(entry))


main()
