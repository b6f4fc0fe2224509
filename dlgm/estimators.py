"""Gradient estimators for Gaussian expectations and their variance (paper sec. 3, app. D).

We estimate the gradient of E_{N(xi; mu, diag(sigma^2))}[f(xi)] with respect to mu and sigma
from ``n_samples`` draws, repeated ``n_repeats`` times to measure the spread of the estimate.

Symbols of the paper and their names here:

==============  ===============  =============================================================
paper           code             meaning
==============  ===============  =============================================================
xi              ``xi``           xi = mu + sigma * eps, eps ~ N(0, I), shape (R, S, K)
mu, C           ``mu, sigma``    mean (K,) and C = diag(sigma^2) (sigma (K,) or a scalar)
f               ``f``            a test function (..., K) -> (...), see ``FUNCTIONS``
K               ``K``            dimension of xi
==============  ===============  =============================================================

Estimators (``ESTIMATORS``):

``"score"``
    REINFORCE / score function: (f(xi) - b) grad log N(xi; mu, sigma^2), with
    d/dmu log N = eps / sigma and d/dsigma log N = (eps^2 - 1) / sigma; b is an optional
    baseline (a constant, or ``"loo"``: the mean of f over the other samples of the same
    estimate, which keeps the estimator unbiased).
``"reparam"``
    Gaussian backpropagation (eq. 10): autograd of f(mu + sigma eps) with respect to mu, sigma.
``"price"``
    Bonnet's theorem for the mean (eq. 7): grad_mu E[f] = E[grad f]; Price's theorem for the
    covariance (eq. 8): grad_C E[f] = 1/2 E[Hessian f], so with C = diag(sigma^2),
    d E[f] / d sigma_k = 2 sigma_k * 1/2 E[H_kk] = sigma_k E[H_kk]. The diagonal of the Hessian
    comes from autograd: one extra backward pass when f is separable (sum_k f_k(xi_k)), the full
    Hessian (K batched backward passes, memory K^2 R S) otherwise (fine for modest K).

Appendix D: the variance of the score-function estimator grows with K (O(K) with a good
baseline, O(K^2) without one when E[f] grows with K), that of Gaussian backpropagation stays
O(1) per coordinate for separable f. :func:`variance_vs_dimension` shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError, ShapeError

__all__ = [
    "ESTIMATORS",
    "FUNCTIONS",
    "Integrand",
    "closed_form",
    "gradient_estimates",
    "variance_vs_dimension",
]

ESTIMATORS = ("score", "reparam", "price")


@dataclass(frozen=True)
class Integrand:
    """A test function f(xi) with its closed-form gradients of E[f] where known.

    Attributes
    ----------
    name : str
    f : callable
        (..., K) -> (...), differentiable with torch.
    description : str
    separable : bool
        f = sum_k f_k(xi_k), so its Hessian is diagonal.
    grad_mu, grad_sigma : callable or None
        (mu (K,), sigma (K,)) -> (K,): d E[f] / d mu and d E[f] / d sigma, xi ~ N(mu, sigma^2).
    """

    name: str
    f: Callable
    description: str = ""
    separable: bool = False
    grad_mu: Callable | None = None
    grad_sigma: Callable | None = None


def _gauss_factor(sigma):
    return torch.exp(-0.5 * sigma.pow(2))  # E[cos(sigma eps)] = exp(-sigma^2 / 2)


FUNCTIONS: dict[str, Integrand] = {
    f.name: f
    for f in (
        Integrand(
            "quadratic",
            lambda xi: xi.pow(2).sum(-1),
            "f = sum_k xi_k^2; E f = |mu|^2 + sum sigma^2",
            True,
            lambda mu, s: 2 * mu,
            lambda mu, s: 2 * s,
        ),
        Integrand(
            "linear",
            lambda xi: xi.sum(-1),
            "f = sum_k xi_k; E f = sum mu",
            True,
            lambda mu, s: torch.ones_like(mu),
            lambda mu, s: torch.zeros_like(s),
        ),
        Integrand(
            "sin",
            lambda xi: xi.sin().sum(-1),
            "f = sum_k sin(xi_k); E f = sum sin(mu) exp(-sigma^2 / 2)",
            True,
            lambda mu, s: mu.cos() * _gauss_factor(s),
            lambda mu, s: -s * mu.sin() * _gauss_factor(s),
        ),
        Integrand(
            "softplus",
            lambda xi: F.softplus(xi).sum(-1),
            "f = sum_k log(1 + exp(xi_k)) (no closed form)",
            True,
        ),
        Integrand(
            "logistic-loss",
            lambda xi: F.softplus(-xi.sum(-1)),
            "f = log(1 + exp(-sum_k "
            "xi_k)), the logistic loss of the margin sum(xi) (not separable; no closed form)",
        ),
    )
}


def _integrand(f) -> Integrand:
    if isinstance(f, Integrand):
        return f
    if isinstance(f, str):
        if f not in FUNCTIONS:
            raise ConfigError(f"f={f!r}: choose one of {tuple(FUNCTIONS)} or pass a callable")
        return FUNCTIONS[f]
    if callable(f):
        return Integrand(getattr(f, "__name__", "custom"), f)
    raise ConfigError(f"f={f!r}: give a name from {tuple(FUNCTIONS)}, an Integrand or a callable")


def _params(mu, sigma) -> tuple[torch.Tensor, torch.Tensor]:
    mu = torch.as_tensor(mu)
    mu = mu.to(torch.get_default_dtype()) if not mu.is_floating_point() else mu
    sigma = torch.as_tensor(sigma, dtype=mu.dtype, device=mu.device)
    if mu.dim() != 1 or mu.numel() == 0 or sigma.dim() > 1 or sigma.numel() not in (1, mu.numel()):
        raise ShapeError(
            f"mu has shape {tuple(mu.shape)} and sigma {tuple(sigma.shape)}; give "
            "mu of shape (K,) and sigma of shape (K,) or a scalar (isotropic)"
        )
    sigma = sigma.expand_as(mu)
    if not (torch.isfinite(mu).all() and torch.isfinite(sigma).all() and (sigma > 0).all()):
        raise ConfigError("mu must be finite and sigma finite and > 0")
    return mu, sigma


def closed_form(f, mu, sigma) -> dict | None:
    """The exact d E[f] / d mu and d E[f] / d sigma, each (K,), or None if unknown."""
    fn = _integrand(f)
    if fn.grad_mu is None:
        return None
    mu, sigma = _params(mu, sigma)
    return {"mu": fn.grad_mu(mu, sigma), "sigma": fn.grad_sigma(mu, sigma)}


def _diag_hessian(fn: Integrand, xi, g) -> torch.Tensor:
    """diag of the Hessian of f at every xi (..., K); ``g`` = grad f with create_graph."""
    if not g.requires_grad:  # grad f does not depend on xi (f affine): H = 0
        return torch.zeros_like(g)
    if fn.separable:  # H diagonal, so d/dxi (sum_k g_k) = diag H
        return torch.autograd.grad(g.sum(), xi)[0]
    k = xi.shape[-1]
    basis = torch.eye(k, dtype=xi.dtype, device=xi.device).view(k, *[1] * (xi.dim() - 1), k)
    hess_cols = torch.autograd.grad(
        g, xi, grad_outputs=basis.expand(k, *g.shape), is_grads_batched=True
    )[0]  # H e_j for every j, (K, ..., K)
    return hess_cols.diagonal(dim1=0, dim2=-1)  # (..., K)


def gradient_estimates(
    f,
    mu,
    sigma,
    *,
    estimator: str,
    n_samples: int = 10,
    n_repeats: int = 200,
    baseline=None,
    generator: torch.Generator | None = None,
) -> dict:
    """``n_repeats`` independent estimates of the gradient of E[f(xi)], xi ~ N(mu, sigma^2).

    Parameters
    ----------
    f : str, Integrand or callable
        A name in ``FUNCTIONS``, an :class:`Integrand`, or a callable (..., K) -> (...).
    mu : Tensor, (K,)
    sigma : Tensor, (K,), or float
        Standard deviations (> 0); a scalar means isotropic.
    estimator : {"score", "reparam", "price"}
    n_samples : int
        S, draws averaged in each estimate.
    n_repeats : int
        R, independent estimates.
    baseline : float or "loo", optional
        Score-function estimator only: a constant subtracted from f, or ``"loo"`` for the
        leave-one-out mean of f over the other S - 1 samples (needs S >= 2).
    generator : torch.Generator, optional

    Returns
    -------
    dict
        ``"mu"``: (R, K) estimates of d E[f] / d mu; ``"sigma"``: (R, K) estimates of
        d E[f] / d sigma (per coordinate, also for isotropic sigma).
    """
    if estimator not in ESTIMATORS:
        raise ConfigError(f"estimator={estimator!r}: choose one of {ESTIMATORS}")
    for name, v in (("n_samples", n_samples), ("n_repeats", n_repeats)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{name}={v!r}: must be an integer >= 1")
    if baseline is not None and estimator != "score":
        raise ConfigError("baseline applies to estimator='score' only")
    fn, (mu, sigma) = _integrand(f), _params(mu, sigma)
    eps = torch.randn(
        int(n_repeats),
        int(n_samples),
        mu.shape[0],
        generator=generator,
        dtype=mu.dtype,
        device=mu.device,
    )  # (R, S, K)
    if estimator == "score":
        return _score(fn, mu, sigma, eps, baseline)
    if estimator == "reparam":
        return _reparam(fn, mu, sigma, eps)
    return _price(fn, mu, sigma, eps)


def _score(fn, mu, sigma, eps, baseline) -> dict:
    with torch.no_grad():
        fx = fn.f(mu + sigma * eps)  # (R, S)
        if isinstance(baseline, str):
            if baseline != "loo" or eps.shape[1] < 2:
                raise ConfigError(
                    f"baseline={baseline!r}: use a number, None, or 'loo' with n_samples >= 2"
                )
            fx = fx - (fx.sum(1, keepdim=True) - fx) / (eps.shape[1] - 1)  # leave-one-out
        elif baseline is not None:
            fx = fx - float(baseline)
        w = fx.unsqueeze(-1)  # (R, S, 1)
        return {
            "mu": (w * eps / sigma).mean(1),  # d log N / d mu = eps / sigma
            "sigma": (w * (eps.pow(2) - 1) / sigma).mean(1),
        }  # (R, K)


def _reparam(fn, mu, sigma, eps) -> dict:
    R = eps.shape[0]
    mu_r = mu.expand(R, -1).clone().requires_grad_(True)  # (R, K), one copy per repeat
    sigma_r = sigma.expand(R, -1).clone().requires_grad_(True)
    xi = mu_r.unsqueeze(1) + sigma_r.unsqueeze(1) * eps  # (R, S, K)   (eq. 10)
    g_mu, g_sigma = torch.autograd.grad(fn.f(xi).mean(1).sum(), (mu_r, sigma_r))
    return {"mu": g_mu, "sigma": g_sigma}  # (R, K) each


def _price(fn, mu, sigma, eps) -> dict:
    xi = (mu + sigma * eps).requires_grad_(True)  # (R, S, K)
    g = torch.autograd.grad(fn.f(xi).sum(), xi, create_graph=True)[0]  # grad f, (R, S, K)
    h = _diag_hessian(fn, xi, g)  # (R, S, K)
    return {
        "mu": g.detach().mean(1),  # Bonnet, eq. 7
        "sigma": (sigma * h.detach()).mean(1),
    }  # Price, eq. 8, via d sigma^2 / d sigma


def variance_vs_dimension(
    f,
    ks,
    *,
    n_samples: int = 10,
    n_repeats: int = 200,
    mu: float = 0.0,
    sigma: float = 1.0,
    estimators=ESTIMATORS,
    baseline=None,
    generator: torch.Generator | None = None,
) -> dict:
    """Variance of each gradient estimator as the dimension K grows (appendix D).

    For each K, xi ~ N(mu 1_K, sigma^2 I_K). The variance of an estimator is measured across
    ``n_repeats`` independent estimates (each the mean of ``n_samples`` draws, so it scales as
    1 / n_samples) and summarised per coordinate.

    Parameters
    ----------
    f : str, Integrand or callable
    ks : sequence of int
        Dimensions K to try (>= 1).
    n_samples, n_repeats : int
        S and R (R >= 2).
    mu, sigma : float
        The common mean and standard deviation of every coordinate.
    estimators : sequence of str
        A subset of ``ESTIMATORS``.
    baseline : float or "loo", optional
        Passed to the score-function estimator.
    generator : torch.Generator, optional

    Returns
    -------
    dict
        ``"ks"``: (n_K,) int array; ``"variance_mu"``, ``"variance_mu_1"``,
        ``"variance_sigma"``: dicts estimator -> (n_K,) float arrays, with
        ``variance_mu`` = (1/K) sum_k Var[estimate of d E[f] / d mu_k] (the mean per-coordinate
        variance; all coordinates are exchangeable here, so this is a less noisy measure of
        ``variance_mu_1`` = Var[estimate of d E[f] / d mu_1]) and ``variance_sigma`` likewise for
        sigma. Variances use the unbiased (R - 1) normaliser.
    """
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ConfigError(f"ks={ks}: give dimensions >= 1")
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, (int, np.integer)) or n_repeats < 2:
        raise ConfigError(f"n_repeats={n_repeats!r}: need at least 2 to measure a variance")
    bad = [e for e in estimators if e not in ESTIMATORS]
    if bad or not estimators:
        raise ConfigError(f"estimators={tuple(estimators)}: choose from {ESTIMATORS}")
    out = {"ks": np.array(ks), "variance_mu": {}, "variance_mu_1": {}, "variance_sigma": {}}
    for e in estimators:
        for key in ("variance_mu", "variance_mu_1", "variance_sigma"):
            out[key][e] = np.empty(len(ks))
    for i, k in enumerate(ks):
        mu_k = torch.full((k,), float(mu))
        for e in estimators:
            est = gradient_estimates(
                f,
                mu_k,
                float(sigma),
                estimator=e,
                n_samples=n_samples,
                n_repeats=n_repeats,
                generator=generator,
                baseline=baseline if e == "score" else None,
            )
            var_mu = est["mu"].var(0)  # (K,)
            out["variance_mu"][e][i] = float(var_mu.mean())
            out["variance_mu_1"][e][i] = float(var_mu[0])
            out["variance_sigma"][e][i] = float(est["sigma"].var(0).mean())
    return out
