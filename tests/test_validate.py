"""dlgm/_validate.py: the size parser and the binarise-by-likelihood rule; dlgm/_io.py: the
atomic write."""

import os
import stat

import pytest

import dlgm
from dlgm._io import atomic_write_bytes
from dlgm.errors import ConfigError
from dlgm.model import DLGMConfig


@pytest.mark.parametrize(
    ("text", "sizes"),
    [
        ("200,200", (200, 200)),
        ("200, 200", (200, 200)),
        ("200 200", (200, 200)),
        ("7;8", (7, 8)),
        ("", ()),
        ("none", ()),
        ("()", ()),
        ("5", (5,)),
        ([3, 4], (3, 4)),
    ],
)
def test_parse_sizes(text, sizes):
    assert dlgm.parse_sizes(text) == sizes


def test_parse_sizes_says_what_is_wrong():
    with pytest.raises(ConfigError, match="hidden widths: '2x' is not a list of whole numbers"):
        dlgm.parse_sizes("2x", "hidden widths")


def test_binarization_follows_the_likelihood():
    assert dlgm.binarization_for("bernoulli", "static") == "static"
    assert dlgm.binarization_for("gaussian", "dynamic") == "none"
    assert DLGMConfig(likelihood="bernoulli").binary
    assert not DLGMConfig(likelihood="gaussian").binary
    with pytest.raises(ConfigError):
        dlgm.binarization_for("bernoulli", "sometimes")


def test_atomic_write_replaces_the_file_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two", mode=0o640)
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
