"""Read-only results that the pages share between reruns and sessions (``st.cache_*``).

The pages are scripts that Streamlit executes on every rerun; a ``@st.cache_*`` decorator inside
one runs again each time and hashes the function's source (``inspect.getsource``) to name its
cache, 0.5-1 ms per function per rerun. The cached functions therefore live here, in a module
imported once per process.

What is cached is keyed by everything it depends on: a model's ``model_id`` (which changes with
its weights; a model trained or uploaded in one session has an id no other session knows), a
digest of the image (:func:`app.common.digest`) instead of the array, and every setting. Figures
are stored frozen (:func:`app.figures.freeze`): serialised once, shown by any number of reruns
without being rebuilt or copied. ``st.cache_resource`` hands out the stored object itself, so
nothing here is ever modified after it is stored.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import streamlit as st
import torch

from app.common import binarized_test_images, test_images
from app.figures import freeze, image_figure, posterior_figure, zoom_box
from app.figures_extra import (
    error_curves_figure,
    image_gallery_figure,
    imputation_strip_figure,
    k_curve_figure,
    masked_image_figure,
    nll_histogram_figure,
    table1_figure,
)
from dlgm.grid import grid_basis, posterior_grid
from dlgm.impute import ImputationChain, missing_error
from dlgm.likelihood import log_likelihood


# ------------------------------------------------------------------------------ Posterior page
def mass_view(g) -> tuple[float, float, float, float]:
    """A square view around the 3-sigma regions of p(xi | v) and q (log density within 4.5 of
    its peak) and the MAP."""
    yy, xx = np.meshgrid(g.ys, g.xs, indexing="ij")
    keep = (g.log_post > g.log_post.max() - 4.5) | (g.log_q > g.log_q.max() - 4.5)
    pts = np.concatenate([np.stack([xx[keep], yy[keep]], axis=1), g.map[None]])
    return zoom_box(pts, min_half_width=4 * (g.xs[1] - g.xs[0]))


@st.cache_resource(show_spinner="Decoding the grid...", max_entries=4)
def basis(_model, model_id: str, grid_size: int, radius: float):
    """The decoder on the grid nodes, once per model and grid (read-only, shared)."""
    return grid_basis(_model, grid_size=grid_size, radius=radius)


@st.cache_data(show_spinner="Evaluating the posterior on the grid...", max_entries=64)
def grid(_model, model_id: str, x: np.ndarray, grid_size: int, radius: float):
    """``dlgm.grid.posterior_grid`` for one image (D,), cached per model id and image; each new
    image costs one matrix-vector product with the model's cached grid basis."""
    return posterior_grid(_model, torch.from_numpy(x),
                          basis=basis(_model, model_id, grid_size, radius))


@st.cache_data(show_spinner=False, max_entries=64)
def samples(_model, model_id: str, x: np.ndarray, n: int, seed: int) -> dict:
    """``n`` samples of the prior N(0, I) and of q(xi | v), and the Monte Carlo ELBO of ``x``
    (1,000 samples, analytic KL), all from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x)[None]  # (1, D)
    with torch.no_grad():
        prior = _model.prior().rsample((n,), generator=g)  # (n, 2)
        q = _model.encode(xt).rsample((n,), generator=g)[:, 0]  # (n, 2)
        elbo = float(_model.elbo(xt, n_samples=1000, generator=g)[0])
    return dict(prior=prior.numpy(), q=q.numpy(), elbo=elbo)


@st.cache_resource(show_spinner="Evaluating the posterior on the grid...", max_entries=64)
def panel(_model, model_id: str, name: str, _x: np.ndarray, x_key: str, grid_size: int,
          radius: float, n: int, seed: int, zoom: bool) -> dict:
    """One model's panel for image ``_x`` (digest ``x_key``): its figure, frozen, and the
    numbers under it. Read-only and shared by every session asking for the same model id, image
    and settings, so a rerun (or another user) shows it again without rebuilding or copying it.
    """
    g = grid(_model, model_id, _x, grid_size, radius)
    mc = samples(_model, model_id, _x, n, seed)
    cov = _model.config.covariance
    fig = posterior_figure(
        g.xs, g.ys, g.log_post, log_q={f"q ({cov})": g.log_q},
        prior_samples=mc["prior"] if n else None, q_samples=mc["q"] if n else None,
        map_point=g.map, height=560, view=mass_view(g) if zoom else None,
        title=f"{name}: p(ξ | v) and q ({cov})")
    stats = SimpleNamespace(log_px=g.log_px, kl_q_p=g.kl_q_p, kl_p_q=g.kl_p_q, q_mass=g.q_mass,
                            map=g.map, q_mean=g.q_mean)
    return dict(fig=freeze(fig), stats=stats, mc=dict(elbo=mc["elbo"]))


@st.cache_resource(show_spinner=False, max_entries=64)
def image_panel(_x: np.ndarray, x_key: str, shape: tuple[int, int]):
    """The image being explained, frozen (shared like :func:`panel`)."""
    return freeze(image_figure(_x.reshape(shape), title="v", height=240))


# ---------------------------------------------------------------------------- Likelihoods page
def test_seed(model) -> int:
    """Seed of the static binarisation of the test set that the model is evaluated on: the
    card's ``eval_binarization['eval_seed']``, else the CLI's rule (training seed + 1)."""
    evaluated = model.metadata.get("eval_binarization") or {}
    if "eval_seed" in evaluated:
        return int(evaluated["eval_seed"])
    trained = model.metadata.get("binarization") or {}
    return int(trained.get("seed", 0)) + 1


@st.cache_data(show_spinner=False, max_entries=256)
def log_px_cached(_model, model_id: str, data_name: str, n_images: int, k: int,
                  seed: int) -> np.ndarray:
    """Importance-sampled log p(v) per test image (nats), K = ``k`` samples; (n_images,)."""
    x = torch.tensor(evaluation_images(_model, data_name)[:n_images])  # a copy
    g = torch.Generator().manual_seed(seed * 100_003 + k)
    return log_likelihood(_model, x, n_samples=k, generator=g).double().numpy()


@st.cache_data(show_spinner=False, max_entries=64)
def elbo_cached(_model, model_id: str, data_name: str, n_images: int, seed: int) -> np.ndarray:
    """Per-image ELBO (analytic KL, 10 samples for the reconstruction), nats; (n_images,)."""
    x = torch.tensor(evaluation_images(_model, data_name)[:n_images])  # a copy
    g = torch.Generator().manual_seed(seed)
    return _model.elbo(x, n_samples=10, generator=g).double().numpy()


def evaluation_images(model, data_name: str) -> np.ndarray:
    """Test images as the model sees them: statically binarised with the card's test seed
    for Bernoulli pixels, grey levels otherwise; (N, D) float32."""
    if model.config.likelihood == "bernoulli":
        return binarized_test_images(data_name, test_seed(model))
    return test_images(data_name).x


@st.cache_resource(show_spinner=False, max_entries=64)
def live_results(_model, model_id: str, name: str, data_name: str, n_images: int, k: int,
                 seed: int, k_choices: tuple[int, ...], n_worst: int) -> dict:
    """The Likelihoods page's live estimate for one model and setting: mean log p(v) at K =
    ``k`` and the mean ELBO (nats) and its three figures, frozen. Each K's per-image estimates
    come from :func:`log_px_cached`, so raising K computes only the new K."""
    ks = [kk for kk in k_choices if kk <= k]
    curves = [log_px_cached(_model, model_id, data_name, n_images, kk, seed) for kk in ks]
    elbo = elbo_cached(_model, model_id, data_name, n_images, seed)
    log_px = curves[-1]
    means = np.array([c.mean() for c in curves])
    nll = -log_px
    worst = np.argsort(nll)[::-1][:n_worst]
    images = evaluation_images(_model, data_name)[worst].reshape(-1, *_model.data_shape)
    labels = [f"#{i}: {nll[i]:.1f}" for i in worst]
    return dict(
        log_px_mean=float(log_px.mean()), elbo_mean=float(elbo.mean()),
        k_curve=freeze(k_curve_figure(np.array(ks), means, float(elbo.mean()), chosen=k,
                                      title=f"Importance-sampled log p(v) against K, {name}")),
        histogram=freeze(nll_histogram_figure(nll, title=f"Per-example test NLL, K = {k}")),
        worst=freeze(image_gallery_figure(images, labels, n_cols=4,
                                          title="Worst-modelled test images (NLL, nats)")))


@st.cache_resource(show_spinner=False, max_entries=32)
def table1_chart(rows_key: tuple, _rows: list[dict]):
    """``table1_figure`` of the charted rows, frozen; ``rows_key`` is their content as a
    hashable tuple (a model's card can change without its id changing)."""
    return freeze(table1_figure(_rows))


# ----------------------------------------------------------------------------- Imputation page
@st.cache_resource(show_spinner=False, max_entries=64)
def masked_image_chart(_image: np.ndarray, _mask: np.ndarray, key: str):
    """``masked_image_figure`` of an image (D,) and its mask (H, W), frozen; ``key`` is
    ``digest(image, mask)``."""
    return freeze(masked_image_figure(_image.reshape(_mask.shape), _mask,
                                      title="What the chains see"))


@st.cache_resource(show_spinner=False, max_entries=32)
def initial_chains(_model, _x: np.ndarray, _mask: torch.Tensor, signature: tuple) -> dict:
    """The Imputation page's chains at step 0, method -> ``ImputationChain``, for ``signature``
    = (model id, digest of mask and image, methods, initial fill, particles, seed). Never
    stepped: each session steps a deep copy of its own."""
    _, _, methods, init, particles, seed = signature
    chains = {}
    for i, method in enumerate(methods):
        g = torch.Generator().manual_seed(seed * 31 + i)
        chains[method] = ImputationChain(
            _model, torch.tensor(_x), _mask.clone(), method=method, init=init,
            n_particles=particles if method == "importance" else None, generator=g)
    return chains


def _strips(chains: dict, truth: np.ndarray, shape, use_probs: bool, n_shown: int,
            labels: dict):
    """Images of the last ``n_shown`` steps of every chain, after a truth column."""
    results = {m: c.result() for m, c in chains.items()}
    t = next(iter(chains.values())).state.step
    steps = list(range(max(0, t - n_shown + 1), t + 1))
    if steps[0] > 0:
        steps = [0] + steps[1:]  # always keep the initial fill
    strips = {}
    for method, r in results.items():
        frames = (r.probs if use_probs else r.images)[steps, 0].numpy()  # (C, D)
        strips[labels[method]] = np.concatenate([truth[None], frames]).reshape(-1, *shape)
    columns = ["truth"] + [str(s) for s in steps]
    return results, strips, columns


# The chains of the Imputation page are a deterministic function of their signature (model id,
# image and mask digest, chains, initial fill, particles, seed) and of the number of steps taken
# (``key`` = (signature, t)), so their figures are shared read-only between reruns and sessions.
@st.cache_resource(show_spinner=False, max_entries=64)
def strip_chart(_chains: dict, key: tuple, use_probs: bool, _truth: np.ndarray,
                _mask: np.ndarray, n_shown: int, labels: tuple):
    """The Fig. 5 strip of the last ``n_shown`` steps of ``_chains`` (method -> chain, at the
    state ``key``), frozen; ``labels`` are (method, label) pairs."""
    _, strips, columns = _strips(_chains, _truth, _mask.shape, use_probs, n_shown, dict(labels))
    marked = [False] + [True] * (len(columns) - 1)
    return freeze(imputation_strip_figure(strips, _mask, columns, marked=marked, tile_px=100,
                                          title=f"Imputation chains, iteration {key[-1]}"))


@st.cache_resource(show_spinner=False, max_entries=64)
def error_chart(_chains: dict, key: tuple, name: str, axis: str, _truth: np.ndarray,
                labels: tuple):
    """The error curves (``missing_error``'s ``name``; ``accuracy`` drawn as the error rate)
    of ``_chains`` at the state ``key``, frozen."""
    labels = dict(labels)
    curves = {}
    for method, chain in _chains.items():
        r = chain.result()
        err = missing_error(r, torch.from_numpy(_truth), r.mask)
        values = 1.0 - err[name] if name == "accuracy" else err[name]
        curves[labels[method]] = (err["steps"], values)
    return freeze(error_curves_figure(curves, metric=axis,
                                      title="Error on the missing pixels against the truth"))

