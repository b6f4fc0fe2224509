"""Checks and small rules shared by the library, the command line and the app (one place each)."""

from __future__ import annotations

import re

from .errors import ConfigError
from .observation import PIXEL_MODELS

BINARIZATIONS = ("dynamic", "static", "none")


def parse_sizes(text, what: str = "sizes") -> tuple[int, ...]:
    """Layer sizes from text: ``"200,200"``, ``"200, 200"``, ``"200 200"`` or ``"200;200"`` ->
    ``(200, 200)``; ``""``, ``"none"`` or ``"()"`` -> ``()``; a list or tuple of ints as is.

    Parameters
    ----------
    text : str, int, list or tuple
    what : str
        What the sizes are, for the error message (e.g. ``"hidden widths"``).

    Returns
    -------
    tuple of int

    Raises
    ------
    ConfigError
        If a part is not a whole number. (Ranges are checked by ``DLGMConfig``.)
    """
    if isinstance(text, (list, tuple)):
        return tuple(int(v) for v in text)
    text = str(text).strip()
    if text.lower() in ("", "none", "()"):
        return ()
    parts = [p for p in re.split(r"[,;\s]+", text.strip("()")) if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"{what}: {text!r} is not a list of whole numbers; give "
            "comma-separated integers, e.g. 200,200"
        ) from None


def binarization_for(likelihood: str, binarize: str = "dynamic") -> str:
    """How a model's training data is binarised: as asked (``"dynamic"``, ``"static"`` or
    ``"none"``) for Bernoulli pixels, never (``"none"``) for Gaussian ones.

    Raises
    ------
    ConfigError
        For an unknown ``binarize``.
    """
    if binarize not in BINARIZATIONS:
        raise ConfigError(f"binarize={binarize!r}: choose dynamic, static or none")
    if likelihood not in PIXEL_MODELS:
        raise ConfigError(f"likelihood={likelihood!r}: choose one of {tuple(PIXEL_MODELS)}")
    return binarize if PIXEL_MODELS[likelihood].binary else "none"
