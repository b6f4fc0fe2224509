"""The inference gap's two parts (dlgm.gap) on factor analysis, where everything is exact.

A one-layer linear-Gaussian DLGM is factor analysis: its posterior p(xi | x) is Gaussian
(``test_likelihood.FA``), so the best full-covariance q* *is* the posterior (approximation gap
0), and the best diagonal q* of a Gaussian posterior N(m, P^-1) is known in closed form: mean m,
precision diag(P). ELBOs are checked with the closed-form ELBO of the linear-Gaussian model.
"""

import numpy as np
import pytest
import torch
from test_likelihood import DT, FA, _exact_elbo

from dlgm.gap import GAP_KEYS, gap_summary, inference_gaps, mixture_log_likelihood, optimal_q
from dlgm.likelihood import log_likelihood
from dlgm.posteriors import DiagonalNormal


def _fa():
    fa = FA(seed=3)
    return fa


def test_full_covariance_q_star_closes_the_approximation_gap():
    fa = _fa()
    exact = fa.marginal.log_prob(fa.x)  # (N,)
    with torch.no_grad():
        q = fa.model.encode(fa.x)  # an untrained recognition model: far from the posterior
    q_star = optimal_q(
        fa.model,
        fa.x,
        family="full",
        steps=600,
        n_samples=32,
        lr=0.05,
        generator=torch.Generator().manual_seed(0),
    )
    gap_q, gap_star = exact - _exact_elbo(fa, q), exact - _exact_elbo(fa, q_star)
    assert float(gap_q.min()) > 0.5  # the starting point is poor for every image
    # Adam on a 32-sample estimate: within 0.02 nats of the exact posterior for every image
    assert float(gap_star.max()) < 0.02 and float(gap_star.min()) > -1e-9
    torch.testing.assert_close(q_star.mean, fa.posterior(fa.x).mean, atol=0.03, rtol=0)


def test_diagonal_q_star_is_the_closed_form_mean_field_optimum():
    fa = _fa()
    q_star = optimal_q(
        fa.model,
        fa.x,
        family="diag",
        steps=600,
        n_samples=32,
        lr=0.05,
        generator=torch.Generator().manual_seed(1),
    )
    post = fa.posterior(fa.x)
    best = DiagonalNormal(post.mean, torch.diagonal(fa.P).rsqrt().expand_as(post.mean))
    # the ELBO is flat near its optimum: within 0.01 nats of the closed form for every image,
    # while the precision, whose gradient is the noisiest, is within 10%
    gap = _exact_elbo(fa, best) - _exact_elbo(fa, q_star)
    assert float(gap.max()) < 0.01 and float(gap.min()) > -1e-9
    torch.testing.assert_close(q_star.mean, post.mean, atol=0.03, rtol=0)
    torch.testing.assert_close(q_star.scale.pow(-2), best.scale.pow(-2), atol=0, rtol=0.1)


def test_gaps_add_up_and_q_star_is_never_worse():
    fa = _fa()
    exact = fa.marginal.log_prob(fa.x)
    for family in ("rank1", "full"):
        r = inference_gaps(
            fa.model,
            fa.x,
            family=family,
            log_px=exact,
            steps=300,
            n_samples=16,
            lr=0.05,
            elbo_samples=2000,
            generator=torch.Generator().manual_seed(2),
        )
        np.testing.assert_allclose(
            r["total_gap"], r["approximation_gap"] + r["amortisation_gap"], atol=1e-9
        )
        # ELBO(q*) >= ELBO(q) for every image, up to the 2000-sample MC error of the two ELBOs
        assert r["amortisation_gap"].min() > -0.05
        assert r["amortisation_gap"].mean() > 0.5
        # the approximation gap is a KL: >= 0 up to MC error; rank-one (2 latents, one block)
        # and full covariance both contain the Gaussian posterior here
        assert r["approximation_gap"].min() > -0.05 and r["approximation_gap"].max() < 0.1


def _sharp_fa(inflate: float):
    """Factor analysis with a sharp posterior (precisions of 2,000-4,500, standard deviations
    of 0.015-0.02, like the 2-latent MNIST models') and q its exact posterior with the
    covariance times ``inflate``: the encoder is right about the shape, wrong about the scale."""
    fa = FA(seed=3, w_scale=8.0, sigma=0.3)
    fa.set_recognition(1.0)
    p = fa.P / inflate  # q's precision, written as D + u u^T as set_recognition does
    a, c, off = p[0, 0], p[1, 1], p[0, 1]
    t = torch.sqrt((1 + off**2 / (a * c)) / 2)
    u = torch.stack([a.sqrt() * t, off / (a.sqrt() * t)])
    d = torch.stack([a - u[0] ** 2, c - u[1] ** 2]) - 1e-4
    with torch.no_grad():  # softplus^-1(d), stable for d in the thousands
        fa.model.head_d.bias.copy_(d + torch.log(-torch.expm1(-d)))
        fa.model.head_u.bias.copy_(u)
    return fa


@pytest.mark.parametrize("inflate", [0.2, 6.0])
def test_q_star_reaches_the_optimum_whatever_the_posterior_scale(inflate):
    """The default settings (300 steps, lr 0.05) find each family's optimum from a q that is
    5x too narrow or 6x too broad, on a posterior with precisions in the thousands: the free
    parameters are relative to q's own scale (with the precision itself as a parameter, Adam's
    steps of about lr moved it by a few units in 300 steps: the rank-one q* stayed at q)."""
    fa = _sharp_fa(inflate)
    exact = fa.marginal.log_prob(fa.x)
    with torch.no_grad():
        gap_q = exact - _exact_elbo(fa, fa.model.encode(fa.x))
    assert float(gap_q.min()) > 0.5  # q itself is far from the posterior for every image
    p = fa.P
    best_diag = -0.5 * torch.log(1 - p[0, 1] ** 2 / (p[0, 0] * p[1, 1]))  # KL of mean field
    for family, best in (("diag", best_diag), ("rank1", 0.0), ("full", 0.0)):
        q_star = optimal_q(
            fa.model, fa.x, family=family, generator=torch.Generator().manual_seed(0)
        )
        with torch.no_grad():
            gap = exact - _exact_elbo(fa, q_star)  # (N,), the approximation gap
        # within 0.02 nats of the family's optimum for every image (16-sample Adam steps)
        assert float((gap - best).max()) < 0.02, (family, gap - best)
        assert float((gap - best).min()) > -1e-9, (family, gap - best)


def test_model_is_left_unchanged_and_bad_family_raises():
    fa = _fa()
    before = {k: v.clone() for k, v in fa.model.state_dict().items()}
    optimal_q(fa.model, fa.x, steps=3)
    for k, v in fa.model.state_dict().items():
        assert torch.equal(v, before[k]) and v.dtype == DT
    assert all(p.requires_grad for p in fa.model.parameters())
    with pytest.raises(ValueError, match="family"):
        optimal_q(fa.model, fa.x, family="banana")


def test_a_given_q_star_is_used_as_is():
    """inference_gaps(q_star=...) scores that q* (no new fit): the same numbers as the fit that
    found it, with the same generator state for the ELBO draws."""
    fa = _fa()
    exact = fa.marginal.log_prob(fa.x)
    settings = dict(family="full", steps=50, n_samples=8, elbo_samples=500, log_px=exact)
    g = torch.Generator().manual_seed(4)
    fitted = inference_gaps(fa.model, fa.x, generator=g, **settings)
    g = torch.Generator().manual_seed(4)
    q_star = optimal_q(fa.model, fa.x, family="full", steps=50, n_samples=8, generator=g)
    given = inference_gaps(fa.model, fa.x, generator=g, q_star=q_star, **settings)
    for key in GAP_KEYS:
        np.testing.assert_allclose(given[key], fitted[key], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="batch_shape"):
        inference_gaps(fa.model, fa.x[:3], q_star=q_star, log_px=exact[:3])


def test_gap_summary_means_and_standard_errors():
    r = {key: np.array([1.0, 2.0, 3.0, 6.0]) + i for i, key in enumerate(GAP_KEYS)}
    s = gap_summary(r)
    assert s["n"] == 4
    for i, key in enumerate(GAP_KEYS):
        assert s[key]["mean"] == pytest.approx(3.0 + i)
        assert s[key]["se"] == pytest.approx(np.std([1, 2, 3, 6], ddof=1) / 2)
    one = gap_summary({key: np.array([2.0]) for key in GAP_KEYS})
    assert one["n"] == 1 and np.isnan(one["log_px"]["se"])


def test_mixture_importance_sampling_finds_what_a_too_narrow_q_misses():
    """The encoder's q 5x too narrow (``_sharp_fa(0.2)``): importance sampling from q alone
    (K = 2000) underestimates log p(v) (by 0.10-0.13 nats on average over the images for
    three seeds; asserted: more than 0.05), while from 1/2 q + 1/2 q*, q* of the rank-one or
    full family (in 2-D both are any Gaussian: the exact posterior up to Adam's error), it is
    within 0.05 nats of the exact log p(v) for every image (measured 0.02-0.03; its weights are
    at most 2 p(v, xi) / q*(xi))."""
    fa = _sharp_fa(0.2)
    exact = fa.marginal.log_prob(fa.x).detach()  # (N,)
    g = torch.Generator().manual_seed(0)
    for family, batch in (("rank1", 7), ("full", 20)):
        q_star = optimal_q(fa.model, fa.x, family=family, steps=300, generator=g)
        mixed = mixture_log_likelihood(
            fa.model, fa.x, q_star, n_samples=2000, generator=g, batch_size=batch, chunk=300
        )
        assert mixed.shape == exact.shape
        assert float((mixed - exact).abs().max()) < 0.05, family
    alone = log_likelihood(fa.model, fa.x, n_samples=2000, generator=g)
    assert float((alone - exact).mean()) < -0.05
    with pytest.raises(ValueError, match="n_samples"):
        mixture_log_likelihood(fa.model, fa.x, q_star, n_samples=1)
