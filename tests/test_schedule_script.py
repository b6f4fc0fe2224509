"""experiments/schedule.py, the comparison of learning-rate schedules over long runs, on small
synthetic cards whose answers are known (and on a real card from a tiny training run)."""

import json
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_train import TINY_RUN  # tests/ is on sys.path (pytest's prepend import mode)

from dlgm.train import run_training

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
schedule = pytest.importorskip("schedule")


def write_card(folder: Path, valid: list[float], lr: list[float], nested=False) -> Path:
    history = [
        {"step": 10 * e, "epoch": float(e), "elbo": v, "lr": r, "valid_elbo": v}
        for e, (v, r) in enumerate(zip(valid, lr, strict=True), start=1)
    ]
    # a mid-epoch report without a valid ELBO: ignored
    history.insert(1, {"step": 15, "epoch": 1.5, "elbo": -1.0, "lr": 1.0})
    card = {"training": {"history": history}} if nested else {"history": history}
    folder.mkdir(parents=True)
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_curve_smoothing_and_first_reach(tmp_path):
    run = write_card(tmp_path / "a", [-10, -8, -6, -4, -2, -3], [1e-3] * 3 + [1e-4] * 3)
    curve = schedule.load_curve(run)
    assert [e for e, _, _ in curve] == [1, 2, 3, 4, 5, 6]
    assert schedule.smoothed(curve, 1, 3) == -10  # fewer epochs at the start
    assert schedule.smoothed(curve, 4, 3) == pytest.approx(-6.0)  # (-8 - 6 - 4) / 3
    assert schedule.smoothed(curve, 7, 3) is None  # not reached
    # the trailing mean reaches -6 first at epoch 4, though one epoch reached it at 3
    assert schedule.first_reach(curve, -6.0, 3) == 4
    assert schedule.first_reach(curve, -6.0, 1) == 3
    assert schedule.first_reach(curve, 0.0, 3) is None
    assert schedule.lr_at(curve, 4) == 1e-4
    with pytest.raises(ValueError, match="window"):
        schedule.smoothed(curve, 2, 0)


def test_tables_pair_against_the_first_run(tmp_path):
    a = schedule.load_curve(write_card(tmp_path / "a", [-10, -8, -6, -4], [1e-3] * 4))
    b = schedule.load_curve(write_card(tmp_path / "b", [-9, -6, -5], [1e-3] * 3, nested=True))
    table = schedule.milestone_table({"a": a, "b": b}, milestones=(1, 2, 4, 9), window=1)
    lines = table.splitlines()
    assert lines[0] == "| epoch | a: valid ELBO (lr) | b: valid ELBO (lr) |"
    assert lines[2] == "| 1 | -10.00 (1.00e-03) | -9.00 [+1.00] (1.00e-03) |"
    assert lines[3] == "| 2 | -8.00 (1.00e-03) | -6.00 [+2.00] (1.00e-03) |"
    assert lines[4] == "| 4 | -4.00 (1.00e-03) | - |"  # b stopped at 3
    assert len(lines) == 5  # epoch 9: reached by no run, no row
    reach = schedule.reach_table({"a": a, "b": b}, thresholds=(-6.0, -3.0), window=1)
    assert "| -6.0 | 3 | 2 |" in reach and "| -3.0 | - | - |" in reach
    assert reach.splitlines()[-1] == "| last epoch (valid ELBO) | 4 (-4.00) | 3 (-5.00) |"


def test_errors_name_the_run(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "card.json").write_text(json.dumps({"history": []}))
    with pytest.raises(ValueError, match="no training history"):
        schedule.load_curve(tmp_path / "empty")
    with pytest.raises(SystemExit):
        schedule.main([str(tmp_path / "empty"), "--names", "x", "y"])


def test_main_on_a_trained_run_draws_the_figure(tmp_path, capsys):
    out = tmp_path / "run"
    run_training(TINY_RUN | {"epochs": 3, "lr_schedule": "iwae", "out": str(out)})
    png = tmp_path / "fig" / "lr.png"
    assert (
        schedule.main([str(out), str(out / "card.json"), "--names", "x", "y", "--png", str(png)])
        == 0
    )
    text = capsys.readouterr().out
    assert "| 3 |" not in text  # 3 is no milestone
    assert "| 1 | " in text and "[+0.00]" in text  # the same run twice: no difference
    assert "| last epoch (valid ELBO) | 3 (" in text
    with Image.open(png) as im:
        assert im.size[0] > 500 and im.getextrema() != ((255, 255), (255, 255), (255, 255))
