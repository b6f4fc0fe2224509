"""Imputation page (Fig. 5): the chains at step 0, shared by every session, and their figures.

The chains are a deterministic function of their :func:`signature` (model, image and mask,
chains, initial fill, particles, seed) and of the number of steps taken, so their figures are
stored read-only under (signature, step) and shared between reruns and sessions.
"""

from __future__ import annotations

import numpy as np
import torch

import dlgm
from app.cache import cache_resource, digest, model_key
from app.figures.curves import error_curves_figure
from app.figures.images import imputation_strip_figure, masked_image_figure
from app.figures.style import freeze
from dlgm.impute import ImputationChain, missing_error

LABELS = {
    "pseudo-gibbs": "pseudo-Gibbs (paper)",
    "mwg": "Metropolis-within-Gibbs (exact)",
    "importance": "importance resampling",
}
METRICS = {  # for binary pixels (Bernoulli models): name -> (missing_error's key, axis title)
    "cross-entropy": ("cross_entropy", "cross-entropy (nats per missing pixel)"),
    "pixel error rate": ("accuracy", "fraction of missing pixels wrong"),
    "squared error": ("mse", "mean squared error per missing pixel"),
}
GREY_METRICS = {  # for grey levels (Gaussian models): cross-entropy and error rate need 0/1
    "squared error": ("mse", "mean squared error per missing pixel (grey levels)"),
}
N_SHOWN = 15  # iterations shown in the strip, as in Fig. 5


def metrics_for(model: dlgm.DLGM) -> dict[str, tuple[str, str]]:
    """The errors the page offers for ``model``'s pixels: :data:`METRICS` for binary pixels,
    :data:`GREY_METRICS` (squared error of the pixel means) for grey levels."""
    return METRICS if model.config.binary else GREY_METRICS


def signature(model: dlgm.DLGM, x: np.ndarray, mask: torch.Tensor, settings: dict) -> tuple:
    """What the chains at step 0 are a function of: (model key, digest of mask and image,
    methods, initial fill, particles, seed)."""
    return (
        model_key(model),
        digest(mask, x),
        settings["methods"],
        settings["init"],
        settings["particles"],
        settings["seed"],
    )


@cache_resource(show_spinner=False, max_entries=64)
def masked_image_chart(image: np.ndarray, mask: np.ndarray):
    """``masked_image_figure`` of an image (D,) and its mask (H, W), frozen."""
    return freeze(masked_image_figure(image.reshape(mask.shape), mask, title="What the chains see"))


@cache_resource(show_spinner=False, max_entries=32)
def initial_chains(
    _model: dlgm.DLGM, _x: np.ndarray, _mask: torch.Tensor, signature: tuple
) -> dict:
    """The chains at step 0, method -> ``ImputationChain``, for ``signature`` (of
    :func:`signature`: it names the model, image and mask). Never stepped: each session steps
    a deep copy of its own."""
    _, _, methods, init, particles, seed = signature
    chains = {}
    for i, method in enumerate(methods):
        g = torch.Generator().manual_seed(seed * 31 + i)
        chains[method] = ImputationChain(
            _model,
            torch.tensor(_x),
            _mask.clone(),
            method=method,
            init=init,
            n_particles=particles if method == "importance" else None,
            generator=g,
        )
    return chains


def _strips(chains: dict, truth: np.ndarray, shape, use_probs: bool, n_shown: int):
    """Images of the last ``n_shown`` steps of every chain, after a truth column."""
    results = {m: c.result() for m, c in chains.items()}
    t = next(iter(chains.values())).state.step
    steps = list(range(max(0, t - n_shown + 1), t + 1))
    if steps[0] > 0:
        steps = [0] + steps[1:]  # always keep the initial fill
    strips = {}
    for method, r in results.items():
        frames = (r.probs if use_probs else r.images)[steps, 0].numpy()  # (C, D)
        strips[LABELS[method]] = np.concatenate([truth[None], frames]).reshape(-1, *shape)
    return strips, ["truth"] + [str(s) for s in steps]


@cache_resource(show_spinner=False, max_entries=64)
def strip_chart(
    _chains: dict,
    key: tuple,
    use_probs: bool,
    _truth: np.ndarray,
    _mask: np.ndarray,
    n_shown: int = N_SHOWN,
):
    """The Fig. 5 strip of the last ``n_shown`` steps of ``_chains`` (method -> chain) at the
    state ``key`` = (:func:`signature`, steps taken), frozen."""
    strips, columns = _strips(_chains, _truth, _mask.shape, use_probs, n_shown)
    marked = [False] + [True] * (len(columns) - 1)
    return freeze(
        imputation_strip_figure(
            strips,
            _mask,
            columns,
            marked=marked,
            tile_px=100,
            title=f"Imputation chains, iteration {key[-1]}",
        )
    )


@cache_resource(show_spinner=False, max_entries=64)
def error_chart(_chains: dict, key: tuple, name: str, axis: str, _truth: np.ndarray):
    """The error curves (``missing_error``'s ``name``; ``accuracy`` drawn as the error rate)
    of ``_chains`` at the state ``key``, frozen."""
    curves = {}
    for method, chain in _chains.items():
        r = chain.result()
        err = missing_error(r, torch.from_numpy(_truth), r.mask)
        values = 1.0 - err[name] if name == "accuracy" else err[name]
        curves[LABELS[method]] = (err["steps"], values)
    return freeze(
        error_curves_figure(
            curves, metric=axis, title="Error on the missing pixels against the truth"
        )
    )
