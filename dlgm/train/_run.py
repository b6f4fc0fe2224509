"""``run_training``: one training run from a settings dict, as ``python -m dlgm train`` and the
app's Models page do it (data, binarisation, a new model or a resumed run, the card,
checkpoints, evaluation)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .. import data as _data
from .._validate import binarization_for, parse_sizes
from ..errors import ConfigError
from ..model import DLGM, DLGMConfig
from ._state import STATE_FILE
from ._trainer import Trainer, continue_fit, resolve_device

# Every setting of a run, with its default: the keys of the CLI's flags and of its --config JSON.
TRAIN_DEFAULTS = dict(
    data="digits",
    latent="2",
    gen_hidden="200,200",
    rec_hidden="200,200",
    covariance="diag",
    likelihood=None,
    kappa=1.0,
    epochs=10,
    batch_size=200,
    samples=1,
    optimizer="rmsprop",
    lr=3e-4,
    binarize="dynamic",
    static_seed=0,
    input_noise="none",
    input_noise_p=0.0,
    sample_noise=0.0,
    clip_grad=None,
    seed=0,
    device="auto",
    out=None,
    resume=False,
    checkpoint_every=1,
    eval_k=0,
    eval_limit=None,
    quiet=False,
    report_every=50,
    lr_decay=1.0,
    fast=False,
    u_delay=0,
    init_output_bias=False,
    lr_schedule="constant",
    kl_warmup=0.0,
    free_bits=0.0,
    input_activation=None,
    u_cap=None,
)


def _settings(settings: dict) -> dict:
    unknown = set(settings) - set(TRAIN_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"unknown training settings {sorted(unknown)}; known: {sorted(TRAIN_DEFAULTS)}"
        )
    s = TRAIN_DEFAULTS | {k: v for k, v in settings.items() if v is not None}
    epochs = float(s["epochs"])
    if not 0 < epochs <= 100_000:
        raise ConfigError(f"epochs={s['epochs']}: must be in (0, 100000]")
    return s | {"epochs": epochs, "likelihood": s["likelihood"] or "bernoulli"}


def _trainer_options(s: dict, binarize: str) -> dict:
    return dict(
        batch_size=int(s["batch_size"]),
        n_samples=int(s["samples"]),
        optimizer=s["optimizer"],
        lr=float(s["lr"]),
        binarize="dynamic" if binarize == "dynamic" else "none",
        input_noise=s["input_noise"],
        input_noise_p=float(s["input_noise_p"]),
        sample_noise=float(s["sample_noise"]),
        clip_grad=None if s["clip_grad"] is None else float(s["clip_grad"]),
        seed=int(s["seed"]),
        report_every=int(s["report_every"]),
        lr_decay=float(s["lr_decay"]),
        fast=bool(s["fast"]),
        u_delay=int(s["u_delay"]),
        init_output_bias=s["init_output_bias"],  # the Trainer checks it is a bool
        lr_schedule=s["lr_schedule"],
        kl_warmup=float(s["kl_warmup"]),
        free_bits=float(s["free_bits"]),
    )


def build_trainer(
    model: DLGM, x, settings: dict | None = None, *, device="auto", x_valid=None
) -> Trainer:
    """A ``Trainer`` for ``model`` from a settings dict, by the rules of ``run_training``.

    Parameters
    ----------
    model : DLGM
        Trained in place.
    x : array or Tensor, (N, D)
        Training images, grey levels in [0, 1]; already binarised if ``settings["binarize"]``
        is "static".
    settings : dict, optional
        Keys of :data:`TRAIN_DEFAULTS` (missing or None ones take its values); only the
        ``Trainer``'s (``batch_size``, ``samples``, ``optimizer``, ``lr``, ``binarize``, ``seed``,
        ``report_every``, ``u_delay``, ``init_output_bias``, ``lr_schedule``, ``kl_warmup``,
        ``free_bits``, ...) are used.
        Binarisation follows the model's likelihood (``binarization_for``): Gaussian pixels are
        never binarised.
    device, x_valid :
        As for ``Trainer``.

    Returns
    -------
    Trainer
    """
    s = _settings(settings or {})
    binarize = binarization_for(model.config.likelihood, s["binarize"])
    return Trainer(model, x, device=device, x_valid=x_valid, **_trainer_options(s, binarize))


def _new_model(s: dict, data_shape) -> DLGM:
    config = DLGMConfig(
        data_shape=data_shape,
        n_latent=parse_sizes(s["latent"], "latent"),
        gen_hidden=parse_sizes(s["gen_hidden"], "gen_hidden"),
        rec_hidden=parse_sizes(s["rec_hidden"], "rec_hidden"),
        covariance=s["covariance"],
        likelihood=s["likelihood"],
        kappa=None if s["kappa"] in (None, 0, "none") else float(s["kappa"]),
        input_activation=s["input_activation"] or None,
        u_cap=s["u_cap"],  # DLGMConfig checks it
    )
    return DLGM(config, seed=int(s["seed"]))


def _start_distributed(device: torch.device) -> torch.device:
    """Under ``torchrun`` (WORLD_SIZE > 1): join the process group (NCCL on CUDA, else gloo)."""
    import torch.distributed as dist

    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device


def run_training(
    settings: dict,
    *,
    progress=None,
    on_start=None,
    data=None,
    command: str | None = None,
    eval_progress=None,
) -> dict:
    """Train a DLGM from one settings dict; what ``python -m dlgm train`` and the app call.

    Parameters
    ----------
    settings : dict
        Keys of :data:`TRAIN_DEFAULTS` (missing or None ones take its values; unknown ones
        raise ``ConfigError``): the model's shape (``latent``, ``gen_hidden``, ``rec_hidden``:
        sizes as "200,200" or tuples; ``covariance``, ``likelihood``, ``kappa``), the
        ``Trainer``'s settings (``batch_size``, ``samples``, ``optimizer``, ``lr``, ...),
        ``data`` (a data set name or an ``.npz`` path), ``binarize`` ("dynamic", "static" with
        ``static_seed``, or "none"; Gaussian pixels are never binarised), ``epochs``,
        ``device``, ``out`` (checkpoint directory, or None to keep the model in memory only),
        ``resume`` (continue from ``out`` if it holds a training state), ``checkpoint_every``
        (epochs), ``eval_k`` and ``eval_limit`` (test NLL with K importance samples after
        training, on the first ``eval_limit`` test images).
    progress : callable, optional
        ``progress(p)`` with every :class:`Progress` report; returning ``False`` stops
        training (the model trained so far is kept, saved and evaluated as at the end).
    on_start : callable, optional
        ``on_start(trainer)`` once, before the first update (e.g. to show the model).
    data : tuple, optional
        ``(train, valid)`` in memory instead of loading ``settings["data"]``: an ``ImageData``
        (or an (N, D) array of grey levels in [0, 1] with ``settings["data"]`` naming it) and
        the validation images (M, D) or None. ``settings["data"]`` is still recorded in the
        card.
    command : str, optional
        The command that reproduces the run, recorded in the card.
    eval_progress : callable, optional
        ``eval_progress(done, total)`` during the evaluation.

    Returns
    -------
    dict
        ``out``, ``steps``, ``epochs`` (done), ``wall_time_s``, ``train_elbo`` (the last
        epoch's, nats per example, or None), ``stopped`` (True if ``progress`` stopped it);
        with ``eval_k``: ``nll``, ``elbo``, ``gap``, ``ess``, ``k``, ``n``, ``split``, ``data``,
        ``binarization``, ``seconds``, ``device``; and the objects ``model`` and ``trainer``.
        Under ``torchrun`` only rank 0 returns the numbers.
    """
    s = _settings(settings)
    out = Path(s["out"]) if s["out"] else None
    device = resolve_device(s["device"]) if isinstance(s["device"], str) else s["device"]
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        device = _start_distributed(device)
    rank0 = not distributed or int(os.environ.get("RANK", "0")) == 0
    if data is None:
        train = _data.load_dataset(s["data"], "train")
        valid = _data.load_dataset(s["data"], "test").x[:1000]
    else:
        train, valid = data
    x, shape = (
        (train.x, train.shape) if hasattr(train, "shape") and hasattr(train, "x") else (train, None)
    )
    binarize = binarization_for(s["likelihood"], s["binarize"])
    if binarize == "static":
        x = _data.static_binarize(x, int(s["static_seed"]))
        valid = None if valid is None else _data.static_binarize(valid, int(s["static_seed"]) + 1)
    binarization = {"kind": binarize} | (
        {"seed": int(s["static_seed"])} if binarize == "static" else {}
    )
    resuming = bool(s["resume"]) and out is not None and (out / STATE_FILE).is_file()
    if resuming:
        trainer = Trainer.resume(out, x, device=device, x_valid=valid)
    else:
        if shape is None:
            raise ConfigError("data: give an ImageData (its image shape is needed)")
        trainer = build_trainer(_new_model(s, shape), x, s, device=device, x_valid=valid)
    trainer.model.metadata.update(
        data=str(s["data"]),
        binarization=binarization,
        device=str(trainer.device) + (f" x{trainer.world}" if trainer.world > 1 else ""),
        **({"command": command} if command else {}),
    )
    if on_start is not None:
        on_start(trainer)
    stopped = []

    def report(p):
        if progress is not None and progress(p) is False:
            stopped.append(True)
            return False
        return None

    continue_fit(
        trainer,
        epochs=s["epochs"],
        callback=report,
        checkpoint_dir=out if rank0 and out else None,
        checkpoint_every=int(s["checkpoint_every"]),
    )
    wall = trainer.seconds  # every session's, also of a run killed and resumed
    result = {
        "out": None if out is None else str(out),
        "steps": trainer.step_count,
        "wall_time_s": round(wall, 2),
        "train_elbo": trainer.history[-1]["elbo"] if trainer.history else None,
    }
    if rank0:
        trainer.model.metadata["wall_time_s"] = round(wall, 2)
        if int(s["eval_k"]) > 0:
            from ..likelihood import evaluate_split

            result.update(
                evaluate_split(
                    trainer.model.eval(),
                    "test",
                    data_name=s["data"],
                    n_samples=int(s["eval_k"]),
                    limit=s["eval_limit"],
                    device=trainer.device,
                    progress=eval_progress,
                )
            )
            trainer.model.metadata.update(
                test_nll=result["nll"],
                test_elbo=result["elbo"],
                eval_k=result["k"],
                eval_n=result["n"],
                eval_seconds=result["seconds"],
                eval_binarization=result["binarization"],
            )
        if out is not None:
            trainer.save(out)
        else:
            trainer.record()
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    if not rank0:
        return {}
    epochs = trainer.epoch + trainer.pos / len(trainer.perm)
    return result | {
        "epochs": round(epochs, 4),
        "stopped": bool(stopped),
        "model": trainer.model,
        "trainer": trainer,
    }
