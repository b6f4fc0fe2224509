"""True and approximate posteriors of a 2-latent model on a grid (the paper's Fig. 2).

For a model with K = 2 latents in total, the true posterior p(xi | v) = p(v, xi) / p(v) can be
evaluated on a G x G grid over [-r, r]^2: log p(v, xi) (eq. 6) at every node in batched decoder
calls, log p(v) by quadrature (a Riemann sum: logsumexp of log p(v, xi) plus the log of the cell
area), and the recognition model's log q(xi | v) on the same nodes. Mass outside the square is
ignored; under the N(0, I) prior it is small for r = 5 unless the likelihood pulls the posterior
out, and ``q_mass`` shows how much of q lies inside.

For many images of one model, ``grid_basis`` evaluates the decoder on the grid nodes once: both
likelihoods are linear in the pixels given the decoder's output (Bernoulli: x . logits -
sum softplus(logits)) or quadratic (Gaussian), so each image then costs one matrix-vector
product instead of G * G decoder passes, with the same result up to rounding.

Index convention: every (G, G) array ``a`` has ``a[i, j]`` at ``xi = (xs[j], ys[i])``: rows
follow the second latent (y), columns the first (x), so ``plotly.graph_objects.Contour(z=a,
x=xs, y=ys)`` draws it the right way round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError, ShapeError

GRID_SIZES = (3, 1001)
_DEFAULT_ELEMENTS = 2**24  # decoder outputs (grid nodes x pixels) per call


@dataclass
class GridPosterior:
    """A posterior evaluated on a grid; densities w.r.t. xi, in nats.

    Attributes
    ----------
    xs, ys : ndarray, (G,)
        Grid coordinates of the first and second latent; ``a[i, j]`` is at (xs[j], ys[i]).
    log_joint : ndarray, (G, G)
        log p(v, xi) (eq. 6).
    log_post : ndarray, (G, G)
        log p(xi | v) = log p(v, xi) - log_px: normalised so that
        ``exp(log_post).sum() * cell_area == 1``.
    log_q : ndarray, (G, G)
        The recognition density log q(xi | v) (not renormalised).
    log_px : float
        log p(v) by quadrature on the grid, nats.
    kl_q_p, kl_p_q : float
        KL(q || p(xi|v)) and KL(p(xi|v) || q) on the grid, nats, with q renormalised on the grid.
    q_mass : float
        The mass of q inside the grid, sum(exp(log_q)) * cell_area (1 unless q is truncated).
    elbo : float
        The ELBO on the grid, ``log_px - kl_q_p`` = E_q[log p(v, xi) - log q(xi|v)] under the
        renormalised q (quadrature, no sampling), nats.
    map : ndarray, (2,)
        The posterior mode (MAP): the grid node with the largest log p(v, xi), refined (if
        ``refine_map``) by one Newton step on a quadratic fitted to its 3 x 3 neighbourhood;
        the step is kept only if it stays within two cells and improves log p(v, xi).
    q_mean : ndarray, (2,)
    q_cov : ndarray, (2, 2)
        Mean and covariance of q.
    post_mean : ndarray, (2,)
    post_cov : ndarray, (2, 2)
        Mean and covariance of the true posterior from the grid moments.
    """

    xs: np.ndarray
    ys: np.ndarray
    log_joint: np.ndarray
    log_post: np.ndarray
    log_q: np.ndarray
    log_px: float
    kl_q_p: float
    kl_p_q: float
    q_mass: float
    elbo: float
    map: np.ndarray
    q_mean: np.ndarray
    q_cov: np.ndarray
    post_mean: np.ndarray
    post_cov: np.ndarray

    @property
    def cell_area(self) -> float:
        """Area of one grid cell, (xs[1] - xs[0]) * (ys[1] - ys[0])."""
        return float((self.xs[1] - self.xs[0]) * (self.ys[1] - self.ys[0]))


@dataclass
class GridBasis:
    """The decoder evaluated on the nodes of a grid: everything of log p(v, xi) that does not
    depend on v. Made by :func:`grid_basis`; read-only.

    log p(v, xi_n) = lin[n] . v + quad . v^2 + const[n]   (nats; quad is 0 for Bernoulli)
    """

    grid_size: int
    radius: float
    center: tuple  # (cx, cy)
    xs: torch.Tensor  # (G,)
    ys: torch.Tensor  # (G,)
    nodes: torch.Tensor  # (G*G, 1, 2)
    lin: torch.Tensor  # (G*G, D)
    quad: torch.Tensor | None  # (D,) for Gaussian likelihoods
    const: torch.Tensor  # (G*G,), includes log N(xi; 0, I)

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x, xi) on the grid for one image x (1, D): (G, G)."""
        out = self.lin @ x[0] + self.const  # (G*G,)
        if self.quad is not None:
            out = out + self.quad @ x[0].pow(2)
        g = self.grid_size
        return out.reshape(g, g)


def _nodes(grid_size, radius, center, dtype, device):
    axis = torch.linspace(-radius, radius, grid_size, dtype=dtype, device=device)  # (G,)
    xs, ys = axis + float(center[0]), axis + float(center[1])  # (G,), (G,)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # [i, j] = (xs[j], ys[i])
    return xs, ys, torch.stack([xx, yy], dim=-1).reshape(grid_size * grid_size, 1, 2)


def _center(center) -> tuple:
    try:
        cx, cy = (float(c) for c in center)
    except (TypeError, ValueError):
        raise ConfigError(f"center={center!r}: give two finite numbers (x, y)") from None
    if not (math.isfinite(cx) and math.isfinite(cy)):
        raise ConfigError(f"center={center!r}: give two finite numbers (x, y)")
    return cx, cy


@torch.no_grad()
def grid_basis(model, *, grid_size=101, radius=5.0, center=(0.0, 0.0), chunk=None) -> GridBasis:
    """Evaluate the decoder on the grid once, for many :func:`posterior_grid` calls.

    Memory: G * G * D floats (32 MB for 101 x 101 nodes and 784 pixels).
    """
    p = next(model.parameters())
    dummy = torch.zeros(1, model.n_pixels, dtype=p.dtype, device=p.device)
    _check(model, dummy, grid_size, radius, chunk)
    g, r, d = int(grid_size), float(radius), model.n_pixels
    chunk = chunk or max(1, _DEFAULT_ELEMENTS // d)
    center = _center(center)
    xs, ys, nodes = _nodes(g, r, center, p.dtype, p.device)
    lin, const = [], []
    for s in range(0, g * g, chunk):
        obs = model.observation(nodes[s : s + chunk, 0])  # pi(v | h(xi)), batch (C,)
        lin_c, const_c, quad = obs.linear_form()  # log pi(x | h) = x.lin + quad.x^2 + const
        lin.append(lin_c)
        const.append(const_c)
    log_prior = -0.5 * (nodes[:, 0].pow(2).sum(-1) + 2 * math.log(2 * math.pi))  # (G*G,)
    return GridBasis(
        grid_size=g,
        radius=r,
        center=center,
        xs=xs,
        ys=ys,
        nodes=nodes,
        lin=torch.cat(lin),
        quad=quad,
        const=torch.cat(const) + log_prior,
    )


def _check(model, x, grid_size, radius, chunk) -> torch.Tensor:
    if getattr(model, "latent_dim", None) != 2:
        raise ConfigError(
            f"posterior_grid needs a model with exactly 2 latents in total; this "
            f"one has K={getattr(model, 'latent_dim', '?')} "
            f"(n_latent={getattr(getattr(model, 'config', None), 'n_latent', '?')})"
        )
    lo, hi = GRID_SIZES
    if (
        isinstance(grid_size, bool)
        or not isinstance(grid_size, (int, np.integer))
        or not lo <= grid_size <= hi
    ):
        raise ConfigError(f"grid_size={grid_size!r}: must be an integer in [{lo}, {hi}]")
    if not isinstance(radius, (int, float, np.number)) or not (0 < radius < math.inf):
        raise ConfigError(f"radius={radius!r}: must be a finite number > 0")
    if chunk is not None and (
        isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1
    ):
        raise ConfigError(f"chunk={chunk!r}: must be an integer >= 1, or None")
    if isinstance(x, torch.Tensor) and x.dim() == 1:
        x = x.unsqueeze(0)  # (1, D)
    x = model.check_input(x)
    if x.shape[0] != 1:
        raise ShapeError(
            f"posterior_grid takes one image, shape (D,) or (1, D); got {x.shape[0]} images"
        )
    p = next(model.parameters())
    return x.to(dtype=p.dtype, device=p.device)


def _map(model, x, log_joint, xs, ys, refine: bool) -> torch.Tensor:
    """The best grid node, optionally refined by one Newton step, (2,).

    The refinement fits a quadratic to log p(x, xi) on the node and its 8 neighbours (central
    finite differences for the gradient and Hessian, no extra decoder calls) and jumps to its
    maximum. The step is kept only if the fitted Hessian is negative definite, the step stays
    within two cells, and log p(x, xi) (one decoder call) improves. Exact when log p(x, xi) is
    quadratic in xi (linear-Gaussian models)."""
    g, h = xs.shape[0], float(xs[1] - xs[0])  # the same spacing on both axes
    i, j = divmod(int(log_joint.argmax()), g)
    best = torch.stack([xs[j], ys[i]])  # (2,), a[i, j] is at (xs[j], ys[i])
    if not (refine and 0 < i < g - 1 and 0 < j < g - 1):
        return best
    f = log_joint[i - 1 : i + 2, j - 1 : j + 2].double()  # (3, 3), rows follow y, columns x
    grad = torch.stack([f[1, 2] - f[1, 0], f[2, 1] - f[0, 1]]) / (2 * h)  # (2,)
    hxx = (f[1, 2] - 2 * f[1, 1] + f[1, 0]) / h**2
    hyy = (f[2, 1] - 2 * f[1, 1] + f[0, 1]) / h**2
    hxy = (f[2, 2] - f[2, 0] - f[0, 2] + f[0, 0]) / (4 * h**2)
    if not (hxx < 0 and hxx * hyy - hxy**2 > 0):
        return best
    hess = torch.stack([torch.stack([hxx, hxy]), torch.stack([hxy, hyy])])  # (2, 2)
    step = -torch.linalg.solve(hess, grad)  # (2,), Newton step to the quadratic's maximum
    if not (torch.isfinite(step).all() and step.abs().max() <= 2 * h):
        return best
    cand = best + step.to(best.dtype)
    new = model.log_joint(x, cand.unsqueeze(0)).item()
    return cand if math.isfinite(new) and new > float(log_joint[i, j]) else best


def _kl(log_a, log_b) -> torch.Tensor:
    """KL(a || b) = sum a (log a - log b) of discrete distributions, with 0 log 0 = 0."""
    a = log_a.exp()
    return torch.where(a > 0, a * (log_a - log_b), 0.0).sum()


def _q_moments(q) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        mean = q.mean.reshape(-1, 2)[0]  # (2,)
        if hasattr(q, "covariance_matrix"):
            cov = q.covariance_matrix.reshape(-1, 2, 2)[0]  # (2, 2)
        else:
            cov = torch.diag_embed(q.variance.reshape(-1, 2)[0])
    return mean.double().cpu().numpy(), cov.double().cpu().numpy()


def posterior_grid(
    model,
    x,
    *,
    grid_size=101,
    radius=5.0,
    center=(0.0, 0.0),
    chunk=None,
    refine_map=True,
    q=None,
    basis: GridBasis | None = None,
) -> GridPosterior:
    """Evaluate the true posterior p(xi | x) and q(xi | x) of one image on a grid.

    Parameters
    ----------
    model : DLGM
        A model with K = 2 latents in total (e.g. ``n_latent=(2,)``).
    x : Tensor, (D,) or (1, D)
        One observation.
    grid_size : int
        G, nodes per axis, in [3, 1001]; the grid has G * G nodes, spacing 2 r / (G - 1).
    radius : float
        r > 0: the grid covers [-r, r]^2 around ``center`` (the paper's Fig. 2 uses 5).
    center : (float, float)
        The grid's centre, e.g. a previous grid's ``map`` with a small radius to resolve a
        narrow posterior (log p(v) by quadrature then needs the posterior inside the grid).
    chunk : int, optional
        Grid nodes per decoder call; by default about 2**24 / D (one call for 101 x 101 on
        MNIST).
    refine_map : bool
        Refine the best grid node by one Newton step on a quadratic fitted to its 3 x 3
        neighbourhood (see ``GridPosterior.map``); False keeps the grid node.
    q : Distribution, optional
        The approximate posterior to compare, with event shape (2,) and a ``log_prob``;
        ``model.encode(x)`` by default.
    basis : GridBasis, optional
        ``grid_basis(model, grid_size=..., radius=...)`` of this model, to reuse the decoder's
        output on the grid across images (its grid size and radius are used).

    Returns
    -------
    GridPosterior
        Arrays indexed ``[i, j]`` at ``(xs[j], ys[i])``; all log-densities in nats.

    Raises
    ------
    ConfigError
        If the model does not have exactly 2 latents, or grid_size, radius or chunk is out of
        range.
    ShapeError
        If ``x`` is not one finite image of D pixels (shape (D,) or (1, D)).
    """
    if basis is not None:
        grid_size, radius, center = basis.grid_size, basis.radius, basis.center
    x = _check(model, x, grid_size, radius, chunk)  # (1, D)
    g, r = int(grid_size), float(radius)
    chunk = chunk or max(1, _DEFAULT_ELEMENTS // x.shape[1])
    with torch.no_grad():
        if basis is None:
            xs, ys, nodes = _nodes(g, r, _center(center), x.dtype, x.device)  # (G*G, 1, 2)
            log_joint = torch.cat(
                [model.log_joint(x, nodes[s : s + chunk]) for s in range(0, g * g, chunk)]
            ).reshape(g, g)  # (G, G)
        else:
            xs, ys, nodes = basis.xs, basis.ys, basis.nodes
            log_joint = basis.log_joint(x)  # (G, G)
        q = model.encode(x) if q is None else q
        log_q = q.log_prob(nodes).reshape(g, g)  # (G, G)
        log_area = 2.0 * math.log(2.0 * r / (g - 1))
        log_px = torch.logsumexp(log_joint.flatten(), 0) + log_area  # quadrature
        log_post = log_joint - log_px  # (G, G), density
        # Discrete distributions on the nodes (the cell areas cancel in the KLs).
        log_pp = torch.log_softmax(log_joint.flatten(), 0)  # (G*G,)
        log_qq = torch.log_softmax(log_q.flatten(), 0)  # (G*G,)
        kl_q_p, kl_p_q = _kl(log_qq, log_pp), _kl(log_pp, log_qq)
        q_mass = torch.logsumexp(log_q.flatten(), 0).add(log_area).exp()
        pts, w = nodes.reshape(-1, 2), log_pp.exp()  # (G*G, 2), (G*G,)
        post_mean = w @ pts  # (2,)
        centred = pts - post_mean
        post_cov = (centred * w[:, None]).T @ centred  # (2, 2)
        best = _map(model, x, log_joint, xs, ys, refine_map)  # (2,)
    q_mean, q_cov = _q_moments(q)

    def np64(t):
        return t.detach().double().cpu().numpy()

    return GridPosterior(
        xs=np64(xs),
        ys=np64(ys),
        log_joint=np64(log_joint),
        log_post=np64(log_post),
        log_q=np64(log_q),
        log_px=float(log_px),
        kl_q_p=float(kl_q_p),
        kl_p_q=float(kl_p_q),
        q_mass=float(q_mass),
        elbo=float(log_px - kl_q_p),
        map=np64(best),
        q_mean=q_mean,
        q_cov=q_cov,
        post_mean=np64(post_mean),
        post_cov=np64(post_cov),
    )
