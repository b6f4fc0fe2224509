"""experiments/host_bits.py: one short run per environment, compared bit for bit."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
host_bits = pytest.importorskip("host_bits")

TINY = ["--data", "digits", "--latent", "2", "--gen-hidden", "8", "--rec-hidden", "8"]


def test_two_runs_on_one_host_agree_bit_for_bit(capsys):
    rows = host_bits.main(["--epochs", "0.5", "--", *TINY])
    assert [r["environment"] for r in rows] == [name for name, _, _ in host_bits.ENVIRONMENTS]
    first, again = rows[0], rows[1]
    assert first["identical"] and first["max_abs_diff"] == 0.0
    assert again["identical"] and again["md5"] == first["md5"] and again["max_abs_diff"] == 0.0
    for r in rows:  # a difference is real exactly when the digests differ
        assert r["identical"] == (r["md5"] == first["md5"])
        assert (r["max_abs_diff"] == 0.0) == r["identical"]
    out = capsys.readouterr().out
    assert "| this host, again |" in out and "bit-identical" in out


def test_digest_and_difference_see_one_flipped_bit():
    import torch

    a = {"w": torch.ones(3), "b": torch.zeros(2)}
    b = {
        "w": torch.tensor([1.0, 1.0, float(torch.nextafter(torch.tensor(1.0), torch.tensor(2.0)))]),
        "b": torch.zeros(2),
    }
    assert host_bits.digest(a) == host_bits.digest({k: v.clone() for k, v in a.items()})
    assert host_bits.digest(a) != host_bits.digest(b)
    assert host_bits.max_abs_diff(a, b) == pytest.approx(2.0**-23)
