"""experiments/gaps.py, the script behind pretrained/gaps.json and the README's gap figures, on
a few images of the shipped digits model (small settings: this checks the plumbing, not the
numbers)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dlgm
from dlgm.data import model_images
from dlgm.grid import posterior_grid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
gaps = pytest.importorskip("gaps")


@pytest.fixture(scope="module")
def digits():
    model = dlgm.load(ROOT / "pretrained" / "digits-2d-rank1").eval().requires_grad_(False)
    return model, torch.tensor(model_images(model, limit=6)[0])


def test_log_px_of_a_2_latent_model_is_the_refined_quadrature(digits):
    model, x = digits
    log_px, how = gaps.log_px_of(model, x, k=10)
    assert "quadrature" in how and log_px.shape == (6,)
    coarse = [posterior_grid(model, v).log_px for v in x]
    # the digits posteriors are broad: the coarse grid already agrees to 0.05 nats
    np.testing.assert_allclose(log_px.numpy(), coarse, atol=0.05)


def test_model_gaps_rows_table_and_figures(digits, tmp_path):
    model, x = digits
    log_px, how = gaps.log_px_of(model, x, k=10)
    fams = gaps.model_gaps(model, x, log_px, ["rank1", "full"], steps=20)
    assert list(fams) == ["rank1", "full"]
    for f in fams.values():
        a, b, t = (np.array(f[k]) for k in ("approximation_gap", "amortisation_gap", "total_gap"))
        np.testing.assert_allclose(a + b, t, atol=2e-4)  # rounded to 4 decimals
        assert f["summary"]["n"] == 6 and np.array(f["q_star"]["cov"]).shape == (6, 2, 2)
    row = {
        "model": "digits-2d-rank1",
        "data": "digits",
        "latents": 2,
        "covariance": "rank1",
        "n": 6,
        "log_px_method": how,
        "binarisation": {},
        "families": fams,
    }
    args = type("Args", (), {"n": 6, "steps": 20, "k": 10})()
    table = gaps.table_json([row], args)
    assert "--n 6 --steps 20" in table["command"] and "6 test images" in table["protocol"]
    shipped = table["models"]["digits-2d-rank1"]["families"]["rank1"]
    assert shipped["summary"] == fams["rank1"]["summary"] and "q_star" not in shipped
    json.dumps(table)  # what pretrained/gaps.json holds is plain JSON
    assert gaps.markdown([row]).count("| digits-2d-rank1 |") == 2
    picks = gaps.picks_of(row)
    assert len({i for i, _ in picks}) == 3
    gaps.bars_png([row], tmp_path / "bars.png", "t")
    with torch.no_grad():
        gaps.posterior_png(model, x, row, picks, tmp_path / "post.png")
    assert Image.open(tmp_path / "post.png").size[1] > 3 * 2 * gaps.GRID  # three panels
