"""The observation model pi(v | h) (dlgm/observation.py): torch.distributions conventions,
closed forms against torch's own distributions, masks, draws and the weight prior's gradient."""

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal

from dlgm.model import DLGM, LIKELIHOODS, DLGMConfig
from dlgm.observation import BernoulliPixels, GaussianPixels

D = 12


def _model(likelihood, kappa=1.0):
    cfg = DLGMConfig(
        data_shape=(3, 4),
        n_latent=(2,),
        gen_hidden=(8,),
        rec_hidden=(8,),
        likelihood=likelihood,
        kappa=kappa,
    )
    return DLGM(cfg, seed=0).double()


def _reference(model, params):
    if model.config.likelihood == "bernoulli":
        return Independent(Bernoulli(logits=params), 1)
    return Independent(Normal(params, model.log_sigma.exp()), 1)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_observation_is_an_independent_distribution_matching_torch(likelihood):
    m = _model(likelihood)
    xi = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    obs = m.observation(xi)
    assert isinstance(obs, Independent)
    assert isinstance(obs, BernoulliPixels if likelihood == "bernoulli" else GaussianPixels)
    assert obs.batch_shape == (3, 5) and obs.event_shape == (D,)
    x = (torch.rand(5, D, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    ref = _reference(m, m.decode(xi))
    torch.testing.assert_close(obs.log_prob(x), ref.log_prob(x), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(m.log_likelihood(x, xi), ref.log_prob(x), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(obs.mean, ref.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.observation(params=m.decode(xi)).log_prob(x), obs.log_prob(x))


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_mask_sums_only_its_pixels_and_ignores_nan_outside(likelihood):
    m = _model(likelihood)
    xi = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = (torch.rand(4, D, generator=torch.Generator().manual_seed(3)) > 0.5).double()
    mask = torch.rand(4, D, generator=torch.Generator().manual_seed(4)) > 0.4
    per_pixel = _reference(m, m.decode(xi)).base_dist.log_prob(x)  # (4, D)
    want = (per_pixel * mask).sum(-1)
    x_nan = torch.where(mask, x, torch.nan)
    torch.testing.assert_close(m.log_likelihood(x_nan, xi, mask), want, rtol=1e-12, atol=1e-10)
    x_row = torch.where(mask[0], x, torch.nan)  # one (D,) mask for every image
    assert torch.isfinite(m.log_likelihood(x_row, xi, mask[0])).all()


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_draws_mean_and_display_clipping(likelihood):
    m = _model(likelihood)
    xi = torch.zeros(20000, 2, dtype=torch.float64)
    obs = m.observation(xi)
    v = obs.sample(generator=torch.Generator().manual_seed(5))
    assert v.shape == (20000, D)
    # Monte Carlo mean within 5 standard errors of E[v | xi]
    se = (obs.variance[0] / len(v)).sqrt()
    assert ((v.mean(0) - obs.mean[0]).abs() < 5 * se).all()
    shown = m.sample_pixels(xi[:50], generator=torch.Generator().manual_seed(5))
    assert ((shown >= 0) & (shown <= 1)).all()
    assert ((m.pixel_mean(xi) >= 0) & (m.pixel_mean(xi) <= 1)).all()
    if likelihood == "bernoulli":
        assert set(v.unique().tolist()) <= {0.0, 1.0}
        torch.testing.assert_close(shown, v[:50])  # the same stream gives the same draws


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_linear_form_reproduces_log_prob(likelihood):
    m = _model(likelihood)
    obs = m.observation(
        torch.randn(7, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    )
    x = torch.rand(D, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    lin, const, quad = obs.linear_form()
    got = lin @ x + const + (0.0 if quad is None else quad @ x.pow(2))
    torch.testing.assert_close(got, obs.log_prob(x), rtol=1e-12, atol=1e-10)


def test_add_prior_gradient_is_the_gradient_of_the_weight_prior():
    m = _model("bernoulli", kappa=2.5)
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    m.add_prior_gradient(n_data=40)
    fused = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad(set_to_none=False)
    (m.weight_penalty() / 40).backward()
    for n, p in m.named_parameters():
        torch.testing.assert_close(fused[n], p.grad, rtol=1e-12, atol=1e-15)
    gen = {id(p) for p in m.generative_parameters()}
    assert any(p.grad.abs().sum() > 0 for p in m.parameters() if id(p) in gen)
