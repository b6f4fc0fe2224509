"""Embedding: posterior means of test images in 2-D, coloured by class (the paper's Fig. 3b).

For a model with 2 latents the plane is xi-space itself; for more, it is the plane of the top
two principal components of the posterior means. Select points (click, box or lasso) to see
their images; click empty space to decode that position. The manifold view decodes a lattice
of positions over the plane into one picture.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from app import common
from app.common import binarized_test_images, test_images
from app.figures import (
    XI_TITLES,
    embedding_figure,
    image_figure,
    image_grid_figure,
    manifold_figure,
)
from app.widgets import show_figure, test_data_ui

FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
MAX_POINTS = 5000
PLANE_NODES = 61  # per axis, the invisible clickable lattice
MAX_SHOWN = 48  # images shown for a multi-point selection


@st.cache_data(show_spinner="Encoding the test images...", max_entries=16)
def embedding(_model, model_id: str, data_name: str, n: int) -> dict:
    """Posterior means E_q[xi | v] of the first ``n`` test images and their 2-D plane.

    Returns a dict of numpy arrays: ``means`` (n, K), ``coords`` (n, 2), ``origin`` (K,) and
    ``basis`` (2, K) with xi = origin + coords @ basis, plus ``axis_titles`` and
    ``explained`` (variance ratios of the two directions; None for a 2-latent model).
    """
    if _model.config.likelihood == "bernoulli":
        x = binarized_test_images(data_name)[:n]
    else:
        x = test_images(data_name).x[:n]
    with torch.no_grad():
        means = torch.cat([_model.encode(xb).loc for xb in torch.from_numpy(
            np.array(x)).split(1000)]).numpy()  # (n, K)
    k = means.shape[1]
    if k == 2:
        return dict(means=means, coords=means, origin=np.zeros(2, np.float32),
                    basis=np.eye(2, dtype=np.float32), axis_titles=XI_TITLES, explained=None)
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(means)
    ratio = pca.explained_variance_ratio_
    titles = tuple(f"PC {i + 1} of E_q[ξ | v] ({100 * ratio[i]:.0f}% of variance)"
                   for i in range(2))
    return dict(means=means, coords=pca.transform(means).astype(np.float32),
                origin=pca.mean_.astype(np.float32), basis=pca.components_.astype(np.float32),
                axis_titles=titles, explained=ratio)


@st.cache_data(show_spinner="Decoding the lattice...", max_entries=16)
def manifold(_model, model_id: str, origin: np.ndarray, basis: np.ndarray, radius: float,
             n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel means decoded on an n x n lattice over [-radius, radius]^2 of the plane.

    Returns ``(images (n * n, D), coords (n,))``, ``images[i * n + j]`` at (coords[j],
    coords[i])."""
    coords = np.linspace(-radius, radius, n, dtype=np.float32)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    plane = np.stack([xx.ravel(), yy.ravel()], axis=1)  # (n*n, 2)
    return decode(_model, origin, basis, plane), coords


def decode(model, origin, basis, plane) -> np.ndarray:
    """Pixel means E[v | xi] at plane positions (M, 2): xi = origin + plane @ basis; (M, D)."""
    xi = torch.from_numpy(np.asarray(origin + np.asarray(plane, np.float32) @ basis,
                                     dtype=np.float32))  # (M, K)
    with torch.no_grad():
        return model.pixel_mean(xi).numpy()


def _plane_nodes(coords: np.ndarray) -> np.ndarray:
    """An invisible square lattice around the data, 20% wider than its larger side (it also
    sets the axes' range): (PLANE_NODES**2, 2)."""
    lo, hi = coords.min(0), coords.max(0)
    centre, half = (lo + hi) / 2, 0.6 * float((hi - lo).max()) + 1e-3
    axis = np.linspace(-half, half, PLANE_NODES, dtype=np.float32)
    yy, xx = np.meshgrid(axis + centre[1], axis + centre[0], indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


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
        label = "" if data.y is None else f", class {int(data.y[r])}"
        show_figure(image_figure(data.x[r].reshape(shape), height=260,
                                 title=f"Test image #{r}{label}"), where=where)
        recon = decode(model, emb["origin"], emb["basis"], emb["coords"][r:r + 1])[0]
        show_figure(image_figure(recon.reshape(shape), height=260,
                                 title="Decoded at E_q[ξ | v]"), where=where)
        where.caption(f"Position ({emb['coords'][r, 0]:.2f}, {emb['coords'][r, 1]:.2f}).")
    elif rows:
        shown = rows[:MAX_SHOWN]
        show_figure(image_grid_figure(data.x[shown], shape=shape, height=360,
                                      title=f"{len(rows)} selected images"), where=where)
        if data.y is not None:
            counts = np.bincount(data.y[rows])
            where.caption("Classes: " + ", ".join(f"{c}: {n}" for c, n in enumerate(counts) if n))
    if position is not None:
        img = decode(model, emb["origin"], emb["basis"], position[None])[0]
        show_figure(image_figure(img.reshape(shape), height=260,
                                 title=f"Decoded at ({position[0]:.2f}, {position[1]:.2f})"),
                    where=where)
    if not rows and position is None:
        where.info("Click a point to see its image, or click empty space to decode that "
                   "position. Box and lasso select groups of images.")


def page() -> None:
    entry = common.model_picker_ui()
    st.title("Embedding")
    st.caption("Posterior means E_q[ξ | v] of test images, coloured by class (Rezende et al., "
               "2014, Fig. 3b). Hover for the class and index; select to see the images.")
    data = test_data_ui(entry)
    if data is None:
        st.stop()
    model = entry.model
    two_d = model.latent_dim == 2
    c1, c2, c3 = st.columns([2, 2, 3])
    n_max = min(MAX_POINTS, len(data))
    n = int(c1.slider("Test images", min_value=1, max_value=n_max, value=min(2000, n_max),
                      step=1 if n_max < 1000 else 100, key="emb_n", persist_state="session"))
    view = c2.segmented_control("View", ("Embedding", "Manifold"), default="Embedding",
                                required=True, key="emb_view", persist_state="session")
    emb = embedding(model, entry.model_id, entry.data_name, n)
    if not two_d:
        st.info(f"This model has {model.latent_dim} latents: the plane is spanned by the top two "
                "principal components of the posterior means "
                f"({100 * emb['explained'].sum():.0f}% of their variance); positions are decoded "
                "as ξ = mean + a · PC₁ + b · PC₂.")
    x_title, y_title = emb["axis_titles"]
    names = dict(enumerate(FASHION)) if entry.data_name == "fashion-mnist" else None
    labels = None if data.y is None else data.y[:n]
    if view == "Manifold":
        default_r = 3.0 if two_d else float(np.round(2 * emb["coords"].std(0).max(), 1))
        radius = float(c3.slider("Half-width r of the lattice [-r, r]²", min_value=0.5,
                                 max_value=8.0, value=min(8.0, max(0.5, default_r)), step=0.1,
                                 key=f"emb_radius_{two_d}"))
        side = int(c3.slider("Lattice points per axis", min_value=5, max_value=25, value=15,
                             key="emb_side", persist_state="session"))
        images, coords = manifold(model, entry.model_id, emb["origin"], emb["basis"], radius,
                                  side)
        show_figure(manifold_figure(images, coords, shape=data.shape, x_title=x_title,
                                    y_title=y_title, height=720,
                                    title=f"Pixel means decoded on a {side} × {side} lattice "
                                          f"over [-{radius:g}, {radius:g}]²"))
        return
    left, right = st.columns([3, 1])
    fig = embedding_figure(emb["coords"], labels, title=f"{n} test images of {entry.data_name}: "
                           "posterior means", x_title=x_title, y_title=y_title,
                           plane=_plane_nodes(emb["coords"]), class_names=names,
                           marker_size=5 if n > 1000 else 7, height=640)
    event = show_figure(fig, where=left, key=f"emb_chart_{entry.model_id}_{n}",
                        on_select="rerun")
    rows, position = _selection(event)
    _show_selection(model, emb, data, rows, position, right)


page()
