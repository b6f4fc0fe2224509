"""Likelihoods page: the live importance-sampled estimate of log p(v) and Table 1's chart."""

from __future__ import annotations

import numpy as np
import torch

import dlgm
from app.cache import cache_data, cache_resource
from app.figures.curves import k_curve_figure, nll_histogram_figure, table1_figure
from app.figures.images import image_gallery_figure
from app.figures.style import freeze
from app.limits import MAX_K
from app.session import Entry, pretrained_entry, pretrained_names, seen_test_images
from dlgm.likelihood import log_likelihood

K_CHOICES = tuple(k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if k <= MAX_K)
N_WORST = 12


def live_defaults(n_max: int) -> tuple[int, int, int]:
    """The live estimate's default (test images, K, seed) for a data set of ``n_max`` images."""
    return min(200, n_max), min(100, K_CHOICES[-1]), 0


def _images(model: dlgm.DLGM, data_name: str, n_images: int) -> torch.Tensor:
    """The first ``n_images`` test images as ``model`` sees them, a copy for torch."""
    return torch.tensor(seen_test_images(model, data_name)[0].x[:n_images])


@cache_data(show_spinner=False, max_entries=256)
def log_px(model: dlgm.DLGM, data_name: str, n_images: int, k: int, seed: int) -> np.ndarray:
    """Importance-sampled log p(v) per test image (nats), K = ``k`` samples; (n_images,)."""
    g = torch.Generator().manual_seed(seed * 100_003 + k)
    x = _images(model, data_name, n_images)
    return log_likelihood(model, x, n_samples=k, generator=g).double().numpy()


@cache_data(show_spinner=False, max_entries=64)
def elbo(model: dlgm.DLGM, data_name: str, n_images: int, seed: int) -> np.ndarray:
    """Per-image ELBO (analytic KL, 10 samples for the reconstruction), nats; (n_images,)."""
    g = torch.Generator().manual_seed(seed)
    return (
        model.elbo(_images(model, data_name, n_images), n_samples=10, generator=g).double().numpy()
    )


@cache_resource(show_spinner=False, max_entries=64)
def live_results(
    model: dlgm.DLGM,
    name: str,
    data_name: str,
    n_images: int,
    k: int,
    seed: int,
    k_choices: tuple[int, ...] = K_CHOICES,
    n_worst: int = N_WORST,
) -> dict:
    """The page's live estimate for one model and setting: mean log p(v) at K = ``k`` and the
    mean ELBO (nats) and its three figures, frozen. Each K's per-image estimates come from
    :func:`log_px`, so raising K computes only the new K."""
    ks = [kk for kk in k_choices if kk <= k]
    curves = [log_px(model, data_name, n_images, kk, seed) for kk in ks]
    mean_elbo = float(elbo(model, data_name, n_images, seed).mean())
    last = curves[-1]
    means = np.array([c.mean() for c in curves])
    nll = -last
    worst = np.argsort(nll)[::-1][:n_worst]
    images = seen_test_images(model, data_name)[0].x[worst].reshape(-1, *model.data_shape)
    labels = [f"#{i}: {nll[i]:.1f}" for i in worst]
    return dict(
        log_px_mean=float(last.mean()),
        elbo_mean=mean_elbo,
        k_curve=freeze(
            k_curve_figure(
                np.array(ks),
                means,
                mean_elbo,
                chosen=k,
                title=f"Importance-sampled log p(v) against K, {name}",
            )
        ),
        histogram=freeze(nll_histogram_figure(nll, title=f"Per-example test NLL, K = {k}")),
        worst=freeze(
            image_gallery_figure(
                images, labels, n_cols=4, title="Worst-modelled test images (NLL, nats)"
            )
        ),
    )


@cache_resource(show_spinner=False, max_entries=32)
def table1_chart(rows: tuple[tuple[tuple[str, str], ...], ...], _rows: list[dict]):
    """``table1_figure`` of the charted rows ``_rows``, frozen; ``rows`` is their content as a
    hashable tuple (a model's card can change without its id changing)."""
    return freeze(table1_figure(_rows))


def warm(entry: Entry) -> None:
    """The first visit's live estimate, and every shipped model loaded (the table reads their
    cards)."""
    data, _ = seen_test_images(entry.model, entry.data_name)
    n, k, seed = live_defaults(len(data.x))
    live_results(entry.model, entry.name, entry.data_name, n, k, seed)
    for other in pretrained_names():
        pretrained_entry(other)
