"""Posterior page: the true posterior of one image on a grid against q (Fig. 2), and q*, the
best Gaussian for that image alone, with the inference gap's two parts."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import torch
from torch.distributions import MultivariateNormal

import dlgm
from app.cache import cache_data, cache_resource
from app.figures.images import image_figure
from app.figures.latent import posterior_figure, zoom_box
from app.figures.style import freeze
from app.limits import MAX_GRID
from app.session import Entry, pretrained_entry, pretrained_names, seen_test_images
from dlgm.gap import GAP_KEYS, inference_gaps, optimal_q, own_family
from dlgm.grid import grid_basis, posterior_grid

# The page's default settings (also what the server's warm-up computes).
GRID, RADIUS, SAMPLES, SEED = min(101, MAX_GRID), 5.0, 100, 0
# q*, the best Gaussian for one image (dlgm.gap.optimal_q): 100 Adam steps of 16 samples from
# lr 0.1 decayed to 0. On the first 6 test images of each shipped 2-latent model (digits, MNIST;
# own family and full) its mean KL(q* || p) on a 201 x 201 grid is within 0.01 nats of 300 steps
# at lr 0.05, for 0.35-0.6 s of CPU per image and family (digits) and 0.7-0.95 s (MNIST): too
# slow to run on every click, so the page has a toggle. Both ELBOs from 1,000 common draws.
QSTAR_STEPS, QSTAR_SAMPLES, QSTAR_LR, GAP_SAMPLES = 100, 16, 0.1, 1000
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


def qstar_families(model: dlgm.DLGM, own: bool, full: bool) -> tuple[str, ...]:
    """The q* families to fit: the model's own (if ``own``), then "full" (if also ``full``)."""
    return ((own_family(model),) + (("full",) if full else ())) if own else ()


@cache_data(show_spinner="Fitting q*, the best Gaussian for this image...", max_entries=128)
def best_gaussian(model: dlgm.DLGM, x: np.ndarray, family: str, seed: int) -> dict:
    """q* of ``family`` for the image ``x`` (D,): ``mean`` (2,) and ``cov`` (2, 2), float64."""
    g = torch.Generator().manual_seed(seed)
    q = optimal_q(
        model,
        torch.tensor(x)[None],
        family=family,
        steps=QSTAR_STEPS,
        n_samples=QSTAR_SAMPLES,
        lr=QSTAR_LR,
        generator=g,
    )
    return dict(mean=q.mean[0].double().numpy(), cov=q.covariance_matrix[0].double().numpy())


@cache_data(show_spinner="Scoring q*...", max_entries=128)
def gaps(
    model: dlgm.DLGM, x: np.ndarray, family: str, grid_size: int, radius: float, seed: int
) -> dict:
    """The inference gap's parts for image ``x`` (D,) with q* of ``family``
    (``dlgm.gap.inference_gaps``, log p(v) by quadrature on the grid): floats in nats, keyed by
    ``dlgm.gap.GAP_KEYS``, and ``kl_grid``, KL(q* || p(xi | v)) on the grid (a second route
    to the approximation gap)."""
    qs = best_gaussian(model, x, family, seed)
    xt = torch.tensor(x)[None]  # (1, D)
    dtype = xt.dtype
    q_star = MultivariateNormal(
        torch.tensor(qs["mean"], dtype=dtype)[None],
        covariance_matrix=torch.tensor(qs["cov"], dtype=dtype)[None],
    )
    g = grid(model, x, grid_size, radius)
    r = inference_gaps(
        model,
        xt,
        q_star=q_star,
        log_px=torch.tensor([g.log_px], dtype=dtype),
        elbo_samples=GAP_SAMPLES,
        generator=torch.Generator().manual_seed(seed),
    )
    on_grid = posterior_grid(model, xt, q=q_star, basis=basis(model, grid_size, radius))
    return {key: float(r[key][0]) for key in GAP_KEYS} | {"kl_grid": on_grid.kl_q_p}


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
    families: tuple[str, ...] = (),
) -> dict:
    """One model's panel for image ``x`` (D,): its figure, frozen, and the numbers under it;
    with q* of each of ``families`` drawn and its gaps (``gaps``: family -> :func:`gaps`).
    Read-only and shared by every session asking for the same model, image and settings."""
    g = grid(model, x, grid_size, radius)
    mc = samples(model, x, n, seed)
    cov = model.config.covariance
    stars = {f: best_gaussian(model, x, f, seed) for f in families}
    fig = posterior_figure(
        g.xs,
        g.ys,
        g.log_post,
        log_q={f"q ({cov})": g.log_q},
        ellipses={f"q* ({f})": (s["mean"], s["cov"]) for f, s in stars.items()},
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
    return dict(
        fig=freeze(fig),
        stats=stats,
        mc=dict(elbo=mc["elbo"]),
        gaps={f: gaps(model, x, f, grid_size, radius, seed) for f in families},
    )


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
        panel(e.model, twin, x, GRID, RADIUS, SAMPLES, SEED, True, ())  # as the page calls it
