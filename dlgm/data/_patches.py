"""The ``patches`` data set: 8x8 grey patches of the two photographs scikit-learn ships.

An offline stand-in for the paper's 8x8 patches of CIFAR-10 (sec. 5.2), made as follows,
deterministically (no randomness but one shuffle with a fixed seed):

1. Each photo of ``sklearn.datasets.load_sample_image`` (``china.jpg``, ``flower.jpg``, both
   427 x 640 RGB, uint8) becomes grey levels in [0, 1] by the ITU-R BT.601 luma formula,
   counted as ink like the digits' and MNIST's grey levels (0 = white paper, 1 = black):
   ``grey = 1 - (0.299 R + 0.587 G + 0.114 B) / 255`` (float32, not rounded). So every
   picture of the app and of ``python -m dlgm sample`` (which draw grey level 1 as black)
   shows a patch as it looks in the photo, not as its negative.
2. Its columns are cut at ``round(0.8 * 640) = 512``: columns 0-511 are the **train** region,
   512-639 the **test** region. A patch lies wholly inside one region, so no train patch shares
   a pixel with a test patch.
3. In each region every 8x8 window whose top-left corner is on a grid of stride 4 (rows and
   columns) is a patch: 105 x 127 = 13,335 train and 105 x 31 = 3,255 test patches per photo,
   so **26,670 train** and **6,510 test** patches in all. Patches of one split overlap (by
   half a patch at stride 4).
4. Each split is shuffled by a fixed permutation (``numpy.random.default_rng(0)``), so any
   prefix (e.g. the first 1000 test patches) mixes both photos and all of each region.

No per-patch normalisation: no mean removal, no contrast scaling, no whitening (the paper does
not say how its patches were preprocessed). ``y`` is the photo a patch comes from (0: china,
1: flower; :data:`PATCH_PHOTOS`); :func:`patch_origins` gives each patch's photo, row and
column. JPEG decoding is done by Pillow, so another libjpeg could differ in the last grey
level; on one installation the patches are always the same.

The photos are scikit-learn's sample images, which its ``load_sample_images`` documents as
"Released under a creative commons license" (Creative Commons Attribution 2.0,
https://creativecommons.org/licenses/by/2.0/), retrieved from Flickr by Robert Layton in 2011:
``china.jpg`` from https://www.flickr.com/photos/danielbuechele/6061409035 and ``flower.jpg``
from https://www.flickr.com/photos/vultilion/6056698931 (scikit-learn's text credits
danielbuechele for both; the second link is vultilion's photo stream).
"""

from __future__ import annotations

import functools

import numpy as np

from ._core import DataError, ImageData

PATCH_PHOTOS = ("china.jpg", "flower.jpg")
PATCH_SIZE = 8
PATCH_STRIDE = 4
TRAIN_FRACTION = 0.8  # of each photo's columns, from the left
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601: grey = 1 - LUMA . (R, G, B) / 255 (ink)
_SHUFFLE_SEED = 0


@functools.lru_cache(maxsize=1)
def _grey_photos() -> tuple[np.ndarray, ...]:
    """The photos as grey levels in [0, 1] (1 - luma: 1 is black), float32 (H, W) each, in
    :data:`PATCH_PHOTOS` order."""
    try:
        from sklearn.datasets import load_sample_image
    except ImportError:
        raise DataError(
            "the patches data set needs scikit-learn (and Pillow): pip install scikit-learn pillow"
        ) from None
    out = []
    for name in PATCH_PHOTOS:
        try:
            rgb = load_sample_image(name)  # (H, W, 3) uint8
        except ImportError:
            raise DataError(
                "the patches data set needs Pillow to decode scikit-learn's photos: "
                "pip install pillow"
            ) from None
        grey = 1.0 - rgb.astype(np.float64) @ np.array(LUMA) / 255.0  # (H, W)
        out.append(np.clip(grey, 0.0, 1.0).astype(np.float32))
    return tuple(out)


def split_column(width: int) -> int:
    """First column of the test region of a photo ``width`` columns wide."""
    return int(round(TRAIN_FRACTION * width))


def _corners(height: int, first: int, stop: int) -> np.ndarray:
    """Top-left corners (row, column) of the patches wholly inside columns [first, stop),
    row-major; (N, 2) int64."""
    rows = np.arange(0, height - PATCH_SIZE + 1, PATCH_STRIDE)
    cols = np.arange(first, stop - PATCH_SIZE + 1, PATCH_STRIDE)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1)


@functools.lru_cache(maxsize=2)
def _patch_table(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Patches of ``split`` (N, 64) float32 and their origins (N, 3) int64 = (photo, row,
    column of the top-left pixel), shuffled; both read-only."""
    xs, origins = [], []
    for i, grey in enumerate(_grey_photos()):
        h, w = grey.shape
        cut = split_column(w)
        first, stop = (0, cut) if split == "train" else (cut, w)
        corners = _corners(h, first, stop)  # (n, 2)
        windows = np.lib.stride_tricks.sliding_window_view(grey, (PATCH_SIZE, PATCH_SIZE))
        xs.append(windows[corners[:, 0], corners[:, 1]].reshape(len(corners), -1))  # (n, 64)
        origins.append(np.column_stack([np.full(len(corners), i), corners]))
    x, origin = np.concatenate(xs), np.concatenate(origins).astype(np.int64)
    perm = np.random.default_rng(_SHUFFLE_SEED).permutation(len(x))
    x, origin = np.ascontiguousarray(x[perm], dtype=np.float32), origin[perm]
    x.flags.writeable = False
    origin.flags.writeable = False
    return x, origin


@functools.lru_cache(maxsize=2)
def patches(split: str) -> ImageData:
    """One split of the ``patches`` data set (see the module docstring), cached read-only."""
    x, origin = _patch_table(split)
    y = np.ascontiguousarray(origin[:, 0])
    y.flags.writeable = False
    return ImageData(x=x, y=y, shape=(PATCH_SIZE, PATCH_SIZE), name="patches")


def patch_origins(split: str = "train") -> np.ndarray:
    """Where each patch of ``load_dataset("patches", split)`` was cut from.

    Parameters
    ----------
    split : {"train", "test"}

    Returns
    -------
    ndarray of shape (N, 3), int64, read-only
        Row i is (photo index into :data:`PATCH_PHOTOS`, top row, left column) of patch i,
        in pixels of the 427 x 640 photo; the patch covers 8 rows and 8 columns from there.
    """
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    return _patch_table(split)[1]
