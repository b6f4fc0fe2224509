"""Samples: ancestral samples of the model beside test data (the paper's Fig. 3a).

Top row: pixel probabilities E[v | h(xi)] of xi ~ N(0, I) next to test images' grey levels;
bottom row: the sampled pixels v ~ pi(v | h) next to the test images as the model sees them
(binarised for Bernoulli models). For models with several stochastic layers, a third figure keeps
the upper layers of a few samples and redraws layers 1..l (``dlgm.sampling.resample_from_layer``).
"""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from app import common
from app.common import test_images
from app.figures import image_grid_figure
from app.widgets import layer_ui, seed_ui, show_figure, test_data_ui
from dlgm.sampling import ancestral, resample_from_layer

N_CHOICES = (16, 25, 36, 49, 64, 100)
N_ROWS_LAYER, N_VARIATIONS = 6, 8  # resampling figure: rows of samples x variations


@st.cache_data(show_spinner=False, max_entries=64)
def draw(_model, model_id: str, n: int, seed: int) -> dict:
    """``n`` ancestral samples from ``seed``: numpy ``probs`` (n, D), ``binary`` (n, D),
    ``xi`` (n, K)."""
    s = ancestral(_model, n, generator=torch.Generator().manual_seed(seed))
    return {k: v.numpy() for k, v in s._asdict().items()}


@st.cache_data(show_spinner=False, max_entries=64)
def redraw(_model, model_id: str, layer: int, seed: int) -> np.ndarray:
    """For ``N_ROWS_LAYER`` ancestral samples, ``N_VARIATIONS`` redraws of layers 1..layer:
    pixel probabilities, (N_ROWS_LAYER * N_VARIATIONS, D), one row per kept sample (its own
    first column is the original)."""
    g = torch.Generator().manual_seed(seed)
    base = ancestral(_model, N_ROWS_LAYER, generator=g)
    rows = []
    for i in range(N_ROWS_LAYER):
        new = resample_from_layer(_model, base.xi[i], layer, n=N_VARIATIONS - 1, generator=g)
        rows.append(torch.cat([base.probs[i:i + 1], new.probs]))
    return torch.cat(rows).numpy()


def page() -> None:
    entry = common.model_picker_ui()
    st.title("Samples")
    st.caption("Ancestral samples ξ ~ N(0, I), v ~ π(v | h(ξ)) (eq. 2-4) beside test data "
               "(Rezende et al., 2014, Fig. 3a).")
    data = test_data_ui(entry)
    if data is None:
        st.stop()
    model = entry.model
    c1, c2, c3 = st.columns([2, 1, 2])
    n = int(c1.select_slider("Number of samples", N_CHOICES, value=36, key="smp_n",
                             persist_state="session"))
    seed = seed_ui(key="smp_seed", where=c2)
    s = draw(model, entry.model_id, n, seed)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(data), size=min(n, len(data)), replace=False))
    grey = test_images(entry.data_name).x[rows]
    bernoulli = model.config.likelihood == "bernoulli"
    height = 420
    top = st.columns(2)
    show_figure(image_grid_figure(s["probs"], shape=data.shape, height=height,
                                  title=f"Model: pixel probabilities E[v | h(ξ)], seed {seed}"
                                  if bernoulli else f"Model: pixel means, seed {seed}"),
                where=top[0])
    show_figure(image_grid_figure(grey, shape=data.shape, height=height,
                                  title=f"Test data: grey levels ({entry.data_name})"),
                where=top[1])
    bottom = st.columns(2)
    show_figure(image_grid_figure(s["binary"], shape=data.shape, height=height,
                                  title="Model: binary samples v ~ π(v | h(ξ))" if bernoulli
                                  else "Model: sampled pixels v ~ π(v | h(ξ))"),
                where=bottom[0])
    show_figure(image_grid_figure(data.x[rows], shape=data.shape, height=height,
                                  title="Test data as the model sees it" +
                                        (" (binarised, seed 0)" if bernoulli else "")),
                where=bottom[1])
    n_layers = len(model.config.n_latent)
    st.subheader("Resampling from layer l down")
    if n_layers == 1:
        st.info(f"{entry.name!r} has one stochastic layer (n_latent="
                f"{tuple(model.config.n_latent)}): there is no upper layer to keep fixed. Train "
                "a model with several layers (e.g. latents '10, 2') on the Models page.")
        return
    with c3:
        layer = layer_ui(n_layers, key="smp_layer")
    images = redraw(model, entry.model_id, layer, seed)
    kept = ", ".join(f"ξ_{i}" for i in range(layer + 1, n_layers + 1)) or "nothing"
    show_figure(image_grid_figure(
        images, shape=data.shape, n_cols=N_VARIATIONS, height=90 * N_ROWS_LAYER,
        title=f"Each row keeps {kept} of one sample (first column) and redraws "
              f"ξ_1..ξ_{layer}"))


page()
