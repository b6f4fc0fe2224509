"""Embedding: posterior means of test images in 2-D, coloured by class (the paper's Fig. 3b).

For a model with 2 latents the plane is xi-space itself; for more, it is the plane of the top
two principal components of the posterior means. Select points (click, box or lasso) to see
their images; click empty space to decode that position. The manifold view decodes a lattice
of positions over the plane into one picture.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.compute import embedding as compute
from app.compute.embedding import decode
from app.figures.images import image_figure, image_grid_figure
from app.labels import label_counts, label_name
from app.lessons import lesson_ui
from app.session import model_picker_ui, test_data_ui
from app.widgets import show_figure

MAX_SHOWN = 48  # images shown for a multi-point selection


def _selection(event) -> tuple[list[int], np.ndarray | None]:
    """Selected data rows (from ``customdata``) and, for a click on empty space, its position."""
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    rows, position = [], None
    for p in points:
        c = p.get("customdata")
        if isinstance(c, list):
            c = c[0] if c else None
        if c is None:
            position = np.array([p.get("x"), p.get("y")], dtype=np.float32)
        else:
            rows.append(int(c))
    return rows, position


def _show_selection(model, emb, data, rows, position, where) -> None:
    shape = data.shape
    if rows and len(rows) == 1:
        r = rows[0]
        label = "" if data.y is None else f", {label_name(data.name, data.y[r])}"
        show_figure(
            image_figure(data.x[r].reshape(shape), height=260, title=f"Test image #{r}{label}"),
            where=where,
        )
        recon = decode(model, emb["origin"], emb["basis"], emb["coords"][r : r + 1])[0]
        show_figure(
            image_figure(recon.reshape(shape), height=260, title="Decoded at E_q[ξ | v]"),
            where=where,
        )
        where.caption(f"Position ({emb['coords'][r, 0]:.2f}, {emb['coords'][r, 1]:.2f}).")
    elif rows:
        shown = rows[:MAX_SHOWN]
        show_figure(
            image_grid_figure(
                data.x[shown], shape=shape, height=360, title=f"{len(rows)} selected images"
            ),
            where=where,
        )
        if data.y is not None:
            where.caption(label_counts(data.name, data.y[rows]) + ".")
    if position is not None:
        img = decode(model, emb["origin"], emb["basis"], position[None])[0]
        show_figure(
            image_figure(
                img.reshape(shape),
                height=260,
                title=f"Decoded at ({position[0]:.2f}, {position[1]:.2f})",
            ),
            where=where,
        )
    if not rows and position is None:
        where.info(
            "Click a point to see its image, or click empty space to decode that "
            "position. Box and lasso select groups of images."
        )


def page() -> None:
    st.title("Embedding")
    st.caption(
        "Posterior means E_q[ξ | v] of test images, coloured by label (the class, or for "
        "patches the photograph; Rezende et al., 2014, Fig. 3b). Hover for the label and "
        "index; select to see the images."
    )
    lesson_ui("embedding")
    entry = model_picker_ui()  # after the title: the first load of a model takes seconds
    data = test_data_ui(entry)
    if data is None:
        return
    model = entry.model
    two_d = model.latent_dim == 2
    c1, c2, c3 = st.columns([2, 2, 3])
    n_max = min(compute.MAX_POINTS, len(data))
    n = int(
        c1.slider(
            "Test images",
            min_value=1,
            max_value=n_max,
            value=min(compute.N_DEFAULT, n_max),
            step=1 if n_max < 1000 else 100,
            key="emb_n",
            bind="query-params",
            persist_state="session",
        )
    )
    view = c2.segmented_control(
        "View",
        ("Embedding", "Manifold"),
        default="Embedding",
        required=True,
        key="emb_view",
        bind="query-params",
        persist_state="session",
    )
    emb = compute.embedding(model, entry.data_name, n)
    if not two_d:
        st.info(
            f"This model has {model.latent_dim} latents: the plane is spanned by the top two "
            "principal components of the posterior means "
            f"({100 * emb['explained'].sum():.0f}% of their variance); positions are decoded "
            "as ξ = mean + a · PC₁ + b · PC₂."
        )
    if view == "Manifold":
        default_r = 3.0 if two_d else float(np.round(2 * emb["coords"].std(0).max(), 1))
        radius = float(
            c3.slider(
                "Half-width r of the lattice [-r, r]²",
                min_value=0.5,
                max_value=8.0,
                value=min(8.0, max(0.5, default_r)),
                step=0.1,
                key="emb_radius" if two_d else "emb_radius_pc",  # each plane its own default
                bind="query-params",
            )
        )
        side = int(
            c3.slider(
                "Lattice points per axis",
                min_value=5,
                max_value=25,
                value=15,
                key="emb_side",
                bind="query-params",
                persist_state="session",
            )
        )
        show_figure(compute.manifold_chart(model, entry.data_name, n, radius, side))
        return
    left, right = st.columns([3, 1])
    # The scatter of this model, data set and n, read-only and shared (app.compute).
    event = show_figure(
        compute.embedding_chart(model, entry.data_name, n),
        where=left,
        key=f"emb_chart_{entry.model_id}_{n}",
        on_select="rerun",
    )
    rows, position = _selection(event)
    _show_selection(model, emb, data, rows, position, right)


page()
