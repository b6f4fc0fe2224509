"""Sampling a DLGM: ancestral samples (eq. 2-4) and resampling the lower layers.

Symbols of the paper and their names here:

==============  ==============  ===============================================================
paper           code            meaning
==============  ==============  ===============================================================
xi_l            ``xi`` (split)  latent noise of layer l, N(0, I); concatenated (..., K)
l = 1 .. L      ``layer``       1 is nearest the data, L the top (as in the paper)
E[v | h(xi)]    ``probs``       pixel probabilities (Bernoulli) or clipped means (Gaussian)
v ~ pi(v | h)   ``binary``      sampled pixels: 0/1 (Bernoulli) or values in [0, 1] (Gaussian)
==============  ==============  ===============================================================
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .errors import ConfigError, ShapeError

__all__ = ["Samples", "ancestral", "layer_influence", "resample_from_layer"]


class Samples(NamedTuple):
    """Samples of a DLGM; unpacks as ``probs, binary, xi``.

    Attributes
    ----------
    probs : Tensor, (n, D)
        E[v | h(xi)]: pixel probabilities (Bernoulli) or means clipped to [0, 1] (Gaussian).
    binary : Tensor, (n, D)
        v ~ pi(v | h(xi)): binary pixels (Bernoulli) or Gaussian draws clipped to [0, 1].
    xi : Tensor, (n, K)
        The latent noise, all layers concatenated (layer 1 first).
    """

    probs: torch.Tensor
    binary: torch.Tensor
    xi: torch.Tensor


def _decode_and_sample(model, xi, generator) -> Samples:
    pi = model.observation(xi)  # one decode: the same values as pixel_mean and sample_pixels
    return Samples(pi.image_mean, pi.sample(generator=generator, clip=True), xi)


@torch.no_grad()
def ancestral(model, n: int, *, generator: torch.Generator | None = None) -> Samples:
    """Ancestral samples (eq. 2-4): xi ~ N(0, I), h = h(xi), v ~ pi(v | h).

    Parameters
    ----------
    model : DLGM
    n : int
        Number of samples, >= 1.
    generator : torch.Generator, optional

    Returns
    -------
    Samples
        ``(probs (n, D), binary (n, D), xi (n, K))``.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n={n!r}: the number of samples must be an integer >= 1")
    xi = model.prior().rsample((int(n),), generator=generator)  # (n, K)
    return _decode_and_sample(model, xi, generator)


@torch.no_grad()
def resample_from_layer(
    model, xi, layer: int, *, n: int | None = None, generator: torch.Generator | None = None
) -> Samples:
    """Keep xi_{l+1}, ..., xi_L fixed, redraw xi_1, ..., xi_l from N(0, I) and decode.

    Shows what each layer encodes: the top layers fix the "identity" of a sample, the lower
    ones its variations (eq. 3: h_l = T_l(h_{l+1}) + G_l xi_l).

    Parameters
    ----------
    model : DLGM
    xi : Tensor, (K,) or (n, K)
        Latents to start from (all layers concatenated, layer 1 first).
    layer : int
        l in 1..L (1 = nearest the data, L = top). ``layer = L`` resamples everything.
    n : int, optional
        With ``xi`` of shape (K,): draw ``n`` variations of it. Default: one per row of ``xi``.
    generator : torch.Generator, optional

    Returns
    -------
    Samples
        ``(probs (n, D), binary (n, D), new_xi (n, K))``; ``new_xi[:, K_1 + ... + K_l:]``
        equals the given upper layers.
    """
    L = len(model.config.n_latent)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 1 <= layer <= L:
        raise ConfigError(
            f"layer={layer!r}: must be an integer in [1, {L}] (1 = nearest the data, {L} = top)"
        )
    xi = torch.as_tensor(xi, dtype=model.head_loc.weight.dtype, device=model.head_loc.weight.device)
    if xi.dim() not in (1, 2) or xi.shape[-1] != model.latent_dim or xi.numel() == 0:
        raise ShapeError(
            f"xi has shape {tuple(xi.shape)}; expected ({model.latent_dim},) or "
            f"(n, {model.latent_dim})"
        )
    if not torch.isfinite(xi).all():
        raise ShapeError("xi contains NaN or infinite values")
    xi = xi.reshape(-1, model.latent_dim)  # (n, K)
    if n is not None:
        if not isinstance(n, (int, np.integer)) or n < 1 or xi.shape[0] != 1:
            raise ConfigError(f"n={n!r}: give an integer >= 1, with a single xi of shape (K,)")
        xi = xi.expand(int(n), -1)
    k_low = sum(model.config.n_latent[:layer])  # K_1 + ... + K_l
    low = torch.randn(
        xi.shape[0], k_low, generator=generator, dtype=xi.dtype, device=xi.device
    )  # (n, K_1 + ... + K_l)
    new_xi = torch.cat([low, xi[:, k_low:]], dim=-1)  # (n, K)
    return _decode_and_sample(model, new_xi, generator)


@torch.no_grad()
def layer_influence(model, n: int = 2000, *, generator: torch.Generator | None = None) -> list:
    """How far each stochastic layer moves the generated pixels: for l = 1..L, the mean over
    ``n`` ancestral draws and over pixels of |E[v | h(xi')] - E[v | h(xi)]|, where xi' is xi
    with xi_l alone drawn again from N(0, I).

    0 for a layer that the generative model ignores (a "collapsed" layer: with G_L = 0, or a
    T_l that is constant, h_1 does not depend on xi_l), whatever the recognition model does
    with it; at most 1 (probabilities and clipped means lie in [0, 1]). Resampling from an
    unused top layer down varies a sample no more than resampling from the layer below it.

    Parameters
    ----------
    model : DLGM
    n : int
        Number of ancestral draws, >= 1.
    generator : torch.Generator, optional

    Returns
    -------
    list of float
        One value per layer, layer 1 (nearest the data) first.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n={n!r}: must be an integer >= 1")
    p = model.head_loc.weight
    xi = torch.randn(int(n), model.latent_dim, generator=generator, dtype=p.dtype, device=p.device)
    redraw = torch.randn(xi.shape, generator=generator, dtype=p.dtype, device=p.device)
    base = model.pixel_mean(xi)  # (n, D)
    out = []
    for layer in range(len(model.config.n_latent)):
        parts = model.split(xi)
        parts[layer] = model.split(redraw)[layer]
        moved = model.pixel_mean(torch.cat(parts, dim=-1))  # (n, D)
        out.append(float((moved - base).abs().mean()))
    return out
