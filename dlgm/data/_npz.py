"""User data: ``.npz`` files of images, validated before use."""

from __future__ import annotations

import math
import os
import pathlib
import zipfile
import zlib

import numpy as np

from ._core import DataError, ImageData


def _npy_nbytes(zf: zipfile.ZipFile, member: str) -> int | None:
    """Bytes of data an .npy member's header declares, or None for header versions we skip."""
    with zf.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            return None
    return math.prod(shape) * dtype.itemsize


def _check_npz_sizes(path: pathlib.Path, keys: list[str], max_bytes: int | None) -> None:
    """Refuse members whose declared size exceeds ``max_bytes`` or their stored data."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        for key in keys:
            member = f"{key}.npy" if f"{key}.npy" in names else key
            info = zf.getinfo(member)
            declared = _npy_nbytes(zf, member)
            if max_bytes is not None and max(declared or 0, info.file_size) > max_bytes:
                size = (
                    f"holds {declared}"
                    if declared is not None and declared > max_bytes
                    else f"uncompresses to {info.file_size}"
                )
                raise DataError(
                    f"array {key!r} in {path.name} {size} bytes, more than the limit "
                    f"of {max_bytes}; use fewer or smaller images"
                )
            if declared is not None and declared > info.file_size:
                raise DataError(
                    f"array {key!r} in {path.name} is corrupt: its header declares "
                    f"{declared} bytes but only {info.file_size} are stored"
                )


def _as_images(x, source: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Validate user images; return float32 (N, D) grey levels in [0, 1] and (H, W)."""
    if not isinstance(x, np.ndarray):
        raise DataError(f"{source}: 'x' is not a numpy array; save it with numpy.savez")
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise DataError(
                f"{source}: x has shape {x.shape} and {x.shape[1]} is not a perfect "
                "square; save non-square images as an (N, H, W) array"
            )
        shape = (side, side)
    elif x.ndim == 3:
        shape = x.shape[1:]
    else:
        raise DataError(
            f"{source}: x has shape {x.shape}; expected (N, D) with D = H * W a "
            "perfect square, or (N, H, W)"
        )
    if x.shape[0] == 0 or 0 in shape:
        raise DataError(f"{source}: x has shape {x.shape}, with no images or no pixels")
    x = x.reshape(x.shape[0], -1)
    kind = x.dtype.kind
    if kind == "b":
        return np.ascontiguousarray(x, dtype=np.float32), shape
    if kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if x.dtype != np.uint8 and (lo < 0 or hi > 255):
            raise DataError(
                f"{source}: x has dtype {x.dtype} with values in [{lo}, {hi}]; "
                "integer images must be grey levels in [0, 255] (uint8 is best), "
                "float images in [0, 1]"
            )
        return np.divide(x, np.float32(255), dtype=np.float32), shape
    if kind != "f":
        raise DataError(
            f"{source}: x has dtype {x.dtype}; use uint8 grey levels in [0, 255] or "
            "floats in [0, 1]"
        )
    finite = np.isfinite(x)
    if not finite.all():
        raise DataError(
            f"{source}: x holds {x.size - np.count_nonzero(finite)} NaN or infinite "
            "values; replace them (e.g. numpy.nan_to_num) before saving"
        )
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        hint = " (divide by 255 if they are 0..255 grey levels)" if hi <= 255 and lo >= 0 else ""
        raise DataError(
            f"{source}: x has values in [{lo:g}, {hi:g}]; float images must lie in [0, 1]{hint}"
        )
    return np.ascontiguousarray(x, dtype=np.float32), shape


def _as_labels(y, n: int, source: str) -> np.ndarray:
    """Validate user labels; return int64 (N,)."""
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu":
        dtype = getattr(y, "dtype", type(y).__name__)
        raise DataError(f"{source}: y has dtype {dtype}; class labels must be integers")
    if y.shape != (n,):
        raise DataError(
            f"{source}: y has shape {y.shape} but x has {n} images; y must have shape ({n},)"
        )
    if n and (y.min() < 0 or y.max() > np.iinfo(np.int64).max):
        raise DataError(
            f"{source}: y has values in [{y.min()}, {y.max()}]; class labels must be non-negative"
        )
    return y.astype(np.int64)


def _npz_keys(keys: list[str], split: str | None, source: str) -> tuple[str, str]:
    """Names of the image and label arrays: ``x``/``y``, else ``x_<split>``/``y_<split>``."""
    if "x" in keys:
        return "x", "y"
    key = f"x_{split or 'train'}"
    if key in keys:
        return key, f"y_{split or 'train'}"
    found = ", ".join(repr(k) for k in keys) or "none"
    raise DataError(
        f"{source} has no array named 'x' (arrays found: {found}); save the images "
        "with numpy.savez(path, x=images, y=labels)"
    )


def load_npz(
    path: str | os.PathLike,
    *,
    max_bytes: int | None = None,
    name: str | None = None,
    split: str | None = None,
) -> ImageData:
    """Load and validate user images from an ``.npz`` file.

    The file must hold an array ``x`` of shape (N, D), with D a perfect square (square images
    of side sqrt(D)), or (N, H, W); uint8 grey levels in [0, 255] (other integer types are
    accepted when their values fit) or floats in [0, 1]. An optional integer array ``y`` of
    shape (N,) holds class labels. Files without ``x`` may hold ``x_train``/``y_train`` and
    ``x_test``/``y_test`` instead, chosen by ``split``. Pickled objects are never loaded.

    Parameters
    ----------
    path : path-like
        The ``.npz`` file.
    max_bytes : int, optional
        Refuse files, or arrays (by their declared size, before loading), larger than this.
    name : str, optional
        Name of the data; default: the file's stem.
    split : {"train", "test"}, optional
        Which ``x_<split>`` to read when the file has no ``x`` (default "train").

    Returns
    -------
    ImageData
        ``x`` float32 (N, H * W) in [0, 1], ``y`` int64 (N,) or None.

    Raises
    ------
    DataError
        For a missing, oversized or invalid file, a missing ``x``, a wrong shape or dtype,
        NaN or infinite values, values out of range, or labels of the wrong length or type.
    """
    path = pathlib.Path(path).expanduser()
    src = path.name
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise DataError(
            f"{src} is {size} bytes, more than the limit of {max_bytes}; use fewer "
            "or smaller images"
        )
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{src} is not a valid .npz file (not a zip archive); save the images "
            "with numpy.savez(path, x=images, y=labels)"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            xkey, ykey = _npz_keys(list(npz.files), split, src)
            keys = [xkey] + ([ykey] if ykey in npz.files else [])
            _check_npz_sizes(path, keys, max_bytes)
            arrays = {}
            for key in keys:
                try:
                    arrays[key] = npz[key]
                except ValueError as e:
                    raise DataError(f"{src}: cannot load array {key!r}: {e}") from e
    except DataError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(
            f"{src} is not a valid .npz file ({e}); save the images with "
            "numpy.savez(path, x=images, y=labels)"
        ) from e
    raw = arrays[xkey]
    if max_bytes is not None and getattr(raw, "nbytes", 0) > max_bytes:
        raise DataError(f"{src}: x holds {raw.nbytes} bytes, more than the limit of {max_bytes}")
    x, shape = _as_images(raw, src)
    y = _as_labels(arrays[ykey], len(x), src) if ykey in arrays else None
    return ImageData(x=x, y=y, shape=(int(shape[0]), int(shape[1])), name=name or path.stem)


def load_npz_splits(
    path: str | os.PathLike,
    *,
    max_bytes: int | None = None,
    name: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[ImageData, ImageData, dict]:
    """Load a user ``.npz`` file as a training and a test split.

    A file with ``x_train`` and ``x_test`` (and no ``x``) keeps its own split. Otherwise the
    images (``x``, else ``x_train``) are put in the order of a fixed permutation
    (``numpy.random.default_rng(seed).permutation(N)``) and the last
    ``max(1, round(test_fraction * N))`` of them (at most N - 1) are the test split: the same
    file always gives the same split, and a file sorted by class has the classes mixed in
    both splits (and in any prefix of them, which some pages take).

    Parameters
    ----------
    path : path-like
        The ``.npz`` file (see :func:`load_npz` for what it may hold).
    max_bytes : int, optional
        Passed to :func:`load_npz` (for each split read).
    name : str, optional
        Name of the data; default: the file's stem.
    test_fraction : float
        Share of the images held out for testing when the file has no test split, in (0, 1).
    seed : int
        Seed of the permutation.

    Returns
    -------
    (ImageData, ImageData, dict)
        The training and test splits (same image shape) and how they were made:
        ``{"kind": "file"}`` or ``{"kind": "permutation", "seed": seed, "test_fraction": f}``.

    Raises
    ------
    DataError
        Whatever :func:`load_npz` raises; fewer than 2 images to split; splits of different
        image shapes.
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    path = pathlib.Path(path).expanduser()
    train = load_npz(path, max_bytes=max_bytes, name=name, split="train")
    with zipfile.ZipFile(path) as zf:
        keys = {n.removesuffix(".npy") for n in zf.namelist()}
    if "x" not in keys and "x_test" in keys:
        test = load_npz(path, max_bytes=max_bytes, name=name, split="test")
        if test.shape != train.shape:
            raise DataError(
                f"{path.name}: x_train holds {train.shape[0]}x{train.shape[1]} images but "
                f"x_test {test.shape[0]}x{test.shape[1]}; both splits need one image shape"
            )
        return train, test, {"kind": "file"}
    n = len(train)
    if n < 2:
        raise DataError(
            f"{path.name} holds {n} image; at least 2 are needed (one to train on, one to test on)"
        )
    n_test = min(n - 1, max(1, round(test_fraction * n)))
    perm = np.random.default_rng(seed).permutation(n)
    how = {"kind": "permutation", "seed": seed, "test_fraction": test_fraction}
    return train.subset(perm[: n - n_test]), train.subset(perm[n - n_test :]), how
