"""Gradient estimators (paper sec. 3, appendix D): variance against the latent dimension K.

The gradient of E_{N(xi; mu, sigma^2 I)}[f(xi)] is estimated three ways: the score function
(REINFORCE), Gaussian backpropagation (reparameterisation, eq. 10) and Bonnet / Price
(eq. 7-8). The score function's variance grows with K; the other two stay flat.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app.figures_extra import ESTIMATOR_NAMES, variance_figure
from dlgm.estimators import ESTIMATORS, FUNCTIONS, variance_vs_dimension

ALL_KS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
TARGETS = {"mu": ("variance_mu", "d E[f] / d mu"), "sigma": ("variance_sigma", "d E[f] / d sigma")}
TARGETS_KEYS = ("variance_mu", "variance_mu_1", "variance_sigma")
MAX_ELEMENTS = 20_000_000  # largest R * S * K (times K for a full Hessian) computed


@st.cache_data(show_spinner=False, max_entries=2000)
def variance_cell(f: str, k: int, estimator: str, n_samples: int, n_repeats: int,
                  baseline: str | None, mu: float, sigma: float, seed: int) -> dict:
    """Per-coordinate variances of one estimator at one K (cached, so raising K is cheap)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + k * 7 + ESTIMATORS.index(estimator))
    out = variance_vs_dimension(f, [k], n_samples=n_samples, n_repeats=n_repeats, mu=mu,
                                sigma=sigma, estimators=[estimator], generator=g,
                                baseline=baseline if estimator == "score" else None)
    return {key: float(out[key][estimator][0]) for key in TARGETS_KEYS}


def settings_ui() -> dict:
    c1, c2, c3 = st.columns(3)
    f = c1.selectbox("Function f", list(FUNCTIONS), key="est_f")
    c1.caption(FUNCTIONS[f].description)
    k_max = c2.select_slider("Largest K", ALL_KS, value=100, key="est_kmax")
    estimators = c3.multiselect("Estimators", ESTIMATORS, default=list(ESTIMATORS),
                                format_func=ESTIMATOR_NAMES.get, key="est_which")
    with st.expander("More settings"):
        a, b, c = st.columns(3)
        n_samples = a.slider("Samples per estimate S", 1, 100, 10, key="est_s")
        n_repeats = a.slider("Repeated estimates R (to measure the variance)", 20, 1000, 100,
                             step=20, key="est_r")
        target = b.radio("Gradient with respect to", list(TARGETS), key="est_target",
                         format_func=lambda t: TARGETS[t][1])
        loo = b.checkbox("Leave-one-out baseline for the score function", key="est_loo",
                         help="Subtract the mean of f over the other samples (needs S >= 2).")
        mu = c.number_input("mu (every coordinate)", -3.0, 3.0, 0.0, 0.5, key="est_mu")
        sigma = c.number_input("sigma (every coordinate)", 0.1, 3.0, 1.0, 0.1, key="est_sigma")
        seed = int(c.number_input("Seed", 0, 1_000_000, 0, key="est_seed"))
    baseline = "loo" if loo and n_samples >= 2 else None
    if loo and n_samples < 2:
        st.info("The leave-one-out baseline needs at least two samples per estimate; "
                "it is off.")
    return dict(f=f, ks=tuple(k for k in ALL_KS if k <= k_max), estimators=tuple(estimators),
                n_samples=n_samples, n_repeats=n_repeats, target=target, baseline=baseline,
                mu=float(mu), sigma=float(sigma), seed=seed)


def too_big(f: str, k: int, estimator: str, n_samples: int, n_repeats: int) -> bool:
    """Whether one cell would hold more than ``MAX_ELEMENTS`` numbers (shared server)."""
    size = n_repeats * n_samples * k
    if estimator == "price" and not FUNCTIONS[f].separable:
        size *= k  # the full (K, K) Hessian per sample
    return size > MAX_ELEMENTS


def compute(s: dict) -> tuple[dict, list]:
    """{estimator: (n_K,) variances} for the chosen target, from cached cells (NaN where a
    cell is too big to compute), and the list of skipped (estimator, K)."""
    key = TARGETS[s["target"]][0]
    out, skipped = {}, []
    for e in s["estimators"]:
        values = []
        for k in s["ks"]:
            if too_big(s["f"], k, e, s["n_samples"], s["n_repeats"]):
                skipped.append((e, k))
                values.append(np.nan)
                continue
            cell = variance_cell(s["f"], k, e, s["n_samples"], s["n_repeats"], s["baseline"],
                                 s["mu"], s["sigma"], s["seed"])
            values.append(cell[key])
        out[e] = np.array(values)
    return out, skipped


def slope_table(ks: tuple, variances: dict) -> pd.DataFrame:
    """Fitted exponent a of variance ~ K^a on log-log axes, per estimator."""
    rows = []
    x = np.log(np.asarray(ks, dtype=float))
    for e, v in variances.items():
        ok = v > 0
        a = float(np.polyfit(x[ok], np.log(v[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")
        rows.append({"estimator": ESTIMATOR_NAMES[e], f"variance at K={ks[0]}": v[0],
                     f"variance at K={ks[-1]}": v[-1], "fitted exponent a (variance ~ K^a)": a})
    return pd.DataFrame(rows)


def main() -> None:
    st.title("Gradient estimators")
    st.markdown(
        "Three unbiased estimators of the gradient of E[f(xi)], xi ~ N(mu, sigma^2 I_K) "
        "(sec. 3): the **score function** (REINFORCE) multiplies f by the gradient of "
        "log N; **Gaussian backpropagation** differentiates f(mu + sigma eps) (eq. 10); "
        "**Bonnet / Price** use E[grad f] and E[Hessian f] / 2 (eq. 7-8). Appendix D: the "
        "score function's variance per coordinate grows as O(K) (faster without a baseline, "
        "when E[f] grows with K), while Gaussian backpropagation's stays O(1).")
    s = settings_ui()
    if not s["estimators"]:
        st.info("Choose at least one estimator.")
        return
    if not FUNCTIONS[s["f"]].separable and "price" in s["estimators"] and s["ks"][-1] > 20:
        st.caption("This f is not separable, so Price's theorem needs the full Hessian "
                   "(O(K^2) per sample): large K take a few seconds the first time.")
    start = time.perf_counter()
    with st.spinner("Estimating variances..."):
        variances, skipped = compute(s)
    seconds = time.perf_counter() - start
    if skipped:
        cells = ", ".join(f"{e} at K={k}" for e, k in skipped)
        st.info(f"Not computed (more than {MAX_ELEMENTS:,} numbers at once on a shared "
                f"server): {cells}. Lower S or R to include them.")
    what = TARGETS[s["target"]][1]
    fig = variance_figure(np.array(s["ks"]), variances,
                          y_title=f"variance of the estimate of {what} (per coordinate)",
                          title=f"Variance of {what} estimates against K, f = {s['f']} "
                                f"(S = {s['n_samples']}, R = {s['n_repeats']})")
    st.plotly_chart(fig, key="est_chart")
    st.dataframe(slope_table(s["ks"], variances), hide_index=True)
    st.caption(f"Each variance is measured over R = {s['n_repeats']} independent estimates, "
               f"each the mean of S = {s['n_samples']} draws, and averaged over the K "
               f"coordinates. Computed in {seconds:.2f} s (cached per K and estimator). "
               "A variance of exactly 0 (e.g. Gaussian backpropagation of a linear f) cannot "
               "be drawn on the log scale.")


main()
