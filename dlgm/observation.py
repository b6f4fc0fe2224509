"""The observation model pi(v | h_1) (paper eq. 4): how pixels are scored, drawn and averaged.

Symbols of the paper and their names here:

==============  =====================  ==========================================================
paper           code                   meaning
==============  =====================  ==========================================================
v               ``x``                  pixels, (..., D)
T_0(h_1)        ``params``             decoder output: Bernoulli logits or Gaussian means, (..., D)
pi(v | h_1)     ``BernoulliPixels``    Independent(Bernoulli(logits=params), 1): binary pixels
pi(v | h_1)     ``GaussianPixels``     Independent(Normal(params, sigma), 1): grey levels
sigma           ``exp(log_sigma)``     per-pixel standard deviation (learned), (D,)
==============  =====================  ==========================================================

Both are ``torch.distributions.Independent`` distributions with event shape (D,), so
``log_prob`` sums over pixels (nats per example). This is the one place where the likelihood's
formula lives: ``DLGM.log_likelihood``, ``sample_pixels``, ``pixel_mean``, importance sampling,
the grid posterior, imputation and wake-sleep's dreams all go through ``DLGM.observation``.

``log_prob`` uses the closed forms (Bernoulli: x l - softplus(l); Gaussian: -z^2 / 2 - log sigma
- log(2 pi) / 2), which are the training hot path; ``mask`` restricts the sum to some pixels
(NaN-safe: pixels outside the mask may hold anything, NaN included). ``sample`` takes a
``torch.Generator``. ``image_mean`` is E[v | xi] clipped to [0, 1] for display.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Independent, Normal

_LOG_2PI = math.log(2.0 * math.pi)

__all__ = ["BernoulliPixels", "GaussianPixels", "PIXEL_MODELS", "pixel_model"]


def _masked_sum(ll: torch.Tensor, mask) -> torch.Tensor:
    if mask is not None:
        ll = torch.where(mask.bool(), ll, 0.0)  # not ll * mask: NaN at masked pixels stays out
    return ll.sum(-1)


class BernoulliPixels(Independent):
    """pi(v | h) = prod_d Bernoulli(v_d; sigmoid(l_d)), event shape (D,).

    Parameters
    ----------
    logits : Tensor, (..., D)
        The decoder output l = T_0(h_1).
    """

    binary = True

    def __init__(self, logits: torch.Tensor):
        self.params = logits
        super().__init__(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)

    def log_prob(self, x, mask=None) -> torch.Tensor:
        """log pi(x | h) in nats, summed over pixels (only where ``mask`` is true), (...)."""
        l = self.params
        if mask is None:  # log Bernoulli(x; sigmoid(l)) = x l - softplus(l), summed
            return (l * x).sum(-1) - F.softplus(l).sum(-1)
        return _masked_sum(x * l - F.softplus(l), mask)

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(self.params)

    @property
    def image_mean(self) -> torch.Tensor:
        """E[v | h], pixel probabilities in [0, 1], (..., D)."""
        return self.mean

    def sample(self, sample_shape=torch.Size(), generator=None, *, clip=False) -> torch.Tensor:
        """Binary pixels v ~ pi(v | h), (*sample_shape, ..., D); ``clip`` changes nothing."""
        probs = self.mean.expand(self._extended_shape(sample_shape))
        return torch.bernoulli(probs, generator=generator)

    def linear_form(self):
        """log pi(x | h) = x . lin + const (quadratic part None), for many x at once."""
        return self.params, -F.softplus(self.params).sum(-1), None


class GaussianPixels(Independent):
    """pi(v | h) = prod_d N(v_d; m_d, sigma_d^2), event shape (D,).

    Parameters
    ----------
    loc : Tensor, (..., D)
        The decoder output m = T_0(h_1).
    log_sigma : Tensor, (D,)
        Log standard deviations (a parameter of the model).
    """

    binary = False

    def __init__(self, loc: torch.Tensor, log_sigma: torch.Tensor):
        self.params, self.log_sigma = loc, log_sigma
        super().__init__(
            Normal(loc, torch.exp(log_sigma), validate_args=False), 1, validate_args=False
        )

    def log_prob(self, x, mask=None) -> torch.Tensor:
        """log pi(x | h) in nats, summed over pixels (only where ``mask`` is true), (...)."""
        z = (x - self.params) * torch.exp(-self.log_sigma)
        return _masked_sum(-0.5 * (z.pow(2) + _LOG_2PI) - self.log_sigma, mask)

    @property
    def mean(self) -> torch.Tensor:
        return self.params

    @property
    def image_mean(self) -> torch.Tensor:
        """E[v | h] clipped to [0, 1] for display, (..., D)."""
        return self.params.clamp(0, 1)

    def sample(self, sample_shape=torch.Size(), generator=None, *, clip=False) -> torch.Tensor:
        """v ~ pi(v | h), (*sample_shape, ..., D). ``clip=True`` clips to [0, 1] for display
        (then a draw from a censored Gaussian, not from pi)."""
        shape = self._extended_shape(sample_shape)
        noise = torch.randn(
            shape, generator=generator, dtype=self.params.dtype, device=self.params.device
        )
        v = self.params + noise * torch.exp(self.log_sigma)
        return v.clamp(0, 1) if clip else v

    def linear_form(self):
        """log pi(x | h) = x . lin + sum(quad * x^2) + const, for many x at once."""
        inv_var = torch.exp(-2 * self.log_sigma)  # (D,)
        d = self.params.shape[-1]
        const = (
            -0.5 * (self.params.pow(2) * inv_var).sum(-1)
            - self.log_sigma.sum()
            - 0.5 * d * _LOG_2PI
        )
        return self.params * inv_var, const, -0.5 * inv_var


# ``DLGMConfig.likelihood`` -> its observation model (``binary``: whether data is binarised).
PIXEL_MODELS = {"bernoulli": BernoulliPixels, "gaussian": GaussianPixels}


def pixel_model(likelihood: str, params: torch.Tensor, log_sigma=None):
    """The observation distribution named by ``DLGMConfig.likelihood`` for decoder output
    ``params`` (..., D); ``log_sigma`` (D,) for Gaussian pixels."""
    cls = PIXEL_MODELS[likelihood]
    return cls(params) if cls.binary else cls(params, log_sigma)
