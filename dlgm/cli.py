"""The command line: ``python -m dlgm {train,eval,sample,impute,data}``.

Every command validates its arguments (a ``DLGMError`` becomes one line on stderr and exit code
2), shows a progress bar for long work (``--quiet`` hides it) and prints its result as one JSON
line on stdout. ``train`` runs data-parallel when started by ``torchrun`` (one process per
device; gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from . import data as _data
from .checkpoint import load
from .errors import ConfigError, DLGMError
from .likelihood import evaluate_split
from .model import COVARIANCES, LIKELIHOODS
from .train import (
    INPUT_NOISE,
    LR_SCHEDULES,
    OPTIMIZERS,
    TRAIN_DEFAULTS,
    resolve_device,
    run_training,
)


def _bar(total, desc, quiet):
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, disable=quiet, unit="ex", dynamic_ncols=True, file=sys.stderr
    )


# ---------------------------------------------------------------------------- train
def _settings(args) -> dict:
    """Merge a JSON config file (``--config``) under the command-line flags that were given."""
    conf = {}
    if args.config:
        conf = json.loads(Path(args.config).read_text())
    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("func",)}
    defaults = TRAIN_DEFAULTS | conf
    return defaults | {k: v for k, v in given.items() if k in defaults or k not in conf}


def cmd_train(args) -> dict:
    s = _settings(args)
    if not s["out"]:
        raise ConfigError("--out DIR is required (where the model is written)")
    quiet = bool(s["quiet"]) or int(os.environ.get("RANK", "0")) != 0
    bars = {}

    def on_start(trainer):
        batch = trainer.settings["batch_size"]
        steps_per_epoch = -(-trainer.n_data // batch)
        bars["train"] = _bar(round(float(s["epochs"]) * steps_per_epoch) * batch, "train", quiet)
        bars["train"].update(trainer.step_count * batch)
        bars["batch"], bars["done"] = batch, trainer.step_count

    def report(p):
        bar = bars["train"]
        bar.update((p.step - bars["done"]) * bars["batch"])
        bars["done"] = p.step
        bar.set_postfix(
            F=f"{p.free_energy:.2f}", elbo=f"{p.elbo:.2f}", ex_s=f"{p.samples_per_s:.0f}"
        )
        if p.message:
            bar.write(p.message)

    def eval_report(done, total):
        if "train" in bars:
            bars.pop("train").close()
        bar = bars.setdefault("eval", _bar(total, f"eval K={int(s['eval_k'])}", quiet))
        bar.update(done - bar.n)

    command = "python -m dlgm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        result = run_training(
            {k: v for k, v in s.items() if k in TRAIN_DEFAULTS},
            progress=report,
            on_start=on_start,
            command=command,
            eval_progress=eval_report,
        )
    finally:
        for bar in bars.values():
            if hasattr(bar, "close"):
                bar.close()
    return {k: v for k, v in result.items() if k not in ("model", "trainer", "stopped", "epochs")}


# ---------------------------------------------------------------------------- eval
def _evaluate(model, data_name, split, k, limit, device, quiet) -> dict:
    bar = {}

    def report(done, total):
        b = bar.setdefault("eval", _bar(total, f"eval K={k}", quiet))
        b.update(done - b.n)

    try:
        return evaluate_split(
            model,
            split,
            data_name=data_name,
            n_samples=k,
            limit=limit,
            device=device,
            progress=report,
        )
    finally:
        if "eval" in bar:
            bar["eval"].close()


def cmd_eval(args) -> dict:
    device = resolve_device(args.device)
    model = load(args.model, device=device)
    data_name = args.data or model.metadata.get("data")
    if not data_name:
        raise ConfigError("the model does not say its data set: pass --data")
    if args.k < 1:
        raise ConfigError(f"--k {args.k}: must be an integer >= 1")
    return _evaluate(model, data_name, args.split, args.k, args.limit, device, args.quiet)


# ---------------------------------------------------------------------------- sample / impute
def _save_images(path: Path, images: np.ndarray, shape, ncol: int) -> None:
    """Save (N, D) images in [0, 1] as a PNG grid (or .npz with the raw arrays)."""
    if path.suffix == ".npz":
        np.savez_compressed(path, x=images.reshape(len(images), *shape))
        return
    from PIL import Image

    h, w = shape
    n = len(images)
    nrow = -(-n // ncol)
    canvas = np.ones((nrow * (h + 1) + 1, ncol * (w + 1) + 1), dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = (
            img.reshape(h, w)
        )
    scale = max(1, 256 // max(h, w))
    Image.fromarray(((1 - canvas) * 255).astype(np.uint8)).resize(
        (canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST
    ).save(path)


def cmd_sample(args) -> dict:
    from .sampling import ancestral

    if not 1 <= args.n <= 10_000:
        raise ConfigError(f"--n {args.n}: must be in [1, 10000]")
    model = load(args.model)
    g = torch.Generator().manual_seed(args.seed)
    samples = ancestral(model, args.n, generator=g)
    images = (samples.binary if args.binary else samples.probs).numpy()
    _save_images(Path(args.out), images, model.data_shape, args.ncol)
    return {"out": args.out, "n": args.n, "binary": args.binary}


def cmd_impute(args) -> dict:
    from .impute import impute, mask_random, mask_square, missing_error

    model = load(args.model)
    data_name = args.data or model.metadata.get("data", "digits")
    x, _ = _data.model_images(model, "test", data_name=data_name)
    if not 0 <= args.index < len(x):
        raise ConfigError(f"--index {args.index}: must be in [0, {len(x) - 1}]")
    x = torch.tensor(x[args.index : args.index + 1])
    g = torch.Generator().manual_seed(args.seed)
    kind, _, value = args.mask.partition(":")
    if kind == "random":
        mask = mask_random(model.n_pixels, float(value or 0.6), generator=g)
    elif kind == "square":
        mask = mask_square(model.data_shape, int(value or model.data_shape[0] // 2))
    else:
        raise ConfigError(f"--mask {args.mask}: use random:RATE or square:SIZE")
    result = impute(
        model, x, mask, method=args.method, n_steps=args.steps, init=args.init, generator=g
    )
    err = missing_error(result, x, mask)
    if args.out:
        strip = result.probs[:, 0].numpy()
        _save_images(Path(args.out), strip, model.data_shape, ncol=len(strip))
    # Binary pixels: cross-entropy (nats per missing pixel); grey levels (Gaussian pixels):
    # squared error of the pixel means, per missing pixel.
    name = "cross_entropy" if model.config.binary else "squared_error"
    values = err["cross_entropy" if model.config.binary else "mse"]
    return {
        "method": args.method,
        "steps": args.steps,
        "missing": int(mask.sum()),
        name: [round(float(v), 6 if name == "squared_error" else 4) for v in values],
        "acceptance_rate": result.acceptance_rate,
        "out": args.out,
    }


def cmd_data(args) -> dict:
    if args.action == "fetch":
        path = _data.fetch(args.name, args.root)
        return {"name": args.name, "dir": str(path)}
    info = {}
    for split in ("train", "test"):
        d = _data.load_dataset(args.name, split, root=args.root, download=False)
        info[split] = {"n": len(d), "shape": list(d.shape)}
    return {"name": args.name, "dir": str(_data.data_dir(args.root)), **info}


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dlgm", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a DLGM (Algorithm 1)")
    t.add_argument("--config", help="JSON file of settings (flags given here override it)")
    t.add_argument("--data", help="digits | mnist | fashion-mnist | patches | path to .npz")
    t.add_argument("--latent", help="latents per stochastic layer, layer 1 first, e.g. 2 or 100,50")
    t.add_argument("--gen-hidden", help="hidden widths of each generative MLP, e.g. 200,200")
    t.add_argument("--rec-hidden", help="hidden widths of the recognition MLP")
    t.add_argument("--covariance", choices=COVARIANCES)
    t.add_argument(
        "--input-activation",
        choices=("relu", "probit"),
        help="f in T(h) = MLP(f(h)); with --gen-hidden none: the NLGBN, A f(h) + b",
    )
    t.add_argument("--likelihood", choices=LIKELIHOODS)
    t.add_argument("--kappa", type=float, help="prior variance of generative weights (0: none)")
    t.add_argument("--epochs", type=float)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--samples", type=int, help="S, samples of xi per example")
    t.add_argument("--optimizer", choices=OPTIMIZERS)
    t.add_argument("--lr", type=float)
    t.add_argument("--lr-decay", type=float, help="multiply lr by this at every new epoch")
    t.add_argument(
        "--u-delay", type=int, help="rank-one q: keep u = 0 for this many epochs, then train it"
    )
    t.add_argument(
        "--u-cap",
        type=float,
        help="rank-one q: bound u^T D^-1 u smoothly by this (s -> cap tanh(s / cap))",
    )
    t.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        help="constant (with --lr-decay) or iwae: 3^i epochs at lr * 10^(-i/7), i = 0..7",
    )
    t.add_argument(
        "--kl-warmup",
        type=float,
        help="KL warm-up: the KL term's weight rises linearly from 0 to 1 over this many "
        "epochs (0: none)",
    )
    t.add_argument(
        "--free-bits",
        type=float,
        help="free bits: no stochastic layer's mean KL is pulled below this many nats "
        "(keeps a deep model's top layer in use; 0: none)",
    )
    t.add_argument(
        "--init-output-bias",
        action="store_true",
        default=None,
        help="start the output bias at the mean training pixel (Bernoulli: its logit)",
    )
    t.add_argument("--binarize", choices=("dynamic", "static", "none"))
    t.add_argument("--static-seed", type=int)
    t.add_argument("--input-noise", choices=INPUT_NOISE)
    t.add_argument("--input-noise-p", type=float)
    t.add_argument("--sample-noise", type=float)
    t.add_argument("--clip-grad", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", choices=("auto", "cpu", "cuda"))
    t.add_argument(
        "--fast",
        action="store_true",
        default=None,
        help="torch.compile the step; on CUDA replay it as one CUDA graph",
    )
    t.add_argument("--out", help="output directory")
    t.add_argument(
        "--resume",
        action="store_true",
        default=None,
        help="continue from OUT's checkpoint if there is one",
    )
    t.add_argument("--checkpoint-every", type=int, help="epochs between checkpoints")
    t.add_argument("--eval-k", type=int, help="after training, test NLL with K samples")
    t.add_argument("--eval-limit", type=int, help="evaluate on the first N test images only")
    t.add_argument("--report-every", type=int)
    t.add_argument("--quiet", action="store_true", default=None)
    t.add_argument("--threads", type=int, help="intra-op CPU threads (default: torch's)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="test NLL (importance sampling) and ELBO, nats per example")
    e.add_argument("--model", required=True)
    e.add_argument("--data", help="default: the model's own data set")
    e.add_argument("--split", default="test", choices=("train", "test"))
    e.add_argument("--k", type=int, default=1000, help="importance samples per example")
    e.add_argument("--limit", type=int, help="first N examples only")
    e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    e.add_argument("--quiet", action="store_true")
    e.add_argument("--threads", type=int, help="intra-op CPU threads (default: torch's)")
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("sample", help="ancestral samples as a PNG grid (or .npz)")
    s.add_argument("--model", required=True)
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--ncol", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--binary", action="store_true", help="binary samples, not probabilities")
    s.add_argument("--out", default="samples.png")
    s.set_defaults(func=cmd_sample)

    i = sub.add_parser(
        "impute",
        help="fill missing pixels of a test image by a Markov chain; prints the error of "
        "every step (cross-entropy for binary pixels, squared error for grey levels)",
    )
    i.add_argument("--model", required=True)
    i.add_argument("--data")
    i.add_argument("--index", type=int, default=0)
    i.add_argument("--mask", default="random:0.6", help="random:RATE or square:SIZE")
    i.add_argument(
        "--method", default="pseudo-gibbs", choices=("pseudo-gibbs", "mwg", "importance")
    )
    i.add_argument("--steps", type=int, default=15)
    i.add_argument(
        "--init",
        default="noise",
        choices=("noise", "zeros", "mean", "pseudo-gibbs"),
        help="initial fill; pseudo-gibbs: a warm start for mwg / importance",
    )
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--out", help="PNG strip of the iterations")
    i.set_defaults(func=cmd_impute)

    d = sub.add_parser("data", help="fetch a data set or show what is cached")
    d.add_argument("action", choices=("fetch", "info"))
    d.add_argument("name", choices=_data.DATASETS)
    d.add_argument("--root", help="data directory (default $DLGM_DATA or the user cache)")
    d.set_defaults(func=cmd_data)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            print(f"error: --threads {args.threads}: must be >= 1", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    try:
        result = args.func(args)
    except DLGMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if result:
        print(json.dumps(result))
    return 0
