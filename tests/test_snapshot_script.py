"""experiments/snapshot_run.py, which ships a checkpoint of a run that spans sessions: the card
says at which epoch it stopped while the run goes on, and says nothing of the kind once it ended."""

import json
import sys
from pathlib import Path

import pytest

from dlgm import DLGM, DLGMConfig
from dlgm.checkpoint import load, save

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
snapshot_run = pytest.importorskip("snapshot_run")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project root with one config (10 epochs planned) and a run folder."""
    (tmp_path / "experiments" / "configs").mkdir(parents=True)
    (tmp_path / "experiments" / "configs" / "tiny.json").write_text(json.dumps({"epochs": 10}))
    monkeypatch.setattr(snapshot_run, "ROOT", tmp_path)
    return tmp_path


def write_run(folder: Path, epochs: float) -> Path:
    model = DLGM(DLGMConfig(data_shape=(4,), n_latent=(2,), gen_hidden=(3,), rec_hidden=(3,)))
    model.metadata.update(
        {"training": {"epochs": epochs}, "test_nll": 1.0, "eval_k": 5, "stopped": "old note"}
    )
    save(model, folder)
    return folder


def test_a_running_run_is_marked_stopped_and_loses_its_old_evaluation(project):
    meta = snapshot_run.snapshot(write_run(project / "run", 4.0), "tiny")
    card = json.loads((project / "pretrained" / "tiny" / "card.json").read_text())
    assert card["stopped"].startswith("epoch 4 of the config's 10")
    assert "test_nll" not in card and "eval_k" not in card
    assert card["command"].startswith("python -m dlgm train --config experiments/configs/tiny.json")
    assert meta["stopped"] == load(project / "pretrained" / "tiny").metadata["stopped"]


def test_a_finished_run_has_no_stopped_note(project):
    snapshot_run.snapshot(write_run(project / "run", 10.0), "tiny")
    card = json.loads((project / "pretrained" / "tiny" / "card.json").read_text())
    assert "stopped" not in card
    assert "stopped" not in load(project / "pretrained" / "tiny").metadata
