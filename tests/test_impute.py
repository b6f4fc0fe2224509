"""Imputation (sec. 5.4, appendix F): masks, the three chains, their invariants and exactness."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Distribution, MultivariateNormal, constraints

from dlgm import DLGM, DiagonalNormal, DLGMConfig
from dlgm.errors import ConfigError, ShapeError
from dlgm.impute import (
    METHODS,
    WARM_STEPS,
    ImputationChain,
    ImputationResult,
    _pixels,
    as_mask,
    impute,
    mask_random,
    mask_square,
    missing_error,
)

D = 16  # 4 x 4 images


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randomise(model, seed, scale=0.7):
    g = _gen(seed)
    with torch.no_grad():
        for p in model.parameters():  # deterministic weights without global seeding
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def _model(likelihood="bernoulli", covariance="rank1"):
    return _randomise(
        DLGM(
            DLGMConfig(
                data_shape=(4, 4),
                n_latent=(2, 3),
                gen_hidden=(8,),
                rec_hidden=(8,),
                covariance=covariance,
                likelihood=likelihood,
            )
        ),
        123,
    )


MODELS = {"bernoulli": _model("bernoulli"), "gaussian": _model("gaussian", "diag")}


def _images(b, seed=0):
    return (torch.rand(b, D, generator=_gen(seed)) > 0.5).float()


# ---------------------------------------------------------------------------- mask makers
def test_mask_random_rate_statistics():
    n = 20_000
    for rate in (0.6, 0.8):
        m = mask_random(n, rate, _gen(1))
        assert m.dtype == torch.bool and m.shape == (n,)
        assert abs(m.float().mean() - rate) < 5 * math.sqrt(rate * (1 - rate) / n)
    assert not mask_random((3, D), 0.0, _gen()).any()
    assert mask_random((3, D), 1.0, _gen()).all()
    torch.testing.assert_close(mask_random((2, D), 0.5, _gen(7)), mask_random((2, D), 0.5, _gen(7)))
    for rate in (-0.1, 1.5, math.nan, "half"):
        with pytest.raises(ConfigError, match="rate"):
            mask_random(D, rate)
    with pytest.raises(ConfigError, match="shape"):
        mask_random((0, D), 0.5)


def test_mask_square_size_position_and_clipping():
    m = mask_square((6, 7), 3, top=1, left=2).reshape(6, 7)
    expected = torch.zeros(6, 7, dtype=torch.bool)
    expected[1:4, 2:5] = True
    torch.testing.assert_close(m, expected)
    clipped = mask_square((6, 7), 3, top=-1, left=5).reshape(6, 7)  # rows 0-1, cols 5-6
    assert clipped.sum() == 4 and clipped[:2, 5:].all()
    assert mask_square((6, 7), (2, 4), top=4, left=0).reshape(6, 7)[4:, :4].all()
    centred = mask_square((28, 28), 10).reshape(28, 28)
    assert centred.sum() == 100 and centred[9:19, 9:19].all()
    assert mask_square((4, 4), 10, top=-3, left=-3).all()  # bigger than the image: all missing
    with pytest.raises(ConfigError, match="outside"):
        mask_square((6, 7), 3, top=6, left=0)
    with pytest.raises(ConfigError, match="outside"):
        mask_square((6, 7), 2, top=0, left=-2)
    with pytest.raises(ConfigError, match="size"):
        mask_square((6, 7), 0)
    with pytest.raises(ConfigError, match="data_shape"):
        mask_square((42,), 3)


def test_as_mask_accepts_and_rejects():
    flat = torch.arange(D) % 3 == 0
    torch.testing.assert_close(as_mask(flat, D), flat)
    torch.testing.assert_close(as_mask(flat.reshape(4, 4).numpy(), D), flat)  # (H, W)
    torch.testing.assert_close(as_mask(flat.int().tolist(), D), flat)  # 0/1 list
    assert as_mask(np.zeros((3, 4, 4)), D).shape == (3, D)  # (B, H, W)
    assert as_mask(torch.ones(2, D), D).shape == (2, D)
    for bad in (torch.ones(D + 1), torch.ones(3, 5), torch.ones(2, 2, 2, 2), torch.ones(0, D)):
        with pytest.raises(ShapeError, match="shape"):
            as_mask(bad.bool(), D)
    with pytest.raises(ShapeError, match="0 and 1"):
        as_mask(torch.full((D,), 0.5), D)
    with pytest.raises(ShapeError, match="boolean"):
        as_mask(np.array(["a"] * D), D)
    with pytest.raises(ShapeError, match="dtype"):
        as_mask(torch.ones(D, dtype=torch.complex64), D)


# ---------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=8, deadline=None)
@given(
    bits=st.lists(st.lists(st.booleans(), min_size=D, max_size=D), min_size=1, max_size=3),
    init=st.sampled_from(["noise", "zeros", "mean", "pseudo-gibbs"]),
    likelihood=st.sampled_from(["bernoulli", "gaussian"]),
    seed=st.integers(0, 2**31),
)
def test_observed_pixels_never_change(method, bits, init, likelihood, seed):
    model = MODELS[likelihood]
    mask = torch.tensor(bits)
    x = torch.rand(mask.shape, generator=_gen(seed))
    x_in = torch.where(mask, torch.tensor(math.nan), x)  # NaN allowed where missing
    kw = {"n_particles": 7} if method == "importance" else {}
    r = impute(model, x_in, mask, method=method, n_steps=4, init=init, generator=_gen(seed), **kw)
    assert r.images.shape == r.probs.shape == (5, *mask.shape)
    obs = ~mask
    for t in range(5):
        assert torch.equal(r.images[t][obs], x[obs])
        assert torch.equal(r.probs[t][obs], x[obs])
    assert torch.isfinite(r.images).all() and torch.isfinite(r.probs).all()
    assert r.images.min() >= 0 and r.images.max() <= 1
    if likelihood == "bernoulli" and init != "mean":
        assert set(r.images[:, mask].unique().tolist()) <= {0.0, 1.0}
    if method == "importance":
        assert torch.equal(r.mean_imputation[obs], x[obs])


@pytest.mark.parametrize("method", METHODS)
def test_nothing_missing_returns_the_image(method):
    x = _images(3)
    r = impute(
        MODELS["bernoulli"],
        x,
        torch.zeros(D, dtype=torch.bool),
        method=method,
        n_steps=3,
        generator=_gen(),
    )
    assert torch.equal(r.images, x.expand(4, 3, D)) and torch.equal(r.probs, x.expand(4, 3, D))
    err = missing_error(r, x)
    assert np.isnan(err["cross_entropy"]).all() and (err["n_missing"] == 0).all()


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("method", METHODS)
def test_everything_missing_samples_the_model(method, likelihood):
    x = torch.full((2, D), math.nan)
    kw = {"n_particles": 16} if method == "importance" else {}
    r = impute(
        MODELS[likelihood],
        x,
        torch.ones(D, dtype=torch.bool),
        method=method,
        n_steps=5,
        generator=_gen(),
        **kw,
    )
    assert r.images.shape == (6, 2, D) and r.xi.shape == (5, 2, 5)
    assert torch.isfinite(r.images).all()
    assert not torch.equal(r.images[1], r.images[5])  # the chain moves


def test_importance_with_prior_proposal_and_nothing_observed_has_full_ess(monkeypatch):
    model = _model()
    monkeypatch.setattr(
        model,
        "encode",
        lambda v: DiagonalNormal(torch.zeros(v.shape[0], 5), torch.ones(v.shape[0], 5)),
    )  # q = p(xi)
    r = impute(
        model,
        torch.zeros(2, D),
        torch.ones(D, dtype=torch.bool),
        method="importance",
        n_particles=50,
        n_steps=2,
        generator=_gen(),
    )
    torch.testing.assert_close(r.ess, torch.full((2,), 50.0))  # weights p / q = 1


def test_importance_ess_and_mean_imputation():
    model, x = MODELS["bernoulli"], _images(3)
    mask = mask_random((3, D), 0.5, _gen(2))
    r = impute(model, x, mask, method="importance", n_particles=64, n_steps=40, generator=_gen())
    assert r.ess.shape == (3,) and (r.ess >= 1).all() and (r.ess <= 64 + 1e-4).all()
    assert r.mean_imputation.shape == (3, D)
    # The resampled probs average to the weighted mean (Monte Carlo, 40 draws of probs in [0, 1]).
    assert (r.probs[1:].mean(0) - r.mean_imputation).abs().max() < 5 * 0.5 / math.sqrt(40)
    assert r.accept is None and r.acceptance_rate is None


def test_wrong_inputs_raise():
    model = MODELS["bernoulli"]
    x = _images(2)
    with pytest.raises(ShapeError, match="mask"):
        impute(model, x, torch.zeros(D + 1, dtype=torch.bool))
    with pytest.raises(ShapeError, match="rows"):
        impute(model, x, torch.zeros(3, D, dtype=torch.bool))
    with pytest.raises(ShapeError, match="x has shape"):
        impute(model, torch.zeros(2, D + 1), torch.zeros(D + 1, dtype=torch.bool))
    with pytest.raises(ShapeError, match="x has shape"):
        impute(model, torch.zeros(1, 2, D), torch.zeros(D, dtype=torch.bool))
    bad = x.clone()
    bad[0, 3] = math.nan
    mask = torch.zeros(D, dtype=torch.bool)
    with pytest.raises(ShapeError, match="observed"):
        impute(model, bad, mask)
    bad[0, 3] = math.inf
    with pytest.raises(ShapeError, match="observed"):
        impute(model, bad, mask)
    mask[3] = True  # now pixel 3 is missing: its inf is ignored
    assert torch.isfinite(impute(model, bad, mask, n_steps=1, generator=_gen()).images).all()
    with pytest.raises(ConfigError, match="method"):
        impute(model, x, mask, method="gibbs")
    with pytest.raises(ConfigError, match="init"):
        impute(model, x, mask, init="ones")
    with pytest.raises(ConfigError, match="n_particles"):
        impute(model, x, mask, method="mwg", n_particles=10)
    with pytest.raises(ConfigError, match="n_particles"):
        impute(model, x, mask, method="importance", n_particles=0)
    with pytest.raises(ConfigError, match="n_steps"):
        impute(model, x, mask, n_steps=-1)


def test_initial_fills():
    model, x = MODELS["bernoulli"], _images(2)
    mask = mask_random((2, D), 0.5, _gen(3))
    zeros = impute(model, x, mask, init="zeros", n_steps=0)
    assert zeros.images.shape == (1, 2, D) and (zeros.images[0][mask] == 0).all()
    noise = impute(model, x, mask, init="noise", n_steps=0, generator=_gen())
    assert (noise.probs[0][mask] == 0.5).all()  # the mean of Bernoulli(0.5) noise
    mean = impute(model, x, mask, init="mean", n_steps=0, generator=_gen())
    marginal = model.pixel_mean(model.prior().rsample((256,), generator=_gen())).mean(0)
    torch.testing.assert_close(mean.images[0], torch.where(mask, marginal.detach(), x))
    warm = impute(model, x, mask, init="pseudo-gibbs", n_steps=0, generator=_gen(5))
    chain = impute(
        model, x, mask, method="pseudo-gibbs", init="noise", n_steps=WARM_STEPS, generator=_gen(5)
    )  # the same draws: the warm start is its last state
    assert torch.equal(warm.images[0], chain.images[-1])
    assert torch.equal(warm.probs[0], chain.probs[-1])
    given_fill = impute(model, x, mask, init=torch.full((D,), 0.25), n_steps=0)
    assert (given_fill.images[0][mask] == 0.25).all()
    with pytest.raises(ShapeError, match="init"):
        impute(model, x, mask, init=torch.zeros(3, D))


def test_one_image_many_masks():
    model, x = MODELS["bernoulli"], _images(1)[0]  # (D,)
    mask = mask_random((5, D), 0.5, _gen(4))
    r = impute(model, x, mask, n_steps=2, generator=_gen())
    assert r.images.shape == (3, 5, D)
    assert torch.equal(r.images[-1][~mask], x.expand(5, D)[~mask])


# ---------------------------------------------------------------------------- step API
@pytest.mark.parametrize("method", METHODS)
def test_chain_steps_match_impute(method):
    model, x = MODELS["bernoulli"], _images(2)
    mask = mask_random((2, D), 0.6, _gen(5))
    kw = {"n_particles": 9} if method == "importance" else {}
    chain = ImputationChain(model, x, mask, method=method, generator=_gen(6), **kw)
    assert chain.state.step == 0
    for t in range(1, 4):
        state = chain.step()
        assert state.step == t and state.images.shape == (2, D) and state.xi.shape == (2, 5)
        if method == "mwg":
            assert state.accept.shape == (t, 2)
    r = impute(model, x, mask, method=method, n_steps=3, generator=_gen(6), **kw)
    torch.testing.assert_close(chain.result().images, r.images)
    torch.testing.assert_close(chain.result().probs, r.probs)
    last = impute(
        model, x, mask, method=method, n_steps=3, generator=_gen(6), return_every=False, **kw
    )
    assert last.images.shape == (2, 2, D) and last.steps.tolist() == [0, 3]
    torch.testing.assert_close(last.images, r.images[[0, 3]])
    if method == "mwg":
        assert r.accept.shape == (3, 2) and r.step_acceptance.shape == (3,)
        assert r.acceptance_rate == pytest.approx(float(r.accept.float().mean()))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_pixel_draws_match_model_sample_pixels(likelihood):
    model = MODELS[likelihood]
    xi = torch.randn(3, 5, generator=_gen(8))
    with torch.no_grad():
        probs, v = _pixels(model, model.decode(xi), _gen(9))
        torch.testing.assert_close(v, model.sample_pixels(xi, generator=_gen(9)))
        torch.testing.assert_close(probs, model.pixel_mean(xi))


# ---------------------------------------------------------------------------- exactness
class _ExactGaussian(Distribution):
    """N(loc, L L^T) with a generator-aware rsample (MultivariateNormal's takes none)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, scale_tril):
        self.loc, self.scale_tril = loc, scale_tril
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def rsample(self, sample_shape=torch.Size(), generator=None):
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, generator=generator, dtype=self.loc.dtype)
        return self.loc + (self.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    def log_prob(self, value):
        return MultivariateNormal(self.loc, scale_tril=self.scale_tril).log_prob(value)


def _linear_gaussian(n_pixels=5, k=2):
    """Factor analysis as a DLGM: v = A xi + b + N(0, Psi), A = W G; float64."""
    model = DLGM(
        DLGMConfig(
            data_shape=(n_pixels,),
            n_latent=(k,),
            gen_hidden=(),
            rec_hidden=(4,),
            likelihood="gaussian",
        )
    ).double()
    model = _randomise(model, 11)
    with torch.no_grad():
        model.log_sigma.copy_(torch.linspace(-1.0, -0.3, n_pixels, dtype=torch.float64))
    return model


def _exact_posterior(model, v):
    """p(xi | v) = N(C A^T Psi^-1 (v - b), C), C = (I + A^T Psi^-1 A)^-1 (all pixels)."""
    lin = model.T[0][0]
    A = lin.weight @ model.G[0]  # (D, K)
    psi_inv = torch.exp(-2 * model.log_sigma)  # (D,)
    cov = torch.linalg.inv(torch.eye(A.shape[1], dtype=A.dtype) + A.T @ (psi_inv[:, None] * A))
    loc = ((v - lin.bias) * psi_inv) @ A @ cov  # (B, K); cov is symmetric
    return _ExactGaussian(loc, torch.linalg.cholesky(cov).expand(v.shape[0], -1, -1))


def test_exact_posterior_helper_is_exact():
    # log p(v, xi) - log p(xi | v) = log p(v) = log N(v; b, A A^T + Psi) for every xi.
    model = _linear_gaussian()
    v = torch.rand(3, 5, generator=_gen(1), dtype=torch.float64)
    with torch.no_grad():
        q = _exact_posterior(model, v)
        xi = torch.randn(4, 3, 2, generator=_gen(2), dtype=torch.float64)
        lin = model.T[0][0]
        A = lin.weight @ model.G[0]
        psi = torch.diag(torch.exp(2 * model.log_sigma))
        marginal = MultivariateNormal(lin.bias, A @ A.T + psi)
        torch.testing.assert_close(
            model.log_joint(v, xi) - q.log_prob(xi), marginal.log_prob(v).expand(4, 3)
        )


def test_mwg_accepts_everything_when_q_is_the_true_posterior(monkeypatch):
    model = _linear_gaussian()
    x = torch.rand(4, 5, generator=_gen(3), dtype=torch.float64)
    mask = mask_random((4, 5), 0.5, _gen(4))
    raw = impute(model, x, mask, method="mwg", n_steps=30, generator=_gen(5))
    assert raw.acceptance_rate < 0.95  # the untrained encoder is not the posterior
    monkeypatch.setattr(model, "encode", lambda v: _exact_posterior(model, v))
    r = impute(model, x, mask, method="mwg", n_steps=30, generator=_gen(5))
    assert r.acceptance_rate == 1.0 and r.accept.all()


def _tiny_bernoulli():
    """2 latents, 4 binary pixels, affine decoder with strong weights; float64."""
    cfg = DLGMConfig(data_shape=(4,), n_latent=(2,), gen_hidden=(), rec_hidden=(4,))
    model = DLGM(cfg, seed=0)  # the encoder (importance sampling's proposal) from a fixed start
    model = model.double().eval()
    with torch.no_grad():
        model.T[0][0].weight.copy_(
            torch.tensor([[2.5, 0.0], [0.0, 2.5], [1.8, -1.8], [-1.5, -1.5]], dtype=torch.float64)
        )
        model.T[0][0].bias.copy_(torch.tensor([0.3, -0.2, 0.5, 0.0], dtype=torch.float64))
    return model


def _exact_conditional(model, x, mask):
    """p(v_m | v_o) for every configuration of v_m, by grid quadrature over xi in [-7, 7]^2."""
    t = torch.linspace(-7, 7, 281, dtype=torch.float64)
    xi = torch.cartesian_prod(t, t)  # (G, 2)
    miss = mask.nonzero().flatten()
    confs = torch.tensor(
        list(itertools.product([0.0, 1.0], repeat=len(miss))), dtype=torch.float64
    )  # (C, M), first missing pixel most significant
    v = x.expand(len(confs), -1).clone()
    v[:, miss] = confs
    with torch.no_grad():
        lj = model.log_joint(v, xi.unsqueeze(1).expand(-1, len(confs), 2))  # (G, C)
    return torch.softmax(torch.logsumexp(lj, 0), 0), miss


def _empirical(images, miss, burn):
    vm = images[burn:, :, miss].reshape(-1, len(miss))  # (N, M)
    code = (vm * 2.0 ** torch.arange(len(miss) - 1, -1, -1)).sum(-1).long()
    return torch.bincount(code, minlength=2 ** len(miss)).double() / code.numel()


@pytest.mark.parametrize("missing", [(2, 3), (0, 1, 2, 3)])
def test_mwg_targets_the_exact_conditional(monkeypatch, missing):
    model = _tiny_bernoulli()

    def poor_encoder(v):  # a deliberately wrong q(xi | v), wider than the posterior
        loc = torch.stack([0.8 + v[:, 2] - v[:, 3], -0.5 + v[:, 3]], -1)
        return DiagonalNormal(loc, torch.full_like(loc, 1.5))

    monkeypatch.setattr(model, "encode", poor_encoder)
    x = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    mask = torch.zeros(4, dtype=torch.bool)
    mask[list(missing)] = True
    exact, miss = _exact_conditional(model, x, mask)
    B, T, burn = 256, 120, 21  # 256 chains x 100 kept steps, correlated
    tv = {}
    for method in ("mwg", "pseudo-gibbs"):
        r = impute(model, x, mask.expand(B, 4), method=method, n_steps=T, generator=_gen(0))
        tv[method] = 0.5 * float((_empirical(r.images, miss, burn) - exact).abs().sum())
    assert tv["mwg"] < 0.04  # observed ~0.002-0.018 over seeds
    assert tv["pseudo-gibbs"] > 0.1  # the paper's chain is biased by the poor q (~0.18-0.28)


def test_importance_resampling_targets_the_exact_conditional():
    model = _tiny_bernoulli()
    x = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    mask = torch.tensor([False, False, True, True])
    exact, miss = _exact_conditional(model, x, mask)
    r = impute(
        model,
        x,
        mask.expand(16, 4),
        method="importance",
        n_particles=1000,
        n_steps=200,
        generator=_gen(1),
    )
    assert 0.5 * float((_empirical(r.images, miss, 1) - exact).abs().sum()) < 0.04


# ---------------------------------------------------------------------------- metrics
def _result(probs, mask):
    probs = torch.as_tensor(probs, dtype=torch.float32)
    return ImputationResult(
        images=probs.round(),
        probs=probs,
        mask=mask,
        method="pseudo-gibbs",
        steps=torch.arange(probs.shape[0]),
    )


def test_missing_error_values():
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False, False], [True, False, True, False]])
    probs = torch.stack([torch.full((2, 4), 0.5), x, 1 - x])  # (3, 2, 4): chance, perfect, wrong
    err = missing_error(_result(probs, mask), x, mask)
    assert err["cross_entropy"].shape == (3,) and err["cross_entropy_per_image"].shape == (3, 2)
    assert err["cross_entropy"][0] == pytest.approx(math.log(2))
    assert err["cross_entropy"][1] == pytest.approx(0.0, abs=1e-5)
    assert err["cross_entropy"][2] == pytest.approx(-math.log(1e-6), rel=1e-3)  # clipped
    np.testing.assert_allclose(err["accuracy"], [0.5, 1.0, 0.0])  # 0.5 counts as 1
    np.testing.assert_allclose(err["mse"], [0.25, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(err["mse_sem"], [0.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_array_equal(err["n_missing"], [2, 2])


def test_missing_error_skips_images_with_nothing_missing():
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    mask = torch.tensor([[True, True], [False, False]])
    err = missing_error(_result(torch.full((1, 2, 2), 0.25), mask), x)
    assert np.isnan(err["mse_per_image"][0, 1])
    assert err["mse"][0] == pytest.approx((0.75**2 + 0.25**2) / 2)
    assert np.isnan(err["mse_sem"][0])  # one image: no standard error


def test_missing_error_on_a_real_chain():
    model, x = MODELS["bernoulli"], _images(4)
    mask = mask_random((4, D), 0.5, _gen(9))
    r = impute(model, x, mask, method="mwg", n_steps=5, generator=_gen())
    err = missing_error(r, x)
    assert err["cross_entropy"].shape == (6,) and np.isfinite(err["cross_entropy"]).all()
    with pytest.raises(ShapeError, match="x_true"):
        missing_error(r, torch.full((4, D), math.nan))
