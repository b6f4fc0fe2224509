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
    assert (
        again["identical"] and again["sha256"] == first["sha256"] and again["max_abs_diff"] == 0.0
    )
    for r in rows:  # a difference is real exactly when the digests differ
        assert r["identical"] == (r["sha256"] == first["sha256"])
        assert (r["max_abs_diff"] == 0.0) == r["identical"]
    out = capsys.readouterr().out
    assert "| this host, again |" in out and "bit-identical" in out


def test_digest_and_difference_see_one_flipped_bit(tmp_path):
    import torch
    from safetensors.torch import save_file

    def digest(weights, name, metadata=None):
        (tmp_path / name).mkdir()
        save_file(weights, str(tmp_path / name / "model.safetensors"), metadata=metadata)
        return host_bits.weights_digest(tmp_path / name)

    a = {"w": torch.ones(3), "b": torch.zeros(2)}
    b = {
        "w": torch.tensor([1.0, 1.0, float(torch.nextafter(torch.tensor(1.0), torch.tensor(2.0)))]),
        "b": torch.zeros(2),
    }
    same = digest({k: v.clone() for k, v in a.items()}, "same", {"card": "another"})
    assert digest(a, "a") == same  # the card metadata does not count, the tensors do
    assert digest(a, "a2") != digest(b, "b")
    assert host_bits.max_abs_diff(a, b) == pytest.approx(2.0**-23)
