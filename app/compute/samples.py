"""Samples page: ancestral samples beside test data (Fig. 3a), resampling from layer l down."""

from __future__ import annotations

import numpy as np
import torch

import dlgm
from app.cache import cache_resource, read_only
from app.figures.images import image_grid_figure
from app.figures.style import freeze
from app.session import Entry, seen_label, seen_test_images, test_images
from dlgm.sampling import ancestral, layer_influence, resample_from_layer

N_ROWS_LAYER, N_VARIATIONS = 6, 8  # resampling figure: rows of samples x variations
N_DEFAULT, SEED_DEFAULT = 36, 0  # the page's defaults
N_INFLUENCE = 1000  # ancestral draws behind each layer's influence
SILENT = 1e-3  # a layer that moves the pixel probabilities by less than this is unused


@cache_resource(show_spinner=False, max_entries=64)
def ancestral_samples(model: dlgm.DLGM, n: int, seed: int) -> dict:
    """``n`` ancestral samples from ``seed``: read-only numpy ``probs`` (n, D), ``binary``
    (n, D), ``xi`` (n, K)."""
    s = ancestral(model, n, generator=torch.Generator().manual_seed(seed))
    return read_only({k: v.numpy() for k, v in s._asdict().items()})


@cache_resource(show_spinner=False, max_entries=64)
def resampled(model: dlgm.DLGM, layer: int, seed: int) -> np.ndarray:
    """For ``N_ROWS_LAYER`` ancestral samples, ``N_VARIATIONS`` redraws of layers 1..layer:
    pixel probabilities, (N_ROWS_LAYER * N_VARIATIONS, D), read-only, one row per kept sample
    (its own first column is the original)."""
    g = torch.Generator().manual_seed(seed)
    base = ancestral(model, N_ROWS_LAYER, generator=g)
    rows = []
    for i in range(N_ROWS_LAYER):
        new = resample_from_layer(model, base.xi[i], layer, n=N_VARIATIONS - 1, generator=g)
        rows.append(torch.cat([base.probs[i : i + 1], new.probs]))
    return read_only(torch.cat(rows).numpy())


@cache_resource(show_spinner=False, max_entries=64)
def influence(model: dlgm.DLGM) -> tuple[float, ...]:
    """``dlgm.sampling.layer_influence`` of ``model`` (``N_INFLUENCE`` draws, seed 0): per
    layer, layer 1 first, the mean change of the pixel probabilities when that layer alone is
    redrawn."""
    g = torch.Generator().manual_seed(0)
    return tuple(layer_influence(model, N_INFLUENCE, generator=g))


def influence_text(values: tuple[float, ...]) -> tuple[str, list[int]]:
    """The page's sentence on ``influence`` and the layers (1-based) that move the pixels by
    less than ``SILENT``: the generative model does not use them."""
    parts = ", ".join(f"ξ_{i} by {v:.3f}" for i, v in enumerate(values, start=1))
    silent = [i for i, v in enumerate(values, start=1) if v < SILENT]
    return (
        f"Redrawing one layer alone moves the pixel probabilities by, on average: {parts} "
        "(dlgm.sampling.layer_influence).",
        silent,
    )


@cache_resource(show_spinner=False, max_entries=128)
def grid_chart(
    images: np.ndarray, shape: tuple[int, int], height: int, title: str, n_cols: int | None = None
):
    """``image_grid_figure`` of ``images`` (N, D), frozen; keyed by the images' content."""
    return freeze(
        image_grid_figure(images, shape=tuple(shape), n_cols=n_cols, height=height, title=title)
    )


def sample_charts(entry: Entry, n: int, seed: int) -> list:
    """The page's four grids, frozen and shared, in this order: model probabilities, test grey
    levels; model samples, test images as the model sees them."""
    model, name = entry.model, entry.data_name
    s = ancestral_samples(model, n, seed)
    seen, how = seen_test_images(model, name)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(seen.x), size=min(n, len(seen.x)), replace=False))
    bernoulli = model.config.binary
    height, shape = 420, seen.shape
    return [
        grid_chart(
            s["probs"],
            shape,
            height,
            f"Model: pixel probabilities E[v | h(ξ)], seed {seed}"
            if bernoulli
            else f"Model: pixel means, seed {seed}",
        ),
        grid_chart(test_images(name).x[rows], shape, height, f"Test data: grey levels ({name})"),
        grid_chart(
            s["binary"],
            shape,
            height,
            "Model: binary samples v ~ π(v | h(ξ))"
            if bernoulli
            else "Model: sampled pixels v ~ π(v | h(ξ))",
        ),
        grid_chart(
            seen.x[rows],
            shape,
            height,
            "Test data as the model sees it" + (f" ({seen_label(how)})" if bernoulli else ""),
        ),
    ]


def warm(entry: Entry) -> None:
    """The first visit's four grids."""
    sample_charts(entry, N_DEFAULT, SEED_DEFAULT)
