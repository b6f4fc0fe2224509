"""The project's shape: dlgm/ knows nothing of the UI; every shipped model loads."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dlgm

ROOT = Path(__file__).resolve().parent.parent


def test_dlgm_never_imports_streamlit():
    code = "import sys, dlgm, dlgm.cli; print('streamlit' in sys.modules or 'app' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("path", sorted((ROOT / "dlgm").glob("*.py")), ids=lambda p: p.name)
def test_dlgm_sources_name_no_ui_package(path):
    tree = ast.parse(path.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert not names & {"streamlit", "plotly", "app"}


MODELS = sorted(p.parent for p in (ROOT / "pretrained").glob("*/model.safetensors"))


def test_the_default_model_is_shipped():
    assert ROOT / "pretrained" / "digits-2d-rank1" in MODELS


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_every_pretrained_model_loads_and_has_a_card(path):
    model = dlgm.load(path)
    card = json.loads((path / "card.json").read_text())
    assert dlgm.DLGMConfig.from_dict(card["config"]) == model.config
    assert card["data"] in ("digits", "mnist", "fashion-mnist")
    assert not (path / "train_state.safetensors").exists(), "do not ship training state"
    x = torch.rand(3, model.n_pixels).round()
    assert torch.isfinite(model.log_joint(x, model.encode(x).sample())).all()
