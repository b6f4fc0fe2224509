"""Marginal likelihood log p(v) by importance sampling with the recognition model (sec. 5).

The recognition model q(xi | v) is the proposal (Rezende et al., 2014, sec. 5 and Fig. 2c):

    log p(v) ~= log (1/K) sum_k w_k,   w_k = p(v, xi_k) / q(xi_k | v),   xi_k ~ q(xi | v),

with log p(v, xi) of eq. 6. For every K this is a stochastic lower bound in expectation
(Jensen), and it is exactly the importance-weighted bound IWAE_K of Burda, Grosse and
Salakhutdinov (2016); as K grows it converges to log p(v). All values are in nats per example.

Memory: the decoder output of K samples for N examples has K * N * D floats (5000 * 10,000 *
784 = 4e10 for the MNIST test set), so examples are taken ``batch_size`` at a time and samples
in chunks of about ``max_elements // (batch_size * D)``; the chunks are combined with a
streaming logsumexp. The noise eps of xi = mu + R eps (eq. 21) is drawn from ``generator`` in
fixed blocks of ``_NOISE_BLOCK`` samples per example batch, so the draws, and hence the
results, do not depend on ``max_elements`` (only on ``generator``, ``batch_size`` and K), up to
floating-point rounding.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from .errors import ConfigError, ShapeError

_NOISE_BLOCK = 64  # samples per block of eps; fixes the order of the random draws
_DEFAULT_BATCH = 100  # examples per batch when batch_size is None


def _check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(
            f"{name}={value!r}: must be an integer >= {low} (allowed range [{low}, inf))"
        )
    return int(value)


def _prepare(model, x: torch.Tensor) -> torch.Tensor:
    """Validate x with ``model.check_input`` and move it to the model's dtype and device."""
    p = next(model.parameters())
    return model.check_input(x).to(dtype=p.dtype, device=p.device)


class _NoiseStream:
    """Standard normal eps of shape (n, B, K) for one example batch, drawn in blocks of
    ``_NOISE_BLOCK`` samples, so that ``take(a)`` then ``take(b)`` returns the same values as
    ``take(a + b)`` whatever the chunk sizes."""

    def __init__(self, batch: int, n_latent: int, generator, dtype, device):
        self.shape = (_NOISE_BLOCK, batch, n_latent)
        self.generator, self.dtype, self.device = generator, dtype, device
        self.buffer = torch.empty((0, batch, n_latent), dtype=dtype, device=device)

    def take(self, n: int) -> torch.Tensor:
        parts, have = [self.buffer], self.buffer.shape[0]
        while have < n:
            block = torch.randn(
                self.shape, generator=self.generator, dtype=self.dtype, device=self.device
            )  # (_NOISE_BLOCK, B, K)
            parts.append(block)
            have += _NOISE_BLOCK
        eps = torch.cat(parts) if len(parts) > 1 else parts[0]
        self.buffer = eps[n:]
        return eps[:n]  # (n, B, K)


def _log_weights(model, xb, q, eps, e_chunk: int) -> torch.Tensor:
    """log w = log p(x, xi) - log q(xi | x) for xi = mu + R eps; (S, B), nats."""
    xi = q.reparameterize(eps)  # (S, B, K)
    log_q = q.log_prob(xi)  # (S, B)
    log_p = torch.cat(
        [
            model.log_joint(xb[e : e + e_chunk], xi[:, e : e + e_chunk])
            for e in range(0, xb.shape[0], e_chunk)
        ],
        dim=1,
    )  # (S, B)
    return log_p - log_q


def _importance(model, x, n_samples, batch_size, max_elements, generator, progress, differentiable):
    """Streaming importance sampling; returns (log p(x) estimate, effective sample size), (N,)."""
    n, d = x.shape
    lse_all, ess_all = [], []
    ctx = contextlib.nullcontext() if differentiable else torch.no_grad()
    with ctx:
        for start in range(0, n, batch_size):
            xb = x[start : start + batch_size]  # (B, D)
            b = xb.shape[0]
            q = model.encode(xb)  # batch_shape (B,), event_shape (K,)
            noise = _NoiseStream(b, model.latent_dim, generator, x.dtype, x.device)
            s_chunk = max(1, min(n_samples, max_elements // (b * d)))
            e_chunk = max(1, min(b, max_elements // (s_chunk * d)))
            lse = lse2 = None  # running logsumexp of log w and of 2 log w, (B,)
            for k0 in range(0, n_samples, s_chunk):
                lw = _log_weights(
                    model, xb, q, noise.take(min(s_chunk, n_samples - k0)), e_chunk
                )  # (S, B)
                c, c2 = lw.logsumexp(0), (2.0 * lw).logsumexp(0)  # (B,)
                lse = c if lse is None else torch.logaddexp(lse, c)
                lse2 = c2 if lse2 is None else torch.logaddexp(lse2, c2)
            lse_all.append(lse - math.log(n_samples))
            ess_all.append(torch.exp(2.0 * lse - lse2).detach())  # (sum w)^2 / sum w^2
            if progress is not None:
                progress(start + b, n)
    if not lse_all:
        empty = x.new_zeros((0,))
        return empty, empty
    return torch.cat(lse_all), torch.cat(ess_all)


def log_likelihood(
    model,
    x,
    *,
    n_samples=5000,
    batch_size=None,
    max_elements=None,
    generator=None,
    iwae=False,
    progress=None,
) -> torch.Tensor:
    """Importance-sampled log p(x) per example, in nats.

    log p(x) ~= logsumexp_k [log p(x, xi_k) - log q(xi_k | x)] - log K, xi_k ~ q(xi | x),
    with the model's recognition model as the proposal.

    Parameters
    ----------
    model : DLGM
    x : Tensor, (N, D)
        Observations (checked by ``model.check_input``; moved to the model's dtype and device).
    n_samples : int
        K >= 1, importance samples per example. K = 1 gives a one-sample ELBO estimate.
    batch_size : int, optional
        Examples per batch (default 100). The random draws depend on it (see ``max_elements``).
    max_elements : int, optional
        Default 2**20 on CPU, 2**25 on CUDA. About the largest number of decoder outputs
        (samples x examples x pixels) held at once. Samples are chunked, and examples too
        when one sample of a batch is too big.
        It changes memory and speed only: the result is the same up to rounding. Peak memory
        is a few times this many floats (the likelihood's temporaries): the whole process
        peaked at 0.65 GB with the default 2**25 in float32 on MNIST.
    generator : torch.Generator, optional
        Source of the noise eps, on the model's device; the global RNG if ``None``.
    iwae : bool
        False (default): evaluate under ``torch.no_grad()``. True: keep the autograd graph, so
        that the result is the differentiable importance-weighted bound IWAE_K (Burda et al.,
        2016) and can be maximised; memory then grows with K (every chunk's graph is kept).
    progress : callable, optional
        ``progress(done_examples, total_examples)``, called after every batch.

    Returns
    -------
    Tensor, (N,)
        Estimates of log p(x_n) in nats per example (a lower bound in expectation).

    Raises
    ------
    ConfigError
        If ``n_samples``, ``batch_size`` or ``max_elements`` is not an integer >= 1.
    ShapeError
        If ``x`` is not a finite (N, D) tensor.
    """
    log_px, _ = _run(model, x, n_samples, batch_size, max_elements, generator, progress, iwae)
    return log_px


def _default_elements(model, max_elements):
    """2**20 decoder outputs per chunk on CPU (cache-sized: 1.6-2x faster than larger chunks
    there, measured in bench/RESULTS.md), 2**25 on GPUs; or the caller's choice."""
    if max_elements is not None:
        return _check_int("max_elements", max_elements)
    return 2**25 if next(model.parameters()).device.type == "cuda" else 2**20


def _run(model, x, n_samples, batch_size, max_elements, generator, progress, differentiable):
    n_samples = _check_int("n_samples", n_samples)
    max_elements = _default_elements(model, max_elements)
    batch_size = _DEFAULT_BATCH if batch_size is None else _check_int("batch_size", batch_size)
    x = _prepare(model, x)
    return _importance(
        model, x, n_samples, batch_size, max_elements, generator, progress, differentiable
    )


def iwae_bound(
    model, x, k, *, batch_size=None, max_elements=None, generator=None, differentiable=False
) -> torch.Tensor:
    """The importance-weighted bound IWAE_k (Burda et al., 2016), mean over examples, nats.

    It is the estimator of :func:`log_likelihood` with K = k; k = 1 is the (one-sample) ELBO,
    and the bound tightens towards log p(x) as k grows.

    Parameters
    ----------
    model : DLGM
    x : Tensor, (N, D)
    k : int
        Importance samples per example, >= 1.
    differentiable : bool
        Keep the autograd graph (for training on the bound).

    Returns
    -------
    Tensor, scalar
        The mean over examples of the per-example bound, in nats per example.
    """
    log_px, _ = _run(model, x, k, batch_size, max_elements, generator, None, differentiable)
    return log_px.mean()


def evaluate(
    model,
    x,
    *,
    n_samples=5000,
    elbo_samples=10,
    batch_size=None,
    max_elements=None,
    generator=None,
    progress=None,
    return_per_example=False,
) -> dict:
    """Test-set metrics: importance-sampled NLL and the ELBO, in nats per example.

    Parameters
    ----------
    model : DLGM
    x : Tensor, (N, D), N >= 1
    n_samples : int
        K, importance samples per example for the NLL (see :func:`log_likelihood`).
    elbo_samples : int
        Samples per example for the reconstruction term of the ELBO; its KL is analytic
        (``model.elbo``).
    batch_size, max_elements, generator, progress
        As in :func:`log_likelihood`. The ELBO is computed after the NLL, from the same generator.
    return_per_example : bool
        Also return the per-example arrays.

    Returns
    -------
    dict
        ``nll``: mean of -log p(x) (float, nats per example); ``elbo``: mean ELBO (float, nats
        per example, <= -nll up to Monte Carlo error); ``gap``: ``-nll - elbo``, an estimate of
        the mean KL(q(xi|x) || p(xi|x)); ``ess``: mean effective sample size (sum w)^2 / sum w^2
        of the importance weights, in [1, K] (small values warn that the NLL is unreliable);
        ``n_samples``, ``n_examples`` (int). With ``return_per_example``: ``nll_per_example``,
        ``elbo_per_example``, ``ess_per_example``, float64 numpy arrays of shape (N,).
    """
    elbo_samples = _check_int("elbo_samples", elbo_samples)
    if isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape[0] == 0:
        raise ShapeError("x has no examples: evaluate needs at least one, shape (N, D), N >= 1")
    log_px, ess = _run(model, x, n_samples, batch_size, max_elements, generator, progress, False)
    x = _prepare(model, x)
    elbo_batch = max(1, _default_elements(model, max_elements) // (elbo_samples * x.shape[1]))
    elbo = model.elbo(x, n_samples=elbo_samples, batch_size=elbo_batch, generator=generator)
    nll = -log_px.double().cpu().numpy()
    elbo = elbo.double().cpu().numpy()
    ess = ess.double().cpu().numpy()
    out = {
        "nll": float(nll.mean()),
        "elbo": float(elbo.mean()),
        "gap": float((-nll - elbo).mean()),
        "ess": float(ess.mean()),
        "n_samples": int(n_samples),
        "n_examples": int(len(nll)),
    }
    if return_per_example:
        out.update(nll_per_example=nll, elbo_per_example=elbo, ess_per_example=ess)
    return out


def evaluate_split(
    model,
    split="test",
    *,
    data_name=None,
    n_samples=5000,
    limit=None,
    device=None,
    seed=0,
    progress=None,
) -> dict:
    """:func:`evaluate` on a data set's split as the model sees it (``dlgm.data.model_images``:
    the model's data set, statically binarised with its evaluation seed), timed.

    Parameters
    ----------
    model : DLGM
    split : {"test", "train"}
    data_name : str, optional
        The data set (default: the model's card, ``metadata["data"]``).
    n_samples : int
        K, importance samples per example.
    limit : int, optional
        The first ``limit`` images only.
    device : torch.device, optional
        Where to evaluate (default: the model's device).
    seed : int
        Seed of the ``torch.Generator`` of the estimate.
    progress : callable, optional
        ``progress(done_examples, total_examples)``.

    Returns
    -------
    dict
        ``nll``, ``elbo``, ``gap``, ``ess`` (as :func:`evaluate`, nats per example), ``k``,
        ``n``, ``split``, ``data``, ``binarization``, ``seconds`` (of the estimate) and
        ``device``.
    """
    import time

    from .data import model_images

    x, how = model_images(model, split, data_name=data_name, limit=limit)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device)
    x = torch.tensor(x, device=device)
    t0 = time.perf_counter()
    g = torch.Generator(device).manual_seed(seed)
    res = evaluate(model, x, n_samples=n_samples, generator=g, progress=progress)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "nll": res["nll"],
        "elbo": res["elbo"],
        "gap": res["gap"],
        "ess": res["ess"],
        "k": n_samples,
        "n": len(x),
        "split": split,
        "data": data_name or model.metadata.get("data"),
        "binarization": how,
        "seconds": round(seconds, 2),
        "device": str(device),
    }
