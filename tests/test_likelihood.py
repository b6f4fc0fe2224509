"""Importance-sampled log p(x) against factor analysis, where log p(x) is known exactly.

A one-layer DLGM with ``gen_hidden=()`` and a Gaussian likelihood is factor analysis:
h = G xi, x = W h + b + sigma * noise, so p(x) = N(x; b, W G G^T W^T + diag(sigma^2)) and the
posterior p(xi | x) is Gaussian with precision P = I + L^T Psi^{-1} L (L = W G, Psi =
diag(sigma^2)) and mean P^{-1} L^T Psi^{-1} (x - b).
"""

import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import FactorAnalysis
from torch.distributions import MultivariateNormal, kl_divergence

from dlgm.errors import ConfigError, ShapeError
from dlgm.likelihood import _NOISE_BLOCK, evaluate, iwae_bound, log_likelihood
from dlgm.model import DLGM, DLGMConfig

DT = torch.float64
D, K, N = 6, 2, 20


class FA:
    """A linear-Gaussian DLGM (float64) with its exact marginal and posterior."""

    def __init__(self, seed=0, w_scale=0.5, sigma=0.7):
        cfg = DLGMConfig(
            data_shape=(D,),
            n_latent=(K,),
            gen_hidden=(),
            rec_hidden=(2 * D,),
            covariance="rank1-joint",
            likelihood="gaussian",
        )
        self.model = m = DLGM(cfg, seed=seed).double()
        g = torch.Generator().manual_seed(seed)
        w = w_scale * torch.randn(D, K, generator=g, dtype=DT)
        self.b = 0.5 * torch.randn(D, generator=g, dtype=DT)
        gmat = torch.eye(K, dtype=DT) + 0.3 * torch.randn(K, K, generator=g, dtype=DT)
        log_sigma = math.log(sigma) + 0.2 * torch.randn(D, generator=g, dtype=DT)
        with torch.no_grad():  # T_0 is a single nn.Linear when gen_hidden=()
            m.T[0][0].weight.copy_(w)
            m.T[0][0].bias.copy_(self.b)
            m.G[0].copy_(gmat)
            m.log_sigma.copy_(log_sigma)
        self.L = w @ gmat  # (D, K) loadings
        self.psi = torch.exp(2 * log_sigma)  # (D,) noise variances
        self.marginal = MultivariateNormal(self.b, self.L @ self.L.T + torch.diag(self.psi))
        self.P = torch.eye(K, dtype=DT) + self.L.T @ (self.L / self.psi[:, None])  # (K, K)
        self.A = torch.linalg.solve(self.P, self.L.T / self.psi)  # (K, D): mean = A (x - b)
        self.x = self._sample(g)  # (N, D) drawn from the model

    def _sample(self, g):
        z = torch.randn(N, K, generator=g, dtype=DT)
        return self.b + z @ self.L.T + self.psi.sqrt() * torch.randn(N, D, generator=g, dtype=DT)

    def posterior(self, x):
        return MultivariateNormal((x - self.b) @ self.A.T, precision_matrix=self.P)

    def set_recognition(self, inflate=1.0):
        """Make q(xi|x) the exact posterior, with its covariance times ``inflate``.

        trunk(x) = [relu(x), relu(-x)], so a linear head gives the linear posterior mean; the
        constant precision P / inflate is written as D + u u^T (any 2x2 SPD matrix can be)."""
        m = self.model
        p = self.P / inflate
        a, c, off = p[0, 0], p[1, 1], p[0, 1]
        t = torch.sqrt((1 + off**2 / (a * c)) / 2)
        u = torch.stack([a.sqrt() * t, off / (a.sqrt() * t)])
        d = torch.stack([a - u[0] ** 2, c - u[1] ** 2])
        eye = torch.eye(D, dtype=DT)
        with torch.no_grad():
            m.trunk[0].weight.copy_(torch.cat([eye, -eye]))
            m.trunk[0].bias.zero_()
            m.head_loc.weight.copy_(torch.cat([self.A, -self.A], dim=1))
            m.head_loc.bias.copy_(-self.A @ self.b)
            m.head_d.weight.zero_()
            m.head_d.bias.copy_(torch.log(torch.expm1(d - 1e-4)))  # softplus^-1(d - 1e-4)
            m.head_u.weight.zero_()
            m.head_u.bias.copy_(u)


def _gen(seed=1):
    return torch.Generator().manual_seed(seed)


def _exact_elbo(fa, q):
    """E_q[log N(x; b + L xi, Psi)] - KL(q || N(0, I)) in closed form, (N,)."""
    mu, cov = q.mean, q.covariance_matrix  # (N, K), (N, K, K)
    resid = fa.x - fa.b - mu @ fa.L.T  # (N, D)
    rec = (-0.5 * (resid.pow(2) / fa.psi + torch.log(2 * math.pi * fa.psi))).sum(-1)
    rec = rec - 0.5 * torch.einsum("dk,nkl,dl->n", fa.L / fa.psi[:, None], cov, fa.L)
    prior = MultivariateNormal(torch.zeros(K, dtype=DT), torch.eye(K, dtype=DT))
    return rec - kl_divergence(MultivariateNormal(mu, cov), prior)


def test_exact_marginal_matches_sklearn():
    fa = FA()
    sk = FactorAnalysis(n_components=K)
    sk.components_ = fa.L.T.numpy()
    sk.noise_variance_ = fa.psi.numpy()
    sk.mean_ = fa.b.numpy()
    sk.n_features_in_ = D
    np.testing.assert_allclose(
        sk.score_samples(fa.x.numpy()), fa.marginal.log_prob(fa.x), rtol=1e-10
    )


def test_is_converges_with_own_recognition_model():
    fa = FA()  # untrained recognition net: q is a poor but wide proposal
    exact = fa.marginal.log_prob(fa.x)  # (N,)
    rms = []
    for k in (10, 100, 1000, 5000):
        est = log_likelihood(fa.model, fa.x, n_samples=k, generator=_gen())
        rms.append((est - exact).pow(2).mean().sqrt().item())
    assert all(a > b for a, b in zip(rms[:-1], rms[1:], strict=False)), rms
    assert rms[-1] < 0.1, rms  # measured 0.047 nats at K=5000 (seed 1)


def test_is_converges_with_inflated_posterior_proposal():
    fa = FA()
    c = 2.0
    fa.set_recognition(inflate=c)  # the right mean, c times the covariance
    exact = fa.marginal.log_prob(fa.x)
    # With q = N(mu, c S) and p = N(mu, S) in K dimensions, E[w^2] / E[w]^2 = rho =
    # (c^2 / (2c - 1))^(K/2), so the log-estimate has sd ~ sqrt((rho - 1) / k): allow 5 sd.
    rho = (c**2 / (2 * c - 1)) ** (K / 2)
    for k in (10, 1000):
        err = (log_likelihood(fa.model, fa.x, n_samples=k, generator=_gen()) - exact).abs()
        assert torch.all(err < 5 * math.sqrt((rho - 1) / k)), (k, err.max())


def test_exact_posterior_proposal_is_exact():
    fa = FA()
    fa.set_recognition()
    q = fa.model.encode(fa.x)
    post = fa.posterior(fa.x)
    torch.testing.assert_close(q.mean, post.mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        q.covariance_matrix, post.covariance_matrix, rtol=1e-8, atol=1e-8
    )  # the 1e-4 floor on d is inverted exactly: ~1e-14
    exact = fa.marginal.log_prob(fa.x)
    # Every importance weight p(x, xi) / q(xi | x) equals p(x): exact for any K, ESS = K.
    for k in (1, 7):
        est = log_likelihood(fa.model, fa.x, n_samples=k, generator=_gen())
        torch.testing.assert_close(est, exact, rtol=1e-10, atol=1e-10)
    out = evaluate(
        fa.model, fa.x, n_samples=50, elbo_samples=2000, generator=_gen(), return_per_example=True
    )
    np.testing.assert_allclose(out["ess_per_example"], 50, rtol=1e-9)
    np.testing.assert_allclose(-out["nll_per_example"], exact.numpy(), rtol=1e-10)
    # The ELBO equals log p(x) for the exact posterior (closed form, to rounding) ...
    torch.testing.assert_close(_exact_elbo(fa, post), exact, rtol=1e-10, atol=1e-10)
    # ... and the Monte Carlo ELBO (2000 samples) too, within its Monte Carlo error
    # (the per-sample reconstruction term has sd ~ 1 nat here: 5 / sqrt(2000) ~ 0.11).
    assert abs(out["elbo"] + out["nll"]) < 0.11


def test_elbo_gap_is_kl_to_true_posterior():
    fa = FA()
    exact = fa.marginal.log_prob(fa.x)
    post = fa.posterior(fa.x)
    g = _gen(3)
    qs = [fa.model.encode(fa.x)]  # the model's own recognition net, then random Gaussians
    qs += [
        MultivariateNormal(
            torch.randn(N, K, generator=g, dtype=DT),
            scale_tril=torch.tril(torch.randn(N, K, K, generator=g, dtype=DT), -1)
            + torch.eye(K, dtype=DT) * s,
        )
        for s in (0.1, 1.0, 3.0)
    ]
    for q in qs:
        elbo = _exact_elbo(fa, q)
        assert torch.all(elbo <= exact)
        dense_q = MultivariateNormal(q.mean, q.covariance_matrix)
        # log p(x) - ELBO(q) = KL(q || p(xi | x)), an exact identity: float64 tolerance.
        torch.testing.assert_close(exact - elbo, kl_divergence(dense_q, post), rtol=1e-9, atol=1e-9)
    # The model's Monte Carlo ELBO (analytic KL) agrees with the closed form within 5 standard
    # errors of its reconstruction term, whose sd is estimated from independent draws.
    n = 4000
    mc = fa.model.elbo(fa.x, n_samples=n, generator=_gen(4))
    with torch.no_grad():
        rec = fa.model.log_likelihood(fa.x, qs[0].rsample((n,), generator=_gen(5)))  # (n, N)
    assert torch.all((mc - _exact_elbo(fa, qs[0])).abs() < 5 * rec.std(0) / math.sqrt(n))


def _looped_log_px(fa, x, n_samples, batch_size, generator):
    """Naive importance sampling: one example and one sample at a time, dense linear algebra
    (R from eq. 21 as a matrix, log q and log p from MultivariateNormal). The noise eps is drawn
    like dlgm.likelihood does: per batch, in blocks of (_NOISE_BLOCK, B, K)."""
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        n_blocks = -(-n_samples // _NOISE_BLOCK)
        eps = torch.cat(
            [
                torch.randn(_NOISE_BLOCK, len(xb), K, generator=generator, dtype=DT)
                for _ in range(n_blocks)
            ]
        )[:n_samples]  # (S, B, K)
        q = fa.model.encode(xb)
        r, loc, cov = q.scale_factor, q.mean, q.covariance_matrix
        lik = MultivariateNormal(torch.zeros(D, dtype=DT), torch.diag(fa.psi))
        prior = MultivariateNormal(torch.zeros(K, dtype=DT), torch.eye(K, dtype=DT))
        for i in range(len(xb)):
            qi = MultivariateNormal(loc[i], cov[i])
            log_w = []
            for k in range(n_samples):
                xi = loc[i] + r[i] @ eps[k, i]
                log_p = lik.log_prob(xb[i] - fa.b - fa.L @ xi) + prior.log_prob(xi)
                log_w.append((log_p - qi.log_prob(xi)).item())
            out.append(np.logaddexp.reduce(log_w) - math.log(n_samples))
    return torch.tensor(out, dtype=DT)


def test_vectorised_matches_looped():
    fa = FA()
    x = fa.x[:5]
    with torch.no_grad():
        looped = _looped_log_px(fa, x, 70, 3, _gen(5))
    fast = log_likelihood(fa.model, x, n_samples=70, batch_size=3, generator=_gen(5))
    torch.testing.assert_close(fast, looped, rtol=1e-10, atol=1e-10)  # same draws, float64


@pytest.mark.parametrize("max_elements", [1, D * 3 * 5, D * 3 * 64 + 5])
def test_chunking_does_not_change_results(max_elements):
    fa = FA()
    x = fa.x[:10]  # batches of 7 and 3; 1 sample x 1 example per decoder call at max_elements=1
    ref = log_likelihood(fa.model, x, n_samples=70, batch_size=7, generator=_gen(6))
    out = log_likelihood(
        fa.model, x, n_samples=70, batch_size=7, max_elements=max_elements, generator=_gen(6)
    )
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)  # same draws; rounding only


def test_float32_bernoulli_chunking():
    cfg = DLGMConfig(
        data_shape=(4, 4), n_latent=(3,), gen_hidden=(8,), rec_hidden=(8,), covariance="rank1"
    )
    m = DLGM(cfg, seed=1)
    x = (torch.rand(9, 16, generator=_gen(2)) < 0.5).float()
    a = log_likelihood(m, x, n_samples=70, generator=_gen(3))
    b = log_likelihood(m, x, n_samples=70, max_elements=16 * 5, generator=_gen(3))
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-4)  # float32 summation order only


def test_iwae_bound_and_gradients():
    fa = FA()
    k1 = iwae_bound(fa.model, fa.x, 1, generator=_gen(7))
    k10 = iwae_bound(fa.model, fa.x, 10, generator=_gen(7))
    k100 = iwae_bound(fa.model, fa.x, 100, generator=_gen(7))
    exact = fa.marginal.log_prob(fa.x).mean()
    assert k1 < k10 < k100 <= exact + 0.01  # IWAE_k increases towards log p(x) (margins ~ nats)
    same = log_likelihood(fa.model, fa.x, n_samples=10, generator=_gen(7)).mean()
    torch.testing.assert_close(k10, same, rtol=0, atol=0)
    assert log_likelihood(fa.model, fa.x, n_samples=3).grad_fn is None  # no_grad by default
    bound = iwae_bound(fa.model, fa.x, 5, generator=_gen(8), differentiable=True)
    bound.backward()
    grads = [p.grad for p in fa.model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_evaluate_and_progress():
    fa = FA()
    calls = []
    out = evaluate(
        fa.model,
        fa.x,
        n_samples=30,
        batch_size=8,
        generator=_gen(9),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(8, N), (16, N), (20, N)]
    assert out["n_samples"] == 30 and out["n_examples"] == N
    assert set(out) == {"nll", "elbo", "gap", "ess", "n_samples", "n_examples"}
    ref = log_likelihood(fa.model, fa.x, n_samples=30, batch_size=8, generator=_gen(9))
    assert out["nll"] == pytest.approx(-ref.mean().item(), rel=1e-12)
    assert 1 <= out["ess"] <= 30


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_samples=0),
        dict(n_samples=-5),
        dict(n_samples=2.5),
        dict(n_samples=True),
        dict(batch_size=0),
        dict(max_elements=0),
    ],
)
def test_bad_settings_raise(kwargs):
    fa = FA()
    with pytest.raises(ConfigError, match=r"\[1, inf\)"):
        log_likelihood(fa.model, fa.x, **kwargs)


@pytest.mark.parametrize(
    "bad", [torch.zeros(3, D + 1), torch.zeros(D), torch.full((3, D), math.nan)]
)
def test_bad_input_raises(bad):
    fa = FA()
    with pytest.raises(ShapeError):
        log_likelihood(fa.model, bad, n_samples=2)
    with pytest.raises(ShapeError):
        evaluate(fa.model, bad, n_samples=2)


def test_empty_input():
    fa = FA()
    assert log_likelihood(fa.model, torch.zeros(0, D), n_samples=3).shape == (0,)
    with pytest.raises(ShapeError, match="no examples"):
        evaluate(fa.model, torch.zeros(0, D), n_samples=3)
