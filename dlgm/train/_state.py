"""The training state file (``train_state.safetensors``): optimiser, random streams, position
in the data and the weights, in one atomic file beside the checkpoint, so that ``resume``
continues bit for bit."""

from __future__ import annotations

from pathlib import Path

import torch

from .._io import atomic_write_bytes
from ..checkpoint import decode_tensors, encode_tensors, load, read_bytes
from ..checkpoint import save as save_model
from ..errors import CheckpointError
from ._host import note_host

STATE_FILE = "train_state.safetensors"


def save(trainer, directory) -> Path:
    """Write ``trainer``'s model (``dlgm.save``) and its state (``STATE_FILE``) to ``directory``."""
    directory = Path(directory)
    save_model(trainer.model, directory)
    opt_state = trainer.opt.state_dict()
    tensors = {
        "perm": trainer.perm,
        "gen": trainer.gen.get_state(),
        "dev_gen": trainer.dev_gen.get_state().cpu(),
    }
    # The weights go with the state in one atomic file: a kill between the two files
    # must not pair new weights with an old optimiser state.
    tensors.update({f"model.{k}": v for k, v in trainer.model.state_dict().items()})
    for pid, st in opt_state["state"].items():
        for k, v in st.items():
            tensors[f"opt.{pid}.{k}"] = torch.as_tensor(v)
    meta = {
        "settings": trainer.settings,
        "step": trainer.step_count,
        "epoch": trainer.epoch,
        "pos": trainer.pos,
        "lr": trainer.lr,
        "recoveries": trainer.recoveries,
        "seconds": trainer.seconds,
        "history": trainer.history,
        "hosts": trainer.hosts,
        "param_groups": [{**g, "lr": float(g["lr"])} for g in opt_state["param_groups"]],
    }
    atomic_write_bytes(directory / STATE_FILE, encode_tensors(tensors, {"train": meta}))
    return directory


def load_into(trainer, directory) -> None:
    """Restore the optimiser, random streams and position written by :func:`save`."""
    tensors, meta = decode_tensors(read_bytes(Path(directory) / STATE_FILE))
    m = meta.get("train")
    if not isinstance(m, dict):
        raise CheckpointError(f"{directory}/{STATE_FILE} has no training state")
    if len(tensors["perm"]) != trainer.n_data:
        raise CheckpointError(
            f"the checkpoint was trained on {len(tensors['perm'])} rows; "
            f"this data has {trainer.n_data}"
        )
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    if weights:
        trainer.model.load_state_dict(weights, strict=True)
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v.to(trainer.device) if v.dim() else v
    trainer._load_optimizer_state({"state": state, "param_groups": m["param_groups"]})
    trainer.perm, trainer.pos, trainer.epoch = tensors["perm"], m["pos"], m["epoch"]
    trainer.step_count, trainer.recoveries = m["step"], m["recoveries"]
    trainer.history = m["history"]
    trainer.seconds = float(m["seconds"]) if "seconds" in m else _estimated_seconds(trainer)
    # A state written before hosts were recorded: this host from the step resumed at on.
    saved = m.get("hosts") if isinstance(m.get("hosts"), list) else []
    trainer.hosts = note_host([h for h in saved if isinstance(h, dict)], trainer.device, m["step"])
    trainer.gen.set_state(tensors["gen"])
    trainer.dev_gen.set_state(
        tensors["dev_gen"].to(trainer.dev_gen.device)
        if trainer.device.type != "cpu"
        else tensors["dev_gen"]
    )
    trainer._snapshot()


def _estimated_seconds(trainer) -> float:
    """Wall time of a state written before states recorded it: each epoch's examples over the
    throughput of its last report (the history's ``samples_per_s``), an estimate."""
    return float(
        sum(trainer.n_data / h["samples_per_s"] for h in trainer.history if h["samples_per_s"] > 0)
    )


def read_model_and_settings(directory):
    """The model and the Trainer settings saved in ``directory`` by :func:`save`."""
    directory = Path(directory)
    model = load(directory, device="cpu")
    _, meta = decode_tensors(read_bytes(directory / STATE_FILE))
    return model, dict(meta["train"]["settings"])
