"""``load_dataset``: one split of digits, MNIST, Fashion-MNIST, patches or a user ``.npz`` file."""

from __future__ import annotations

import functools
import os
import pathlib

import numpy as np

from ._core import DATASETS, SPLITS, DataError, ImageData, data_dir
from ._fetch import fetch
from ._idx import _SPLIT_FILES, _find_idx, _load_idx_pair
from ._npz import load_npz
from ._patches import patches


def _load_idx_dataset(name: str, split: str, root, download: bool) -> ImageData:
    """Load one split of MNIST or Fashion-MNIST, fetching the files first if allowed."""
    directory = data_dir(root) / name
    paths = [_find_idx(directory, base) for base in _SPLIT_FILES[split]]
    if None in paths:
        if not download:
            missing = [b for b, p in zip(_SPLIT_FILES[split], paths, strict=True) if p is None]
            raise DataError(
                f"{name} files {', '.join(missing)} are not in {directory} and "
                f"download=False; call dlgm.data.fetch({name!r}) or pass "
                "download=True"
            )
        fetch(name, root)
        paths = [_find_idx(directory, base) for base in _SPLIT_FILES[split]]
    images, labels = (p.resolve() for p in paths)
    stamp = tuple((s.st_mtime_ns, s.st_size) for s in (images.stat(), labels.stat()))
    x, y, shape = _load_idx_pair(str(images), str(labels), stamp)
    return ImageData(x=x, y=y, shape=shape, name=name)


@functools.lru_cache(maxsize=1)
def _digits_all() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as float32 (N, 64) in [0, 1] and int64 labels, in a fixed shuffled order."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "the digits data set needs scikit-learn: pip install scikit-learn"
        ) from None
    bunch = load_digits()
    perm = np.random.default_rng(0).permutation(len(bunch.target))
    x = np.ascontiguousarray(bunch.data[perm] / 16.0, dtype=np.float32)  # (1797, 64)
    y = bunch.target[perm].astype(np.int64)  # (1797,)
    return x, y


@functools.lru_cache(maxsize=2)
def _digits(split: str) -> ImageData:
    """One split of the digits: the first 1437 shuffled images are train, the last 360 test."""
    x, y = _digits_all()
    rows = slice(0, 1437) if split == "train" else slice(1437, None)
    x, y = x[rows].copy(), y[rows].copy()
    x.flags.writeable = False
    y.flags.writeable = False
    return ImageData(x=x, y=y, shape=(8, 8), name="digits")


def load_dataset(
    name: str | os.PathLike,
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    max_bytes: int | None = None,
) -> ImageData:
    """Load one split of a data set.

    Parameters
    ----------
    name : str or path-like
        One of :data:`DATASETS`, or the path to a user ``.npz`` file (see :func:`load_npz`).
    split : {"train", "test"}
        Which split. For a user file it only selects ``x_<split>`` when the file has no ``x``.
    root : path-like, optional
        Data directory for MNIST and Fashion-MNIST (see :func:`data_dir`); digits and patches
        are made from files bundled with scikit-learn.
    download : bool
        Fetch missing MNIST / Fashion-MNIST files (see :func:`fetch`); if False, raise instead.
    max_bytes : int, optional
        Size limit for user files.

    Returns
    -------
    ImageData
        ``x`` float32 (N, H * W) in [0, 1]. Built-in data sets are cached in-process and their
        arrays are read-only.

    Raises
    ------
    DataError
        For an unknown name or split, or any problem with the data (see :func:`fetch` and
        :func:`load_npz`).
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    if isinstance(name, str) and name in DATASETS:
        if name == "digits":
            return _digits(split)
        if name == "patches":
            return patches(split)
        return _load_idx_dataset(name, split, root, download)
    path = pathlib.Path(name).expanduser()
    if path.suffix.lower() == ".npz" or path.is_file():
        return load_npz(path, max_bytes=max_bytes, split=split)
    raise DataError(
        f"unknown data set {str(name)!r}; use one of {', '.join(DATASETS)} or the "
        "path to an .npz file"
    )
