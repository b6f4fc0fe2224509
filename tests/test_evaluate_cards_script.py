"""experiments/evaluate_cards.py: per-image evaluations and the paired table the Likelihoods page
ships (pretrained/paired.json), on the two shipped digits models with small K (plumbing and
arithmetic, not the cards' numbers)."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
ev = pytest.importorskip("evaluate_cards")

K, N = 5, 30


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "CACHE", tmp_path / "cache")
    return tmp_path / "cache"


def test_paired_rows_are_the_per_image_differences(cache):
    diag = ev.evaluate_model(ev.PRETRAINED / "digits-2d-diag", K, N)
    rank1 = ev.evaluate_model(ev.PRETRAINED / "digits-2d-rank1", K, N)
    assert (
        diag["n"] == N
        and len(diag["nll_per_image"]) == N
        and (cache / "digits-2d-diag-K5-N30.json").is_file()
    )
    rows = ev.paired_rows(["digits-2d-diag", "digits-2d-rank1"], "digits-2d-rank1", K, N)
    d = np.array(diag["nll_per_image"]) - np.array(rank1["nll_per_image"])
    assert rows[0]["vs_reference"] == pytest.approx(d.mean())
    assert rows[0]["vs_reference_se"] == pytest.approx(d.std(ddof=1) / math.sqrt(N))
    assert rows[1]["vs_reference"] is None and rows[1]["nll"] == rank1["nll"]
    assert rows[0]["path"] == "pretrained/digits-2d-diag" and rows[0]["pixels"] == 64
    assert rows[0]["covariance"] == "diag" and rows[0]["command"].startswith("python -m dlgm train")
    # a model without a cached evaluation is listed as such; the reference must have one
    assert ev.paired_rows(["mnist-2d-diag"], "digits-2d-rank1", K, N)[0]["nll"] is None
    with pytest.raises(SystemExit, match="no cached evaluation"):
        ev.paired_rows(["digits-2d-diag"], "mnist-2d-diag", K, N)


def test_table_and_written_json(cache, tmp_path, capsys):
    for name in ("digits-2d-diag", "digits-2d-rank1"):
        ev.evaluate_model(ev.PRETRAINED / name, K, N)
    out = tmp_path / "paired.json"
    argv = [
        "--table",
        "digits-2d-rank1",
        "digits-2d-diag",
        "digits-2d-rank1",
        "mnist-2d-diag",
        "--k",
        str(K),
        "--limit",
        str(N),
        "--write",
        str(out),
    ]
    assert ev.main(argv) == 0
    text = capsys.readouterr().out
    assert "| mnist-2d-diag | not evaluated |" in text and "| digits-2d-rank1 |" in text
    table = json.loads(out.read_text())
    assert table["reference"] == "digits-2d-rank1" and list(table["models"]) == [
        "digits-2d-diag",
        "digits-2d-rank1",
    ]
    assert table["command"] == "python experiments/evaluate_cards.py " + " ".join(argv)
    assert f"K = {K}" in table["protocol"]
    with pytest.raises(SystemExit):
        ev.main(["digits-2d-diag", "--write", str(out)])  # --write needs --table


def test_writing_again_keeps_rows_it_cannot_recompute_only_while_they_are_valid(cache, tmp_path):
    for name in ("digits-2d-diag", "digits-2d-rank1"):
        ev.evaluate_model(ev.PRETRAINED / name, K, N)
    out = tmp_path / "paired.json"
    names = ["digits-2d-diag", "digits-2d-rank1"]
    argv = ["--k", str(K), "--limit", str(N), "--table", "digits-2d-rank1", *names]
    assert ev.main(["--write", str(out), *argv]) == 0
    first = json.loads(out.read_text())
    # a model evaluated elsewhere, whose folder this machine does not have
    ghost = first["models"]["digits-2d-diag"] | {"model": "ghost", "path": "runs/nowhere/ghost"}
    first["models"]["ghost"] = ghost
    out.write_text(json.dumps(first))
    (cache / "digits-2d-diag-K5-N30.json").unlink()  # this machine lost its evaluation
    assert ev.main(["--write", str(out), *argv, "runs/nowhere/ghost"]) == 0
    kept = json.loads(out.read_text())
    assert list(kept["models"]) == ["digits-2d-diag", "digits-2d-rank1", "ghost"]
    assert kept["models"]["digits-2d-diag"] == first["models"]["digits-2d-diag"]
    assert kept["models"]["ghost"] == ghost
    # a model not named is dropped; a row computed from other weights is dropped
    old = kept["models"]["digits-2d-diag"] | {"sha256": "0" * 64}
    stale = kept | {"models": kept["models"] | {"digits-2d-diag": old}}
    out.write_text(json.dumps(stale))
    assert ev.main(["--write", str(out), *argv]) == 0
    assert list(json.loads(out.read_text())["models"]) == ["digits-2d-rank1"]
    # nothing is kept when the reference's weights (or the protocol) differ
    ref = kept["models"]["digits-2d-rank1"] | {"sha256": "1" * 64}
    out.write_text(json.dumps(kept | {"models": kept["models"] | {"digits-2d-rank1": ref}}))
    assert ev.main(["--write", str(out), *argv, "runs/nowhere/ghost"]) == 0
    assert list(json.loads(out.read_text())["models"]) == ["digits-2d-rank1"]
