"""Gaussian recognition distributions over the latent noise xi (paper sec. 4.3).

Symbols of the paper and their names here:

=========  ===========  ==============================================================
paper      code         meaning
=========  ===========  ==============================================================
mu         ``loc``      mean of q(xi | v), shape (..., K)
D = diag   ``d``        diagonal of the precision, d > 0, shape (..., K)
u          ``u``        rank-one direction of the precision, shape (..., K)
C          covariance   C = (D + u u^T)^{-1}            (eq. 19-20)
eta        ``eta``      1 / (u^T D^{-1} u + 1)           (eq. 20)
R          factor       C = R R^T, applied in O(K)       (eq. 21)
=========  ===========  ==============================================================

``RankOneNormal`` covers both the per-layer recognition model of eq. 12 (a block-diagonal
precision with one rank-one term per stochastic layer, ``blocks=(K_1, ..., K_L)``) and the
joint one of sec. 4.3 (one rank-one term over all layers, ``blocks=None``). Every quantity is
O(K) per example: no K x K matrix is formed except by ``covariance_matrix``, which exists for
tests and small plots, and by the KLs to and from a dense ``MultivariateNormal``.

KLs registered with ``torch.distributions.kl_divergence``: each of ``DiagonalNormal`` and
``RankOneNormal`` to ``StandardNormal`` (eq. 13), between any two of them, whatever their
blocks (O(K), from eq. 19-20), and to and from ``MultivariateNormal`` (dense).
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, MultivariateNormal, constraints
from torch.distributions.kl import kl_divergence, register_kl

_LOG_2PI = math.log(2.0 * math.pi)


class StandardNormal(Distribution):
    """The prior N(0, I) over xi, with event shape (K,).

    Parameters
    ----------
    n_latent : int
        K, the total number of latent variables.
    batch_shape : tuple of int
        Batch shape (``()`` by default; ``expand`` sets it).
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self, n_latent: int, *, dtype=torch.float32, device=None, batch_shape=torch.Size()
    ):
        self.n_latent = int(n_latent)
        self._dtype, self._device = dtype, device
        super().__init__(torch.Size(batch_shape), torch.Size([self.n_latent]), validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return StandardNormal(
            self.n_latent, dtype=self._dtype, device=self._device, batch_shape=batch_shape
        )

    @property
    def mean(self):
        return torch.zeros(self._extended_shape(), dtype=self._dtype, device=self._device)

    @property
    def variance(self):
        return torch.ones(self._extended_shape(), dtype=self._dtype, device=self._device)

    def rsample(self, sample_shape=torch.Size(), generator=None):
        shape = self._extended_shape(sample_shape)
        return torch.randn(shape, dtype=self._dtype, device=self._device, generator=generator)

    def log_prob(self, value):
        return -0.5 * (value.pow(2).sum(-1) + self.n_latent * _LOG_2PI)

    def entropy(self):
        return torch.full(
            self.batch_shape,
            0.5 * self.n_latent * (1.0 + _LOG_2PI),
            dtype=self._dtype,
            device=self._device,
        )


class DiagonalNormal(Distribution):
    """N(loc, diag(scale^2)) with event shape (K,): the diagonal recognition model.

    Parameters
    ----------
    loc, scale : Tensor, shape (..., K)
        Mean and standard deviations (scale > 0).
    """

    arg_constraints = {
        "loc": constraints.real_vector,
        "scale": constraints.independent(constraints.positive, 1),
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        super().__init__(self.loc.shape[:-1], self.loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiagonalNormal, _instance)
        shape = torch.Size(batch_shape) + self.event_shape
        new.loc, new.scale = self.loc.expand(shape), self.scale.expand(shape)
        super(DiagonalNormal, new).__init__(
            torch.Size(batch_shape), self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        return self.scale.pow(2)

    @property
    def covariance_matrix(self):
        return torch.diag_embed(self.variance)

    def reparameterize(self, eps):
        """xi = mu + R eps with R = diag(scale); eps (..., *B, K) -> xi of the same shape."""
        return self.loc + self.scale * eps

    def rsample(self, sample_shape=torch.Size(), generator=None):
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device, generator=generator)
        return self.reparameterize(eps)  # (*S, *B, K)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = (value - self.loc) / self.scale
        return -0.5 * (z.pow(2).sum(-1) + self.event_shape[0] * _LOG_2PI) - self.scale.log().sum(-1)

    def entropy(self):
        k = self.event_shape[0]
        return 0.5 * k * (1.0 + _LOG_2PI) + self.scale.log().sum(-1)


def _block_sum(x, blocks):
    """Sums over consecutive blocks of the last axis: (..., K) -> (..., L)."""
    if len(blocks) == 1:
        return x.sum(-1, keepdim=True)
    return torch.stack([p.sum(-1) for p in x.split(blocks, dim=-1)], dim=-1)


def _block_expand(y, blocks):
    """Repeats one value per block over the block's latents: (..., L) -> (..., K)."""
    if len(blocks) == 1:
        return y
    return y.repeat_interleave(torch.tensor(blocks, device=y.device), dim=-1)


def soft_cap_u(d, u, cap, blocks=None):
    """``u`` rescaled per block so that s = u^T D^{-1} u becomes ``cap * tanh(s / cap)``.

    A smooth bound on how sharp a rank-one posterior can be along u: the precision along u/|u|
    grows by at most a factor ``1 + cap`` over D's, eta = 1 / (1 + s) stays above
    ``1 / (1 + cap)``, and u is untouched where s << cap. O(K); differentiable everywhere
    (at u = 0 the scale is exactly 1).

    Parameters
    ----------
    d, u : Tensor, (..., K)
        The precision diagonal (> 0) and the raw rank-one directions.
    cap : float
        The bound on u^T D^{-1} u per block, > 0.
    blocks : tuple of int, optional
        As for :class:`RankOneNormal`; ``None`` is one block over all K latents.
    """
    blocks = (u.shape[-1],) if blocks is None else tuple(int(b) for b in blocks)
    x = _block_sum(u.pow(2) / d, blocks) / cap  # s / cap per block, (..., L)
    # tanh(x) / x, with its Taylor series near 0 (error < 1e-16 there; no 0 / 0)
    ratio = torch.where(x < 1e-4, 1.0 - x.pow(2) / 3.0, torch.tanh(x) / x.clamp_min(1e-4))
    return u * _block_expand(ratio.sqrt(), blocks)


class RankOneNormal(Distribution):
    """Gaussian with precision D + sum_b u_b u_b^T over blocks of xi (eq. 19-21).

    Parameters
    ----------
    loc : Tensor, shape (..., K)
        The mean mu.
    d : Tensor, shape (..., K)
        Diagonal of D, positive.
    u : Tensor, shape (..., K)
        The rank-one directions, one per block, concatenated.
    blocks : tuple of int, optional
        Sizes (K_1, ..., K_L) of independent blocks (one per stochastic layer). ``None`` means
        one block over all K latents (the joint parameterisation of sec. 4.3).
    """

    arg_constraints = {
        "loc": constraints.real_vector,
        "d": constraints.independent(constraints.positive, 1),
        "u": constraints.real_vector,
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, d, u, blocks=None, validate_args=None):
        self.loc, self.d, self.u = torch.broadcast_tensors(loc, d, u)
        k = self.loc.shape[-1]
        self.blocks = (k,) if blocks is None else tuple(int(b) for b in blocks)
        if sum(self.blocks) != k or min(self.blocks) < 1:
            raise ValueError(f"blocks {self.blocks} must be positive and sum to K={k}")
        super().__init__(self.loc.shape[:-1], self.loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(RankOneNormal, _instance)
        shape = torch.Size(batch_shape) + self.event_shape
        new.loc, new.d, new.u = (t.expand(shape) for t in (self.loc, self.d, self.u))
        new.blocks = self.blocks
        super(RankOneNormal, new).__init__(
            torch.Size(batch_shape), self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    # ---- block sums: (..., K) -> (..., L) and back, O(K) ----
    def _block_sum(self, x):
        return _block_sum(x, self.blocks)

    def _block_expand(self, y):
        return _block_expand(y, self.blocks)

    @property
    def _s(self):
        """u^T D^{-1} u per block, shape (..., L)."""
        return self._block_sum(self.u.pow(2) / self.d)

    @property
    def eta(self):
        """eta = 1 / (u^T D^{-1} u + 1) per block, shape (..., L) (eq. 20)."""
        return 1.0 / (1.0 + self._s)

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        # diag C = 1/d - eta (u/d)^2   (eq. 20)
        return 1.0 / self.d - self._block_expand(self.eta) * (self.u / self.d).pow(2)

    @property
    def precision_matrix(self):
        k = self.event_shape[0]
        uu = torch.zeros(*self.u.shape, k, dtype=self.u.dtype, device=self.u.device)
        start = 0
        for b in self.blocks:
            ub = self.u[..., start : start + b]
            uu[..., start : start + b, start : start + b] = ub.unsqueeze(-1) * ub.unsqueeze(-2)
            start += b
        return torch.diag_embed(self.d) + uu

    @property
    def covariance_matrix(self):
        return torch.linalg.inv(self.precision_matrix)

    @property
    def scale_factor(self):
        """The dense factor R of eq. 21 (block-diagonal), for tests: R R^T = C."""
        k = self.event_shape[0]
        eye = torch.eye(k, dtype=self.loc.dtype, device=self.loc.device)
        cols = eye.view(k, *([1] * len(self.batch_shape)), k)  # e_j as (K, *B, K)
        return self._apply_r(cols).movedim(0, -1)  # [..., i, j] = R_ij

    def log_det_covariance(self):
        """log|C| = sum_b log eta_b - sum log d (eq. 20), shape (...)."""
        return self.eta.log().sum(-1) - self.d.log().sum(-1)

    def trace_covariance(self):
        """tr C = sum 1/d - sum_b eta_b sum_{i in b} u_i^2 / d_i^2, shape (...)."""
        corr = self.eta * self._block_sum((self.u / self.d).pow(2))  # (..., L)
        return (1.0 / self.d).sum(-1) - corr.sum(-1)

    def _apply_r(self, eps):
        """R eps in O(K) (eq. 21): eps/sqrt(d) - gamma (u/d) u^T (eps/sqrt(d)) per block."""
        eta = self.eta
        gamma = eta / (1.0 + eta.sqrt())  # = (1 - sqrt(eta)) / (u^T D^-1 u), stable as u -> 0
        w = eps / self.d.sqrt()  # (*S, *B, K)
        proj = self._block_sum(self.u * w)  # (*S, *B, L)
        return w - (self.u / self.d) * self._block_expand(gamma * proj)

    def reparameterize(self, eps):
        """xi = mu + R eps (eq. 21), O(K); eps (..., *B, K) -> xi of the same shape."""
        return self.loc + self._apply_r(eps)

    def rsample(self, sample_shape=torch.Size(), generator=None):
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device, generator=generator)
        return self.reparameterize(eps)  # (*S, *B, K)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        r = value - self.loc
        quad = (self.d * r.pow(2)).sum(-1) + self._block_sum(self.u * r).pow(2).sum(-1)
        k = self.event_shape[0]
        return -0.5 * (quad + k * _LOG_2PI + self.log_det_covariance())

    def entropy(self):
        k = self.event_shape[0]
        return 0.5 * k * (1.0 + _LOG_2PI) + 0.5 * self.log_det_covariance()


def _kl_to_standard(mean, trace_c, log_det_c, k):
    # KL(N(mu, C) || N(0, I)) = 0.5 (tr C - log|C| + mu^T mu - K)   (eq. 13)
    return _kl_to_standard_parts(mean.pow(2).sum(-1), trace_c, log_det_c, k)


def _kl_to_standard_parts(mean_sq, trace_c, log_det_c, k):
    # the same from mu^T mu (of a whole q, or summed over one layer's latents)
    return 0.5 * (trace_c - log_det_c + mean_sq - k)


@register_kl(DiagonalNormal, StandardNormal)
def _kl_diagonal_standard(q, p):
    k = q.event_shape[0]
    return _kl_to_standard(q.loc, q.variance.sum(-1), 2.0 * q.scale.log().sum(-1), k)


@register_kl(RankOneNormal, StandardNormal)
def _kl_rank_one_standard(q, p):
    k = q.event_shape[0]
    return _kl_to_standard(q.loc, q.trace_covariance(), q.log_det_covariance(), k)


# ---------------------------------------------------------------------------- KL between Gaussians
# KL(q1 || q2) = 0.5 (tr(P2 C1) + r^T P2 r - K + log|C2| - log|C1|), r = mu2 - mu1, P2 = C2^{-1}.
# With P2 = D2 + sum_b u2_b u2_b^T (eq. 19; D2 = diag(1 / scale^2) and no u for DiagonalNormal)
# and C1 = D1^{-1} - sum_c eta_c w_c w_c^T, w_c = D1^{-1} u1_c (eq. 20), every term is O(K):
#   tr(P2 C1) = sum_i d2_i C1_ii + sum_b u2_b^T C1 u2_b,
#   sum_b u2_b^T C1 u2_b = sum_i u2_i^2 / d1_i - sum_{c,b} eta_c (w_c . u2_b)^2,
# Blocks of q1 and q2 may differ: w_c . u2_b sums u1 u2 / d1 over the overlap of c and b.


def layer_kl(q, sizes) -> torch.Tensor:
    """KL(q(xi_l | v) || N(0, I)) of each stochastic layer's marginal, shape (..., L).

    ``sizes`` = (K_1, ..., K_L) splits xi into layers (``DLGMConfig.n_latent``). Where q
    factorises over the layers (a diagonal q, or the per-layer rank-one q of eq. 12) the L
    values sum to KL(q || N(0, I)); under the joint rank-one q of sec. 4.3 the joint KL exceeds
    their sum by the layers' multi-information under q. O(K): layer l of a rank-one block b
    has the marginal covariance D_l^{-1} - eta_b w_l w_l^T (w = D^{-1} u, eq. 20), so
    log|C_l| = -sum_l log d + log eta_b + log(1 + s_b - s_l) with s = u^T D^{-1} u over the
    block (s_b) and over the layer's part of it (s_l), and
    tr C_l = sum_l 1/d - eta_b sum_l u^2 / d^2.

    Parameters
    ----------
    q : DiagonalNormal or RankOneNormal
        A recognition distribution over all K latents; each layer must lie inside one of a
        rank-one q's blocks.
    sizes : tuple of int
        Latents per layer, summing to K.
    """
    sizes = tuple(int(k) for k in sizes)
    k = q.loc.shape[-1]
    if sum(sizes) != k or min(sizes) < 1:
        raise ValueError(f"layer sizes {sizes} must be positive and sum to K={k}")
    mean_sq = _block_sum(q.loc.pow(2), sizes)
    dims = torch.tensor(sizes, dtype=q.loc.dtype, device=q.loc.device)
    if isinstance(q, DiagonalNormal):
        var = q.variance
        trace, log_det = _block_sum(var, sizes), _block_sum(var.log(), sizes)
        return _kl_to_standard_parts(mean_sq, trace, log_det, dims)
    if not isinstance(q, RankOneNormal):
        raise TypeError(f"layer_kl needs a DiagonalNormal or RankOneNormal, not {type(q)}")
    ends = torch.tensor(q.blocks).cumsum(0).tolist()
    starts = [0, *ends[:-1]]
    first = [0, *torch.tensor(sizes).cumsum(0).tolist()[:-1]]  # each layer's first latent
    for a, n in zip(first, sizes, strict=True):
        if not any(b0 <= a and a + n <= b1 for b0, b1 in zip(starts, ends, strict=True)):
            raise ValueError(f"layer sizes {sizes} cut across the rank-one blocks {q.blocks}")
    u2d = q.u.pow(2) / q.d  # (..., K)
    eta_k = q._block_expand(q.eta).expand_as(u2d)  # eta of each latent's block, (..., K)
    s_k = q._block_expand(q._s).expand_as(u2d)  # s of each latent's block
    idx = torch.tensor(first, device=q.loc.device)
    eta_l, s_b = eta_k.index_select(-1, idx), s_k.index_select(-1, idx)  # (..., L)
    s_l = _block_sum(u2d, sizes)
    trace = _block_sum(1.0 / q.d, sizes) - _block_sum(eta_k * u2d / q.d, sizes)
    log_det = -_block_sum(q.d.log(), sizes) + eta_l.log() + torch.log1p(s_b - s_l)
    return _kl_to_standard_parts(mean_sq, trace, log_det, dims)


def _membership(blocks, like) -> torch.Tensor:
    """(K, L) 0/1 matrix: entry [i, b] is 1 when latent i lies in block b."""
    ids = torch.repeat_interleave(
        torch.arange(len(blocks), device=like.device), torch.tensor(blocks, device=like.device)
    )
    return torch.nn.functional.one_hot(ids, len(blocks)).to(like.dtype)


def _parts(q):
    """(loc, precision diagonal, u or None, blocks, diag of C, log|C|) of a recognition q."""
    if isinstance(q, DiagonalNormal):
        var = q.variance
        return q.loc, 1.0 / var, None, None, var, 2.0 * q.scale.log().sum(-1)
    return q.loc, q.d, q.u, q.blocks, q.variance, q.log_det_covariance()


def _kl_structured(q1, q2):
    loc1, d1, u1, blocks1, var1, logdet1 = _parts(q1)
    loc2, d2, u2, blocks2, _, logdet2 = _parts(q2)
    k = q1.event_shape[0]
    r = loc2 - loc1  # (..., K)
    trace = (d2 * var1).sum(-1)  # sum_i d2_i C1_ii
    quad = (d2 * r.pow(2)).sum(-1)
    if u2 is not None:
        m2 = _membership(blocks2, r)  # (K, L2)
        quad = quad + ((u2 * r) @ m2).pow(2).sum(-1)  # sum_b (u2_b . r)^2
        if u1 is None:  # C1 diagonal
            trace = trace + (u2.pow(2) * var1).sum(-1)
        else:  # C1 = D1^-1 - sum_c eta_c w_c w_c^T
            m1 = _membership(blocks1, r)  # (K, L1)
            overlap = torch.einsum("...i,ic,ib->...cb", u1 * u2 / d1, m1, m2)  # (..., L1, L2)
            trace = (
                trace
                + (u2.pow(2) / d1).sum(-1)
                - (q1.eta.unsqueeze(-1) * overlap.pow(2)).sum((-2, -1))
            )
    return 0.5 * (trace + quad - k + logdet2 - logdet1)


for _p in (DiagonalNormal, RankOneNormal):
    for _q in (DiagonalNormal, RankOneNormal):
        register_kl(_p, _q)(_kl_structured)


def _dense(q) -> MultivariateNormal:
    if isinstance(q, DiagonalNormal):
        return MultivariateNormal(q.loc, scale_tril=torch.diag_embed(q.scale))
    return MultivariateNormal(q.loc, precision_matrix=q.precision_matrix)


@register_kl(DiagonalNormal, MultivariateNormal)
@register_kl(RankOneNormal, MultivariateNormal)
def _kl_to_dense(q, p):
    """KL(q || N(m, S)) for a dense Gaussian p: O(K^3), through p's Cholesky factor."""
    return kl_divergence(_dense(q), p)


@register_kl(MultivariateNormal, DiagonalNormal)
@register_kl(MultivariateNormal, RankOneNormal)
def _kl_from_dense(p, q):
    """KL(N(m, S) || q): tr(P_q S) = sum d_i S_ii + sum_b u_b^T S u_b, O(K^2) given S."""
    loc2, d2, u2, blocks2, _, logdet2 = _parts(q)
    k = p.event_shape[0]
    cov = p.covariance_matrix  # (..., K, K)
    r = loc2 - p.loc
    trace = (d2 * torch.diagonal(cov, dim1=-2, dim2=-1)).sum(-1)
    quad = (d2 * r.pow(2)).sum(-1)
    if u2 is not None:
        ub = u2.unsqueeze(-1) * _membership(blocks2, r)  # (..., K, L): u_b as columns
        trace = trace + (ub * (cov @ ub)).sum((-2, -1))
        quad = quad + (r.unsqueeze(-1) * ub).sum(-2).pow(2).sum(-1)
    logdet1 = 2.0 * torch.diagonal(p.scale_tril, dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + quad - k + logdet2 - logdet1)
