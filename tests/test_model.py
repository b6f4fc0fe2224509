"""Shapes, persistence, gradients and input validation of the DLGM over small configs."""

import math

import numpy as np
import pytest
import torch

import dlgm
from dlgm.errors import ConfigError, ShapeError
from dlgm.model import COVARIANCES, DLGM, LIKELIHOODS, DLGMConfig, parameter_shapes

LAYERS = [(2,), (3, 2), (4, 3, 2)]
CASES = [(n, c, lik) for n in LAYERS for c in COVARIANCES for lik in LIKELIHOODS]
B, S = 5, 3


def _model(n_latent, covariance, likelihood, seed=0):
    cfg = DLGMConfig(
        data_shape=(4, 5),
        n_latent=n_latent,
        gen_hidden=(8,),
        rec_hidden=(8,),
        covariance=covariance,
        likelihood=likelihood,
    )
    return DLGM(cfg, seed=seed)


def _x(n=B, d=20, seed=0):
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("n_latent", "covariance", "likelihood"), CASES)
def test_shapes(n_latent, covariance, likelihood):
    m = _model(n_latent, covariance, likelihood)
    k = sum(n_latent)
    assert m.latent_dim == k
    g = torch.Generator().manual_seed(1)
    q = m.encode(_x())
    assert q.batch_shape == (B,) and q.event_shape == (k,)
    xi = q.rsample((S,), generator=g)  # (S, B, K)
    assert xi.shape == (S, B, k)
    assert m.log_joint(_x(), xi[0]).shape == (B,)
    assert m.log_joint(_x(), xi).shape == (S, B)
    assert m.decode(xi).shape == (S, B, 20)
    assert q.log_prob(xi).shape == (S, B)
    samples = m.sample(7, generator=g)
    assert samples.shape == (7, 20)
    assert torch.all((samples >= 0) & (samples <= 1))
    assert torch.isfinite(m.elbo(_x(), n_samples=2, generator=g)).all()


@pytest.mark.parametrize(("n_latent", "covariance", "likelihood"), CASES)
@pytest.mark.parametrize(
    ("gen_hidden", "input_activation"), [((5, 4), None), ((), None), ((6,), "relu"), ((), "probit")]
)
def test_parameter_shapes_match_the_built_model(
    n_latent, covariance, likelihood, gen_hidden, input_activation
):
    # Two routes: the shapes dlgm.load checks a checkpoint against, from the config alone,
    # and those of the model built from it.
    cfg = DLGMConfig(
        data_shape=(3, 4),
        n_latent=n_latent,
        gen_hidden=gen_hidden,
        rec_hidden=(7, 5),
        covariance=covariance,
        likelihood=likelihood,
        input_activation=input_activation,
    )
    built = {k: tuple(v.shape) for k, v in DLGM(cfg).state_dict().items()}
    assert parameter_shapes(cfg) == built


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_log_joint_is_likelihood_plus_prior(likelihood):
    m = _model((3, 2), "rank1", likelihood)
    x = (_x() > 0.5).float()
    xi = torch.randn(S, B, 5, generator=torch.Generator().manual_seed(2))
    params = m.decode(xi)  # (S, B, D)
    if likelihood == "bernoulli":
        ll = torch.distributions.Bernoulli(logits=params).log_prob(x).sum(-1)
    else:
        ll = torch.distributions.Normal(params, m.log_sigma.exp()).log_prob(x).sum(-1)
    prior = torch.distributions.Normal(0.0, 1.0).log_prob(xi).sum(-1)
    torch.testing.assert_close(m.log_joint(x, xi), ll + prior, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("n_latent", "covariance", "likelihood"), CASES[::2])
def test_save_load_identical(tmp_path, n_latent, covariance, likelihood):
    m = _model(n_latent, covariance, likelihood, seed=3)
    dlgm.save(m, tmp_path / "ck", metadata=dict(dataset="test"))
    m2 = dlgm.load(tmp_path / "ck")
    assert m2.config == m.config and m2.metadata["dataset"] == "test"
    x = _x()
    xi = torch.randn(S, B, m.latent_dim, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        q, q2 = m.encode(x), m2.encode(x)
        torch.testing.assert_close(q2.mean, q.mean, rtol=0, atol=0)
        torch.testing.assert_close(q2.variance, q.variance, rtol=0, atol=0)
        torch.testing.assert_close(m2.log_joint(x, xi), m.log_joint(x, xi), rtol=0, atol=0)


@pytest.mark.parametrize(("n_latent", "covariance", "likelihood"), CASES)
def test_free_energy_gradients_finite(n_latent, covariance, likelihood):
    m = _model(n_latent, covariance, likelihood)
    out = m.free_energy(_x(), n_samples=2, generator=torch.Generator().manual_seed(5))
    assert set(out) >= {"loss", "elbo", "rec", "kl"}
    out["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_seeded_init_is_deterministic_and_leaves_global_rng():
    state = torch.random.get_rng_state()
    a, b = _model((2,), "diag", "bernoulli", seed=7), _model((2,), "diag", "bernoulli", seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, p), (_, p2) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, p2), name


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_latent=(0,)),
        dict(n_latent=()),
        dict(n_latent=(2, -1)),
        dict(gen_hidden=(0,)),
        dict(rec_hidden=(-3,)),
        dict(data_shape=(0, 4)),
        dict(data_shape=()),
        dict(data_shape=(1, 2, 3, 4)),
        dict(covariance="full"),
        dict(covariance="Diag"),
        dict(likelihood="poisson"),
        dict(kappa=0.0),
        dict(kappa=-1.0),
        dict(kappa=math.nan),
        dict(kappa=math.inf),
        dict(gen_hidden=(10**6,)),
        dict(covariance="rank1", u_cap=0.0),
        dict(covariance="rank1", u_cap=-2.0),
        dict(covariance="rank1", u_cap=math.nan),
        dict(covariance="rank1", u_cap=math.inf),
        dict(covariance="rank1", u_cap="4"),
        dict(covariance="rank1", u_cap=True),
        dict(covariance="diag", u_cap=4.0),
    ],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(ConfigError):
        DLGMConfig(**kwargs)


def test_from_dict_unknown_field():
    with pytest.raises(ConfigError, match="unknown config fields"):
        DLGMConfig.from_dict({**DLGMConfig().to_dict(), "depth": 3})


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(B, 21),
        torch.zeros(20),
        torch.zeros(2, B, 20),
        torch.zeros(B, 4, 5),
        torch.full((B, 20), math.nan),
        torch.full((B, 20), math.inf),
        np.zeros((B, 20)),
    ],
)
def test_bad_input_raises_shape_error(bad):
    m = _model((2,), "diag", "bernoulli")
    with pytest.raises(ShapeError):
        m.encode(bad)
    with pytest.raises(ShapeError):
        m.elbo(bad)


def test_integer_input_is_accepted():
    m = _model((2,), "diag", "bernoulli")
    x = (_x() > 0.5).to(torch.uint8)
    torch.testing.assert_close(m.encode(x).mean, m.encode(x.float()).mean)


# ---------------------------------------------------------------------------- FA and NLGBN
def _one_layer(input_activation=None, covariance="rank1"):
    cfg = DLGMConfig(
        data_shape=(4, 5),
        n_latent=(3,),
        gen_hidden=(),
        rec_hidden=(8,),
        covariance=covariance,
        input_activation=input_activation,
    )
    return DLGM(cfg, seed=0)


def test_linear_dlgm_is_factor_analysis_with_bernoulli_pixels():
    """gen_hidden=() and no input activation: logits = A G xi + b, affine in xi (sec. 2)."""
    m = _one_layer().double()
    (linear,) = list(m.T[0])
    g = torch.Generator().manual_seed(0)
    xi = torch.randn(6, 3, generator=g, dtype=torch.float64)
    expected = xi @ m.G[0].T @ linear.weight.T + linear.bias
    torch.testing.assert_close(m.decode(xi), expected, rtol=0, atol=1e-12)
    a, b = torch.randn(2, generator=g, dtype=torch.float64)
    lhs = m.decode(a * xi[0] + b * xi[1]) - (1 - a - b) * m.decode(torch.zeros(3).double())
    torch.testing.assert_close(lhs, a * m.decode(xi[0]) + b * m.decode(xi[1]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("f", ["relu", "probit"])
def test_nlgbn_decoder_is_a_times_f_of_h_plus_b(f, tmp_path):
    m = _one_layer(f).double()
    linear = m.T[0][-1]
    xi = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = xi @ m.G[0].T
    fh = h.clamp_min(0) if f == "relu" else torch.distributions.Normal(0.0, 1.0).cdf(h)
    torch.testing.assert_close(m.decode(xi), fh @ linear.weight.T + linear.bias, rtol=0, atol=1e-12)
    dlgm.save(m.float(), tmp_path / "m")
    back = dlgm.load(tmp_path / "m")
    assert back.config.input_activation == f
    torch.testing.assert_close(back.decode(xi.float()), m.decode(xi.float()))


def test_unknown_input_activation_is_a_config_error():
    with pytest.raises(ConfigError, match="input_activation"):
        DLGMConfig(input_activation="tanh")
    assert DLGMConfig.from_dict({"n_latent": [2]}).input_activation is None  # old cards load


# ---------------------------------------------------------------------------- u_cap
@pytest.mark.parametrize(
    ("n_latent", "covariance"), [((3,), "rank1"), ((3, 2), "rank1"), ((3, 2), "rank1-joint")]
)
def test_u_cap_bounds_eta_and_is_a_rescaling_of_the_same_head(n_latent, covariance, tmp_path):
    free = _model(n_latent, covariance, "bernoulli", seed=8)
    capped = DLGM(DLGMConfig(**{**free.config.to_dict(), "u_cap": 2.0}), seed=8)
    with torch.no_grad():  # a u head far past the cap: without it eta -> 0
        for m in (free, capped):
            m.head_u.weight.mul_(1e5)
        x = _x(seed=9)
        q_free, q_cap = free.encode(x), capped.encode(x)
    assert q_free.eta.max() < 0.1  # far sharper along u than the cap allows
    assert torch.all(q_cap.eta >= 1.0 / 3.0 - 1e-6)  # eta >= 1 / (1 + u_cap), per block
    torch.testing.assert_close(q_cap.mean, q_free.mean, rtol=0, atol=0)  # only u changes
    torch.testing.assert_close(q_cap.d, q_free.d, rtol=0, atol=0)
    blocks = n_latent if covariance == "rank1" else (sum(n_latent),)
    for a, b in zip(q_cap.u.split(blocks, -1), q_free.u.split(blocks, -1), strict=True):
        cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        torch.testing.assert_close(cos, torch.ones_like(cos))  # each block's u: same direction
    # it trains (finite gradients through the cap) and is saved with the model
    out = capped.free_energy(x, n_samples=2, generator=torch.Generator().manual_seed(5))
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in capped.parameters())
    dlgm.save(capped, tmp_path / "ck")
    again = dlgm.load(tmp_path / "ck")
    assert again.config.u_cap == 2.0
    with torch.no_grad():
        torch.testing.assert_close(again.encode(x).u, q_cap.u, rtol=0, atol=0)


def test_config_without_u_cap_loads_as_uncapped():
    # checkpoints written before u_cap existed have no such field
    old = {k: v for k, v in DLGMConfig(covariance="rank1").to_dict().items() if k != "u_cap"}
    assert DLGMConfig.from_dict(old).u_cap is None
