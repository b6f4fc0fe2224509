"""experiments/table1.py: the baselines' training settings follow the DLGM rows' configs, and the
long wake-sleep row, killed after a checkpoint, resumes to the same weights as a run that was
never stopped (on the 8x8 digits and a tiny model; no MNIST needed)."""

import sys
from pathlib import Path

import pytest
import torch

from dlgm.data import load_dataset
from dlgm.model import DLGMConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
table1 = pytest.importorskip("table1")

SETTINGS = dict(batch_size=100, optimizer="adam", lr=1e-3, seed=5, lr_decay=0.9)
CONFIG = DLGMConfig(data_shape=(64,), n_latent=(3,), gen_hidden=(16,), rec_hidden=(16,))


def test_baseline_settings_follow_the_configs():
    short = table1._train_config("mnist-table1-diag")
    long = table1._train_config("mnist-table1-diag-long")
    assert "lr_decay" not in short and short["epochs"] == 30
    assert long["lr_decay"] == 0.995 and long["epochs"] == 655
    assert {k: long[k] for k in table1.TRAIN_KEYS} == {k: short[k] for k in table1.TRAIN_KEYS}


@pytest.fixture
def digits_only(monkeypatch, tmp_path):
    """table1 with the 8x8 digits in place of MNIST, a stub evaluation, and ROOT in tmp_path."""
    digits = load_dataset("digits", "train")
    monkeypatch.setattr(table1, "load_dataset", lambda name, split: digits)
    monkeypatch.setattr(table1, "evaluate_model", lambda path, k, limit: {"nll": 1.0, "k": k})
    monkeypatch.setattr(table1, "ROOT", tmp_path)
    return tmp_path


def test_long_wake_sleep_row_resumes_after_a_kill(digits_only, monkeypatch, capsys):
    import dlgm

    whole = table1.resumable_wake_sleep_row(CONFIG, SETTINGS, 3, 7, None, digits_only / "a")
    assert whole["method"] == "wake-sleep (long)" and whole["epochs"] == 3 and whole["k"] == 7
    assert whole["settings"]["lr_decay"] == 0.9 and whole["wall_s"] > 0
    assert not (digits_only / "a" / "train_state.safetensors").exists()  # finished

    real = table1.continue_fit

    def killed_after_epoch_2(trainer, *, epochs, **kw):
        real(trainer, epochs=2, **kw)  # writes the training state, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(table1, "continue_fit", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        table1.resumable_wake_sleep_row(CONFIG, SETTINGS, 3, 7, None, digits_only / "b")
    assert (digits_only / "b" / "train_state.safetensors").is_file()
    monkeypatch.setattr(table1, "continue_fit", real)
    capsys.readouterr()
    resumed = table1.resumable_wake_sleep_row(CONFIG, SETTINGS, 3, 7, None, digits_only / "b")
    assert "resumed at epoch 2" in capsys.readouterr().err
    assert not (digits_only / "b" / "train_state.safetensors").exists()
    a, b = dlgm.load(digits_only / "a"), dlgm.load(digits_only / "b")
    assert b.metadata["training"]["epochs"] == 3 and resumed["wall_s"] > 0
    assert b.metadata["training_rule"] == "wake-sleep"
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name  # bit for bit

    # a finished row is not trained again
    monkeypatch.setattr(table1, "continue_fit", None)  # would fail if called
    again = table1.resumable_wake_sleep_row(CONFIG, SETTINGS, 3, 7, None, digits_only / "b")
    assert again["wall_s"] == resumed["wall_s"]
