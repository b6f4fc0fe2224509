"""Imputation (paper Fig. 5, sec. 5.4): fill in missing pixels with three chains, step by step.

A test image loses some pixels (at random, a square, or painted with the mouse); the paper's
pseudo-Gibbs chain, the exact Metropolis-within-Gibbs chain and importance resampling then fill
them in. The chains live in ``st.session_state`` and advance one step per click, or play.
"""

from __future__ import annotations

import copy

import numpy as np
import streamlit as st
import torch
from PIL import Image

from app.compute import imputation as compute
from app.compute.imputation import LABELS, N_SHOWN
from app.figures.images import painted_mask
from app.labels import label_name
from app.lessons import lesson_ui
from app.session import Entry, model_picker_ui, seen_label, seen_test_images, test_data_ui
from dlgm.errors import DLGMError
from dlgm.impute import INITS, METHODS, as_mask, mask_random, mask_square

CHAINS_KEY = "imputation_chains"  # {"signature": tuple, "chains": {method: chain}}; no widget
PLAYING_KEY = "imputation_playing"  # bool; no widget owns it
MASK_KINDS = ("Missing at random", "Missing square", "Paint with the mouse")
MAX_PLAY_STEPS = 200
PLAY_INTERVAL_S = 0.4
CANVAS_PX = 240


def image_ui(entry: Entry, data) -> tuple[int, np.ndarray]:
    """Pick a test image (as the model sees it); returns its index and its pixels."""
    n = len(data)
    idx = int(
        st.number_input(
            "Test image",
            0,
            n - 1,
            0,
            key="imp_index",
            help=f"Index into the {n} test images.",
            bind="query-params",
        )
    )
    label = "" if data.y is None else f"; {label_name(data.name, data.y[idx])}"
    how = seen_label(seen_test_images(entry.model, data.name)[1])
    st.caption(f"{data.name} test image {idx}{label}; {how}.")
    return idx, np.array(data.x[idx], dtype=np.float32)  # a writable copy (shared images)


def _set_rate(rate: int) -> None:
    st.session_state["imp_rate"] = rate


def mask_ui(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Draw the mask controls; returns a bool mask (H, W), True = missing (not yet validated)."""
    H, W = shape
    kind = st.radio("Mask", MASK_KINDS, horizontal=True, key="imp_mask_kind", bind="query-params")
    if kind == MASK_KINDS[0]:
        c1, c2 = st.columns(2)
        c1.button("60% missing", on_click=_set_rate, args=(60,), key="imp_60")
        c2.button("80% missing", on_click=_set_rate, args=(80,), key="imp_80")
        rate = st.slider("Missing rate (%)", 0, 100, 60, key="imp_rate", bind="query-params")
        seed = int(
            st.number_input("Mask seed", 0, 1_000_000, 0, key="imp_mask_seed", bind="query-params")
        )
        m = mask_random(H * W, rate / 100.0, torch.Generator().manual_seed(seed))
        return m.numpy().reshape(H, W)
    if kind == MASK_KINDS[1]:
        size = st.slider(
            "Square size (pixels)",
            1,
            min(H, W),
            max(1, min(H, W) // 2),
            key="imp_size",
            bind="query-params",
        )
        c1, c2 = st.columns(2)
        top = c1.slider("Top row", 0, H - 1, (H - size) // 2, key="imp_top", bind="query-params")
        left = c2.slider(
            "Left column", 0, W - 1, (W - size) // 2, key="imp_left", bind="query-params"
        )
        return mask_square((H, W), size, top, left).numpy().reshape(H, W)
    return paint_ui(image, shape)


def paint_ui(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A canvas over the enlarged image; painted strokes become missing pixels."""
    from streamlit_drawable_canvas import st_canvas

    H, W = shape
    scale = max(1, CANVAS_PX // max(H, W))
    background = Image.fromarray((image.reshape(H, W) * 255).astype(np.uint8), mode="L")
    background = background.resize((W * scale, H * scale), Image.NEAREST)
    brush = st.slider(
        "Brush width (image pixels)", 1, max(1, min(H, W) // 2), max(1, H // 8), key="imp_brush"
    )
    st.caption("Paint over the pixels to hide; use the canvas toolbar to undo or clear.")
    result = st_canvas(
        stroke_width=brush * scale,
        stroke_color="rgba(255, 96, 0, 0.8)",
        background_image=background,
        height=H * scale,
        width=W * scale,
        drawing_mode="freedraw",
        return_image_data=True,
        key="imp_canvas",
    )
    return painted_mask(result.image_data, (H, W))


def chain_settings_ui(binary: bool = True) -> dict:
    mean = "pixel probabilities E[v | xi]" if binary else "pixel means E[v | xi]"
    with st.expander("Chain settings"):
        methods = st.multiselect(
            "Chains",
            METHODS,
            default=list(METHODS),
            key="imp_methods",
            format_func=LABELS.get,
            bind="query-params",
        )
        init = st.selectbox(
            "Initial fill of the missing pixels",
            INITS,
            help="pseudo-gibbs: the state after 30 pseudo-Gibbs steps from "
            "noise, a warm start for the exact chains (from noise, MWG "
            "accepts almost nothing)",
            key="imp_init",
            bind="query-params",
        )
        particles = st.slider(
            "Importance particles", 10, 1000, 100, step=10, key="imp_particles", bind="query-params"
        )
        seed = int(
            st.number_input("Chain seed", 0, 1_000_000, 0, key="imp_seed", bind="query-params")
        )
        shown = st.radio(
            "Show",
            ("means", "samples"),
            format_func={"means": mean, "samples": "sampled pixels"}.get,
            horizontal=True,
            key="imp_shown",
            bind="query-params",
        )
    return {
        "methods": tuple(methods),
        "init": init,
        "particles": particles,
        "seed": seed,
        "probs": shown == "means",
    }


def get_chains(entry: Entry, x: np.ndarray, mask: torch.Tensor, settings: dict) -> dict:
    """The chains of this session, rebuilt (at step 0) when the image, mask or settings change:
    a private copy of the server's pristine chains for that signature (building them decodes
    every particle; a copy is about 1 ms and steps exactly as the original would)."""
    signature = compute.signature(entry.model, x, mask, settings)
    state = st.session_state.get(CHAINS_KEY)
    if state is None or state["signature"] != signature:
        pristine = compute.initial_chains(entry.model, x, mask, signature)
        # Everything copied but the model (shared, read-only, or this session's own).
        chains = copy.deepcopy(pristine, memo={id(entry.model): entry.model})
        state = {"signature": signature, "chains": chains}
        st.session_state[CHAINS_KEY] = state
        st.session_state[PLAYING_KEY] = False
    return state["chains"]


def step_all(chains: dict, n: int = 1) -> None:
    for chain in chains.values():
        chain.run(n)


def chain_view(
    entry: Entry, chains: dict, truth: np.ndarray, mask: np.ndarray, settings: dict
) -> None:
    """Buttons, iteration count, Fig. 5 strip and the error chart: an ``st.fragment``, so a
    click on Step or Run reruns this part only (the image, mask and settings above are not
    redrawn); while playing, the fragment also reruns itself every ``PLAY_INTERVAL_S``."""
    playing = st.session_state.get(PLAYING_KEY, False)
    c_step, c_run, c_play, c_reset, _ = st.columns([1, 1, 1, 1, 2])
    if c_step.button("Step", key="imp_step", type="primary", disabled=playing):
        step_all(chains)
    if c_run.button(f"Run {N_SHOWN} steps", key="imp_run", disabled=playing):
        step_all(chains, N_SHOWN)
    if c_play.button("Stop" if playing else "Play", key="imp_play"):
        st.session_state[PLAYING_KEY] = not playing
        st.rerun()  # the whole page, so that the fragment starts or stops its timer
    if c_reset.button("Reset", key="imp_reset"):
        st.session_state.pop(CHAINS_KEY, None)
        st.session_state[PLAYING_KEY] = False
        st.rerun()
    t = next(iter(chains.values())).state.step
    if playing:
        if t >= MAX_PLAY_STEPS:
            st.session_state[PLAYING_KEY] = False
            st.rerun()
        step_all(chains)
        t += 1

    # The chains are a deterministic function of their signature (model id, image, mask and
    # settings, seeds included) and of the number of steps taken, so their figures are shared
    # read-only between reruns and sessions under that key (app.compute.imputation).
    key = (st.session_state[CHAINS_KEY]["signature"], t)
    cols = st.columns(3)
    cols[0].metric("Iteration", t)
    if "mwg" in chains:
        rate = chains["mwg"].acceptance_rate
        cols[1].metric(
            "MWG acceptance rate",
            "n/a" if t == 0 else f"{rate:.0%}",
            help="Fraction of accepted proposals xi' ~ q(xi | v) so far.",
        )
    if "importance" in chains:
        ess = chains["importance"].ess
        cols[2].metric(
            "Importance ESS",
            f"{float(ess.mean()):.1f} / {settings['particles']}",
            help="Effective sample size 1 / sum w^2 of the particle weights.",
        )
    st.plotly_chart(
        compute.strip_chart(chains, key, settings["probs"], truth, mask), key="imp_strip"
    )
    if not mask.any():
        return
    metrics = compute.metrics_for(entry.model)
    if entry.model.config.binary:
        metric = st.radio("Error", list(metrics), horizontal=True, key="imp_metric")
    else:
        metric = "squared error"
        st.caption(
            "Error: squared error of the pixel means E[v | xi] against the true grey levels "
            "(cross-entropy and the pixel error rate are for binary pixels)."
        )
    st.plotly_chart(compute.error_chart(chains, key, *metrics[metric], truth), key="imp_errors")


def main() -> None:
    st.title("Imputation")
    st.markdown(
        "Hide some pixels of a test image and let the model fill them in (sec. 5.4, Fig. 5). "
        "The paper's **pseudo-Gibbs** chain alternates xi ~ q(xi | v) and "
        "v_missing ~ p(v_missing | xi); it is exact only as far as q matches the true "
        "posterior. **Metropolis-within-Gibbs** (Mattei & Frellsen, 2018) accepts or rejects "
        "each proposal so that the chain targets p(v_missing | v_observed) exactly; "
        "**importance resampling** draws from weighted particles. Observed pixels never "
        "change; missing ones are tinted orange."
    )
    lesson_ui("imputation")
    entry = model_picker_ui()
    model = entry.model
    if len(model.data_shape) != 2:
        st.warning(f"This page needs image models; {entry.name} has data shape {model.data_shape}.")
        return
    shape = tuple(model.data_shape)
    data = test_data_ui(entry)
    if data is None:
        return

    left, right = st.columns([1, 1], gap="large")
    with left:
        _, x = image_ui(entry, data)
        raw_mask = mask_ui(x, shape)
    try:
        mask = as_mask(raw_mask, model.n_pixels)
    except DLGMError as err:
        st.error(f"Invalid mask: {err}")
        return
    m = mask.numpy().reshape(shape)
    with right:
        st.plotly_chart(compute.masked_image_chart(x, m), key="imp_mask_fig")
        n_missing = int(m.sum())
        if n_missing == 0:
            st.info(
                "Nothing is missing: every chain keeps the image unchanged and there is no "
                "error to measure. Raise the rate, grow the square or paint some pixels."
            )
        elif n_missing == m.size:
            st.info(
                "Everything is missing: nothing is observed, so the chains sample the "
                "model itself. MWG and importance resampling target p(v) exactly; "
                "pseudo-Gibbs only as far as q matches the posterior."
            )
    settings = chain_settings_ui(model.config.binary)
    if not settings["methods"]:
        st.info("Choose at least one chain in the chain settings.")
        return
    chains = get_chains(entry, x, mask, settings)
    playing = st.session_state.get(PLAYING_KEY, False)
    st.fragment(run_every=PLAY_INTERVAL_S if playing else None)(chain_view)(
        entry, chains, x, m, settings
    )


main()
