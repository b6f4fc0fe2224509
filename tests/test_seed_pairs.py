"""experiments/seed_pairs.py: two recipes paired by training seed, from their cards alone."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
seed_pairs = pytest.importorskip("seed_pairs")

PROTOCOL = {
    "eval_k": 5000,
    "eval_n": 10000,
    "eval_binarization": {"kind": "dynamic", "eval_seed": 1},
}


def card(tmp_path, name, seed, nll, elbo, valid, epochs=20, **over):
    """A run folder whose card has a test NLL/ELBO and a valid ELBO of ``valid(epoch)``."""
    history = [
        {"epoch": float(e), "valid_elbo": valid(e), "lr": 1e-3} for e in range(1, epochs + 1)
    ]
    body = (
        {
            "training": {"seed": seed, "epochs": float(epochs)},
            "history": history,
            "test_nll": nll,
            "test_elbo": elbo,
            "wall_time_s": 100.0 + seed,
        }
        | PROTOCOL
        | over
    )
    folder = tmp_path / name
    folder.mkdir()
    (folder / "card.json").write_text(json.dumps(body))
    return folder


def test_paired_mean_and_error_over_seeds_match_numpy(tmp_path):
    nll_a, nll_b = [86.96, 87.00, 86.90], [87.07, 87.05, 87.10]
    a = [
        card(tmp_path, f"a{s}", s, nll_a[s], -91.4 - s, lambda e, s=s: -100 + e + 0.1 * s)
        for s in range(3)
    ]
    b = [card(tmp_path, f"b{s}", s, nll_b[s], -91.6, lambda e: -100 + e - 0.2) for s in range(3)]
    res = seed_pairs.compare(a, b, window=5, milestones=(10, 20, 30))
    d = np.subtract(nll_a, nll_b)
    m, se = res["summary"]["test NLL"]
    assert m == pytest.approx(d.mean()) and se == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    assert res["seeds"] == [0, 1, 2]
    # valid ELBO at epoch 10: mean of epochs 6-10 of each curve; A - B = 0.2 + 0.1 s
    rows = res["rows"]["valid ELBO, epoch 10"]
    assert [r[2] for r in rows] == pytest.approx([0.2, 0.3, 0.4])
    assert rows[0][0] == pytest.approx(-100 + 8)
    assert "valid ELBO, epoch 30" not in res["rows"]  # the runs stop at epoch 20
    assert res["summary"]["test ELBO"][0] == pytest.approx(np.mean([0.2, -0.8, -1.8]))
    text = seed_pairs.markdown(res, ("rank1", "diag"))
    assert "| test NLL | 86.96 / 87.07 (-0.11) |" in text
    assert f"{d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(3):.2f}" in text


def test_runs_that_do_not_pair_are_refused(tmp_path):
    def curve(e):
        return -100.0 + e

    a0 = card(tmp_path, "a0", 0, 87.0, -91.0, curve)
    b1 = card(tmp_path, "b1", 1, 87.0, -91.0, curve)
    with pytest.raises(ValueError, match="seeds differ"):
        seed_pairs.compare([a0], [b1])
    b0k = card(tmp_path, "b0k", 0, 87.0, -91.0, curve, eval_k=500)
    with pytest.raises(ValueError, match="eval_k differs"):
        seed_pairs.compare([a0], [b0k])
    b0e = card(tmp_path, "b0e", 0, 87.0, -91.0, curve, epochs=10)
    with pytest.raises(ValueError, match="epochs differ"):
        seed_pairs.compare([a0], [b0e])
    with pytest.raises(ValueError, match="same number"):
        seed_pairs.compare([a0], [])
    b0n = card(tmp_path, "b0n", 0, None, -91.0, curve)
    with pytest.raises(ValueError, match="no test_nll"):
        seed_pairs.compare([a0], [b0n])
    with pytest.raises(SystemExit, match="seeds differ"):
        seed_pairs.main(["--a", str(a0), "--b", str(b1)])


def test_one_seed_has_no_error_bar(tmp_path, capsys):
    a = card(tmp_path, "a", 0, 86.9, -91.4, lambda e: -95.0)
    b = card(tmp_path, "b", 0, 87.1, -91.6, lambda e: -95.5)
    seed_pairs.main(["--a", str(a), "--b", str(b), "--names", "r", "d"])
    out = capsys.readouterr().out
    assert "| test NLL | 86.90 / 87.10 (-0.20) | -0.20 |" in out
