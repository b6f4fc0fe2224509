"""Samples: ancestral samples of the model beside test data (the paper's Fig. 3a).

Top row: pixel probabilities E[v | h(xi)] of xi ~ N(0, I) next to test images' grey levels;
bottom row: the sampled pixels v ~ pi(v | h) next to the test images as the model sees them
(binarised for Bernoulli models). For models with several stochastic layers, a third figure keeps
the upper layers of a few samples and redraws layers 1..l (``dlgm.sampling.resample_from_layer``).
"""

from __future__ import annotations

import streamlit as st

from app.compute import samples as compute
from app.lessons import lesson_ui
from app.session import model_picker_ui, test_data_ui
from app.widgets import layer_ui, seed_ui, show_figure

N_CHOICES = (16, 25, 36, 49, 64, 100)


def page() -> None:
    st.title("Samples")
    st.caption(
        "Ancestral samples ξ ~ N(0, I), v ~ π(v | h(ξ)) (eq. 2-4) beside test data "
        "(Rezende et al., 2014, Fig. 3a)."
    )
    lesson_ui("samples")
    entry = model_picker_ui()  # after the title: the first load of a model takes seconds
    data = test_data_ui(entry)
    if data is None:
        return
    model = entry.model
    c1, c2, c3 = st.columns([2, 1, 2])
    n = int(
        c1.select_slider(
            "Number of samples",
            N_CHOICES,
            value=compute.N_DEFAULT,
            key="smp_n",
            bind="query-params",
            persist_state="session",
        )
    )
    seed = seed_ui(key="smp_seed", where=c2, default=compute.SEED_DEFAULT)
    # Read-only figures shared by reruns and sessions (app.compute.samples): model
    # probabilities, test grey levels; model samples, test images as the model sees them.
    charts = compute.sample_charts(entry, n, seed)
    top = st.columns(2)
    show_figure(charts[0], where=top[0])
    show_figure(charts[1], where=top[1])
    bottom = st.columns(2)
    show_figure(charts[2], where=bottom[0])
    show_figure(charts[3], where=bottom[1])
    n_layers = len(model.config.n_latent)
    st.subheader("Resampling from layer l down")
    if n_layers == 1:
        st.info(
            f"{entry.name!r} has one stochastic layer (n_latent="
            f"{tuple(model.config.n_latent)}): there is no upper layer to keep fixed. Train "
            "a model with several layers (e.g. latents '10, 2') on the Models page."
        )
        return
    with c3:
        layer = layer_ui(n_layers, key="smp_layer")
    text, silent = compute.influence_text(compute.influence(model))
    st.caption(text)
    if silent:
        names = " and ".join(f"ξ_{i}" for i in silent)
        st.warning(
            f"This model does not use {names}: redrawing it leaves every image as it was, "
            "so h_1 does not depend on it (a layer that training switched off; its "
            "posterior stays at the prior). Resampling from the top then varies the images no "
            "more than resampling from the highest layer in use. A KL warm-up switches a "
            "top layer off in its first epochs; free bits (Models page, 'Free bits per "
            "layer') keep it in use, as in `mnist-deep-rank1-freebits`."
        )
    images = compute.resampled(model, layer, seed)
    kept = ", ".join(f"ξ_{i}" for i in range(layer + 1, n_layers + 1)) or "nothing"
    show_figure(
        compute.grid_chart(
            images,
            tuple(data.shape),
            90 * compute.N_ROWS_LAYER,
            f"Each row keeps {kept} of one sample (first column) and redraws ξ_1..ξ_{layer}",
            n_cols=compute.N_VARIATIONS,
        )
    )


page()
