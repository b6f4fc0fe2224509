"""Missing-data imputation with a DLGM (paper sec. 5.4 and appendix F).

Symbols of the paper and their names here:

==================  ====================  ====================================================
paper               code                  meaning
==================  ====================  ====================================================
v_o                 ``x[~mask]``          observed pixels; never changed by any chain
v_m                 ``x[mask]``           missing pixels (``mask`` is True where MISSING)
v = (v_o, v_m)      ``images``            the filled image, (B, D)
xi                  ``xi``                latent noise, all layers concatenated, (B, K)
q(xi | v)           ``model.encode(v)``   recognition model, conditioned on the filled image
p(v, xi)            ``model.log_joint``   log pi(v | h(xi)) + log N(xi; 0, I), nats (eq. 6)
pi(v | h(xi))       ``model.observation``  observation model: Bernoulli or Gaussian pixels
E[v | xi]           ``probs``             pixel probabilities (Bernoulli) or means (Gaussian)
==================  ====================  ====================================================

Three chains, all batched over images (B) and particles; Python loops run over steps only:

``"pseudo-gibbs"``
    The paper's chain (appendix F): xi ~ q(xi | v_o, v_m), then v_m ~ pi(v_m | h(xi)). It
    converges to p(v_m | v_o) only as far as q matches the true posterior p(xi | v).
``"mwg"``
    Metropolis-within-Gibbs (Mattei & Frellsen, 2018): q(xi | v) is used as an independence
    proposal for xi given the current v and accepted with probability
    min(1, [p(v, xi') / q(xi' | v)] / [p(v, xi_t) / q(xi_t | v)]); then v_m ~ pi(v_m | h(xi)).
    The chain targets p(xi, v_m | v_o) exactly, whatever q (as long as q covers the posterior).
``"importance"``
    Importance resampling as in MIWAE (Mattei & Frellsen, 2019): P particles
    xi_p ~ q(xi | v_o, fill) with self-normalised weights w_p ∝ p(v_o, xi_p) / q(xi_p | v_o, fill)
    (observed pixels only); each step resamples one particle and draws v_m ~ pi(v_m | h(xi)).
    Steps are independent draws (not a Markov chain); the weighted mean
    E[v_m | v_o] ≈ sum_p w_p E[v_m | xi_p] and the effective sample size come with the result.

With nothing missing every chain returns the image unchanged. With everything missing the
chains sample the model itself: MWG and importance resampling target p(v) exactly (up to
Monte Carlo error); pseudo-Gibbs is the chain v -> xi ~ q(xi | v) -> v ~ pi(v | h(xi)), which
samples p(v) only as far as q matches the posterior.

Missing pixels of ``x`` may hold anything, NaN included: they are replaced by the initial fill
before use. Observed pixels must be finite (else :class:`~dlgm.errors.ShapeError`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError, ShapeError

__all__ = [
    "METHODS",
    "INITS",
    "ChainState",
    "ImputationChain",
    "ImputationResult",
    "as_mask",
    "impute",
    "mask_random",
    "mask_square",
    "missing_error",
]

METHODS = ("pseudo-gibbs", "mwg", "importance")
INITS = ("noise", "zeros", "mean", "pseudo-gibbs")
WARM_STEPS = 30  # pseudo-Gibbs steps behind init="pseudo-gibbs"
DEFAULT_PARTICLES = 100
_N_MEAN_DRAWS = 256  # prior draws behind init="mean"


# ---------------------------------------------------------------------------- masks
def mask_random(shape, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pixels missing at random (MAR), each independently with probability ``rate``.

    Parameters
    ----------
    shape : int or tuple of int
        D for one mask of shape (D,), or e.g. (B, D) for one mask per image.
    rate : float
        Probability in [0, 1] that a pixel is missing (the paper uses 0.6 and 0.8).
    generator : torch.Generator, optional

    Returns
    -------
    Tensor of bool, ``shape``; True = missing.
    """
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not shape or any(int(s) < 1 for s in shape):
        raise ConfigError(f"mask shape {shape}: give D or (B, D) with every size >= 1")
    if not (isinstance(rate, (int, float)) and 0.0 <= rate <= 1.0):
        raise ConfigError(f"rate={rate!r}: the missing rate must be a number in [0, 1]")
    return torch.rand(tuple(int(s) for s in shape), generator=generator) < rate


def mask_square(data_shape, size, top: int | None = None, left: int | None = None) -> torch.Tensor:
    """A missing square (NMAR, sec. 5.4), clipped to the image.

    Parameters
    ----------
    data_shape : tuple of int
        Image shape (H, W).
    size : int or (int, int)
        Side length (or height, width) of the square in pixels, >= 1.
    top, left : int, optional
        Row and column of the square's top-left corner; may be negative or run past the
        border (the square is clipped), but it must overlap the image. Default: centred.

    Returns
    -------
    Tensor of bool, (H * W,); True = missing.
    """
    if len(tuple(data_shape)) != 2:
        raise ConfigError(f"data_shape={tuple(data_shape)}: a square needs an image shape (H, W)")
    H, W = (int(s) for s in data_shape)
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if h < 1 or w < 1:
        raise ConfigError(f"size={size!r}: the square's sides must be >= 1 pixel")
    top = (H - h) // 2 if top is None else int(top)
    left = (W - w) // 2 if left is None else int(left)
    r0, r1, c0, c1 = max(top, 0), min(top + h, H), max(left, 0), min(left + w, W)
    if r0 >= r1 or c0 >= c1:
        raise ConfigError(
            f"square rows [{top}, {top + h}) x cols [{left}, {left + w}) lies "
            f"outside the {H} x {W} image"
        )
    m = torch.zeros(H, W, dtype=torch.bool)
    m[r0:r1, c0:c1] = True
    return m.flatten()


def as_mask(m, n_pixels: int) -> torch.Tensor:
    """Validate a user mask and return it as a bool tensor of shape (D,) or (B, D).

    Parameters
    ----------
    m : Tensor, ndarray or nested list
        Boolean (True = missing) or 0/1 values, of shape (D,), (H, W) with H * W = D,
        (B, D) or (B, H, W).
    n_pixels : int
        D, the number of pixels of the model.

    Returns
    -------
    Tensor of bool, (D,) or (B, D).
    """
    try:
        t = m if isinstance(m, torch.Tensor) else torch.as_tensor(np.asarray(m))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ShapeError(f"mask of type {type(m).__name__} is not a boolean array: {err}") from None
    if t.dtype != torch.bool:
        if t.is_complex() or not (t.is_floating_point() or t.dtype in _INT_DTYPES):
            raise ShapeError(f"mask has dtype {t.dtype}; give booleans (True = missing) or 0/1")
        if not ((t == 0) | (t == 1)).all():
            raise ShapeError("mask must hold booleans (True = missing) or only the values 0 and 1")
        t = t != 0
    D, s = int(n_pixels), tuple(t.shape)
    if t.dim() == 1 and s[0] == D:
        return t
    if t.dim() == 2 and s[1] == D and s[0] >= 1:
        return t
    if t.dim() == 2 and s[0] * s[1] == D:
        return t.flatten()
    if t.dim() == 3 and s[1] * s[2] == D and s[0] >= 1:
        return t.flatten(1)
    raise ShapeError(
        f"mask has shape {s}; expected ({D},), (H, W) with H*W={D}, (B, {D}) or (B, H, W)"
    )


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


# ---------------------------------------------------------------------------- helpers
def _prepare(model, x, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate x and mask; return x (B, D) with missing pixels zeroed and mask (B, D)."""
    dtype = model.head_loc.weight.dtype
    device = model.head_loc.weight.device
    x = torch.as_tensor(x if isinstance(x, torch.Tensor) else np.asarray(x))
    if x.dim() not in (1, 2) or x.shape[-1] != model.n_pixels or x.numel() == 0:
        raise ShapeError(
            f"x has shape {tuple(x.shape)}; expected ({model.n_pixels},) or "
            f"(B, {model.n_pixels}) for images of shape {model.data_shape}"
        )
    x = x.to(device=device, dtype=dtype).reshape(-1, model.n_pixels)  # (B, D)
    mask = as_mask(mask, model.n_pixels).to(device)
    if mask.dim() == 1 or mask.shape[0] == 1:
        mask = mask.reshape(-1).expand_as(x)
    elif x.shape[0] == 1:
        x = x.expand(mask.shape[0], -1)
    elif mask.shape[0] != x.shape[0]:
        raise ShapeError(f"mask has {mask.shape[0]} rows but x has {x.shape[0]} images")
    bad = ~torch.isfinite(x) & ~mask
    if bad.any():
        raise ShapeError(
            f"x has {int(bad.sum())} NaN or infinite observed pixels; non-finite "
            "values are allowed only where mask is True (missing)"
        )
    return torch.where(mask, torch.zeros((), dtype=dtype, device=device), x), mask.clone()


def _initial_fill(model, x, mask, init, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The fill v_0 of the missing pixels and its mean (the step-0 ``probs``), both (B, D)."""
    if isinstance(init, (torch.Tensor, np.ndarray)):
        fill = torch.as_tensor(init).to(x)
        if fill.shape not in ((x.shape[1],), (1, x.shape[1]), tuple(x.shape)):
            raise ShapeError(
                f"init has shape {tuple(fill.shape)}; expected ({x.shape[1]},) or {tuple(x.shape)}"
            )
        fill = fill.expand_as(x)  # (B, D)
        if not torch.isfinite(fill[mask]).all():
            raise ShapeError("init contains NaN or infinite values at missing pixels")
        mean = fill
    elif init == "zeros":
        fill = mean = torch.zeros_like(x)
    elif init == "noise":
        half = torch.full_like(x, 0.5)
        if model.config.binary:
            fill = torch.bernoulli(half, generator=generator)
        else:
            fill = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        mean = half
    elif init == "mean":
        xi = model.prior().rsample((_N_MEAN_DRAWS,), generator=generator)  # (S, K)
        fill = mean = model.pixel_mean(xi).mean(0).expand_as(x)  # (B, D)
    elif init == "pseudo-gibbs":  # warm start: the exact chains mix from here, not from noise
        warm = ImputationChain(
            model,
            x,
            mask,
            method="pseudo-gibbs",
            init="noise",
            generator=generator,
            keep_history=False,
        )
        state = warm.run(WARM_STEPS)
        return warm._v, state.probs
    else:
        raise ConfigError(f"init={init!r}: choose one of {INITS} or give a tensor of fill values")
    return torch.where(mask, fill, x), torch.where(mask, mean, x)


def _pixels(model, params, generator, clamp=True) -> tuple[torch.Tensor, torch.Tensor]:
    """E[v | xi] and a draw v ~ pi(v | h(xi)) from decoded parameters, both (..., D).

    The same draws as ``model.sample_pixels`` for the same generator state, from one decode.
    ``clamp=False`` keeps Gaussian draws unclipped (the exact pi, used by the exact chains).
    """
    obs = model.observation(params=params)
    return obs.image_mean, obs.sample(generator=generator, clip=clamp)


def _check_method(method, n_particles) -> int | None:
    if method not in METHODS:
        raise ConfigError(f"method={method!r}: choose one of {METHODS}")
    if method != "importance":
        if n_particles is not None:
            raise ConfigError(f"n_particles is for method='importance', not {method!r}")
        return None
    n = DEFAULT_PARTICLES if n_particles is None else n_particles
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n_particles={n_particles!r}: must be an integer >= 1")
    return int(n)


# ---------------------------------------------------------------------------- results
@dataclass
class ChainState:
    """The current state of an :class:`ImputationChain`.

    Attributes
    ----------
    step : int
        Number of steps taken (0 = initial fill).
    images : Tensor, (B, D)
        The filled image v_t (observed pixels exactly as given; missing ones in [0, 1]).
    probs : Tensor, (B, D)
        E[v | xi_t] at the missing pixels and the observed values elsewhere (for display).
    xi : Tensor, (B, K) or None
        The latent behind ``probs`` (None at step 0, except for MWG's xi_0).
    accept : Tensor of bool, (step, B) or None
        MWG's accept history; None for the other methods.
    """

    step: int
    images: torch.Tensor
    probs: torch.Tensor
    xi: torch.Tensor | None
    accept: torch.Tensor | None


@dataclass
class ImputationResult:
    """The output of :func:`impute`.

    Attributes
    ----------
    images : Tensor, (T+1, B, D)
        The filled image at each kept step; step 0 is the initial fill.
    probs : Tensor, (T+1, B, D)
        Pixel probabilities (Bernoulli) or means (Gaussian) E[v | xi_t] at the missing pixels,
        observed values elsewhere. At step 0, the mean of the fill's distribution (0.5 for
        ``init="noise"``).
    mask : Tensor of bool, (B, D)
        True = missing.
    method : str
    steps : Tensor of int64, (T+1,)
        The step index of each kept row: ``arange(T+1)``, or ``[0, T]`` when
        ``return_every=False``.
    xi : Tensor, (T, B, K) or None
        The latent drawn (or kept, for MWG) at steps 1..T; None when ``return_every=False``
        or T = 0.
    accept : Tensor of bool, (T, B) or None
        MWG only: whether the proposal was accepted at each step, per image.
    acceptance_rate : float or None
        MWG only: the fraction of accepted proposals over all steps and images.
    ess : Tensor, (B,) or None
        Importance only: effective sample size 1 / sum_p w_p^2 of the particle weights.
    mean_imputation : Tensor, (B, D) or None
        Importance only: E[v | v_o] ≈ sum_p w_p E[v | xi_p] at missing pixels, observed values
        elsewhere.
    """

    images: torch.Tensor
    probs: torch.Tensor
    mask: torch.Tensor
    method: str
    steps: torch.Tensor
    xi: torch.Tensor | None = None
    accept: torch.Tensor | None = None
    acceptance_rate: float | None = None
    ess: torch.Tensor | None = None
    mean_imputation: torch.Tensor | None = None

    @property
    def step_acceptance(self) -> torch.Tensor | None:
        """MWG only: acceptance rate at each step, averaged over images, (T,)."""
        return None if self.accept is None else self.accept.float().mean(1)


# ---------------------------------------------------------------------------- the chain
class ImputationChain:
    """A batched imputation chain that advances one step at a time (for step-by-step players).

    Parameters
    ----------
    model : DLGM
    x : Tensor, (B, D) or (D,)
        Images; missing pixels may hold anything (NaN included). A single image (D,) or
        (1, D) with a mask of shape (B, D) is imputed under each of the B masks.
    mask : Tensor of bool, (D,), (B, D) or any shape accepted by :func:`as_mask`
        True = missing.
    method : {"pseudo-gibbs", "mwg", "importance"}
    init : {"noise", "zeros", "mean", "pseudo-gibbs"} or Tensor, (D,) or (B, D)
        Initial fill of the missing pixels: Bernoulli(0.5) (binary models) or U(0, 1)
        (Gaussian) noise, zeros, the model's marginal pixel mean E_p[v] (estimated from 256
        prior draws), the state of a pseudo-Gibbs chain after ``WARM_STEPS`` steps from noise
        (a warm start: MWG and importance resampling started from noise accept almost no
        proposal, see experiments/RESULTS.md; any start leaves MWG's target unchanged), or
        given values.
    n_particles : int, optional
        P, importance particles per image (``method="importance"`` only; default 100).
        Memory grows as P * B * D.
    generator : torch.Generator, optional
    keep_history : bool
        Keep every step (needed by :meth:`result` with ``every=True``).
    """

    def __init__(
        self,
        model,
        x,
        mask,
        *,
        method="pseudo-gibbs",
        init="noise",
        n_particles=None,
        generator=None,
        keep_history=True,
    ):
        self.n_particles = _check_method(method, n_particles)
        self.model, self.method, self.generator = model, method, generator
        self.keep_history = keep_history
        with torch.no_grad():
            self.x, self.mask = _prepare(model, x, mask)  # (B, D) each
            self._v, probs0 = _initial_fill(model, self.x, self.mask, init, generator)
        self._first = (self._v.clone(), probs0)
        self._t, self._probs, self._xi = 0, probs0, None
        self._accepts = torch.zeros(0, self.x.shape[0], dtype=torch.bool, device=self.x.device)
        self._history: list[tuple] = []
        self.ess = self.mean_imputation = None
        with torch.no_grad():
            if method == "mwg":
                self._xi = model.encode(self._v).rsample(generator=generator)  # xi_0, (B, K)
                self._params = model.decode(self._xi)  # its pixel parameters, (B, D)
            elif method == "importance":
                self._init_particles()

    # ---- public API
    @property
    def state(self) -> ChainState:
        return ChainState(
            self._t, self._display(self._v), self._probs, self._xi, self._accept_history()
        )

    @property
    def acceptance_rate(self) -> float | None:
        """MWG: fraction of accepted proposals so far (NaN before the first step); else None."""
        if self.method != "mwg":
            return None
        return float(self._accepts.float().mean()) if self._t else math.nan

    @torch.no_grad()
    def step(self) -> ChainState:
        """Advance one iteration: draw xi, then v_m ~ pi(v_m | h(xi)). Returns the new state."""
        if self.method == "pseudo-gibbs":
            xi = self.model.encode(self._v).rsample(generator=self.generator)  # (B, K)
            params, clamp = self.model.decode(xi), True  # (B, D)
        elif self.method == "mwg":
            (xi, params), clamp = self._mwg_xi(), False
        else:
            xi, params, clamp = *self._resample(), False
        probs, v = _pixels(self.model, params, self.generator, clamp=clamp)  # (B, D) each
        self._v = torch.where(self.mask, v, self.x)  # observed pixels never change
        self._probs = torch.where(self.mask, probs, self.x)
        self._xi, self._t = xi, self._t + 1
        if self.keep_history:
            self._history.append((self._display(self._v), self._probs, xi))
        return self.state

    def run(self, n_steps: int) -> ChainState:
        """Take ``n_steps`` steps; returns the final state."""
        for _ in range(n_steps):
            self.step()
        return self.state

    def result(self, every: bool = True) -> ImputationResult:
        """Everything so far as an :class:`ImputationResult` (all steps, or first and last)."""
        if every and len(self._history) != self._t:
            raise ConfigError("this chain kept no history; use result(every=False)")
        first = (self._display(self._first[0]), self._first[1])
        if every:
            rows = [first] + [(img, p) for img, p, _ in self._history]
            steps = torch.arange(self._t + 1)
            xi = torch.stack([h[2] for h in self._history]) if self._history else None
        else:
            rows = [first, (self._display(self._v), self._probs)]
            steps, xi = torch.tensor([0, self._t]), None
        return ImputationResult(
            images=torch.stack([r[0] for r in rows]),
            probs=torch.stack([r[1] for r in rows]),
            mask=self.mask,
            method=self.method,
            steps=steps,
            xi=xi,
            accept=self._accept_history(),
            acceptance_rate=self.acceptance_rate,
            ess=self.ess,
            mean_imputation=self.mean_imputation,
        )

    # ---- internals
    def _accept_history(self) -> torch.Tensor | None:
        """MWG: (t, B) bool, one row per step taken; None for the other methods."""
        if self.method != "mwg":
            return None
        return self._accepts

    def _display(self, v):
        """The chain state with missing pixels clipped to [0, 1] (Gaussian MWG runs unclipped)."""
        return torch.where(self.mask, v.clamp(0, 1), self.x)

    def _mwg_xi(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One Metropolis-within-Gibbs update of xi given the current v (Mattei & Frellsen).

        Returns xi_{t+1} (B, K) and its decoded pixel parameters (B, D). The decode of xi_t is
        kept from the previous step, so a step costs one encode and one decode.
        """
        model, v, xi_t = self.model, self._v, self._xi
        q = model.encode(v)  # q(xi | v_o, v_m), batch (B,)
        xi_new = q.rsample(generator=self.generator)  # (B, K)
        params_new = model.decode(xi_new)  # (B, D)
        log_prior = model.prior().log_prob
        # log p(v, xi) - log q(xi | v) = log pi(v | h(xi)) + log N(xi; 0, I) - log q   (eq. 6)
        log_r_new = (
            model.log_likelihood(v, xi_new, params=params_new)
            + log_prior(xi_new)
            - q.log_prob(xi_new)
        )  # (B,)
        log_r_old = (
            model.log_likelihood(v, xi_t, params=self._params) + log_prior(xi_t) - q.log_prob(xi_t)
        )  # (B,)
        u = torch.rand(log_r_new.shape, generator=self.generator, dtype=v.dtype, device=v.device)
        accept = torch.log(u) < log_r_new - log_r_old  # (B,)
        self._accepts = torch.cat([self._accepts, accept.unsqueeze(0)])  # (t, B)
        a = accept.unsqueeze(-1)
        self._params = torch.where(a, params_new, self._params)
        return torch.where(a, xi_new, xi_t), self._params

    def _init_particles(self) -> None:
        """Particles xi_p ~ q(xi | v_o, fill) and weights from the observed pixels only."""
        model, g = self.model, self.generator
        q = model.encode(self._v)  # batch (B,)
        xi = q.rsample((self.n_particles,), generator=g)  # (P, B, K)
        log_w = model.log_joint(self.x, xi, mask=~self.mask) - q.log_prob(xi)  # (P, B)
        w = torch.softmax(log_w, dim=0)  # (P, B), self-normalised
        self._particles, self._params = xi, model.decode(xi)  # (P, B, K), (P, B, D)
        self._weights = w
        self.ess = 1.0 / w.pow(2).sum(0)  # (B,)
        probs = model.observation(params=self._params).image_mean  # (P, B, D)
        mean = (w.unsqueeze(-1) * probs).sum(0)  # (B, D)
        self.mean_imputation = torch.where(self.mask, mean, self.x)

    def _resample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one particle per image with probabilities w: its xi (B, K) and params (B, D)."""
        idx = torch.multinomial(self._weights.T, 1, generator=self.generator).squeeze(1)  # (B,)
        b = torch.arange(idx.shape[0], device=idx.device)
        return self._particles[idx, b], self._params[idx, b]


def impute(
    model,
    x,
    mask,
    *,
    method="pseudo-gibbs",
    n_steps=15,
    init="noise",
    n_particles=None,
    generator=None,
    return_every=True,
) -> ImputationResult:
    """Impute the missing pixels of ``x`` with a chain of ``n_steps`` steps (sec. 5.4, app. F).

    Parameters
    ----------
    model : DLGM
    x : Tensor, (B, D) or (D,)
        Images in [0, 1]. Missing pixels may hold anything, NaN included; observed pixels
        must be finite.
    mask : Tensor of bool, (D,) or (B, D) (or any shape accepted by :func:`as_mask`)
        True = missing.
    method : {"pseudo-gibbs", "mwg", "importance"}
        See the module docstring.
    n_steps : int
        T >= 0, the number of steps (the paper shows 15).
    init : {"noise", "zeros", "mean", "pseudo-gibbs"} or Tensor
        Initial fill of the missing pixels (see :class:`ImputationChain`).
    n_particles : int, optional
        Importance particles per image (``method="importance"`` only; default 100).
    generator : torch.Generator, optional
    return_every : bool
        Keep every step (T+1 rows) or only the initial fill and the last step (2 rows).

    Returns
    -------
    ImputationResult
        ``images`` and ``probs`` of shape (T+1, B, D) (or (2, B, D)); a single image x of shape
        (D,) gives B = 1.
    """
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
        raise ConfigError(f"n_steps={n_steps!r}: must be an integer >= 0")
    chain = ImputationChain(
        model,
        x,
        mask,
        method=method,
        init=init,
        n_particles=n_particles,
        generator=generator,
        keep_history=return_every,
    )
    chain.run(int(n_steps))
    return chain.result(every=return_every)


# ---------------------------------------------------------------------------- metrics
def missing_error(result: ImputationResult, x_true, mask=None, *, eps: float = 1e-6) -> dict:
    """Per-step error of the imputation on the missing pixels only, per image then averaged.

    Parameters
    ----------
    result : ImputationResult
    x_true : Tensor or ndarray, (B, D) or (D,)
        The complete images (binary or grey levels in [0, 1]).
    mask : Tensor of bool, optional
        True = missing; ``result.mask`` by default.
    eps : float
        ``probs`` are clipped to [eps, 1 - eps] for the cross-entropy.

    Returns
    -------
    dict of ndarray
        ``cross_entropy``: mean over missing pixels of -[y log p + (1 - y) log(1 - p)], nats per
        missing pixel; ``accuracy``: fraction of missing pixels where ``p >= 0.5`` agrees with
        ``y >= 0.5`` (pixel accuracy for binary data); ``mse``: mean of (p - y)^2. Each is
        (T+1,) (mean over images with at least one missing pixel; NaN if none), with
        ``<name>_per_image`` (T+1, B) (NaN for an image with nothing missing) and
        ``<name>_sem`` (T+1,) (standard error over images; NaN for fewer than two).
        Also ``steps`` (T+1,) and ``n_missing`` (B,).
    """
    mask = result.mask if mask is None else as_mask(mask, result.probs.shape[-1])
    p = result.probs.detach().cpu().double()  # (T+1, B, D)
    y = torch.as_tensor(np.asarray(x_true) if not isinstance(x_true, torch.Tensor) else x_true)
    y = y.detach().cpu().double().reshape(-1, p.shape[-1]).expand(p.shape[1:])  # (B, D)
    m = mask.cpu().expand(p.shape[1:]).double()  # (B, D)
    if not torch.isfinite(y[m.bool()]).all():
        raise ShapeError("x_true has NaN or infinite values at missing pixels")
    y = torch.where(m.bool(), y, torch.zeros((), dtype=y.dtype))
    n = m.sum(-1)  # (B,)
    pc = p.clamp(eps, 1 - eps)
    per_pixel = {
        "cross_entropy": -(y * pc.log() + (1 - y) * (1 - pc).log()),  # (T+1, B, D)
        "accuracy": ((p >= 0.5) == (y >= 0.5)).double(),
        "mse": (p - y).pow(2),
    }
    valid = (n > 0).numpy()
    out = {"steps": result.steps.cpu().numpy(), "n_missing": n.numpy().astype(np.int64)}
    for name, e in per_pixel.items():
        per_image = ((e * m).sum(-1) / n).numpy()  # (T+1, B), NaN where n = 0
        per_image[:, ~valid] = np.nan
        good = per_image[:, valid]
        k = good.shape[1]
        out[name] = good.mean(1) if k else np.full(per_image.shape[0], np.nan)
        out[f"{name}_sem"] = (
            good.std(1, ddof=1) / math.sqrt(k) if k > 1 else np.full(per_image.shape[0], np.nan)
        )
        out[f"{name}_per_image"] = per_image
    return out
