"""Binarisation, and the images as a model sees them (the one definition that the CLI, the
experiments and every page of the app use)."""

from __future__ import annotations

import numpy as np

from .._validate import binarization_for
from ._core import DataError
from ._load import load_dataset


def binarize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dynamic binarisation: draw each pixel from Bernoulli(x).

    Parameters
    ----------
    x : array_like of shape (...), values in [0, 1]
        Grey levels, read as probabilities of a pixel being on.
    rng : numpy.random.Generator
        Source of randomness; a fresh draw per call (e.g. per epoch).

    Returns
    -------
    ndarray of shape (...), float32
        Zeros and ones with ``P(out == 1) = x``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    x = np.asarray(x)
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)


def static_binarize(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Fixed binarisation: :func:`binarize` with a generator seeded by ``seed``.

    The same ``x`` and ``seed`` always give the same result, so a data set binarised once
    stays fixed across epochs and runs.

    Parameters
    ----------
    x : array_like of shape (...), values in [0, 1]
        Grey levels.
    seed : int
        Seed of the ``numpy.random.Generator`` used.

    Returns
    -------
    ndarray of shape (...), float32
        Zeros and ones.
    """
    return binarize(x, np.random.default_rng(seed))


def binarization_of(model) -> dict:
    """How ``model``'s training data was binarised, from its card: ``{"kind": "dynamic"}``,
    ``{"kind": "static", "seed": s}``, or ``{"kind": "none"}`` for Gaussian pixels."""
    if binarization_for(model.config.likelihood) == "none":
        return {"kind": "none"}
    return dict(model.metadata.get("binarization") or {"kind": "dynamic"})


def eval_seed(model, split: str = "test") -> int | None:
    """Seed of the one static binarisation of ``split`` that ``model`` is evaluated on, or
    None for Gaussian pixels.

    The test set uses the card's ``eval_binarization["eval_seed"]`` when it has one, else
    s + 1, s being the seed of the model's static training binarisation (0 for dynamically
    binarised models), so the test set never reuses the training set's draws; the training
    set uses s.
    """
    how = binarization_of(model)
    if how["kind"] == "none":
        return None
    if split == "test":
        card = model.metadata.get("eval_binarization") or {}
        if "eval_seed" in card:
            return int(card["eval_seed"])
    return int(how.get("seed", 0)) + (0 if split == "train" else 1)


def as_seen_by(model, x: np.ndarray, split: str = "test") -> tuple[np.ndarray, dict]:
    """Images of ``split`` as ``model`` sees them: the one definition used by the CLI, the
    experiments and every page of the app.

    Parameters
    ----------
    model : DLGM
        Reads ``config.likelihood`` and the card (``metadata``) only.
    x : ndarray, (N, D), grey levels in [0, 1]
        The images in the data set's order (the first N rows of the split: binarising a
        prefix of the split gives the same images as the prefix of the binarised split).
    split : {"test", "train"}

    Returns
    -------
    (ndarray (N, D) float32, dict)
        Statically binarised with :func:`eval_seed` for Bernoulli models, the grey levels for
        Gaussian ones; and how: ``{"kind": ..., "eval_seed": s}`` or ``{"kind": "none"}``.
    """
    seed = eval_seed(model, split)
    if seed is None:
        return np.asarray(x, dtype=np.float32), {"kind": "none"}
    return static_binarize(x, seed), {"kind": binarization_of(model)["kind"], "eval_seed": seed}


def model_images(
    model,
    split: str = "test",
    *,
    data_name: str | None = None,
    limit: int | None = None,
    **load_kwargs,
) -> tuple[np.ndarray, dict]:
    """:func:`load_dataset` of the model's data set (``metadata["data"]`` unless
    ``data_name``), first ``limit`` rows, then :func:`as_seen_by`."""
    name = data_name or model.metadata.get("data")
    if not name:
        raise DataError("the model's card names no data set; pass data_name")
    x = load_dataset(name, split, **load_kwargs).x
    return as_seen_by(model, x[:limit] if limit else x, split)
