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

from app.compute.estimators import MAX_ELEMENTS, TARGETS, variance_results
from app.figures.curves import ESTIMATOR_NAMES
from app.lessons import lesson_ui
from dlgm.estimators import ESTIMATORS, FUNCTIONS

ALL_KS = (1, 2, 5, 10, 20, 50, 100, 200, 500)


def settings_ui() -> dict:
    c1, c2, c3 = st.columns(3)
    f = c1.selectbox("Function f", list(FUNCTIONS), key="est_f", bind="query-params")
    c1.caption(FUNCTIONS[f].description)
    k_max = c2.select_slider("Largest K", ALL_KS, value=100, key="est_kmax", bind="query-params")
    estimators = c3.multiselect(
        "Estimators",
        ESTIMATORS,
        default=list(ESTIMATORS),
        format_func=ESTIMATOR_NAMES.get,
        key="est_which",
        bind="query-params",
    )
    with st.expander("More settings"):
        a, b, c = st.columns(3)
        n_samples = a.slider("Samples per estimate S", 1, 100, 10, key="est_s", bind="query-params")
        n_repeats = a.slider(
            "Repeated estimates R (to measure the variance)",
            20,
            1000,
            100,
            step=20,
            key="est_r",
            bind="query-params",
        )
        target = b.radio(
            "Gradient with respect to",
            list(TARGETS),
            key="est_target",
            bind="query-params",
            format_func=lambda t: TARGETS[t][1],
        )
        loo = b.checkbox(
            "Leave-one-out baseline for the score function",
            key="est_loo",
            bind="query-params",
            help="Subtract the mean of f over the other samples (needs S >= 2).",
        )
        mu = c.number_input(
            "mu (every coordinate)", -3.0, 3.0, 0.0, 0.5, key="est_mu", bind="query-params"
        )
        sigma = c.number_input(
            "sigma (every coordinate)", 0.1, 3.0, 1.0, 0.1, key="est_sigma", bind="query-params"
        )
        seed = int(c.number_input("Seed", 0, 1_000_000, 0, key="est_seed", bind="query-params"))
    baseline = "loo" if loo and n_samples >= 2 else None
    if loo and n_samples < 2:
        st.info("The leave-one-out baseline needs at least two samples per estimate; it is off.")
    return dict(
        f=f,
        ks=tuple(k for k in ALL_KS if k <= k_max),
        estimators=tuple(estimators),
        n_samples=n_samples,
        n_repeats=n_repeats,
        target=target,
        baseline=baseline,
        mu=float(mu),
        sigma=float(sigma),
        seed=seed,
    )


def slope_table(ks: tuple, variances: dict) -> pd.DataFrame:
    """Fitted exponent a of variance ~ K^a on log-log axes, per estimator."""
    rows = []
    x = np.log(np.asarray(ks, dtype=float))
    for e, v in variances.items():
        ok = v > 0
        a = float(np.polyfit(x[ok], np.log(v[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")
        rows.append(
            {
                "estimator": ESTIMATOR_NAMES[e],
                f"variance at K={ks[0]}": v[0],
                f"variance at K={ks[-1]}": v[-1],
                "fitted exponent a (variance ~ K^a)": a,
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    st.title("Gradient estimators")
    st.markdown(
        "Three unbiased estimators of the gradient of E[f(xi)], xi ~ N(mu, sigma^2 I_K) "
        "(sec. 3): the **score function** (REINFORCE) multiplies f by the gradient of "
        "log N; **Gaussian backpropagation** differentiates f(mu + sigma eps) (eq. 10); "
        "**Bonnet / Price** use E[grad f] and E[Hessian f] / 2 (eq. 7-8). Appendix D: the "
        "score function's variance per coordinate grows as O(K) (faster without a baseline, "
        "when E[f] grows with K), while Gaussian backpropagation's stays O(1)."
    )
    lesson_ui("estimators")
    s = settings_ui()
    if not s["estimators"]:
        st.info("Choose at least one estimator.")
        return
    if not FUNCTIONS[s["f"]].separable and "price" in s["estimators"] and s["ks"][-1] > 20:
        st.caption(
            "This f is not separable, so Price's theorem needs the full Hessian "
            "(O(K^2) per sample): large K take a few seconds the first time."
        )
    start = time.perf_counter()
    with st.spinner("Estimating variances..."):
        # Variances and figure of these settings, read-only and shared (app.compute.estimators).
        results = variance_results(tuple(s.items()))
    seconds = time.perf_counter() - start
    variances, skipped = results["variances"], results["skipped"]
    if skipped:
        cells = ", ".join(f"{e} at K={k}" for e, k in skipped)
        st.info(
            f"Not computed (more than {MAX_ELEMENTS:,} numbers at once on a shared "
            f"server): {cells}. Lower S or R to include them."
        )
    st.plotly_chart(results["fig"], key="est_chart")
    st.dataframe(slope_table(s["ks"], variances), hide_index=True)
    st.caption(
        f"Each variance is measured over R = {s['n_repeats']} independent estimates, "
        f"each the mean of S = {s['n_samples']} draws, and averaged over the K "
        f"coordinates. Computed in {seconds:.2f} s (cached per K and estimator). "
        "A variance of exactly 0 (e.g. Gaussian backpropagation of a linear f) cannot "
        "be drawn on the log scale."
    )


main()
