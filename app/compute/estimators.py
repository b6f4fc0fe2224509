"""Gradient estimators page (sec. 3, app. D): variance of each estimator against K."""

from __future__ import annotations

import numpy as np
import torch

from app.cache import cache_data, cache_resource, read_only
from app.figures.curves import variance_figure
from app.figures.style import freeze
from dlgm.estimators import ESTIMATORS, FUNCTIONS, variance_vs_dimension

TARGETS = {"mu": ("variance_mu", "d E[f] / d mu"), "sigma": ("variance_sigma", "d E[f] / d sigma")}
TARGETS_KEYS = ("variance_mu", "variance_mu_1", "variance_sigma")
MAX_ELEMENTS = 20_000_000  # largest R * S * K (times K for a full Hessian) computed


@cache_data(show_spinner=False, max_entries=2000)
def variance_cell(
    f: str,
    k: int,
    estimator: str,
    n_samples: int,
    n_repeats: int,
    baseline: str | None,
    mu: float,
    sigma: float,
    seed: int,
) -> dict:
    """Per-coordinate variances of one estimator at one K (cached, so raising K is cheap)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + k * 7 + ESTIMATORS.index(estimator))
    out = variance_vs_dimension(
        f,
        [k],
        n_samples=n_samples,
        n_repeats=n_repeats,
        mu=mu,
        sigma=sigma,
        estimators=[estimator],
        generator=g,
        baseline=baseline if estimator == "score" else None,
    )
    return {key: float(out[key][estimator][0]) for key in TARGETS_KEYS}


def too_big(f: str, k: int, estimator: str, n_samples: int, n_repeats: int) -> bool:
    """Whether one cell would hold more than ``MAX_ELEMENTS`` numbers (shared server)."""
    size = n_repeats * n_samples * k
    if estimator == "price" and not FUNCTIONS[f].separable:
        size *= k  # the full (K, K) Hessian per sample
    return size > MAX_ELEMENTS


def compute(s: dict) -> tuple[dict, list]:
    """{estimator: (n_K,) variances} for the chosen target, from cached cells (NaN where a
    cell is too big to compute), and the list of skipped (estimator, K)."""
    key = TARGETS[s["target"]][0]
    out, skipped = {}, []
    for e in s["estimators"]:
        values = []
        for k in s["ks"]:
            if too_big(s["f"], k, e, s["n_samples"], s["n_repeats"]):
                skipped.append((e, k))
                values.append(np.nan)
                continue
            cell = variance_cell(
                s["f"],
                k,
                e,
                s["n_samples"],
                s["n_repeats"],
                s["baseline"],
                s["mu"],
                s["sigma"],
                s["seed"],
            )
            values.append(cell[key])
        out[e] = np.array(values)
    return out, skipped


@cache_resource(show_spinner=False, max_entries=64)
def variance_results(settings: tuple) -> dict:
    """:func:`compute` of the settings (``tuple(s.items())``), and its figure, frozen;
    read-only and shared. Each (estimator, K) cell is cached on its own
    (:func:`variance_cell`), so raising K computes only the new K."""
    s = dict(settings)
    variances, skipped = compute(s)
    what = TARGETS[s["target"]][1]
    fig = variance_figure(
        np.array(s["ks"]),
        variances,
        y_title=f"variance of the estimate of {what} (per coordinate)",
        title=f"Variance of {what} estimates against K, f = {s['f']} "
        f"(S = {s['n_samples']}, R = {s['n_repeats']})",
    )
    return dict(variances=read_only(variances), skipped=tuple(skipped), fig=freeze(fig))
