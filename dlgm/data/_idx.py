"""Reading IDX files (the MNIST format), raw or gzip-compressed."""

from __future__ import annotations

import functools
import gzip
import math
import os
import pathlib
import struct
import zlib

import numpy as np

from ._core import DataError, _read_upto

# IDX type code -> big-endian numpy dtype ("THE IDX FILE FORMAT", http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _open_maybe_gz(path: pathlib.Path):
    """Open ``path`` for binary reading, decompressing when it starts with the gzip magic."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_idx(path: str | os.PathLike, *, max_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed.

    Parameters
    ----------
    path : path-like
        The file; gzip compression is detected from its first bytes, not its name.
    max_bytes : int, optional
        Refuse files whose header declares more data than this.

    Returns
    -------
    ndarray
        The array with the shape from the header, in native byte order, writeable.

    Raises
    ------
    DataError
        If the file is missing, unreadable, has a bad magic number, type code or dimensions, or
        holds more or less data than its header declares.
    """
    path = pathlib.Path(path)
    fix = f"delete {path} and fetch it again"
    try:
        with _open_maybe_gz(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\x00\x00":
                raise DataError(
                    f"{path} is not an IDX file (bad magic number {head.hex()!r}); {fix}"
                )
            code, ndim = head[2], head[3]
            if code not in _IDX_DTYPES:
                raise DataError(f"{path}: unknown IDX type code 0x{code:02x}; {fix}")
            if not 1 <= ndim <= 8:
                raise DataError(f"{path}: IDX header declares {ndim} dimensions; {fix}")
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{path}: IDX header is truncated; {fix}")
            dims = struct.unpack(f">{ndim}I", dims_raw)
            dtype = np.dtype(_IDX_DTYPES[code])
            nbytes = math.prod(dims) * dtype.itemsize
            if max_bytes is not None and nbytes > max_bytes:
                raise DataError(
                    f"{path}: header declares {nbytes} bytes of data, more than the "
                    f"limit of {max_bytes}"
                )
            buf = _read_upto(f, nbytes + 1)
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e}; {fix}") from e
    if len(buf) != nbytes:
        got = "more" if len(buf) > nbytes else f"{len(buf)} bytes"
        raise DataError(
            f"{path}: header {dims} declares {nbytes} bytes of data but the file holds {got}; {fix}"
        )
    arr = np.frombuffer(buf, dtype=dtype).reshape(dims)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def _find_idx(directory: pathlib.Path, base: str) -> pathlib.Path | None:
    """Return ``directory/base`` or ``directory/base.gz``, whichever exists first."""
    for candidate in (directory / base, directory / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=4)
def _load_idx_pair(images: str, labels: str, stamp: tuple):
    """Decode an image/label IDX pair into read-only float32 (N, D) and int64 (N,) arrays.

    ``stamp`` (modification times and sizes) is part of the cache key so replaced files reload.
    Returns ``(x, y, (H, W))``.
    """
    img, lab = read_idx(images), read_idx(labels)
    if img.ndim != 3 or img.dtype != np.uint8:
        raise DataError(
            f"{images}: expected uint8 images of shape (N, H, W), got {img.dtype} "
            f"{img.shape}; delete it and fetch it again"
        )
    if lab.ndim != 1 or len(lab) != len(img):
        raise DataError(
            f"{labels}: expected {len(img)} labels, got shape {lab.shape}; delete it "
            "and fetch it again"
        )
    x = np.divide(img.reshape(len(img), -1), np.float32(255), dtype=np.float32)  # (N, D)
    y = lab.astype(np.int64)  # (N,)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y, (img.shape[1], img.shape[2])
