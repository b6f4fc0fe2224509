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

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, MultivariateNormal, kl_divergence

from .posteriors import DiagonalNormal, RankOneNormal

FAMILIES = ("diag", "rank1", "full")
_D_FLOOR = 1e-4  # as the recognition model: d = softplus(.) + 1e-4


def _inv_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def _blocks(model) -> tuple | None:
    return None if model.config.covariance == "rank1-joint" else model.config.n_latent


def _start(q: Distribution, family: str, generator) -> dict:
    """Free parameters of ``family`` that reproduce (or, for a richer family, contain) q."""
    loc = q.mean.detach().clone()
    if family == "full":
        chol = torch.linalg.cholesky(q.covariance_matrix.detach())  # (B, K, K)
        diag = torch.diagonal(chol, dim1=-2, dim2=-1)
        return {
            "loc": loc,
            "tril": torch.tril(chol, -1).clone(),
            "rho": _inv_softplus(diag.clamp_min(1e-6)).clone(),
        }
    d = q.d if isinstance(q, RankOneNormal) else q.scale.pow(-2)
    out = {"loc": loc, "rho": _inv_softplus((d.detach() - _D_FLOOR).clamp_min(1e-6)).clone()}
    if family == "rank1":
        if isinstance(q, RankOneNormal):
            out["u"] = q.u.detach().clone()
        else:  # u = 0 is a stationary point of the ELBO (it is even in u): start just off it
            out["u"] = 1e-2 * torch.randn(loc.shape, generator=generator, dtype=loc.dtype)
    return out


def _build(p: dict, family: str, blocks) -> Distribution:
    if family == "full":
        scale = torch.tril(p["tril"], -1) + torch.diag_embed(F.softplus(p["rho"]) + 1e-6)
        return MultivariateNormal(p["loc"], scale_tril=scale, validate_args=False)
    d = F.softplus(p["rho"]) + _D_FLOOR
    if family == "diag":
        return DiagonalNormal(p["loc"], d.rsqrt(), validate_args=False)
    return RankOneNormal(p["loc"], d, p["u"], blocks=blocks, validate_args=False)


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


def optimal_q(
    model,
    x: torch.Tensor,
    *,
    family: str | None = None,
    steps: int = 300,
    n_samples: int = 16,
    lr: float = 0.01,
    generator: torch.Generator | None = None,
    progress=None,
) -> Distribution:
    """q* for each image on its own: the member of ``family`` with the highest ELBO.

    Adam on a reparameterised Monte Carlo estimate of each image's ELBO (``n_samples`` draws
    per step, learning rate decayed linearly from ``lr`` to 0), started from the recognition
    model's q(xi | x); the images are independent problems solved in one batch. The model is
    not changed.

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
    family = family or ("diag" if model.config.covariance == "diag" else "rank1")
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}: choose one of {FAMILIES}")
    x = model.check_input(x)
    with torch.no_grad():
        q0 = model.encode(x)
    params = _start(q0, family, generator)
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
            loss = -elbo_of(model, x, _build(params, family, blocks), eps).sum()
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
    return _build({k: v.detach() for k, v in params.items()}, family, blocks)


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
    lr: float = 0.01,
    generator: torch.Generator | None = None,
    log_px: torch.Tensor | None = None,
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
        Importance samples for log p(v) (``dlgm.likelihood.log_likelihood``), unless
        ``log_px`` (B,) is given (e.g. from a grid for 2-latent models).
    elbo_samples : int
        Samples of the reconstruction term for both ELBOs (the same draws for q and q*).
    steps, n_samples, lr, generator, progress
        As in :func:`optimal_q`.

    Returns
    -------
    dict of float64 numpy arrays (B,): ``log_px``, ``elbo_q``, ``elbo_qstar``,
    ``approximation_gap`` (log p - ELBO(q*)), ``amortisation_gap`` (ELBO(q*) - ELBO(q)),
    ``total_gap`` (log p - ELBO(q)); and the settings.
    """
    from .likelihood import log_likelihood

    x = model.check_input(x)
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
    q = model.encode(x)
    eps = torch.randn((elbo_samples, len(x), model.latent_dim), generator=generator, dtype=x.dtype)
    elbo_q, elbo_s = (_mean_elbo(model, x, dist, eps) for dist in (q, q_star))
    if log_px is None:
        log_px = log_likelihood(model, x, n_samples=k, generator=generator)
    out = {
        "log_px": log_px,
        "elbo_q": elbo_q,
        "elbo_qstar": elbo_s,
        "approximation_gap": log_px - elbo_s,
        "amortisation_gap": elbo_s - elbo_q,
        "total_gap": log_px - elbo_q,
    }
    out = {key: v.double().cpu().numpy() for key, v in out.items()}
    family = family or ("diag" if model.config.covariance == "diag" else "rank1")
    return out | {
        "family": family,
        "k": k,
        "elbo_samples": elbo_samples,
        "steps": steps,
        "n_samples": n_samples,
        "lr": lr,
    }


__all__ = ["FAMILIES", "elbo_of", "inference_gaps", "optimal_q"]
