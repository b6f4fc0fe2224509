"""The data types shared by the data package: ``ImageData``, ``DataError``, the data directory."""

from __future__ import annotations

import os
import pathlib
import sys
from dataclasses import dataclass

import numpy as np

from ..errors import DLGMError

DATASETS = ("digits", "mnist", "fashion-mnist", "patches")
SPLITS = ("train", "test")
# The pixel likelihood each built-in data set is meant for: binary ink for the digit and
# clothing sets (binarised), grey levels for the photographs' patches (the paper's sec. 5.2).
LIKELIHOOD_OF = {
    "digits": "bernoulli",
    "mnist": "bernoulli",
    "fashion-mnist": "bernoulli",
    "patches": "gaussian",
}
_CHUNK = 1 << 22


class DataError(DLGMError, ValueError):
    """A data set is missing, corrupt or malformed; the message says how to fix it."""


@dataclass(frozen=True)
class ImageData:
    """A set of grey-level images, flattened.

    Attributes
    ----------
    x : ndarray of shape (N, D), float32
        Grey levels in [0, 1], C-contiguous, row-major images with ``D = H * W``.
    y : ndarray of shape (N,), int64, or None
        Class labels, if known.
    shape : tuple of int
        Image shape ``(H, W)``.
    name : str
        ``"digits"``, ``"mnist"``, ``"fashion-mnist"``, ``"patches"`` or the stem of the user's
        file.
    """

    x: np.ndarray
    y: np.ndarray | None
    shape: tuple[int, int]
    name: str

    def __post_init__(self):
        h, w = self.shape
        if self.x.ndim != 2 or self.x.shape[1] != h * w:
            raise DataError(f"x has shape {self.x.shape}; expected (N, {h * w}) for {h}x{w} images")
        if self.y is not None and self.y.shape != (self.x.shape[0],):
            raise DataError(f"y has shape {self.y.shape}; expected ({self.x.shape[0]},)")

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, idx) -> ImageData:
        """Select images by index.

        Parameters
        ----------
        idx : int, slice, sequence of int or boolean mask of shape (N,)
            Which images to keep; a single int keeps one image.

        Returns
        -------
        ImageData
            The selected images, same ``shape`` and ``name``.
        """
        if not isinstance(idx, slice):
            idx = np.asarray(idx)
            if idx.ndim == 0:
                idx = idx.reshape(1)
        x = np.ascontiguousarray(self.x[idx])
        y = None if self.y is None else np.ascontiguousarray(self.y[idx])
        return ImageData(x=x, y=y, shape=self.shape, name=self.name)


# --------------------------------------------------------------------------- paths


def data_dir(root: str | os.PathLike | None = None) -> pathlib.Path:
    """Directory holding downloaded data sets.

    Parameters
    ----------
    root : path-like, optional
        Used as is when given.

    Returns
    -------
    pathlib.Path
        ``root``, else ``$DLGM_DATA``, else the user's cache directory: ``$XDG_CACHE_HOME/dlgm``
        or ``~/.cache/dlgm`` on Linux, ``~/Library/Caches/dlgm`` on macOS,
        ``%LOCALAPPDATA%\\dlgm\\Cache`` on Windows. The directory is not created.
    """
    if root is not None:
        return pathlib.Path(root).expanduser()
    if os.environ.get("DLGM_DATA"):
        return pathlib.Path(os.environ["DLGM_DATA"]).expanduser()
    home = pathlib.Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return pathlib.Path(base) / "dlgm" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "dlgm"
    base = os.environ.get("XDG_CACHE_HOME") or str(home / ".cache")
    return pathlib.Path(base) / "dlgm"


def _read_upto(f, n: int) -> bytearray:
    """Read at most ``n`` bytes from ``f`` in chunks (never allocates more than it reads)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def default_likelihood(name: str) -> str:
    """The pixel likelihood a data set is meant for: ``"gaussian"`` for ``"patches"``,
    ``"bernoulli"`` for the others and for user data (binarised grey levels, the common case)."""
    return LIKELIHOOD_OF.get(name, "bernoulli")
