"""Grid posteriors of 2-latent models: normalisation, quadrature vs importance sampling, and the
closed-form Gaussian posterior of a linear-Gaussian (factor analysis) model."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from dlgm.errors import ConfigError, ShapeError
from dlgm.grid import GridPosterior, grid_basis, posterior_grid
from dlgm.likelihood import evaluate
from dlgm.model import DLGM, DLGMConfig

DT = torch.float64
D = 6


def _random_model(n_latent=(2,), seed=0):
    cfg = DLGMConfig(
        data_shape=(4, 4), n_latent=n_latent, gen_hidden=(16,), rec_hidden=(16,), covariance="rank1"
    )
    return DLGM(cfg, seed=seed).double()


def _image(seed=1, n=None):
    shape = (16,) if n is None else (n, 16)
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.5).to(DT)


def _linear_model(seed=0):
    """Factor analysis as a DLGM: x = W G xi + b + sigma * noise; returns the model, an
    observation, the exact marginal and the exact posterior N(mean, P^-1)."""
    cfg = DLGMConfig(
        data_shape=(D,), n_latent=(2,), gen_hidden=(), rec_hidden=(8,), likelihood="gaussian"
    )
    m = DLGM(cfg, seed=seed).double()
    g = torch.Generator().manual_seed(seed)
    w = 0.5 * torch.randn(D, 2, generator=g, dtype=DT)
    b = 0.5 * torch.randn(D, generator=g, dtype=DT)
    gmat = torch.eye(2, dtype=DT) + 0.3 * torch.randn(2, 2, generator=g, dtype=DT)
    log_sigma = math.log(0.7) + 0.2 * torch.randn(D, generator=g, dtype=DT)
    with torch.no_grad():
        m.T[0][0].weight.copy_(w)
        m.T[0][0].bias.copy_(b)
        m.G[0].copy_(gmat)
        m.log_sigma.copy_(log_sigma)
    lo, psi = w @ gmat, torch.exp(2 * log_sigma)  # loadings (D, 2), noise variances (D,)
    x = b + lo @ torch.tensor([0.8, -0.5], dtype=DT) + 0.1 * psi.sqrt()
    marginal = MultivariateNormal(b, lo @ lo.T + torch.diag(psi))
    prec = torch.eye(2, dtype=DT) + lo.T @ (lo / psi[:, None])
    mean = torch.linalg.solve(prec, lo.T @ ((x - b) / psi))
    return m, x, marginal, MultivariateNormal(mean, precision_matrix=prec)


def test_fields_and_normalisation():
    m, x = _random_model(), _image()
    gp = posterior_grid(m, x, grid_size=51)
    assert isinstance(gp, GridPosterior)
    assert gp.xs.shape == gp.ys.shape == (51,)
    for a in (gp.log_joint, gp.log_post, gp.log_q):
        assert a.shape == (51, 51) and np.isfinite(a).all()
    assert gp.map.shape == gp.q_mean.shape == gp.post_mean.shape == (2,)
    assert gp.q_cov.shape == gp.post_cov.shape == (2, 2)
    assert gp.cell_area == pytest.approx(0.2**2, rel=1e-12)
    assert np.exp(gp.log_post).sum() * gp.cell_area == pytest.approx(1.0, abs=1e-12)
    assert gp.kl_q_p >= 0 and gp.kl_p_q >= 0 and 0.99 < gp.q_mass <= 1.0 + 1e-6
    assert gp.elbo == pytest.approx(gp.log_px - gp.kl_q_p, abs=1e-12)
    assert gp.elbo <= gp.log_px
    with torch.no_grad():  # the refined MAP is at least as good as the best node
        at_map = m.log_joint(x[None], torch.as_tensor(gp.map)[None]).item()
    assert at_map >= gp.log_joint.max()


def test_index_convention():
    m, x = _random_model(), _image()
    gp = posterior_grid(m, x, grid_size=21, radius=3.0, refine_map=False)
    with torch.no_grad():
        for i, j in [(0, 20), (3, 17), (20, 5)]:
            xi = torch.tensor([[gp.xs[j], gp.ys[i]]], dtype=DT)  # a[i, j] is at (xs[j], ys[i])
            direct = m.log_joint(x[None], xi).item()
            assert gp.log_joint[i, j] == pytest.approx(direct, rel=1e-12)
            assert gp.log_q[i, j] == pytest.approx(m.encode(x[None]).log_prob(xi).item(), rel=1e-12)


def test_input_shapes_and_chunking_agree():
    m, x = _random_model(), _image()
    a = posterior_grid(m, x, grid_size=31)
    b = posterior_grid(m, x[None], grid_size=31, chunk=7)
    np.testing.assert_allclose(a.log_joint, b.log_joint, rtol=1e-12)
    assert a.log_px == pytest.approx(b.log_px, rel=1e-12)


def test_log_px_matches_importance_sampling():
    m, xs = _random_model(), _image(n=3)
    k = 20_000
    out = evaluate(
        m, xs, n_samples=k, generator=torch.Generator().manual_seed(2), return_per_example=True
    )
    for x, nll, ess in zip(xs, out["nll_per_example"], out["ess_per_example"], strict=True):
        gp = posterior_grid(m, x, grid_size=101)
        # The IS estimate has sd ~ sqrt((K / ESS - 1) / K) (delta method on the mean weight;
        # ~0.003 nats here); allow 5 sd, plus 1e-3 for the quadrature (grids of 101 and 201
        # nodes per axis agree to 2e-5 nats).
        tol = 5 * math.sqrt((k / ess - 1) / k) + 1e-3
        assert abs(gp.log_px + nll) < tol, (gp.log_px, -nll, tol)


def test_linear_gaussian_grid_matches_closed_form():
    m, x, marginal, post = _linear_model()
    gp = posterior_grid(m, x, grid_size=201)  # spacing 0.05; posterior sd ~ 0.5
    # Riemann sums of a smooth, well-resolved Gaussian converge faster than any power of the
    # spacing, so the grid moments match the closed form to ~1e-10; allow 1e-7.
    np.testing.assert_allclose(gp.post_mean, post.mean.numpy(), atol=1e-7)
    np.testing.assert_allclose(gp.post_cov, post.covariance_matrix.numpy(), atol=1e-7)
    assert gp.log_px == pytest.approx(marginal.log_prob(x).item(), abs=1e-7)
    # log p(x, xi) is quadratic here, so the Newton step on the 3 x 3 fit lands on the mode.
    np.testing.assert_allclose(gp.map, post.mean.numpy(), atol=1e-9)
    coarse = posterior_grid(m, x, grid_size=201, refine_map=False)
    assert np.abs(coarse.map - post.mean.numpy()).max() <= 0.05  # within a cell (mild correlation)
    assert coarse.map[0] in gp.xs and coarse.map[1] in gp.ys
    log_post = post.log_prob(
        torch.stack([torch.as_tensor(v) for v in np.meshgrid(gp.xs, gp.ys)], dim=-1)
    )  # meshgrid's default 'xy' gives [i, j] = (xs[j], ys[i])
    np.testing.assert_allclose(gp.log_post, log_post.numpy(), atol=1e-7)


def test_kl_zero_when_q_is_the_true_posterior():
    m, x, _, post = _linear_model()
    gp = posterior_grid(m, x, grid_size=101, q=post)
    assert abs(gp.kl_q_p) < 1e-10 and abs(gp.kl_p_q) < 1e-10  # same discrete distribution
    assert gp.q_mass == pytest.approx(1.0, abs=1e-7)
    assert gp.elbo == pytest.approx(gp.log_px, abs=1e-10)
    np.testing.assert_allclose(gp.q_mean, post.mean.numpy(), atol=1e-12)
    np.testing.assert_allclose(gp.q_cov, post.covariance_matrix.numpy(), atol=1e-12)


def test_kl_matches_closed_form_for_another_gaussian():
    m, x, _, post = _linear_model()
    q = MultivariateNormal(
        post.mean + torch.tensor([0.3, -0.2], dtype=DT),
        torch.tensor([[0.5, 0.1], [0.1, 0.3]], dtype=DT),
    )
    gp = posterior_grid(m, x, grid_size=201, q=q)
    assert gp.kl_q_p == pytest.approx(kl_divergence(q, post).item(), abs=1e-7)
    assert gp.kl_p_q == pytest.approx(kl_divergence(post, q).item(), abs=1e-7)


def test_q_mass_shows_truncation():
    m, x, _, _ = _linear_model()
    s = math.sqrt(0.1)
    q = MultivariateNormal(torch.tensor([4.9, 0.0], dtype=DT), 0.1 * torch.eye(2, dtype=DT))
    gp = posterior_grid(m, x, grid_size=201, q=q)
    # About Phi((5 - 4.9) / s) = 0.62 of q lies inside; the edge nodes' half cells add O(h).
    inside = 0.5 * (1 + math.erf((5 - 4.9) / (s * math.sqrt(2))))
    assert gp.q_mass == pytest.approx(inside, abs=0.05)


def test_two_layers_of_one_latent_are_allowed():
    gp = posterior_grid(_random_model(n_latent=(1, 1)), _image(), grid_size=11)
    assert np.exp(gp.log_post).sum() * gp.cell_area == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(grid_size=2),
        dict(grid_size=1002),
        dict(grid_size=0),
        dict(grid_size=10.5),
        dict(grid_size=True),
        dict(grid_size="101"),
        dict(radius=0.0),
        dict(radius=-1.0),
        dict(radius=math.inf),
        dict(radius=math.nan),
        dict(radius="5"),
        dict(chunk=0),
        dict(chunk=2.5),
    ],
)
def test_bad_settings_raise(kwargs):
    with pytest.raises(ConfigError):
        posterior_grid(_random_model(), _image(), **kwargs)


def test_bad_grid_size_message_gives_range():
    with pytest.raises(ConfigError, match=r"\[3, 1001\]"):
        posterior_grid(_random_model(), _image(), grid_size=2)


@pytest.mark.parametrize("n_latent", [(3,), (2, 1), (1,)])
def test_needs_two_latents(n_latent):
    with pytest.raises(ConfigError, match="exactly 2 latents"):
        posterior_grid(_random_model(n_latent=n_latent), _image())


@pytest.mark.parametrize("bad", [_image(n=2), torch.full((16,), math.nan), torch.zeros(15)])
def test_bad_image_raises(bad):
    with pytest.raises(ShapeError):
        posterior_grid(_random_model(), bad)


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
def test_cached_decoder_basis_gives_the_same_posterior(kind):
    # Two routes: decoding the grid for each image vs once per model (a matrix-vector product
    # per image). Same arithmetic up to float64 rounding: agree to 1e-9.
    if kind == "bernoulli":
        m, images = _random_model(seed=4), [_image(seed=s) for s in (1, 2)]
    else:
        m, x, _, _ = _linear_model(seed=2)
        images = [x, x.flip(0)]
    basis = grid_basis(m, grid_size=31, radius=4.0, chunk=100)
    for x in images:
        a = posterior_grid(m, x, grid_size=31, radius=4.0)
        b = posterior_grid(m, x, basis=basis)
        np.testing.assert_allclose(b.log_joint, a.log_joint, rtol=0, atol=1e-9)
        for name in ("log_px", "kl_q_p", "kl_p_q", "elbo"):
            assert getattr(b, name) == pytest.approx(getattr(a, name), abs=1e-9)
        np.testing.assert_allclose(b.map, a.map, atol=1e-9)


def test_a_centred_grid_zooms_on_the_same_posterior():
    # Two routes to log p(v): a wide grid at the origin, and a narrow fine grid centred on the
    # posterior (a grid-refinement check). The linear-Gaussian posterior is smooth, so both
    # quadratures agree to 1e-6 nats; nodes are where they should be.
    m, x, marginal, post = _linear_model(seed=3)
    wide = posterior_grid(m, x, grid_size=201, radius=6.0)
    centre = tuple(float(v) for v in post.mean)
    sd = float(post.covariance_matrix.diagonal().sqrt().max())
    narrow = posterior_grid(m, x, grid_size=101, radius=8 * sd, center=centre)
    assert narrow.xs[50] == pytest.approx(centre[0]) and narrow.ys[50] == pytest.approx(centre[1])
    assert narrow.log_px == pytest.approx(wide.log_px, abs=1e-6)
    assert narrow.log_px == pytest.approx(float(marginal.log_prob(x)), abs=1e-6)
    np.testing.assert_allclose(narrow.map, post.mean.numpy(), atol=1e-8)
    basis = grid_basis(m, grid_size=101, radius=8 * sd, center=centre)
    assert posterior_grid(m, x, basis=basis).log_px == pytest.approx(narrow.log_px, abs=1e-9)
    with pytest.raises(ConfigError, match="center"):
        posterior_grid(m, x, center=(0.0, float("nan")))
