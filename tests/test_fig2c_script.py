"""experiments/fig2c.py: the rows are the paper's Fig. 2c models (factor analysis as the linear
one-layer DLGM, wake-sleep, diagonal and rank-one DLGMs with the 100-300 architecture), all
trained with the rank-one card's settings for one budget; no MNIST needed."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
fig2c = pytest.importorskip("fig2c")


@pytest.fixture
def recorded(monkeypatch):
    """fig2c with trained_row / pretrained_row recording their calls instead of training."""
    calls = []

    def trained_row(method, config, settings, epochs, k, limit, out, command=None):
        calls.append(
            dict(
                kind="trained",
                method=method,
                config=config,
                settings=settings,
                epochs=epochs,
                out=out.name,
                command=command,
            )
        )

    def pretrained_row(method, name, k, limit):
        calls.append(dict(kind="pretrained", method=method, name=name))

    monkeypatch.setattr(fig2c, "trained_row", trained_row)
    monkeypatch.setattr(fig2c, "pretrained_row", pretrained_row)
    return calls


def card_settings():
    settings = fig2c._train_config(fig2c.PRETRAINED_RANK1)
    return settings, settings.pop("epochs")


def test_rows_are_the_papers_models_at_one_budget(recorded):
    settings, epochs = card_settings()
    assert epochs == 30 and settings["optimizer"] == "adam" and settings["batch_size"] == 100
    specs = fig2c.row_specs(settings, epochs, 7, None, 100)
    assert tuple(specs) == fig2c.ROWS
    for key in ("fa", "wake-sleep", "diag", "rank1", "rank1-cap"):
        specs[key]()
    fa, ws, diag, rank1, capped = recorded
    # factor analysis: one stochastic layer of 100, a linear T, Bernoulli pixels, diagonal q
    assert fa["method"] == "factor analysis" and fa["config"].gen_hidden == ()
    assert fa["config"].n_latent == (100,) and fa["config"].rec_hidden == (300,)
    assert fa["config"].likelihood == "bernoulli" and fa["config"].covariance == "diag"
    assert fa["config"].input_activation is None
    for row in (ws, diag):
        c = row["config"]
        assert (c.n_latent, c.gen_hidden, c.rec_hidden, c.covariance) == (
            (100,),
            (300,),
            (300,),
            "diag",
        )
    assert ws["method"] == "wake-sleep" and diag["method"] == "DLGM diagonal"
    c = capped["config"]
    assert capped["method"] == fig2c.CAPPED and c.u_cap == 1.0 and c.covariance == "rank1"
    assert (c.n_latent, c.gen_hidden, c.rec_hidden) == ((100,), (300,), (300,))
    assert diag["config"].u_cap is None and ws["config"].u_cap is None
    for row in (fa, ws, diag, capped):  # one budget and one set of settings for every trained row
        assert row["epochs"] == 30 and row["settings"] == settings
        assert row["command"].startswith("python experiments/fig2c.py --rows ")
    # unique names: evaluate_cards caches and pairs models by folder name
    assert [row["out"] for row in (fa, ws, diag, capped)] == [
        "mnist-fig2c-fa",
        "mnist-fig2c-wake-sleep",
        "mnist-fig2c-diag",
        "mnist-fig2c-rank1-cap",
    ]
    # the shipped rank-one model was trained with exactly these settings: it is the row
    assert rank1 == dict(kind="pretrained", method="DLGM rank-one", name="mnist-fig2c-rank1")


@pytest.mark.parametrize("change", [{"epochs": 10}, {"lr": 3e-4}])
def test_rank_one_is_trained_here_when_the_recipe_differs(recorded, change):
    settings, epochs = card_settings()
    epochs = change.get("epochs", epochs)
    settings |= {k: v for k, v in change.items() if k != "epochs"}
    fig2c.row_specs(settings, epochs, 7, None, 100)["rank1"]()
    (row,) = recorded
    assert row["kind"] == "trained" and row["method"] == "DLGM rank-one"
    assert row["config"].covariance == "rank1" and row["config"].gen_hidden == (300,)
    assert row["epochs"] == epochs and row["settings"] == settings


def test_unknown_row_is_refused(capsys):
    with pytest.raises(SystemExit):
        fig2c.main(["--rows", "fa,nope"])
    assert "nope" in capsys.readouterr().err


def test_bar_chart_draws_the_models(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        {
            "method": m,
            "nll": v,
            "nll_per_image": list(v + rng.normal(size=50)),
            "n": 50,
            "epochs": 30,
        }
        for m, v in (
            ("factor analysis", 110.0),
            ("wake-sleep", 105.0),
            ("DLGM diagonal", 94.0),
            ("DLGM rank-one", 93.5),
            (fig2c.CAPPED, 93.2),
        )
    ]
    fig2c.bar_chart(rows, tmp_path / "f.png", "title")
    from PIL import Image

    img = np.asarray(Image.open(tmp_path / "f.png").convert("RGB"))
    for colour in fig2c.COLOURS.values():  # one bar per model in its colour
        assert (img == colour).all(axis=-1).sum() > 100


def test_shipped_table_pairs_every_row_against_rank_one():
    rng = np.random.default_rng(1)
    base = rng.normal(90.0, 5.0, size=200)

    def row(method, shift, noise):
        per = base + shift + rng.normal(scale=noise, size=base.size)
        return {
            "method": method,
            "nll": float(per.mean()),
            "nll_per_image": per.tolist(),
            "n": per.size,
            "k": 7,
            "epochs": 30,
            "model_dir": f"m/{method}",
            "elbo": -99.0,
        }

    rows = [
        row("factor analysis", 12.0, 1.0),
        row("DLGM diagonal", 0.5, 0.3),
        row("DLGM rank-one", 0.0, 0.3),
    ]
    settings = {"batch_size": 50, "optimizer": "adam", "lr": 3e-4, "seed": 4, "lr_decay": 0.99}
    table = fig2c.shipped_table(rows, settings, 30, 7, "python experiments/fig2c.py --write x")
    fa, diag, rank1 = table["rows"]
    assert rank1["vs_rank1"] is None and rank1["vs_rank1_se"] is None
    d = np.asarray(rows[1]["nll_per_image"]) - np.asarray(rows[2]["nll_per_image"])
    assert diag["vs_rank1"] == pytest.approx(d.mean(), abs=1e-12)
    assert diag["vs_rank1_se"] == pytest.approx(d.std(ddof=1) / np.sqrt(d.size))
    # pairing removes the images' common spread: far below the unpaired standard errors
    assert diag["vs_rank1_se"] < 0.2 * diag["nll_se"]
    assert fa["vs_rank1"] == pytest.approx(12.0, abs=0.3)
    assert "nll_per_image" not in fa and fa["model"] == "m/factor analysis"
    assert "200 MNIST test images" in table["protocol"] and "30 epochs" in table["protocol"]
    # the training settings are the ones given, not a fixed string
    assert "Adam, learning rate 0.0003 x 0.99 per epoch, batch 50" in table["protocol"]
    assert "seed 4" in table["protocol"]
    # without a rank-one row nothing is paired
    alone = fig2c.shipped_table(rows[:2], settings, 30, 7, "c")["rows"]
    assert all(r["vs_rank1"] is None for r in alone)
