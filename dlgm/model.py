"""Deep Latent Gaussian Models (paper eq. 1-6) with a Gaussian recognition model (eq. 12).

Symbols of the paper and their names here:

=============  ==================  ==============================================================
paper          code                meaning
=============  ==================  ==============================================================
v              ``x``               an observation, flattened: (B, D) floats in [0, 1]
xi_l           ``xi`` (split)      latent noise of layer l, N(0, I); all layers concatenated (K,)
G_l            ``self.G[l]``       (K_l, K_l) matrix: h_l = T_l(h_{l+1}) + G_l xi_l   (eq. 3)
T_l            ``self.T[l]``       MLP from h_{l+1} to h_l (T_0: h_1 -> pixel parameters)
h_l            ``h``               hidden state of stochastic layer l
pi(v | h_1)    ``observation``     Bernoulli (logits) or Gaussian (mean, learned variance)
theta^g        generative params   T, G, (log_sigma); weak prior ||theta^g||^2 / (2 kappa)
q(xi | v)      ``encode``          Gaussian, covariance diag / rank1 / rank1-joint (eq. 12, 19)
=============  ==================  ==============================================================

Layer 1 is nearest the data and layer L the top, as in the paper. ``xi`` concatenates
``(xi_1, ..., xi_L)``. All log-densities are in nats and summed over pixels and latents, per
example. The module does no I/O: ``dlgm.save(model, path)`` and ``dlgm.load`` live in
``checkpoint.py``, which imports this module (never the reverse).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, kl_divergence

from ._validate import binarization_for
from .errors import ConfigError, ShapeError
from .observation import PIXEL_MODELS, pixel_model
from .posteriors import DiagonalNormal, RankOneNormal, StandardNormal, layer_kl, soft_cap_u

COVARIANCES = ("diag", "rank1", "rank1-joint")
LIKELIHOODS = tuple(PIXEL_MODELS)  # ("bernoulli", "gaussian")
INPUT_ACTIVATIONS = (None, "relu", "probit")
_LOG_2PI = math.log(2.0 * math.pi)
_MAX_UNITS = 100_000
U_INIT_STD = 1e-3  # std of the u head's initial weights: u starts near 0, where F is even in u


@dataclass
class DLGMConfig:
    """The shape of a DLGM: everything needed to rebuild it from a checkpoint.

    Parameters
    ----------
    data_shape : tuple of int
        Image shape (H, W); D = H * W pixels.
    n_latent : tuple of int
        K_1, ..., K_L: latents per stochastic layer, layer 1 (nearest the data) first.
    gen_hidden : tuple of int
        Hidden widths of every generative MLP T_l (ReLU). ``()`` makes T_l affine.
    rec_hidden : tuple of int
        Hidden widths of the recognition MLP (ReLU).
    covariance : {"diag", "rank1", "rank1-joint"}
        Recognition covariance: diagonal, rank-one-plus-diagonal precision per layer, or one
        rank-one-plus-diagonal precision over all layers (eq. 19-21).
    likelihood : {"bernoulli", "gaussian"}
        Observation model pi(v | h_1): binary pixels, or Gaussian with learned per-pixel variance.
    kappa : float or None
        Variance of the Gaussian prior on generative weights; ``None`` for no prior.
    input_activation : {None, "relu", "probit"}
        An elementwise nonlinearity f applied to h_l where it enters T_{l-1}: T(h) = MLP(f(h)).
        With ``gen_hidden=()`` this is the non-linear Gaussian belief network of Frey & Hinton
        (1999), T(h) = A f(h) + b (sec. 2); ``None`` with ``gen_hidden=()`` is factor analysis
        (with Bernoulli pixels, a linear-logit model).
    u_cap : float or None
        Rank-one covariances only: a smooth bound on u^T D^{-1} u per block (the recognition
        model's u is rescaled so that s becomes ``u_cap * tanh(s / u_cap)``; ``soft_cap_u``),
        which keeps eta above ``1 / (1 + u_cap)``. ``None``: no bound (eq. 19-21 as written).
    """

    data_shape: tuple = (28, 28)
    n_latent: tuple = (2,)
    gen_hidden: tuple = (200, 200)
    rec_hidden: tuple = (200, 200)
    covariance: str = "diag"
    likelihood: str = "bernoulli"
    kappa: float | None = 1.0
    input_activation: str | None = None
    u_cap: float | None = None

    def __post_init__(self):
        for name in ("data_shape", "n_latent", "gen_hidden", "rec_hidden"):
            value = tuple(int(v) for v in getattr(self, name))
            setattr(self, name, value)
            if any(v < 1 or v > _MAX_UNITS for v in value):
                raise ConfigError(f"{name}={value}: every size must be in [1, {_MAX_UNITS}]")
        if not self.n_latent:
            raise ConfigError("n_latent must name at least one stochastic layer, e.g. (2,)")
        if not self.rec_hidden:
            raise ConfigError("rec_hidden must name at least one hidden layer, e.g. (200,)")
        if not 1 <= len(self.data_shape) <= 3:
            raise ConfigError(f"data_shape={self.data_shape}: give (H, W) or (D,)")
        if self.covariance not in COVARIANCES:
            raise ConfigError(f"covariance={self.covariance!r}: choose one of {COVARIANCES}")
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"likelihood={self.likelihood!r}: choose one of {LIKELIHOODS}")
        if self.input_activation not in INPUT_ACTIVATIONS:
            raise ConfigError(
                f"input_activation={self.input_activation!r}: choose one of {INPUT_ACTIVATIONS}"
            )
        if self.kappa is not None and not (self.kappa > 0 and math.isfinite(self.kappa)):
            raise ConfigError(f"kappa={self.kappa}: must be a finite number > 0, or None")
        if self.u_cap is not None:
            if isinstance(self.u_cap, bool) or not isinstance(self.u_cap, (int, float)):
                raise ConfigError(f"u_cap={self.u_cap!r}: must be a number > 0, or None")
            if not (self.u_cap > 0 and math.isfinite(self.u_cap)):
                raise ConfigError(f"u_cap={self.u_cap}: must be a finite number > 0, or None")
            if self.covariance == "diag":
                raise ConfigError(
                    "u_cap bounds the rank-one term: it needs covariance rank1 or "
                    "rank1-joint, not diag"
                )
            self.u_cap = float(self.u_cap)

    @property
    def n_pixels(self) -> int:
        return math.prod(self.data_shape)

    @property
    def binary(self) -> bool:
        """Whether pi(v | h) is over binary pixels (Bernoulli), so that data is binarised."""
        return binarization_for(self.likelihood) != "none"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DLGMConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


class _Probit(nn.Module):
    """The standard normal CDF, elementwise: Phi(h) = (1 + erf(h / sqrt 2)) / 2."""

    def forward(self, h):
        return 0.5 * (1.0 + torch.erf(h * (1.0 / math.sqrt(2.0))))


def _mlp(sizes, final_activation=False, input_activation=None):
    layers = {"relu": [nn.ReLU()], "probit": [_Probit()], None: []}[input_activation]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _mlp_shapes(prefix, sizes, input_activation=None) -> dict:
    """The parameter shapes of ``_mlp(sizes, ..., input_activation)`` under ``prefix``."""
    first = 0 if input_activation is None else 1  # the input activation is module 0
    shapes = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        index = first + 2 * i  # each Linear is followed by a ReLU (but maybe the last)
        shapes[f"{prefix}.{index}.weight"] = (n_out, n_in)
        shapes[f"{prefix}.{index}.bias"] = (n_out,)
    return shapes


def parameter_shapes(config: DLGMConfig) -> dict[str, tuple[int, ...]]:
    """The shapes of ``DLGM(config).state_dict()``, computed from the config alone.

    ``dlgm.load`` checks a checkpoint's tensors against these before building anything, so a
    hostile config allocates nothing (building on the meta device did the same but imported
    ``torch._dynamo``: seconds). ``tests/test_model.py`` checks both routes agree."""
    c = config
    ks, f = c.n_latent, c.input_activation
    shapes = _mlp_shapes("T.0", (ks[0], *c.gen_hidden, c.n_pixels), f)
    for l in range(len(ks) - 1):
        shapes.update(_mlp_shapes(f"T.{l + 1}", (ks[l + 1], *c.gen_hidden, ks[l]), f))
    shapes.update({f"G.{l}": (k, k) for l, k in enumerate(ks)})
    if c.likelihood == "gaussian":
        shapes["log_sigma"] = (c.n_pixels,)
    shapes.update(_mlp_shapes("trunk", (c.n_pixels, *c.rec_hidden)))
    K, width = sum(ks), c.rec_hidden[-1]
    heads = ("head_loc", "head_d") + (("head_u",) if c.covariance != "diag" else ())
    for head in heads:
        shapes[f"{head}.weight"] = (K, width)
        shapes[f"{head}.bias"] = (K,)
    return shapes


class DLGM(nn.Module):
    """A deep latent Gaussian model with its recognition model.

    Attributes
    ----------
    config : DLGMConfig
    latent_dim : int
        K = sum of K_l.
    data_shape : tuple of int
    metadata : dict
        JSON-serialisable facts saved with the model (data set, binarisation, metrics, history).

    Parameters
    ----------
    config : DLGMConfig
    metadata : dict, optional
    seed : int, optional
        Seed of the weight initialisation (from a private stream).
    """

    def __init__(self, config: DLGMConfig, metadata: dict | None = None, seed: int | None = None):
        super().__init__()
        if seed is not None:  # initialise from a private stream; the global RNG is untouched
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.__init__(config, metadata)
            return
        self.config = config
        self.metadata = dict(metadata or {})
        c = config
        ks = c.n_latent
        self.latent_dim = sum(ks)
        self.data_shape = tuple(c.data_shape)
        self.n_pixels = c.n_pixels
        # Generative model: T_0 maps h_1 to pixel parameters, T_l maps h_{l+1} to h_l.
        f = c.input_activation
        self.T = nn.ModuleList(
            [_mlp((ks[0], *c.gen_hidden, self.n_pixels), input_activation=f)]
            + [
                _mlp((ks[l + 1], *c.gen_hidden, ks[l]), input_activation=f)
                for l in range(len(ks) - 1)
            ]
        )
        self.G = nn.ParameterList([nn.Parameter(torch.eye(k)) for k in ks])
        if c.likelihood == "gaussian":
            self.log_sigma = nn.Parameter(torch.full((self.n_pixels,), math.log(0.1)))
        # Recognition model: a shared ReLU trunk, then mu, d (and u) for every layer.
        self.trunk = _mlp((self.n_pixels, *c.rec_hidden), final_activation=True)
        width = c.rec_hidden[-1]
        self.head_loc = nn.Linear(width, self.latent_dim)
        self.head_d = nn.Linear(width, self.latent_dim)
        nn.init.constant_(self.head_d.bias, math.log(math.e - 1.0))  # softplus -> d = 1
        if c.covariance != "diag":
            self.head_u = nn.Linear(width, self.latent_dim)
            nn.init.normal_(self.head_u.weight, std=U_INIT_STD)
            nn.init.zeros_(self.head_u.bias)

    # ------------------------------------------------------------------ helpers
    def generative_parameters(self):
        """theta^g: the parameters that the weight prior of eq. 13 applies to."""
        yield from self.T.parameters()
        yield from self.G.parameters()

    def recognition_parameters(self):
        yield from self.trunk.parameters()
        yield from self.head_loc.parameters()
        yield from self.head_d.parameters()
        if hasattr(self, "head_u"):
            yield from self.head_u.parameters()

    def split(self, xi: torch.Tensor) -> list[torch.Tensor]:
        """Split concatenated xi (..., K) into [xi_1, ..., xi_L]."""
        return list(xi.split(self.config.n_latent, dim=-1))

    def prior(self) -> StandardNormal:
        """p(xi) = N(0, I) over the concatenated latents."""
        p = self.head_loc.weight
        return StandardNormal(self.latent_dim, dtype=p.dtype, device=p.device)

    def check_input(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Validate a batch of observations: shape (B, D), finite floats. Returns it as float."""
        if not isinstance(x, torch.Tensor):
            raise ShapeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[-1] != self.n_pixels:
            raise ShapeError(
                f"{name} has shape {tuple(x.shape)}; expected (B, {self.n_pixels}) "
                f"for images of shape {self.data_shape}"
            )
        x = x.to(self.head_loc.weight.dtype)
        if not torch.isfinite(x).all():
            raise ShapeError(f"{name} contains NaN or infinite values")
        return x

    # ------------------------------------------------------------------ generative model
    def hidden(self, xi: torch.Tensor) -> torch.Tensor:
        """Top-down pass (eq. 2-3): h_L = G_L xi_L, h_l = T_l(h_{l+1}) + G_l xi_l; returns h_1."""
        parts = self.split(xi)
        h = parts[-1] @ self.G[-1].T  # (..., K_L)
        for l in range(len(parts) - 2, -1, -1):
            h = self.T[l + 1](h) + parts[l] @ self.G[l].T  # (..., K_l)
        return h

    def decode(self, xi: torch.Tensor) -> torch.Tensor:
        """Pixel parameters T_0(h_1(xi)): Bernoulli logits or Gaussian means, (..., D)."""
        return self.T[0](self.hidden(xi))

    def observation(self, xi=None, *, params=None):
        """The observation model pi(v | h(xi)) (eq. 4) as a ``torch.distributions``
        distribution with event shape (D,): ``Independent(Bernoulli(logits), 1)``
        (:class:`~dlgm.observation.BernoulliPixels`) or ``Independent(Normal(mean, sigma), 1)``
        (:class:`~dlgm.observation.GaussianPixels`).

        Parameters
        ----------
        xi : Tensor, (..., K), optional
            Latent noise; decoded here unless ``params`` is given.
        params : Tensor, (..., D), optional
            ``self.decode(xi)`` if already computed.
        """
        out = self.decode(xi) if params is None else params
        return pixel_model(self.config.likelihood, out, getattr(self, "log_sigma", None))

    def pixel_mean(self, xi: torch.Tensor) -> torch.Tensor:
        """E[v | xi]: pixel probabilities (Bernoulli) or clipped means (Gaussian), (..., D)."""
        return self.observation(xi).image_mean

    def log_likelihood(self, x, xi, mask=None, *, params=None) -> torch.Tensor:
        """log pi(x | h(xi)) in nats, summed over pixels (only where ``mask`` is true).

        Parameters
        ----------
        x : Tensor, (B, D)
        xi : Tensor, (..., B, K)
        mask : Tensor of bool, (B, D) or (D,), optional
            Pixels to include (e.g. the observed ones); all by default. Pixels outside it may
            hold anything, NaN included.
        params : Tensor, (..., B, D), optional
            ``self.decode(xi)`` if already computed.

        Returns
        -------
        Tensor, (..., B)
        """
        return self.observation(xi, params=params).log_prob(x, mask)

    def log_joint(self, x, xi, mask=None) -> torch.Tensor:
        """log p(x, xi) = log pi(x | h(xi)) + log N(xi; 0, I) (eq. 6), nats per example.

        ``xi`` of shape (B, K) gives (B,); (S, B, K) gives (S, B).
        """
        log_prior = -0.5 * (xi.pow(2).sum(-1) + self.latent_dim * _LOG_2PI)
        return self.log_likelihood(x, xi, mask) + log_prior

    def sample_pixels(self, xi, generator=None) -> torch.Tensor:
        """Draw v ~ pi(v | h(xi)): binary pixels, or Gaussian values clipped to [0, 1] for
        display (the clipping makes them a draw from a censored Gaussian, not from pi)."""
        return self.observation(xi).sample(generator=generator, clip=True)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral samples: pixel probabilities (or means) E[v | xi], xi ~ N(0, I); (n, D)."""
        xi = (
            self.prior().sample((n,))
            if generator is None
            else self.prior().rsample((n,), generator=generator)
        )
        return self.pixel_mean(xi)

    # ------------------------------------------------------------------ recognition model
    def _encode(self, x: torch.Tensor) -> Distribution:
        a = self.trunk(x)  # (B, H)
        loc = self.head_loc(a)  # (B, K)
        d = F.softplus(self.head_d(a)) + 1e-4  # precision diagonal, (B, K)
        if self.config.covariance == "diag":
            return DiagonalNormal(loc, d.rsqrt(), validate_args=False)  # no checks: hot path
        blocks = None if self.config.covariance == "rank1-joint" else self.config.n_latent
        u = self.head_u(a)
        if self.config.u_cap is not None:
            u = soft_cap_u(d, u, self.config.u_cap, blocks)
        return RankOneNormal(loc, d, u, blocks=blocks, validate_args=False)

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(xi | x): a Distribution with batch_shape (B,) and event_shape (K,).

        Parameters
        ----------
        x : Tensor, (B, D)
            Observations in [0, 1].
        """
        return self._encode(self.check_input(x))

    # ------------------------------------------------------------------ objective
    def weight_penalty(self) -> torch.Tensor:
        """||theta^g||^2 / (2 kappa) (eq. 13), or 0 when kappa is None; scalar, nats."""
        if self.config.kappa is None:
            return self.head_loc.weight.new_zeros(())
        sq = sum(p.pow(2).sum() for p in self.generative_parameters())
        return sq / (2.0 * self.config.kappa)

    @torch.no_grad()
    def add_prior_gradient(self, n_data: int) -> None:
        """Add the gradient of the weight prior's per-example share, ||theta^g||^2 / (2 kappa N)
        (eq. 13-14), to the ``.grad`` of the generative parameters: theta^g / (kappa N), in one
        fused op. Called after ``backward`` of ``free_energy(...)["loss"]`` (``Trainer``) or of
        the wake loss (wake-sleep): the same update as putting the prior in the loss, without
        squaring every generative weight in the autograd graph at every step.

        Parameters
        ----------
        n_data : int
            N, the number of training examples.
        """
        kappa = self.config.kappa
        if kappa is None:
            return
        params = [p for p in self.generative_parameters() if p.grad is not None]
        torch._foreach_add_([p.grad for p in params], params, alpha=1.0 / (kappa * n_data))

    def free_energy(
        self,
        x,
        *,
        n_samples=1,
        x_rec=None,
        eps=None,
        xi_noise=None,
        generator=None,
        kl_weight=None,
        free_bits=None,
    ) -> dict:
        """The data terms of the free energy of eq. 13 on a minibatch, per example, in nats.

        Training (``dlgm.train.Trainer``, Algorithm 1) minimises, per example,

            F = -E_q[log pi(v | h(xi))] + KL(q(xi|v) || N(0, I)) + ||theta^g||^2 / (2 kappa N)

        with N the training-set size: ``loss`` below is the mean of the first two terms over
        the batch; the weight prior (third term) enters through its gradient, which
        :meth:`add_prior_gradient` adds after ``loss.backward()``. Its value is
        ``weight_penalty() / N`` (``Trainer`` adds it to the free energy it reports).

        Parameters
        ----------
        x : Tensor, (B, D)
            The minibatch (not validated: this is the training hot path).
        n_samples : int
            S, samples of xi per example for the reconstruction term (ignored if ``eps``).
        x_rec : Tensor, (B, D), optional
            Input to the recognition model (a noisy copy of x for regularisation, sec. 4.1).
        eps : Tensor, (S, B, K), optional
            Standard normal noise for xi = mu + R eps (drawn from ``generator`` if not given).
        xi_noise : Tensor, (S, B, K), optional
            Extra Gaussian noise added to the recognition samples (sec. 4.1).
        kl_weight : float or Tensor, optional
            beta in ``loss = -(E_q log pi(x|h) - beta KL)``: a KL warm-up (Bowman et al. 2016;
            Sonderby et al. 2016) trains on beta < 1 for its first epochs (``Trainer``'s
            ``kl_warmup``). None (the default) is beta = 1, the free energy itself. ``elbo``
            is the true ELBO whatever beta.
        free_bits : float, optional
            lambda > 0: "free bits" per stochastic layer (Kingma et al. 2016), the KL term
            becomes ``KL + sum_l max(0, lambda - KL_l)`` with KL_l the batch mean of layer l's
            marginal KL (``dlgm.posteriors.layer_kl``): a layer's KL below lambda nats is not
            pulled down, so the prior cannot switch a layer off; above lambda it is the free
            energy again. Times beta under a warm-up. None (the default): no floor. ``elbo``
            is the true ELBO whatever lambda.

        Returns
        -------
        dict with ``loss`` (scalar to minimise: -``elbo``, or its warm-up version, with its
        autograd graph), ``elbo`` (mean of E_q log pi(x|h) - KL over the batch), ``rec`` and
        ``kl`` (batch means), the last three detached.
        """
        q = self._encode(x if x_rec is None else x_rec)
        if eps is None:
            xi = q.rsample((n_samples,), generator=generator)  # (S, B, K)
        else:
            xi = q.reparameterize(eps)  # (S, B, K)
        if xi_noise is not None:
            xi = xi + xi_noise
        rec = self.log_likelihood(x, xi).mean(0)  # (B,)
        kl = kl_divergence(q, self.prior())  # (B,), analytic (eq. 13)
        elbo = (rec - kl).mean()
        if free_bits:
            floor = torch.relu(free_bits - layer_kl(q, self.config.n_latent).mean(0)).sum()
            kl_term = kl.mean() + floor
            loss = -(rec.mean() - (1.0 if kl_weight is None else kl_weight) * kl_term)
        else:
            loss = -elbo if kl_weight is None else -(rec - kl_weight * kl).mean()
        return {
            "loss": loss,
            "elbo": elbo.detach(),
            "rec": rec.mean().detach(),
            "kl": kl.mean().detach(),
        }

    def forward(self, x, **kwargs) -> dict:
        """``free_energy`` (so that DistributedDataParallel can wrap the model)."""
        return self.free_energy(x, **kwargs)

    @torch.no_grad()
    def elbo(self, x, *, n_samples=1, batch_size=1000, generator=None) -> torch.Tensor:
        """Per-example ELBO E_q[log p(x, xi) - log q(xi|x)] (analytic KL), nats, shape (B,)."""
        x = self.check_input(x)
        out = []
        for xb in x.split(batch_size):
            q = self._encode(xb)
            xi = q.rsample((n_samples,), generator=generator)
            out.append(self.log_likelihood(xb, xi).mean(0) - kl_divergence(q, self.prior()))
        return torch.cat(out)
