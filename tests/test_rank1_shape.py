"""experiments/rank1.py shape: the ELBO's terms and the posterior's shape of saved models, checked
against closed forms computed here (a tiny model on random 28x28 images; no MNIST needed)."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dlgm import DLGM, DLGMConfig
from dlgm.checkpoint import save
from dlgm.data import static_binarize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
rank1 = pytest.importorskip("rank1")


def test_shape_prints_the_kl_and_active_latents_of_each_model(tmp_path, monkeypatch, capsys):
    images = np.random.default_rng(0).random((40, 784))
    monkeypatch.setattr(rank1, "load_dataset", lambda name, split: SimpleNamespace(x=images))
    config = DLGMConfig(data_shape=(28, 28), n_latent=(3,), gen_hidden=(8,), rec_hidden=(8,))
    model = DLGM(config, seed=0)
    with torch.no_grad():  # spread the encoder's means so that some latents are active
        model.head_loc.weight.mul_(20.0)
    save(model, tmp_path / "m")
    rank1.main(["shape", str(tmp_path / "m"), "--n", "30"])
    row = json.loads(capsys.readouterr().out.strip())

    x = torch.tensor(static_binarize(images[:30], 1))
    with torch.no_grad():
        q = model.encode(x)
    mu, var = q.mean.double(), q.scale.double() ** 2
    kl = 0.5 * (mu**2 + var - 1 - var.log()).sum(-1).mean()  # KL(N(mu, var) || N(0, I))
    active = int((mu.var(0) > 0.01).sum())
    assert row["model"] == str(tmp_path / "m") and row["n"] == 30
    assert row["test_kl"] == pytest.approx(float(kl), rel=1e-5)
    assert row["active_latents"] == active and 0 < active <= 3
    assert row["test_elbo"] < 0 and row["test_rec"] < 0


def test_shape_of_a_deep_model_reports_each_layer_and_a_silent_top_layer(
    tmp_path, monkeypatch, capsys
):
    images = np.random.default_rng(1).random((40, 784))
    monkeypatch.setattr(rank1, "load_dataset", lambda name, split: SimpleNamespace(x=images))
    config = DLGMConfig(
        data_shape=(28, 28), n_latent=(4, 3), gen_hidden=(8,), rec_hidden=(8,), covariance="diag"
    )
    model = DLGM(config, seed=0)
    with torch.no_grad():
        model.head_loc.weight.mul_(20.0)
        model.G[1].zero_()  # h_2 = G_2 xi_2 = 0: the top layer cannot reach the pixels
    save(model, tmp_path / "m")
    rank1.main(["shape", str(tmp_path / "m"), "--n", "30"])
    row = json.loads(capsys.readouterr().out.strip())

    x = torch.tensor(static_binarize(images[:30], 1))
    with torch.no_grad():
        mu = model.encode(x).mean.double()
    active = mu.var(0) > 0.01
    assert row["active_by_layer"] == [int(active[:4].sum()), int(active[4:].sum())]
    # a diagonal q factorises over the layers: their KLs sum to the KL
    assert sum(row["test_kl_by_layer"]) == pytest.approx(row["test_kl"], rel=1e-5)
    assert min(row["test_kl_by_layer"]) > 0
    assert sum(row["active_by_layer"]) == row["active_latents"]
    bottom, top = row["pixel_change_by_layer"]
    assert top == 0.0 and bottom > 0.01  # redrawing xi_1 moves pixels, redrawing xi_2 cannot
