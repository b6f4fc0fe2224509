"""Ship a checkpoint of a training run that is still going on (e.g. one that spans sessions).

Copies the run's latest checkpoint (``model.safetensors`` + card) to ``pretrained/NAME`` with a
card that says what it is: ``command`` is the config's reproducing command, ``stopped`` says at
which epoch of how many planned the checkpoint was taken (no ``stopped`` once the run has
reached the config's epochs), and the old evaluation keys are
dropped (evaluate it next, by the cards' protocol). Usage::

    python experiments/snapshot_run.py runs/deep/mnist-deep-rank1 mnist-deep-rank1
    python experiments/evaluate_cards.py mnist-deep-rank1 --update-cards
    python experiments/train_pretrained.py --update-readme
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dlgm  # noqa: E402
from dlgm.checkpoint import save  # noqa: E402

EVAL_KEYS = ("test_nll", "test_nll_se", "test_elbo", "eval_k", "eval_n", "eval_seconds")


def snapshot(run: Path, name: str) -> dict:
    """Write ``pretrained/name`` from the checkpoint in ``run``; return its metadata."""
    model = dlgm.load(run)
    epochs = model.metadata["training"]["epochs"]
    config = ROOT / "experiments" / "configs" / f"{name}.json"
    planned = json.loads(config.read_text())["epochs"]
    model.metadata["command"] = (
        f"python -m dlgm train --config experiments/configs/{name}.json "
        f"--out pretrained/{name} --quiet"
    )
    if epochs < planned:
        model.metadata["stopped"] = (
            f"epoch {epochs:.0f} of the config's {planned}: a checkpoint of a run that goes on "
            f"across sessions (its training state is in experiments/state/{name}); resuming it "
            "with --resume continues bit for bit"
        )
    else:  # the run has ended: the model is the config's, not a snapshot
        model.metadata.pop("stopped", None)
    for k in EVAL_KEYS:
        model.metadata.pop(k, None)
    save(model, ROOT / "pretrained" / name)
    return model.metadata


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="the run's folder (model.safetensors, card.json)")
    p.add_argument("name", help="the model's name: pretrained/NAME, experiments/configs/NAME.json")
    args = p.parse_args(argv)
    meta = snapshot(args.run, args.name)
    print(meta.get("stopped", f"the finished run: epoch {meta['training']['epochs']:.0f}"))


if __name__ == "__main__":
    main()
