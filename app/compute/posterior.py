"""Posterior page: the true posterior of one image on a grid against q (Fig. 2)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import torch

import dlgm
from app.cache import cache_data, cache_resource
from app.figures.images import image_figure
from app.figures.latent import posterior_figure, zoom_box
from app.figures.style import freeze
from app.limits import MAX_GRID
from app.session import Entry, pretrained_entry, pretrained_names, seen_test_images
from dlgm.grid import grid_basis, posterior_grid

# The page's default settings (also what the server's warm-up computes).
GRID, RADIUS, SAMPLES, SEED = min(101, MAX_GRID), 5.0, 100, 0
_TWIN = re.compile(r"^(?P<stem>.+)-(?P<cov>diag|rank1-joint|rank1)$")
_COV_ORDER = ("diag", "rank1", "rank1-joint")


def twins(name: str, names: list[str]) -> list[str]:
    """The selected model and its covariance twins (same stem), diag first."""
    m = _TWIN.match(name)
    if not m:
        return [name]
    found = [f"{m['stem']}-{c}" for c in _COV_ORDER if f"{m['stem']}-{c}" in names]
    return found if name in found else [name]


def mass_view(g) -> tuple[float, float, float, float]:
    """A square view around the 3-sigma regions of p(xi | v) and q (log density within 4.5 of
    its peak) and the MAP."""
    yy, xx = np.meshgrid(g.ys, g.xs, indexing="ij")
    keep = (g.log_post > g.log_post.max() - 4.5) | (g.log_q > g.log_q.max() - 4.5)
    pts = np.concatenate([np.stack([xx[keep], yy[keep]], axis=1), g.map[None]])
    return zoom_box(pts, min_half_width=4 * (g.xs[1] - g.xs[0]))


@cache_resource(show_spinner="Decoding the grid...", max_entries=4)
def basis(model: dlgm.DLGM, grid_size: int, radius: float):
    """The decoder on the grid nodes, once per model and grid (read-only, shared)."""
    return grid_basis(model, grid_size=grid_size, radius=radius)


@cache_data(show_spinner="Evaluating the posterior on the grid...", max_entries=64)
def grid(model: dlgm.DLGM, x: np.ndarray, grid_size: int, radius: float):
    """``dlgm.grid.posterior_grid`` for one image (D,); each new image costs one
    matrix-vector product with the model's cached grid basis."""
    return posterior_grid(model, torch.tensor(x), basis=basis(model, grid_size, radius))


@cache_data(show_spinner=False, max_entries=64)
def samples(model: dlgm.DLGM, x: np.ndarray, n: int, seed: int) -> dict:
    """``n`` samples of the prior N(0, I) and of q(xi | v), and the Monte Carlo ELBO of ``x``
    (1,000 samples, analytic KL), all from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    xt = torch.tensor(x)[None]  # (1, D)
    with torch.no_grad():
        prior = model.prior().rsample((n,), generator=g)  # (n, 2)
        q = model.encode(xt).rsample((n,), generator=g)[:, 0]  # (n, 2)
        elbo = float(model.elbo(xt, n_samples=1000, generator=g)[0])
    return dict(prior=prior.numpy(), q=q.numpy(), elbo=elbo)


@cache_resource(show_spinner="Evaluating the posterior on the grid...", max_entries=64)
def panel(
    model: dlgm.DLGM,
    name: str,
    x: np.ndarray,
    grid_size: int,
    radius: float,
    n: int,
    seed: int,
    zoom: bool,
) -> dict:
    """One model's panel for image ``x`` (D,): its figure, frozen, and the numbers under it.
    Read-only and shared by every session asking for the same model, image and settings."""
    g = grid(model, x, grid_size, radius)
    mc = samples(model, x, n, seed)
    cov = model.config.covariance
    fig = posterior_figure(
        g.xs,
        g.ys,
        g.log_post,
        log_q={f"q ({cov})": g.log_q},
        prior_samples=mc["prior"] if n else None,
        q_samples=mc["q"] if n else None,
        map_point=g.map,
        height=560,
        view=mass_view(g) if zoom else None,
        title=f"{name}: p(ξ | v) and q ({cov})",
    )
    stats = SimpleNamespace(
        log_px=g.log_px,
        kl_q_p=g.kl_q_p,
        kl_p_q=g.kl_p_q,
        q_mass=g.q_mass,
        map=g.map,
        q_mean=g.q_mean,
    )
    return dict(fig=freeze(fig), stats=stats, mc=dict(elbo=mc["elbo"]))


@cache_resource(show_spinner=False, max_entries=64)
def image_panel(x: np.ndarray, shape: tuple[int, int]):
    """The image being explained, frozen (shared like :func:`panel`)."""
    return freeze(image_figure(x.reshape(shape), title="v", height=240))


def warm(entry: Entry) -> None:
    """The first visit's panels: test image 0 with the default settings, with the twins."""
    if entry.model.latent_dim != 2:
        return
    data, _ = seen_test_images(entry.model, entry.data_name)
    x = data.x[0]
    image_panel(x, tuple(data.shape))
    for twin in twins(entry.name, pretrained_names()):
        e = entry if twin == entry.name else pretrained_entry(twin)
        panel(e.model, twin, x, GRID, RADIUS, SAMPLES, SEED, True)
