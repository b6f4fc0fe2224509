"""The inference gap, log p(v) - ELBO(q), and its two parts (Cremer, Li & Duvenaud, ICML 2018).

For one image v, with q(xi | v) the recognition model's Gaussian (eq. 12) and q* the member of a
Gaussian family that maximises *that image's* ELBO on its own:

==========================  ===================================================================
name                        meaning
==========================  ===================================================================
``elbo_q``                  ELBO(q) = E_q[log p(v, xi) - log q(xi)], the amortised bound
``elbo_qstar``              ELBO(q*), q* found by stochastic gradient ascent from q
``approximation_gap``       log p(v) - ELBO(q*): the family cannot match the true posterior
``amortisation_gap``        ELBO(q*) - ELBO(q): the encoder does not find the family's best
==========================  ===================================================================

The families are the recognition model's own (``"diag"`` or ``"rank1"``, precision D + u u^T,
eq. 19-21) and, as a reference, ``"full"``: any Gaussian, N(mu, L L^T) with L lower triangular.
All values are in nats per image; ELBOs use the analytic KL to N(0, I) and Monte Carlo for the
reconstruction term with common random numbers across families. One stochastic layer or many:
the families act on the concatenated xi (K,), per block for ``"rank1"`` as the model does.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Distribution, MultivariateNormal, kl_divergence

from .posteriors import DiagonalNormal, RankOneNormal

FAMILIES = ("diag", "rank1", "full")


def own_family(model) -> str:
    """The q* family of the model's recognition model: "diag", or "rank1" (also for
    rank1-joint, whose single block over all latents is what "rank1" does for one layer)."""
    return "diag" if model.config.covariance == "diag" else "rank1"


def _blocks(model) -> tuple | None:
    return None if model.config.covariance == "rank1-joint" else model.config.n_latent


def _start(q: Distribution, family: str, generator) -> tuple[dict, dict]:
    """Free parameters of ``family`` that reproduce q (or, for a richer family, contain it; for
    the diagonal family from a rank-one q, its closest diagonal Gaussian), and the fixed frame
    they are measured in.

    The frame whitens by q's precision diagonal ``ref`` (B, K): the mean moves in units of
    q's axis standard deviations and the precisions (or, for ``"full"``, the Cholesky factor's
    diagonal) on a log scale, relative to q's. Adam's steps are about ``lr`` in every free
    parameter, so in these units a step is the same relative change whatever the posterior's
    scale: with the precision itself as a parameter, a posterior with precisions of 10^3 (the
    2-latent MNIST models) would need 10^5 steps of 0.01 to move it by a factor of 2."""
    loc = q.mean.detach()  # (B, K)
    if isinstance(q, RankOneNormal):
        d, u = q.d.detach(), q.u.detach()
        ref = d + u.pow(2)  # the diagonal of the precision D + u u^T
    else:
        d, u = q.scale.detach().pow(-2), None
        ref = d
    frame = {"loc": loc, "ref": ref}
    params = {"loc": torch.zeros_like(loc)}
    if family == "full":
        chol = torch.linalg.cholesky(q.covariance_matrix.detach())  # (B, K, K)
        white = chol * ref.sqrt().unsqueeze(-1)  # diag(sqrt(ref)) chol, lower triangular
        params["tril"] = torch.tril(white, -1)
        params["log_diag"] = torch.diagonal(white, dim1=-2, dim2=-1).log()
    elif family == "diag":
        params["log_d"] = torch.zeros_like(loc)  # d = ref: q itself, or its closest diagonal
    else:
        params["log_d"] = (d / ref).log()
        if u is not None:
            params["u"] = u / ref.sqrt()
        else:  # u = 0 is a stationary point of the ELBO (it is even in u): start just off it
            params["u"] = 1e-2 * torch.randn(loc.shape, generator=generator, dtype=loc.dtype)
    return {k: v.clone() for k, v in params.items()}, frame


def _build(p: dict, frame: dict, family: str, blocks) -> Distribution:
    """The Gaussian of free parameters ``p`` in ``frame`` (see :func:`_start`)."""
    ref = frame["ref"]
    loc = frame["loc"] + p["loc"] * ref.rsqrt()  # (B, K)
    if family == "full":
        white = torch.tril(p["tril"], -1) + torch.diag_embed(p["log_diag"].exp())
        scale = white * ref.rsqrt().unsqueeze(-1)  # (B, K, K), still lower triangular
        return MultivariateNormal(loc, scale_tril=scale, validate_args=False)
    d = ref * p["log_d"].exp()  # (B, K), > 0
    if family == "diag":
        return DiagonalNormal(loc, d.rsqrt(), validate_args=False)
    return RankOneNormal(loc, d, p["u"] * ref.sqrt(), blocks=blocks, validate_args=False)


def _kl_prior(model, q: Distribution) -> torch.Tensor:
    if isinstance(q, MultivariateNormal):
        k = q.loc.shape[-1]
        eye = torch.eye(k, dtype=q.loc.dtype)
        return kl_divergence(
            q, MultivariateNormal(torch.zeros(k, dtype=q.loc.dtype), scale_tril=eye)
        )
    return kl_divergence(q, model.prior())


def _reparameterize(q: Distribution, eps: torch.Tensor) -> torch.Tensor:
    if isinstance(q, MultivariateNormal):
        return q.loc + (q.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
    return q.reparameterize(eps)


def elbo_of(model, x: torch.Tensor, q: Distribution, eps: torch.Tensor) -> torch.Tensor:
    """ELBO of each image under q with the reconstruction averaged over the noise ``eps``
    (S, B, K): xi = mu + R eps; analytic KL. Nats, shape (B,)."""
    xi = _reparameterize(q, eps)  # (S, B, K)
    return model.log_likelihood(x, xi).mean(0) - _kl_prior(model, q)


def _mean_elbo(model, x, q, eps, chunk: int = 100) -> torch.Tensor:
    """:func:`elbo_of` over many draws, ``chunk`` draws at a time (bounded memory)."""
    rec = sum(model.log_likelihood(x, _reparameterize(q, e)).sum(0) for e in eps.split(chunk))
    return rec / len(eps) - _kl_prior(model, q)


def _rows(q: Distribution, idx: slice) -> Distribution:
    """Images ``idx`` of a batched q (diagonal, rank-one or dense Gaussian)."""
    if isinstance(q, MultivariateNormal):
        return MultivariateNormal(q.loc[idx], scale_tril=q.scale_tril[idx], validate_args=False)
    if isinstance(q, RankOneNormal):
        return RankOneNormal(q.loc[idx], q.d[idx], q.u[idx], blocks=q.blocks, validate_args=False)
    return DiagonalNormal(q.loc[idx], q.scale[idx], validate_args=False)


@torch.no_grad()
def mixture_log_likelihood(
    model,
    x: torch.Tensor,
    q_star: Distribution,
    *,
    n_samples: int = 1000,
    generator: torch.Generator | None = None,
    batch_size: int = 10,
    chunk: int = 500,
) -> torch.Tensor:
    """log p(v) per image by importance sampling from the defensive mixture 1/2 q + 1/2 q*.

    log p(v) ~ logsumexp_k [log p(v, xi_k) - log(q(xi_k|v)/2 + q*(xi_k|v)/2)] - log K, half of
    the K draws from the encoder's q and half from q* (stratified). A lower bound in
    expectation, like importance sampling from q alone (``dlgm.likelihood.log_likelihood``),
    but it also finds the posterior mass that q* found and q misses: there q alone
    underestimates log p(v), and the approximation gap log p(v) - ELBO(q*) comes out
    negative. The weights are at most 2 p(v, xi) / q*(xi).

    Parameters
    ----------
    model : DLGM
    x : Tensor, (B, D)
    q_star : Distribution, batch_shape (B,), event_shape (K,)
        E.g. :func:`optimal_q`'s.
    n_samples : int
        K, draws per image (K // 2 from each component).
    generator : torch.Generator, optional
    batch_size, chunk : int
        Images and draws per decoder call (memory only; the draws depend on them).

    Returns
    -------
    Tensor, (B,), nats per image.
    """
    x = model.check_input(x)
    half = n_samples // 2
    if half < 1:
        raise ValueError(f"n_samples={n_samples}: need at least 2 (one from each component)")
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        idx = slice(i, i + batch_size)
        q, qs = model.encode(xb), _rows(q_star, idx)
        lw = []
        for comp in (q, qs):
            for c in range(0, half, chunk):
                n = min(chunk, half - c)
                eps = torch.randn(
                    (n, len(xb), model.latent_dim), generator=generator, dtype=xb.dtype
                )
                xi = _reparameterize(comp, eps)  # (n, B, K)
                log_mix = torch.logaddexp(q.log_prob(xi), qs.log_prob(xi)) - math.log(2)
                lw.append(model.log_joint(xb, xi) - log_mix)  # (n, B)
        lw = torch.cat(lw)  # (2 * half, B)
        out.append(torch.logsumexp(lw, 0) - math.log(len(lw)))
    return torch.cat(out)


def optimal_q(
    model,
    x: torch.Tensor,
    *,
    family: str | None = None,
    steps: int = 300,
    n_samples: int = 16,
    lr: float = 0.05,
    generator: torch.Generator | None = None,
    progress=None,
) -> Distribution:
    """q* for each image on its own: the member of ``family`` with the highest ELBO.

    Adam on a reparameterised Monte Carlo estimate of each image's ELBO (``n_samples`` draws
    per step, learning rate decayed linearly from ``lr`` to 0), started from the recognition
    model's q(xi | x); the images are independent problems solved in one batch. The free
    parameters are relative to q's own scale (the mean in units of q's standard deviations,
    precisions on a log scale), so ``lr`` is a relative step size, whatever the posterior's
    width. The model is not changed.

    Parameters
    ----------
    model : DLGM
    x : Tensor, (B, D)
        Images as the model sees them.
    family : {"diag", "rank1", "full"}, optional
        The recognition model's covariance by default (``"rank1"`` for rank1-joint).
    steps, n_samples, lr : int, int, float
        Adam steps, samples per step, Adam's learning rate.
    generator : torch.Generator, optional
    progress : callable, optional
        ``progress(done, total)`` after each step.

    Returns
    -------
    Distribution with batch_shape (B,) and event_shape (K,), detached.
    """
    family = family or own_family(model)
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}: choose one of {FAMILIES}")
    x = model.check_input(x)
    with torch.no_grad():
        q0 = model.encode(x)
    params, frame = _start(q0, family, generator)
    for v in params.values():
        v.requires_grad_(True)
    opt = torch.optim.Adam(params.values(), lr=lr)
    # lr decays linearly to 0, so that the last iterates average out the gradient noise
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 - t / steps)
    blocks = _blocks(model)
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        for step in range(steps):
            eps = torch.randn(
                (n_samples, *x.shape[:1], model.latent_dim), generator=generator, dtype=x.dtype
            )
            loss = -elbo_of(model, x, _build(params, frame, family, blocks), eps).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if progress is not None:
                progress(step + 1, steps)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
    return _build({k: v.detach() for k, v in params.items()}, frame, family, blocks)


@torch.no_grad()
def inference_gaps(
    model,
    x: torch.Tensor,
    *,
    family: str | None = None,
    k: int = 1000,
    elbo_samples: int = 1000,
    steps: int = 300,
    n_samples: int = 16,
    lr: float = 0.05,
    generator: torch.Generator | None = None,
    log_px: torch.Tensor | None = None,
    q_star: Distribution | None = None,
    progress=None,
) -> dict:
    """log p(v), ELBO(q), ELBO(q*) and the two gaps for each image, nats.

    Parameters
    ----------
    model : DLGM
    x : Tensor, (B, D)
    family : {"diag", "rank1", "full"}, optional
        Family of q* (default: the recognition model's own).
    k : int
        Importance samples for log p(v), from 1/2 q + 1/2 q*
        (:func:`mixture_log_likelihood`), unless ``log_px`` (B,) is given (e.g. from a grid
        for 2-latent models).
    elbo_samples : int
        Samples of the reconstruction term for both ELBOs (the same draws for q and q*).
    steps, n_samples, lr, generator, progress
        As in :func:`optimal_q`.
    q_star : Distribution, optional
        q* of these images, already found (e.g. by :func:`optimal_q`, kept in a cache), with
        batch_shape (B,); then ``steps``, ``n_samples``, ``lr`` and ``progress`` are not used.

    Returns
    -------
    dict of float64 numpy arrays (B,): ``log_px``, ``elbo_q``, ``elbo_qstar``,
    ``approximation_gap`` (log p - ELBO(q*)), ``amortisation_gap`` (ELBO(q*) - ELBO(q)),
    ``total_gap`` (log p - ELBO(q)); and the settings.
    """
    x = model.check_input(x)
    if q_star is None:
        with torch.enable_grad():
            q_star = optimal_q(
                model,
                x,
                family=family,
                steps=steps,
                n_samples=n_samples,
                lr=lr,
                generator=generator,
                progress=progress,
            )
    elif q_star.batch_shape != x.shape[:1]:
        raise ValueError(
            f"q_star has batch_shape {tuple(q_star.batch_shape)}; expected ({len(x)},)"
        )
    q = model.encode(x)
    eps = torch.randn((elbo_samples, len(x), model.latent_dim), generator=generator, dtype=x.dtype)
    elbo_q, elbo_s = (_mean_elbo(model, x, dist, eps) for dist in (q, q_star))
    if log_px is None:
        log_px = mixture_log_likelihood(model, x, q_star, n_samples=k, generator=generator)
    out = {
        "log_px": log_px,
        "elbo_q": elbo_q,
        "elbo_qstar": elbo_s,
        "approximation_gap": log_px - elbo_s,
        "amortisation_gap": elbo_s - elbo_q,
        "total_gap": log_px - elbo_q,
    }
    out = {key: v.double().cpu().numpy() for key, v in out.items()}
    family = family or own_family(model)
    return out | {
        "family": family,
        "k": k,
        "elbo_samples": elbo_samples,
        "steps": steps,
        "n_samples": n_samples,
        "lr": lr,
    }


GAP_KEYS = ("log_px", "elbo_q", "elbo_qstar", "approximation_gap", "amortisation_gap", "total_gap")


def gap_summary(result: dict) -> dict:
    """Means over images and their standard errors of :func:`inference_gaps`' per-image values.

    Parameters
    ----------
    result : dict
        ``inference_gaps``' output (or any dict with the arrays of :data:`GAP_KEYS`, (N,)).

    Returns
    -------
    dict: ``{key: {"mean": float, "se": float}}`` for each key of :data:`GAP_KEYS` (nats per
    image; the standard error is std / sqrt(N) with ddof = 1, NaN for one image), and ``"n"``.
    """
    out: dict = {}
    for key in GAP_KEYS:
        a = np.asarray(result[key], dtype=np.float64).reshape(-1)
        se = a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else math.nan
        out[key] = {"mean": float(a.mean()), "se": float(se)}
    out["n"] = len(np.asarray(result[GAP_KEYS[0]]).reshape(-1))
    return out


__all__ = [
    "FAMILIES",
    "GAP_KEYS",
    "elbo_of",
    "gap_summary",
    "inference_gaps",
    "mixture_log_likelihood",
    "optimal_q",
    "own_family",
]
