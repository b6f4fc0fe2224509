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

from dlgm.gap import inference_gaps, optimal_q
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


def test_model_is_left_unchanged_and_bad_family_raises():
    fa = _fa()
    before = {k: v.clone() for k, v in fa.model.state_dict().items()}
    optimal_q(fa.model, fa.x, steps=3)
    for k, v in fa.model.state_dict().items():
        assert torch.equal(v, before[k]) and v.dtype == DT
    assert all(p.requires_grad for p in fa.model.parameters())
    with pytest.raises(ValueError, match="family"):
        optimal_q(fa.model, fa.x, family="banana")
