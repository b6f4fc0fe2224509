"""Posterior: the true posterior of one image on a grid against the recognition model (Fig. 2).

For a model with 2 latents, p(xi | v) is evaluated on a G x G grid over [-r, r]^2 (log p(v) by
quadrature, ``dlgm.grid``), drawn as filled contours with q(xi | v)'s 1-, 2- and 3-sigma ellipses
over it, samples of the prior and of q, and the MAP. When pretrained twins of the selected model
exist (names ``X-diag`` / ``X-rank1`` / ``X-rank1-joint``), each is shown beside it, with its own
generative model's posterior (the twins' latent spaces are not aligned, so their q's are not
overlaid on one posterior). On request, q*, the best Gaussian of the recognition family for the
image alone (and the best full-covariance one), is fitted and drawn, with the inference gap split
into its approximation and amortisation parts.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.compute import posterior as compute
from app.labels import label_name
from app.lessons import lesson_ui
from app.limits import MAX_GRID
from app.session import (
    all_model_names,
    get_entry,
    model_picker_ui,
    seen_label,
    seen_test_images,
    test_data_ui,
)
from app.widgets import drawn_image_ui, image_index_ui, seed_ui, show_figure

SOURCES = ("Test image", "Draw one")


def image_ui(entry, data) -> tuple[np.ndarray, str] | None:
    """The image to explain: a test image (index or random) or a drawing; (D,) and a caption."""
    binary = entry.model.config.binary
    source = st.segmented_control(
        "Image",
        SOURCES,
        default=SOURCES[0],
        required=True,
        key="post_source",
        bind="query-params",
        persist_state="session",
    )
    if source == SOURCES[1]:
        drawn = drawn_image_ui(data.shape, key="post_canvas")
        if drawn is None:
            st.caption("Draw a digit above (dark strokes on white).")
            return None
        if binary:
            return (drawn > 0.5).astype(np.float32), "Your drawing, binarised at 0.5."
        return drawn, "Your drawing."
    i = image_index_ui(len(data), key="post_index")
    label = "" if data.y is None else f", {label_name(data.name, data.y[i])}"
    how = seen_label(seen_test_images(entry.model, data.name)[1])
    return data.x[i], f"Test image #{i}{label}" + (f", {how}." if binary else ".")


def metrics_ui(g, mc: dict, where) -> None:
    """log p(v), ELBO, KL(q || p) and the gap as st.metric, in nats."""
    a, b = where.columns(2)
    a.metric("log p(v)", f"{g.log_px:.3f}", help="Quadrature on the grid, nats.")
    b.metric(
        "ELBO",
        f"{mc['elbo']:.3f}",
        help="E_q[log p(v | ξ)] − KL(q ‖ N(0, I)), 1,000 samples of q, nats.",
    )
    a.metric("KL(q ‖ p(ξ | v))", f"{g.kl_q_p:.3f}", help="On the grid (q renormalised), nats.")
    b.metric(
        "gap log p(v) − ELBO",
        f"{g.log_px - mc['elbo']:.3f}",
        help="Equals KL(q ‖ p(ξ | v)) up to Monte Carlo and grid error, nats.",
    )
    where.caption(
        f"KL(p ‖ q) = {g.kl_p_q:.3f} nats; q's mass inside the grid {g.q_mass:.4f}; "
        f"MAP ({g.map[0]:.2f}, {g.map[1]:.2f}); q mean ({g.q_mean[0]:.2f}, "
        f"{g.q_mean[1]:.2f})."
    )


def qstar_ui() -> tuple[bool, bool]:
    """Whether to fit and draw q* of each model's own family, and also the full-covariance q*."""
    on = st.toggle(
        "Best Gaussian q* for this image",
        value=False,
        key="post_qstar",
        bind="query-params",
        persist_state="session",
        help="q*: the Gaussian of the recognition model's own family (diagonal or rank-one) "
        "with the highest ELBO for this image alone, found by 100 Adam steps from q "
        "(dlgm.gap.optimal_q). It splits the gap log p(v) − ELBO(q) in two. About 0.3-1 s "
        "per model and image.",
    )
    full = on and st.checkbox(
        "Also the full-covariance q*",
        value=False,
        key="post_qstar_full",
        bind="query-params",
        persist_state="session",
        help="Any Gaussian: what is left is the posterior's departure from a Gaussian. In 2-D "
        "a rank-one precision D + u uᵀ is already any 2 x 2 precision, so for a rank-one "
        "model both q* agree up to optimisation noise.",
    )
    return on, bool(full)


def gap_metrics_ui(gaps: dict, where) -> None:
    """The approximation and amortisation gaps of q* of the model's own family (the first
    entry of ``gaps``), the full-covariance q*'s approximation gap if there, in nats."""
    (own, r), *rest = gaps.items()
    a, b = where.columns(2)
    a.metric(
        "approximation gap",
        f"{r['approximation_gap']:.3f}",
        help=f"log p(v) − ELBO(q*), q* the best {own} Gaussian for this image: what no "
        "Gaussian of the recognition family can explain (log p(v) on the grid; ELBO with "
        "1,000 samples), nats.",
    )
    b.metric(
        "amortisation gap",
        f"{r['amortisation_gap']:.3f}",
        help="ELBO(q*) − ELBO(q): what the encoder gives away by predicting q from the image "
        "instead of fitting it (both ELBOs from the same 1,000 draws), nats.",
    )
    notes = [
        f"q* ({own}): ELBO {r['elbo_qstar']:.3f} against ELBO(q) {r['elbo_q']:.3f} "
        f"(the same draws); KL(q* ‖ p) on the grid {r['kl_grid']:.3f}."
    ]
    for family, rf in rest:
        a.metric(
            f"approx. gap, {family} q*",
            f"{rf['approximation_gap']:.3f}",
            help="log p(v) − ELBO(q*) for the best Gaussian of any covariance: how far the "
            "true posterior is from every Gaussian, nats.",
        )
        notes.append(f"KL(q* ({family}) ‖ p) on the grid {rf['kl_grid']:.3f}.")
    where.caption(" ".join(notes))


def page() -> None:
    st.title("Posterior")
    st.caption(
        "The true posterior p(ξ | v) of one image on a grid (filled contours) against the "
        "recognition model q(ξ | v) (lines at 1, 2 and 3 σ), with prior samples, q "
        "samples and the MAP (Rezende et al., 2014, Fig. 2)."
    )
    lesson_ui("posterior")
    entry = model_picker_ui()  # after the title: the first load of a model takes seconds
    model = entry.model
    if model.latent_dim != 2:
        st.info(
            f"{entry.name!r} has {model.latent_dim} latents "
            f"(n_latent={tuple(model.config.n_latent)}). The true posterior can only be "
            "evaluated on a grid, and drawn, for models with exactly 2 latents in total: "
            "pick one such as mnist-2d-rank1 in the sidebar, or train one on the Models "
            "page with latents = 2."
        )
        return
    data = test_data_ui(entry)
    if data is None:
        return
    controls, shown = st.columns([1, 3])
    with controls:
        chosen = image_ui(entry, data)
        size = int(
            st.slider(
                "Grid points per axis G",
                21,
                min(201, MAX_GRID),
                compute.GRID,
                step=10,
                key="post_grid",
                bind="query-params",
                persist_state="session",
            )
        )
        radius = float(
            st.slider(
                "Grid half-width r ([-r, r]²)",
                1.0,
                8.0,
                compute.RADIUS,
                step=0.5,
                key="post_radius",
                bind="query-params",
                persist_state="session",
            )
        )
        n = int(
            st.slider(
                "Samples of the prior and of q",
                0,
                500,
                compute.SAMPLES,
                step=10,
                key="post_samples",
                bind="query-params",
                persist_state="session",
            )
        )
        seed = seed_ui(key="post_seed", default=compute.SEED)
        zoom = st.toggle(
            "Zoom on the posterior",
            value=True,
            key="post_zoom",
            bind="query-params",
            persist_state="session",
            help="Show the region where p(ξ | v) and q have their mass; off: the "
            "whole grid [-r, r]².",
        )
        star, star_full = qstar_ui()
    if chosen is None:
        return
    x, caption = chosen
    with controls:
        show_figure(compute.image_panel(x, tuple(data.shape)))
        st.caption(caption)
    names = compute.twins(entry.name, all_model_names())
    if len(names) > 1:
        with controls:
            if not st.toggle(
                "Show the covariance twins",
                value=True,
                key="post_twins",
                bind="query-params",
                persist_state="session",
                help=f"Also show {', '.join(n for n in names if n != entry.name)} "
                "(one more grid each).",
            ):
                names = [entry.name]
    with shown:
        cols = st.columns(len(names))
        for col, name in zip(cols, names, strict=True):
            e = entry if name == entry.name else get_entry(name)
            families = compute.qstar_families(e.model, star, star_full)
            p = compute.panel(e.model, name, x, size, radius, n, seed, zoom, families)
            show_figure(p["fig"], where=col)
            metrics_ui(p["stats"], p["mc"], col)
            if p["gaps"]:
                gap_metrics_ui(p["gaps"], col)
        if len(names) > 1:
            st.caption(
                "Each panel is a separately trained model (same data, different "
                "recognition covariance), so each has its own generative model and true "
                "posterior."
            )


page()
