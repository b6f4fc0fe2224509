"""Table 1 of the paper (sec. 5.2): -ln p(v) on binarised MNIST test images, in nats.

Rows, all with one stochastic layer of 200 latents and the recognition model of the DLGM rows
(two deterministic layers of 200 ReLU units), trained by Algorithm 1 unless said otherwise:

- **factor analysis** (``pretrained/mnist-table1-fa``): in the paper's own taxonomy (sec. 2) a
  DLGM with one stochastic layer and a linear T is factor analysis; with Bernoulli pixels,
  logits = A G xi + b (``gen_hidden=()``), trained like the DLGM rows.
- **NLGBN** (``pretrained/mnist-table1-nlgbn``): T(h) = A f(h) + b with the rectified
  linearity f (Frey & Hinton 1999; ``input_activation="relu"``, ``gen_hidden=()``).
- **wake-sleep** (``dlgm.wake_sleep``): the Table 1 ``DLGM`` trained by wake-sleep with the
  settings of ``experiments/configs/mnist-table1-diag.json`` (Adam, batch, epochs, kappa, seed),
  diagonal recognition covariance.
- **wake-sleep (long)**: the same at the long DLGM rows' budget, with the settings of
  ``mnist-table1-diag-long.json`` (655 epochs, the learning rate times 0.995 per epoch). It
  writes its training state every 5 epochs and resumes from it, so it can span sessions.
- **DLGM diagonal / rank-one**: ``pretrained/mnist-table1-diag`` and ``-rank1`` (30 epochs), and
  the ``-long`` models.
- **Gaussian FA (side note)**: ``sklearn.decomposition.FactorAnalysis(n_components=200)``, a
  Gaussian *density* of dequantised pixels: fitted to v + u, u ~ U(0, 1)^D, it assigns each
  binary v the mass of its unit cell, P(v) = int p(v + u) du >= exp E_u log p(v + u) (Jensen),
  and E_u log N(v + u; m, S) = log N(v + 1/2; m, S) - tr(S^-1) / 24 exactly (Cov u = I / 12).
  Not the paper's model: kept to show how far a Gaussian density on pixels is from it.

Every model is evaluated by one protocol, that of ``python -m dlgm eval --k 5000`` and of the
cards (``experiments/evaluate_cards.py``): all 10,000 test images (or the first ``--limit``)
binarised once by ``dlgm.data.static_binarize(x, seed=1)``, importance sampling with K =
``--k`` samples from the model's own recognition model (generator seed 0), so the rows are
paired: the same images, and the standard errors of their differences against the rank-one row
are given. Training binarisation is dynamic. This is *not* the fixed binarisation of Larochelle
& Murray (2011) that the paper used, so the numbers are not strictly comparable with the
paper's column.

Results are cached per row in ``runs/experiments/table1/`` (git-ignored; ``--fresh`` redoes
them) and the wake-sleep model is kept there; per-image evaluations are cached by
``evaluate_cards.py``. Usage::

    OMP_NUM_THREADS=1 nice -n 5 python experiments/table1.py              # all rows but one
    OMP_NUM_THREADS=1 nice -n 5 python experiments/table1.py --rows wake-sleep --epochs 30
    OMP_NUM_THREADS=1 nice -n 5 python experiments/table1.py --rows wake-sleep-long   # hours
    OMP_NUM_THREADS=1 nice -n 5 python experiments/table1.py --throughput 100   # speed only
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import evaluate_cards  # noqa: E402

import dlgm  # noqa: E402
from dlgm.data import load_dataset, static_binarize  # noqa: E402
from dlgm.model import DLGM, DLGMConfig  # noqa: E402
from dlgm.train import continue_fit, fit  # noqa: E402
from dlgm.wake_sleep import WakeSleepTrainer, fit_wake_sleep  # noqa: E402

RUNS = ROOT / "runs" / "experiments"
PRETRAINED = ROOT / "pretrained"
CONFIGS = ROOT / "experiments" / "configs"
TRAIN_KEYS = ("batch_size", "optimizer", "lr", "seed")
ROWS = (
    "fa",
    "nlgbn",
    "wake-sleep",
    "wake-sleep-long",
    "diag",
    "rank1",
    "diag-long",
    "rank1-long",
    "fa-gaussian",
)
DEFAULT_ROWS = tuple(r for r in ROWS if r != "wake-sleep-long")  # that one takes hours: ask
PAPER_TABLE1 = {
    "factor analysis": 106.00,
    "NLGBN": 95.80,
    "wake-sleep": 91.3,
    "DLGM diagonal": 87.30,
    "DLGM rank-one": 86.60,
}


def machine() -> str:
    """'N cores, CPU model, torch version' of this machine."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s)"
    )


# ---------------------------------------------------------------------------- evaluation
def test_images(limit: int) -> tuple[torch.Tensor, dict]:
    """The first ``limit`` MNIST test images, binarised as the CLI evaluates dynamically
    binarised models (``static_binarize(x, seed=1)``)."""
    x = static_binarize(load_dataset("mnist", "test").x[:limit], 1)
    return torch.tensor(x), {"kind": "dynamic", "eval_seed": 1}


def evaluate_model(path: Path, k: int, limit: int | None) -> dict:
    """NLL (nats per image) of the model saved in ``path`` by the CLI's protocol, with
    per-image values (``evaluate_cards.evaluate_model``, cached)."""
    r = evaluate_cards.evaluate_model(path, k, limit)
    return {
        "nll": r["nll"],
        "elbo": r["elbo"],
        "ess": r["ess"],
        "k": k,
        "n": r["n"],
        "eval_binarization": r["eval_binarization"],
        "eval_s": r["eval_seconds"],
        "nll_per_image": r["nll_per_image"],
    }


def _train_config(name: str) -> dict:
    """Training settings of a pretrained model's config (so that baselines match them); its
    per-epoch learning-rate decay too where it has one."""
    c = json.loads((CONFIGS / f"{name}.json").read_text())
    decay = {"lr_decay": c["lr_decay"]} if c.get("lr_decay", 1.0) != 1.0 else {}
    return {k: c[k] for k in TRAIN_KEYS} | decay | {"epochs": c["epochs"]}


# ---------------------------------------------------------------------------- rows
def factor_analysis_row(n_components: int, limit: int, n_train: int) -> dict:
    """Factor analysis: literal Gaussian density on binary data, and the dequantised bound."""
    from sklearn.decomposition import FactorAnalysis

    x_train = static_binarize(load_dataset("mnist", "train").x[:n_train], 0)  # (N, D) binary
    x_test = test_images(limit)[0].numpy().astype(np.float64)
    t0 = time.perf_counter()
    fa = FactorAnalysis(n_components=n_components, random_state=0).fit(x_train)
    literal = -fa.score_samples(x_test)  # (n,), Gaussian density at binary points
    u = np.random.default_rng(0).random(x_train.shape, dtype=np.float32)
    fa_u = FactorAnalysis(n_components=n_components, random_state=0).fit(x_train + u)
    # -E_u log N(v + u; m, S) = -log N(v + 1/2; m, S) + tr(S^-1) / 24, an upper bound on
    # -log P(v) for the discrete model P(v) = mass of the cell [v, v + 1).
    bound = -fa_u.score_samples(x_test + 0.5) + np.trace(fa_u.get_precision()) / 24.0
    wall = time.perf_counter() - t0
    return {
        "method": "Gaussian FA on dequantised pixels (side note)",
        "nll": float(bound.mean()),
        "nll_per_image": bound.tolist(),
        "nll_literal_mean": float(literal.mean()),
        "nll_literal_median": float(np.median(literal)),
        "literal_min_noise_var": float(fa.noise_variance_.min()),
        "n_degenerate_pixels": int((fa.noise_variance_ < 1e-6).sum()),
        "k": "exact",
        "n": len(x_test),
        "epochs": f"EM, {fa_u.n_iter_} iterations",
        "train_images": int(n_train),
        "train_binarization": "static, seed 0 (one draw)",
        "wall_s": round(wall, 1),
        "elbo": None,
        "ess": None,
    }


def finished(path: Path) -> bool:
    """A model folder whose training has ended (``train_pretrained.py`` deletes the training
    state ``train_state.safetensors`` when a run is over)."""
    return (path / "model.safetensors").is_file() and not (
        path / "train_state.safetensors"
    ).is_file()


def _cached_model(path: Path, make, epochs: float):
    """Load ``path`` if it was trained for ``epochs``; else train it by ``make()``."""
    if (path / "model.safetensors").is_file():
        model = dlgm.load(path)
        if model.metadata.get("training", {}).get("epochs") == epochs:
            return model, model.metadata.get("wall_time_s")
    t0 = time.perf_counter()
    trainer = make()
    wall = round(time.perf_counter() - t0, 1)
    trainer.model.metadata["wall_time_s"] = wall
    trainer.save(path)
    (path / "train_state.safetensors").unlink(missing_ok=True)
    return trainer.model, wall


def _meta(command: str) -> dict:
    """The metadata every trained Table 1 row's model starts with."""
    return {"data": "mnist", "binarization": {"kind": "dynamic"}, "command": command}


def _trained(method: str, epochs: float, wall, out: Path, settings: dict, k: int, limit: int):
    """The row of a model trained here, evaluated with ``evaluate_model``."""
    row = {
        "method": method,
        "epochs": epochs,
        "wall_s": wall,
        "model_dir": str(out.relative_to(ROOT)),
        "train_binarization": "dynamic",
        "settings": settings,
    }
    return row | evaluate_model(out, k, limit)


def trained_row(
    method: str,
    config: DLGMConfig,
    settings: dict,
    epochs: float,
    k: int,
    limit: int,
    out: Path,
    command: str | None = None,
) -> dict:
    """Train (or reuse) a model with wake-sleep or Algorithm 1 and evaluate it; ``command``
    (the one that reproduces it) goes into the model's metadata."""
    x_train = load_dataset("mnist", "train").x
    meta = _meta(command or f"python experiments/table1.py --rows {method} --epochs {epochs:g}")
    trainer_fn = fit_wake_sleep if method == "wake-sleep" else fit

    def make():
        model = DLGM(config, metadata=meta, seed=settings["seed"])
        return trainer_fn(
            model,
            x_train,
            epochs=epochs,
            binarize="dynamic",
            device="cpu",
            report_every=100,
            **settings,
        )

    _, wall = _cached_model(out, make, epochs)
    return _trained(method, epochs, wall, out, settings, k, limit)


def resumable_wake_sleep_row(
    config: DLGMConfig, settings: dict, epochs: float, k: int, limit: int, out: Path
) -> dict:
    """Wake-sleep for a long budget: trains in ``out`` with its training state saved every 5
    epochs, resumes from that state if a run was stopped, and evaluates the finished model."""
    state = out / "train_state.safetensors"
    wall = None
    if (out / "model.safetensors").is_file() and not state.is_file():
        model = dlgm.load(out)
        if model.metadata.get("training", {}).get("epochs") == epochs:
            wall = model.metadata.get("wall_time_s")
    if wall is None:
        x_train = load_dataset("mnist", "train").x
        if state.is_file():
            trainer = WakeSleepTrainer.resume(out, x_train, device="cpu")
            print(f"  resumed at epoch {trainer.record()['epochs']:g}", file=sys.stderr)
        else:
            model = DLGM(
                config,
                metadata=_meta("python experiments/table1.py --rows wake-sleep-long"),
                seed=settings["seed"],
            )
            trainer = WakeSleepTrainer(
                model, x_train, binarize="dynamic", device="cpu", report_every=100, **settings
            )

        def report(p):
            if p.end_of_epoch:
                print(
                    f"  [{time.strftime('%H:%M:%S')}] epoch {p.epoch:g}: wake ELBO {p.elbo:.2f}",
                    file=sys.stderr,
                    flush=True,
                )

        continue_fit(
            trainer, epochs=epochs, callback=report, checkpoint_dir=out, checkpoint_every=5
        )
        wall = round(trainer.seconds, 1)
        trainer.model.metadata["wall_time_s"] = wall
        trainer.save(out)
        state.unlink(missing_ok=True)
    return _trained("wake-sleep (long)", epochs, wall, out, settings, k, limit)


def pretrained_row(method: str, name: str, k: int, limit: int) -> dict | None:
    """Evaluate ``pretrained/name`` (None if it does not exist yet or is still training)."""
    path = PRETRAINED / name
    if not finished(path):
        return None
    model = dlgm.load(path)
    t = model.metadata.get("training", {})
    row = {
        "method": method,
        "epochs": t.get("epochs"),
        "wall_s": model.metadata.get("wall_time_s"),
        "model_dir": f"pretrained/{name}",
        "train_binarization": "dynamic",
        "card_test_nll": model.metadata.get("test_nll"),
        "settings": {key: t.get(key) for key in TRAIN_KEYS},
    }
    return row | evaluate_model(path, k, limit)


def throughput(config: DLGMConfig, settings: dict, steps: int, rounds: int = 3) -> dict:
    """Training examples per second of wake-sleep and of Algorithm 1 on this architecture,
    measured back to back (alternating, best of ``rounds``) so that machine load affects both
    alike."""
    from dlgm.train import Trainer
    from dlgm.wake_sleep import WakeSleepTrainer

    x_train = load_dataset("mnist", "train").x
    best = {"wake-sleep": 0.0, "Algorithm 1": 0.0}
    for _ in range(rounds):
        for name, cls in (("wake-sleep", WakeSleepTrainer), ("Algorithm 1", Trainer)):
            trainer = cls(
                DLGM(config, seed=0), x_train, device="cpu", report_every=steps, **settings
            )
            t0 = time.perf_counter()
            for _ in trainer.run(steps=steps):
                pass
            rate = steps * settings["batch_size"] / (time.perf_counter() - t0)
            best[name] = max(best[name], round(rate))
    return best


# ---------------------------------------------------------------------------- the table
def paired_sem(a, b) -> float:
    """Standard error of mean(a - b) over paired per-image values."""
    d = np.asarray(a) - np.asarray(b)
    return float(d.std(ddof=1) / math.sqrt(len(d)))


def markdown(rows: list[dict], paper: dict, reference: str | None = None) -> str:
    """The results as a markdown table (NLL +- standard error over images)."""
    head = (
        "| method | paper | -ln p(v) (nats) | ± s.e. | diff. vs. "
        + (reference or "-")
        + " | −ELBO | ESS | K | test images | epochs | train wall time | model |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    ref = next((r for r in rows if r["method"] == reference), None)
    lines = [head]
    for r in rows:
        per = np.asarray(r["nll_per_image"])
        sem = per.std(ddof=1) / math.sqrt(len(per))
        diff = "-"
        if ref is not None and r is not ref:
            diff = (
                f"{r['nll'] - ref['nll']:+.2f} ± "
                f"{paired_sem(r['nll_per_image'], ref['nll_per_image']):.2f}"
            )
        elbo = "-" if r.get("elbo") is None else f"{-r['elbo']:.2f}"
        ess = "-" if r.get("ess") is None else f"{r['ess']:.0f}"
        wall = "-" if r.get("wall_s") is None else f"{r['wall_s']:.0f} s"
        p = paper.get(r["method"].split(" (")[0])
        lines.append(
            f"| {r['method']} | {'-' if p is None else f'{p:.2f}'} | {r['nll']:.2f} | "
            f"{sem:.2f} | {diff} | {elbo} | {ess} | {r['k']} | {r['n']} | "
            f"{r['epochs']} | {wall} | {r.get('model_dir', 'sklearn')} |"
        )
    return "\n".join(lines)


def run_rows(specs: dict, cache: Path, fresh: bool) -> list[dict]:
    """Compute (or read from ``cache``) each row; ``specs`` maps a row key to a thunk."""
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for key, thunk in specs.items():
        f = cache / f"{key}.json"
        if f.is_file() and not fresh:
            rows.append(json.loads(f.read_text()))
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {key} ...", file=sys.stderr, flush=True)
        row = thunk()
        if row is None:
            print(f"  {key}: not available yet, skipped", file=sys.stderr)
            continue
        f.write_text(json.dumps(row))
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--rows",
        default=",".join(DEFAULT_ROWS),
        help=f"comma-separated subset of {', '.join(ROWS)} (default: all but wake-sleep-long, "
        "which trains for hours)",
    )
    p.add_argument("--k", type=int, default=5000, help="importance samples per image")
    p.add_argument("--limit", type=int, default=None, help="first N test images (default all)")
    p.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="wake-sleep epochs (default: those of mnist-table1-diag's config)",
    )
    p.add_argument("--fa-train", type=int, default=60000, help="training images for FA")
    p.add_argument("--fresh", action="store_true", help="recompute cached rows")
    p.add_argument(
        "--throughput",
        type=int,
        default=0,
        metavar="STEPS",
        help="only measure training speed (examples/s) of wake-sleep and "
        "Algorithm 1 over STEPS steps each, and stop",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    settings = _train_config("mnist-table1-diag")
    epochs = args.epochs or settings.pop("epochs")
    settings.pop("epochs", None)
    long_settings = _train_config("mnist-table1-diag-long")
    long_epochs = long_settings.pop("epochs")
    config = DLGMConfig(n_latent=(200,), gen_hidden=(200, 200), rec_hidden=(200, 200))
    if args.throughput:
        print(
            json.dumps(
                {
                    "examples_per_s": throughput(config, settings, args.throughput),
                    "machine": machine(),
                }
            )
        )
        return 0
    cache = RUNS / "table1"
    k, n = args.k, args.limit
    specs = {
        "fa": lambda: pretrained_row("factor analysis", "mnist-table1-fa", k, n),
        "nlgbn": lambda: pretrained_row("NLGBN", "mnist-table1-nlgbn", k, n),
        "wake-sleep": lambda: trained_row(
            "wake-sleep", config, settings, epochs, k, n, cache / "wake-sleep-model"
        ),
        "wake-sleep-long": lambda: resumable_wake_sleep_row(
            config, long_settings, long_epochs, k, n, cache / "wake-sleep-long-model"
        ),
        "diag": lambda: pretrained_row("DLGM diagonal", "mnist-table1-diag", k, n),
        "rank1": lambda: pretrained_row("DLGM rank-one", "mnist-table1-rank1", k, n),
        "diag-long": lambda: pretrained_row("DLGM diagonal (long)", "mnist-table1-diag-long", k, n),
        "rank1-long": lambda: pretrained_row(
            "DLGM rank-one (long)", "mnist-table1-rank1-long", k, n
        ),
        "fa-gaussian": lambda: factor_analysis_row(200, n, args.fa_train),
    }
    assert tuple(specs) == ROWS
    wanted = args.rows.split(",")
    rows = run_rows({key: specs[key] for key in wanted}, cache, args.fresh)
    print(markdown(rows, PAPER_TABLE1, reference="DLGM rank-one"))
    fa = next((r for r in rows if r["method"].startswith("Gaussian FA")), None)
    if fa:
        print(
            f"\nGaussian FA, literal Gaussian density at the binary test points: mean "
            f"-log p = {fa['nll_literal_mean']:.4g}, median {fa['nll_literal_median']:.4g} "
            f"nats ({fa['n_degenerate_pixels']} pixels with noise variance < 1e-6)"
        )
    print(f"\nmachine: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
