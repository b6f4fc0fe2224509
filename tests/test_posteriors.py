"""The O(K) rank-one and diagonal Gaussians (eq. 19-21) against dense float64 linear algebra."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import MultivariateNormal, kl_divergence

from dlgm.posteriors import DiagonalNormal, RankOneNormal, StandardNormal, layer_kl, soft_cap_u

DT = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-10)  # exact identities in float64


def _params(k, batch=(3,), seed=0, u_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(*batch, k, generator=g, dtype=DT)
    d = torch.exp(0.5 * torch.randn(*batch, k, generator=g, dtype=DT))  # d > 0
    u = u_scale * torch.randn(*batch, k, generator=g, dtype=DT)
    return loc, d, u


def _dense_precision(d, u, blocks):
    """D + sum_b u_b u_b^T, built independently of RankOneNormal.precision_matrix."""
    k = d.shape[-1]
    blocks = (k,) if blocks is None else blocks
    label = torch.repeat_interleave(torch.arange(len(blocks)), torch.tensor(blocks))  # (K,)
    same = (label[:, None] == label[None, :]).to(DT)  # (K, K) block mask
    return torch.diag_embed(d) + u.unsqueeze(-1) * u.unsqueeze(-2) * same


def _dense(loc, d, u, blocks):
    return MultivariateNormal(loc, precision_matrix=_dense_precision(d, u, blocks))


BLOCKS = [None, (2, 3)]


@pytest.mark.parametrize("blocks", BLOCKS)
def test_rank_one_matches_dense(blocks):
    loc, d, u = _params(5)
    q, p = RankOneNormal(loc, d, u, blocks=blocks), _dense(loc, d, u, blocks)
    value = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(1), dtype=DT)
    cov = torch.linalg.inv(_dense_precision(d, u, blocks))  # C = (D + u u^T)^{-1}
    torch.testing.assert_close(q.log_prob(value), p.log_prob(value), **TIGHT)
    torch.testing.assert_close(q.entropy(), p.entropy(), **TIGHT)
    torch.testing.assert_close(q.covariance_matrix, cov, **TIGHT)
    torch.testing.assert_close(q.variance, torch.diagonal(cov, dim1=-2, dim2=-1), **TIGHT)
    torch.testing.assert_close(
        q.trace_covariance(), cov.diagonal(dim1=-2, dim2=-1).sum(-1), **TIGHT
    )
    torch.testing.assert_close(q.log_det_covariance(), torch.logdet(cov), **TIGHT)
    # KL(q || N(0, I)) = 0.5 (tr C - log|C| + mu^T mu - K) against the dense closed form
    prior = MultivariateNormal(torch.zeros(5, dtype=DT), torch.eye(5, dtype=DT))
    torch.testing.assert_close(
        kl_divergence(q, StandardNormal(5, dtype=DT)), kl_divergence(p, prior), **TIGHT
    )


@pytest.mark.parametrize("blocks", BLOCKS)
def test_rank_one_factor(blocks):
    loc, d, u = _params(5)
    q = RankOneNormal(loc, d, u, blocks=blocks)
    r = q.scale_factor  # (3, 5, 5), eq. 21
    torch.testing.assert_close(r @ r.mT, q.covariance_matrix, **TIGHT)  # R R^T = C
    eps = torch.randn(7, 3, 5, generator=torch.Generator().manual_seed(2), dtype=DT)
    dense = loc + (r @ eps.unsqueeze(-1)).squeeze(-1)  # mu + R eps with the dense R
    torch.testing.assert_close(q.reparameterize(eps), dense, **TIGHT)


def test_diagonal_matches_dense():
    loc, d, _ = _params(4)
    scale = d.rsqrt()
    q = DiagonalNormal(loc, scale)
    p = MultivariateNormal(loc, torch.diag_embed(scale.pow(2)))
    value = torch.randn(6, 3, 4, generator=torch.Generator().manual_seed(1), dtype=DT)
    torch.testing.assert_close(q.log_prob(value), p.log_prob(value), **TIGHT)
    torch.testing.assert_close(q.entropy(), p.entropy(), **TIGHT)
    torch.testing.assert_close(q.covariance_matrix, p.covariance_matrix, **TIGHT)
    prior = MultivariateNormal(torch.zeros(4, dtype=DT), torch.eye(4, dtype=DT))
    torch.testing.assert_close(
        kl_divergence(q, StandardNormal(4, dtype=DT)), kl_divergence(p, prior), **TIGHT
    )
    eps = torch.randn(6, 3, 4, generator=torch.Generator().manual_seed(2), dtype=DT)
    torch.testing.assert_close(q.reparameterize(eps), loc + scale * eps, **TIGHT)


@pytest.mark.parametrize("blocks", BLOCKS)
def test_sample_moments(blocks):
    n = 200_000
    loc, d, u = _params(5, batch=(), seed=3)
    q = RankOneNormal(loc, d, u, blocks=blocks)
    xi = q.rsample((n,), generator=torch.Generator().manual_seed(4))  # (n, K)
    c = q.covariance_matrix
    var = c.diagonal()
    # Standard errors of the sample mean sqrt(C_ii / n) and of the sample covariance
    # sqrt((C_ii C_jj + C_ij^2) / n); allow 5 of them (each check fails w.p. < 1e-6).
    mean_tol = 5 * (var / n).sqrt()
    cov_tol = 5 * ((var[:, None] * var[None, :] + c.pow(2)) / n).sqrt()
    assert torch.all((xi.mean(0) - loc).abs() < mean_tol)
    assert torch.all((torch.cov(xi.T) - c).abs() < cov_tol)


@pytest.mark.parametrize("blocks", [None, (2, 3), "diag"])
def test_kl_analytic_vs_monte_carlo(blocks):
    n = 200_000
    loc, d, u = _params(5, batch=(2,), seed=5)
    q = DiagonalNormal(loc, d.rsqrt()) if blocks == "diag" else RankOneNormal(loc, d, u, blocks)
    prior = StandardNormal(5, dtype=DT)
    xi = q.rsample((n,), generator=torch.Generator().manual_seed(6))  # (n, 2, K)
    diff = q.log_prob(xi) - prior.log_prob(xi)  # (n, 2)
    se = diff.std(0) / math.sqrt(n)  # standard error of the Monte Carlo mean
    assert torch.all((diff.mean(0) - kl_divergence(q, prior)).abs() < 5 * se)


@pytest.mark.parametrize("blocks", BLOCKS)
def test_gradcheck(blocks):
    loc, d, u = _params(4, batch=(2,), seed=7)
    blocks = None if blocks is None else (1, 3)
    value = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(8), dtype=DT)
    eps = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(9), dtype=DT)
    prior = StandardNormal(4, dtype=DT)
    args = tuple(t.clone().requires_grad_(True) for t in (loc, d, u))

    def dist(lc, dd, uu):
        return RankOneNormal(lc, dd, uu, blocks=blocks)

    assert torch.autograd.gradcheck(lambda *a: dist(*a).log_prob(value), args)
    assert torch.autograd.gradcheck(lambda *a: dist(*a).reparameterize(eps), args)
    assert torch.autograd.gradcheck(lambda *a: kl_divergence(dist(*a), prior), args)
    assert torch.autograd.gradcheck(lambda *a: dist(*a).entropy(), args)


@pytest.mark.parametrize("u_scale", [0.0, 1e-30, 1e-8])
def test_rank_one_u_to_zero_is_diagonal(u_scale):
    loc, d, u = _params(5, seed=10, u_scale=u_scale)
    u = u.requires_grad_(True)
    q, diag = RankOneNormal(loc, d, u, blocks=(2, 3)), DiagonalNormal(loc, d.rsqrt())
    value = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(11), dtype=DT)
    eps = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(12), dtype=DT)
    # The rank-one terms are O(u^2) (O(u) for mu + R eps): below 1e-7 at u_scale <= 1e-8.
    tol = dict(rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(q.log_prob(value), diag.log_prob(value), **tol)
    torch.testing.assert_close(q.reparameterize(eps), diag.reparameterize(eps), **tol)
    prior = StandardNormal(5, dtype=DT)
    torch.testing.assert_close(kl_divergence(q, prior), kl_divergence(diag, prior), **tol)
    total = q.log_prob(value).sum() + q.reparameterize(eps).sum() + kl_divergence(q, prior).sum()
    (grad,) = torch.autograd.grad(total, u)
    assert torch.isfinite(grad).all()


@st.composite
def _cases(draw):
    k = draw(st.integers(1, 6))
    cuts = sorted(draw(st.sets(st.integers(1, k - 1), max_size=k - 1))) if k > 1 else []
    blocks = tuple(b - a for a, b in zip([0, *cuts], [*cuts, k], strict=True))
    use_none = draw(st.booleans()) and len(blocks) == 1
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    return k, None if use_none else blocks, batch, draw(st.integers(0, 2**16))


@settings(max_examples=25, deadline=None)
@given(_cases())
def test_property_random_shapes(case):
    k, blocks, batch, seed = case
    loc, d, u = _params(k, batch=batch, seed=seed)
    q, p = RankOneNormal(loc, d, u, blocks=blocks), _dense(loc, d, u, blocks)
    value = torch.randn(2, *batch, k, generator=torch.Generator().manual_seed(seed), dtype=DT)
    tol = dict(rtol=1e-9, atol=1e-9)
    assert q.batch_shape == batch and q.event_shape == (k,)
    torch.testing.assert_close(q.log_prob(value), p.log_prob(value), **tol)
    torch.testing.assert_close(q.entropy(), p.entropy(), **tol)
    r = q.scale_factor
    torch.testing.assert_close(r @ r.mT, p.covariance_matrix, **tol)
    prior = MultivariateNormal(torch.zeros(k, dtype=DT), torch.eye(k, dtype=DT))
    torch.testing.assert_close(
        kl_divergence(q, StandardNormal(k, dtype=DT)), kl_divergence(p, prior), **tol
    )


# ---------------------------------------------------------------------------- KL between them
def _make(kind, k, seed, batch=(3,)):
    """(our distribution, the same Gaussian as a dense MultivariateNormal built independently)."""
    loc, d, u = _params(k, batch=batch, seed=seed)
    if kind == "diag":
        scale = d.rsqrt()
        return (
            DiagonalNormal(loc, scale),
            MultivariateNormal(loc, covariance_matrix=torch.diag_embed(scale.pow(2))),
        )
    blocks = {"rank1": None, "rank1-blocks": (2, 3), "rank1-blocks2": (4, 1)}[kind]
    return RankOneNormal(loc, d, u, blocks=blocks), _dense(loc, d, u, blocks)


KINDS = ["diag", "rank1", "rank1-blocks", "rank1-blocks2"]


@pytest.mark.parametrize("kind1", KINDS)
@pytest.mark.parametrize("kind2", KINDS)
def test_kl_between_recognition_gaussians_matches_dense(kind1, kind2):
    q1, dense1 = _make(kind1, 5, seed=10)
    q2, dense2 = _make(kind2, 5, seed=11)
    want = kl_divergence(dense1, dense2)  # (3,)
    torch.testing.assert_close(kl_divergence(q1, q2), want, **TIGHT)
    torch.testing.assert_close(kl_divergence(q1, dense2), want, **TIGHT)  # to a dense MVN
    torch.testing.assert_close(kl_divergence(dense1, q2), want, **TIGHT)  # from a dense MVN
    torch.testing.assert_close(kl_divergence(q1, q1), torch.zeros(3, dtype=DT), **TIGHT)


def test_kl_broadcasts_batches():
    q1, dense1 = _make("rank1-blocks", 5, seed=12, batch=(2, 1))
    q2, dense2 = _make("diag", 5, seed=13, batch=(4,))
    got = kl_divergence(q1.expand((2, 4)), q2.expand((2, 4)))
    want = kl_divergence(dense1.expand((2, 4)), dense2.expand((2, 4)))
    torch.testing.assert_close(got, want, **TIGHT)


@pytest.mark.parametrize("kind", KINDS)
def test_expand_shapes_and_values(kind):
    q, _ = _make(kind, 5, seed=14, batch=(1,))
    e = q.expand((4, 3))
    assert type(e) is type(q)
    assert e.batch_shape == (4, 3) and e.event_shape == (5,)
    xi = e.rsample((2,), generator=torch.Generator().manual_seed(0))
    assert xi.shape == (2, 4, 3, 5)
    torch.testing.assert_close(e.log_prob(xi), q.log_prob(xi), **TIGHT)
    torch.testing.assert_close(e.variance, q.variance.expand(4, 3, 5), **TIGHT)
    torch.testing.assert_close(
        kl_divergence(e, StandardNormal(5, dtype=DT)),
        kl_divergence(q, StandardNormal(5, dtype=DT)).expand(4, 3),
        **TIGHT,
    )


def test_standard_normal_expand():
    p = StandardNormal(3, dtype=DT).expand((2, 4))
    assert p.batch_shape == (2, 4) and p.event_shape == (3,)
    assert p.mean.shape == (2, 4, 3) and p.entropy().shape == (2, 4)
    assert p.rsample((5,)).shape == (5, 2, 4, 3)
    torch.testing.assert_close(
        p.entropy(),
        MultivariateNormal(torch.zeros(2, 4, 3, dtype=DT), torch.eye(3, dtype=DT)).entropy(),
        **TIGHT,
    )


# ---------------------------------------------------------------------------- soft cap on u
@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("cap", [0.5, 4.0])
def test_soft_cap_u_bounds_s_along_the_same_direction(blocks, cap):
    _, d, u = _params(5, batch=(6,), seed=11, u_scale=1.0)
    capped = soft_cap_u(d, u, cap, blocks)
    sizes = (5,) if blocks is None else blocks
    parts = (t.split(sizes, -1) for t in (u, capped, d))
    for raw, new, dd in zip(*parts, strict=True):
        s = (raw.pow(2) / dd).sum(-1)  # u^T D^-1 u of the block, before and after
        torch.testing.assert_close((new.pow(2) / dd).sum(-1), cap * torch.tanh(s / cap), **TIGHT)
        # the same direction: new = c u with c in (0, 1]
        scale = (new * raw).sum(-1) / raw.pow(2).sum(-1)
        torch.testing.assert_close(new, scale.unsqueeze(-1) * raw, **TIGHT)
        assert torch.all((scale > 0) & (scale <= 1))
    # eta of the capped q, from its dense precision, stays above 1 / (1 + cap)
    q = RankOneNormal(torch.zeros_like(d), d, capped, blocks=blocks)
    assert torch.all(q.eta >= 1.0 / (1.0 + cap) - 1e-12)  # tanh saturates to 1 in float64
    # a huge u saturates at the cap instead of growing without bound
    big = soft_cap_u(d, 1e6 * u, cap, blocks)
    torch.testing.assert_close(
        RankOneNormal(torch.zeros_like(d), d, big, blocks=blocks).eta,
        torch.full_like(q.eta, 1.0 / (1.0 + cap)),
        **TIGHT,
    )


@pytest.mark.parametrize("u_scale", [0.0, 1e-6, 1e-2, 1.0, 30.0])
def test_soft_cap_u_gradcheck_across_both_branches(u_scale):
    # u_scale 0 and 1e-6 use the series for tanh(x)/x, the others tanh(x)/x itself
    _, d, u = _params(4, batch=(2,), seed=12, u_scale=u_scale)
    args = tuple(t.clone().requires_grad_(True) for t in (d, u))
    assert torch.autograd.gradcheck(lambda dd, uu: soft_cap_u(dd, uu, 2.0, (1, 3)), args)
    assert torch.autograd.gradcheck(lambda dd, uu: soft_cap_u(dd, uu, 2.0), args)


def test_soft_cap_u_is_the_identity_at_zero_and_near_it_for_small_s():
    _, d, u = _params(5, seed=13)
    zero = torch.zeros_like(u)
    assert torch.equal(soft_cap_u(d, zero, 4.0), zero)
    small = 1e-3 * u  # s ~ 1e-6 << cap: relative change s / (3 cap) ~ 1e-7
    torch.testing.assert_close(soft_cap_u(d, small, 4.0), small, rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------- per-layer KL
def _dense_layer_kls(dense, sizes):
    """KL of each layer's marginal from N(0, I), from the dense covariance's diagonal blocks."""
    out, a = [], 0
    for n in sizes:
        marg = MultivariateNormal(
            dense.loc[..., a : a + n], dense.covariance_matrix[..., a : a + n, a : a + n]
        )
        std = MultivariateNormal(torch.zeros(n, dtype=DT), torch.eye(n, dtype=DT))
        out.append(kl_divergence(marg, std))
        a += n
    return torch.stack(out, -1)


@pytest.mark.parametrize("blocks", [None, (2, 3)])
@pytest.mark.parametrize("u_scale", [0.0, 1.0, 5.0])
def test_layer_kl_of_a_rank_one_q_against_the_dense_marginals(blocks, u_scale):
    """Each layer's marginal of the joint (blocks None) and of the per-layer rank-one q (eq.
    12), against dense float64 blocks of C = (D + u u^T)^-1; the per-layer q's layers sum to
    its KL, the joint one's to less (the layers' multi-information)."""
    loc, d, u = _params(5, batch=(4,), seed=7, u_scale=u_scale)
    q = RankOneNormal(loc, d, u, blocks=blocks)
    got = layer_kl(q, (2, 3))
    torch.testing.assert_close(got, _dense_layer_kls(_dense(loc, d, u, blocks), (2, 3)), **TIGHT)
    total = kl_divergence(q, StandardNormal(5, dtype=DT))
    if blocks is not None or u_scale == 0.0:
        torch.testing.assert_close(got.sum(-1), total, **TIGHT)
    else:
        assert bool((total - got.sum(-1) > 1e-6).all())
    if blocks is None:  # one layer over all K latents is the KL itself
        torch.testing.assert_close(layer_kl(q, (5,))[..., 0], total, **TIGHT)


def test_layer_kl_of_a_diagonal_q_sums_to_its_kl():
    loc, d, _ = _params(5, batch=(4,), seed=8)
    q = DiagonalNormal(loc, d.rsqrt())
    got = layer_kl(q, (1, 4))
    dense = MultivariateNormal(loc, torch.diag_embed(1.0 / d))
    torch.testing.assert_close(got, _dense_layer_kls(dense, (1, 4)), **TIGHT)
    torch.testing.assert_close(got.sum(-1), kl_divergence(q, StandardNormal(5, dtype=DT)), **TIGHT)


def test_layer_kl_rejects_sizes_that_do_not_fit():
    loc, d, u = _params(5, seed=9)
    with pytest.raises(ValueError, match="sum to K=5"):
        layer_kl(RankOneNormal(loc, d, u), (2, 2))
    with pytest.raises(ValueError, match="cut across"):
        layer_kl(RankOneNormal(loc, d, u, blocks=(2, 3)), (3, 2))
