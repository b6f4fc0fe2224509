"""Likelihoods (paper Table 1): test log-likelihoods of the loaded models beside the paper's.

Every number is labelled with its data set, its binarisation and K, the number of importance
samples behind it. For the selected model, a K slider recomputes the importance-sampled
estimate of log p(v) live on a few hundred test images and shows it tighten above the ELBO.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from app.compute import likelihoods as compute
from app.lessons import lesson_ui
from app.session import Entry, all_model_names, get_entry, model_picker_ui, test_data_ui
from dlgm.data import eval_seed

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


def model_rows() -> list[dict]:
    """One row per model this session can see, from its card."""
    rows = []
    for name in all_model_names():
        entry = get_entry(name)
        meta, cfg = entry.model.metadata, entry.model.config
        k = meta.get("eval_k")
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
                "nll": float(meta["test_nll"]) if meta.get("test_nll") is not None else math.nan,
                "elbo": float(meta["test_elbo"]) if meta.get("test_elbo") is not None else math.nan,
            }
        )
    return rows


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
            "elbo": math.nan,
        }
        for name, nll in PAPER_ROWS
    ]


def table_section() -> None:
    st.subheader("Table 1: test negative log-likelihood")
    rows = paper_rows() + model_rows()
    columns = [
        "model",
        "source",
        "data",
        "nll",
        "elbo",
        "k",
        "binarisation",
        "test images",
        "pixels",
        "latents",
        "covariance",
    ]
    table = pd.DataFrame(rows)[columns].astype({"latents": str, "k": str, "test images": str})
    table = table.rename(
        columns={"k": "importance samples K", "nll": "test NLL (nats)", "elbo": "test ELBO (nats)"}
    )
    st.dataframe(table, hide_index=True)
    comparable = [r for r in rows if r["data"] == "mnist" and not math.isnan(r["nll"])]
    rows_key = tuple(tuple(sorted((k, str(v)) for k, v in r.items())) for r in comparable)
    st.plotly_chart(compute.table1_chart(rows_key, comparable), key="ll_table1")
    others = sorted({r["data"] for r in rows if r["data"] != "mnist"})
    st.caption(
        "Paper rows: the statically binarised MNIST of Larochelle & Murray (2011), as in Uria "
        "et al. (2014); the paper does not state how many importance samples K it used, and "
        "its DLGM rows are two deterministic layers of 200 units and 200 latents. Rows of "
        "this app come from the model cards (NaN: not evaluated yet)."
        + (
            f" Only MNIST models are charted: models of {', '.join(others)} have other "
            "pixel counts, so their NLLs are not comparable."
            if others
            else ""
        )
    )


def live_section(entry: Entry) -> None:
    model = entry.model
    data = test_data_ui(entry)
    if data is None:
        return
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
    m1, m2, m3 = st.columns(3)
    m1.metric(
        f"Test NLL, K = {k}",
        f"{-log_px_mean:.2f} nats",
        help="Mean of -log p(v) over the chosen test images, importance sampled with the "
        "recognition model as proposal (a stochastic upper bound on the NLL).",
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
    if len(entry.model.data_shape) != 2:
        st.warning(f"{entry.name} is not an image model; the live estimate needs one.")
        return
    live_section(entry)


main()
