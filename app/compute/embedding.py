"""Embedding page: posterior means of test images in a plane (Fig. 3b) and the decoded
manifold."""

from __future__ import annotations

import numpy as np
import torch

import dlgm
from app.cache import cache_resource, read_only
from app.figures.images import manifold_figure
from app.figures.latent import XI_TITLES, embedding_figure
from app.figures.style import freeze
from app.labels import label_kind, label_names
from app.session import Entry, seen_test_images, test_images

MAX_POINTS = 5000
N_DEFAULT = 2000  # the page's default number of test images (at most MAX_POINTS and the data)
PLANE_NODES = 61  # per axis, the invisible clickable lattice


@cache_resource(show_spinner="Encoding the test images...", max_entries=16)
def embedding(model: dlgm.DLGM, data_name: str, n: int) -> dict:
    """Posterior means E_q[xi | v] of the first ``n`` test images (as the model sees them) and
    their 2-D plane.

    Returns a dict of read-only numpy arrays: ``means`` (n, K), ``coords`` (n, 2), ``origin``
    (K,) and ``basis`` (2, K) with xi = origin + coords @ basis, plus ``axis_titles`` and
    ``explained`` (variance ratios of the two directions; None for a 2-latent model).
    """
    x = seen_test_images(model, data_name)[0].x[:n]
    with torch.no_grad():
        means = torch.cat(
            [model.encode(xb).loc for xb in torch.tensor(x).split(1000)]
        ).numpy()  # (n, K)
    k = means.shape[1]
    if k == 2:
        return read_only(
            dict(
                means=means,
                coords=means,
                origin=np.zeros(2, np.float32),
                basis=np.eye(2, dtype=np.float32),
                axis_titles=XI_TITLES,
                explained=None,
            )
        )
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(means)
    ratio = pca.explained_variance_ratio_
    titles = tuple(
        f"PC {i + 1} of E_q[ξ | v] ({100 * ratio[i]:.0f}% of variance)" for i in range(2)
    )
    return read_only(
        dict(
            means=means,
            coords=pca.transform(means).astype(np.float32),
            origin=pca.mean_.astype(np.float32),
            basis=pca.components_.astype(np.float32),
            axis_titles=titles,
            explained=ratio,
        )
    )


def decode(model: dlgm.DLGM, origin, basis, plane) -> np.ndarray:
    """Pixel means E[v | xi] at plane positions (M, 2): xi = origin + plane @ basis; (M, D)."""
    xi = torch.from_numpy(
        np.asarray(origin + np.asarray(plane, np.float32) @ basis, dtype=np.float32)
    )  # (M, K)
    with torch.no_grad():
        return model.pixel_mean(xi).numpy()


def plane_nodes(coords: np.ndarray) -> np.ndarray:
    """An invisible square lattice around the data, 20% wider than its larger side (it also
    sets the axes' range): (PLANE_NODES**2, 2)."""
    lo, hi = coords.min(0), coords.max(0)
    centre, half = (lo + hi) / 2, 0.6 * float((hi - lo).max()) + 1e-3
    axis = np.linspace(-half, half, PLANE_NODES, dtype=np.float32)
    yy, xx = np.meshgrid(axis + centre[1], axis + centre[0], indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


@cache_resource(show_spinner=False, max_entries=16)
def embedding_chart(model: dlgm.DLGM, data_name: str, n: int):
    """The scatter of :func:`embedding`'s plane, coloured by class, frozen."""
    emb = embedding(model, data_name, n)
    y = test_images(data_name).y
    x_title, y_title = emb["axis_titles"]
    return freeze(
        embedding_figure(
            emb["coords"],
            None if y is None else y[:n],
            title=f"{n} test images of {data_name}: posterior means",
            x_title=x_title,
            y_title=y_title,
            plane=plane_nodes(emb["coords"]),
            class_names=None if y is None else label_names(data_name, y[:n]),
            legend_title=label_kind(data_name),
            marker_size=5 if n > 1000 else 7,
            height=640,
        )
    )


@cache_resource(show_spinner="Decoding the lattice...", max_entries=16)
def manifold_chart(model: dlgm.DLGM, data_name: str, n: int, radius: float, side: int):
    """Pixel means decoded on a ``side`` x ``side`` lattice over [-radius, radius]^2 of
    :func:`embedding`'s plane, drawn as one picture, frozen."""
    emb = embedding(model, data_name, n)
    coords = np.linspace(-radius, radius, side, dtype=np.float32)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    plane = np.stack([xx.ravel(), yy.ravel()], axis=1)  # (side * side, 2)
    images = decode(model, emb["origin"], emb["basis"], plane)
    x_title, y_title = emb["axis_titles"]
    return freeze(
        manifold_figure(
            images,
            coords,
            shape=test_images(data_name).shape,
            x_title=x_title,
            y_title=y_title,
            height=720,
            title=f"Pixel means decoded on a {side} × {side} lattice "
            f"over [-{radius:g}, {radius:g}]²",
        )
    )


def warm(entry: Entry) -> None:
    """The first visit's scatter."""
    n = min(N_DEFAULT, MAX_POINTS, len(test_images(entry.data_name).x))
    embedding_chart(entry.model, entry.data_name, n)
