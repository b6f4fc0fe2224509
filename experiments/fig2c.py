"""Fig. 2c of the paper as the paper meant it: test -ln p(v) of factor analysis, wake-sleep and
the DLGM with diagonal and rank-one recognition covariance, all with the 100-300 architecture
(100 latents -> 300 deterministic ReLU units -> 784 Bernoulli pixels; the recognition model
alike: 784 -> 300 -> q), all at one budget.

- **factor analysis**: in the paper's taxonomy (sec. 2) a DLGM with one stochastic layer and a
  linear T: logits = A G xi + b (``gen_hidden=()``), Bernoulli pixels, the 300-unit recognition
  model with a diagonal q, trained by Algorithm 1 (``dlgm.train.fit``).
- **wake-sleep**: the 100-300 ``DLGM`` trained by wake-sleep (``dlgm.wake_sleep``), diagonal q.
- **DLGM diagonal**: the 100-300 DLGM trained by Algorithm 1 with a diagonal q.
- **DLGM rank-one**: ``pretrained/mnist-fig2c-rank1`` when ``--epochs`` is its card's (it was
  trained with exactly these settings); otherwise trained here like the diagonal row.
- **DLGM rank-one, u^T D^-1 u <= 1**: not in the paper; the rank-one DLGM with the bound that
  removes the collapse of its q onto one direction (``u_cap=1``, see "Rank-one vs diagonal" in
  ``experiments/RESULTS.md``), trained here like the diagonal row.
- **Gaussian FA (side note)**: ``sklearn.decomposition.FactorAnalysis(n_components=100)`` on
  dequantised pixels (``table1.factor_analysis_row``): a density of grey values, not the
  paper's model; kept to show how far it is from it.

Every trained row uses the training settings of ``experiments/configs/mnist-fig2c-rank1.json``
(Adam, learning rate, batch size, seed; kappa = 1, S = 1, dynamic binarisation of all 60,000
training images) for ``--epochs`` epochs (default 30, the card's). The evaluation protocol is
the cards' (``table1.evaluate_model``, i.e. ``python -m dlgm eval --k 5000``): all 10,000 test
images (or the first ``--limit``) binarised once with ``static_binarize(x, seed=1)``, K =
``--k`` importance samples from the model's own q, generator seed 0; per-image values are kept,
so every row is paired against the rank-one row.

Rows are cached in ``runs/experiments/fig2c/`` (git-ignored; ``--fresh`` redoes them) with their
models, ``mnist-fig2c-fa``, ``-wake-sleep``, ``-diag`` and ``-rank1-cap``. The bar chart (the
models, not the side note) goes to ``experiments/figures/fig2c.png``. Usage::

    OMP_NUM_THREADS=1 nice -n 5 python experiments/fig2c.py                  # all rows, 90 min
    OMP_NUM_THREADS=1 nice -n 5 python experiments/fig2c.py --rows fa,diag   # a subset
    python experiments/fig2c.py --write pretrained/fig2c.json   # the app's table, from the cache
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))

from table1 import (  # noqa: E402
    ROOT,
    RUNS,
    _train_config,
    factor_analysis_row,
    machine,
    markdown,
    paired_sem,
    pretrained_row,
    run_rows,
    trained_row,
)

from dlgm.model import DLGMConfig  # noqa: E402

FIGURES = ROOT / "experiments" / "figures"
ROWS = ("fa", "wake-sleep", "diag", "rank1", "rank1-cap", "fa-gaussian")
CAPPED = "DLGM rank-one, u^T D^-1 u <= 1"
PRETRAINED_RANK1 = "mnist-fig2c-rank1"
COLOURS = {
    "factor analysis": (120, 120, 120),
    "wake-sleep": (0, 150, 0),
    "DLGM diagonal": (30, 90, 230),
    "DLGM rank-one": (220, 30, 30),
    CAPPED: (240, 140, 40),
}


def bar_chart(rows: list[dict], path: Path, title: str) -> None:
    """Horizontal bars of -ln p(v) with +- 1 s.e. whiskers (PIL)."""
    left, width, bar_h, gap = 250, 420, 26, 12
    h = 60 + len(rows) * (bar_h + gap) + 40
    canvas = Image.new("RGB", (left + width + 130, h), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 10), title, fill="black")
    nll = np.array([r["nll"] for r in rows])
    sem = np.array([np.std(r["nll_per_image"], ddof=1) / math.sqrt(r["n"]) for r in rows])
    on_scale = nll <= 1.5 * np.median(nll)  # factor analysis is far off: draw it cut
    lo = 10 * math.floor((nll - sem).min() / 10 - 1)
    hi = 10 * math.ceil((nll + sem)[on_scale].max() / 10 + 1)

    def px(v):
        return left + (min(v, hi) - lo) / (hi - lo) * width

    for i, r in enumerate(rows):
        top = 40 + i * (bar_h + gap)
        colour = COLOURS.get(r["method"].split(" (")[0], (0, 0, 0))
        draw.rectangle([left, top, px(nll[i]), top + bar_h], fill=colour)
        mid = top + bar_h // 2
        draw.text(
            (10, mid - 6),
            f"{r['method']}, {r['epochs']:g} ep."
            if isinstance(r["epochs"], (int, float))
            else r["method"],
            fill="black",
        )
        if not on_scale[i]:
            draw.text((px(hi) + 6, mid - 6), f"{nll[i]:.1f} (off scale)", fill="black")
            continue
        draw.line([(px(nll[i] - sem[i]), mid), (px(nll[i] + sem[i]), mid)], fill="black", width=2)
        draw.text((px(nll[i] + sem[i]) + 6, mid - 6), f"{nll[i]:.1f}", fill="black")
    bottom = 40 + len(rows) * (bar_h + gap)
    draw.line([(left, bottom), (left + width, bottom)], fill="black")
    for v in range(lo, hi + 1, 10 if hi - lo <= 100 else 50):
        draw.line([(px(v), bottom), (px(v), bottom + 4)], fill="black")
        draw.text((px(v) - 10, bottom + 6), f"{v:.0f}", fill="black")
    draw.text(
        (left + width // 2 - 80, bottom + 22), "-ln p(v), nats (lower is better)", fill="black"
    )
    canvas.save(path, optimize=True)


def configs() -> dict[str, DLGMConfig]:
    """The model of each trained row: the 100-300 architecture, or its linear version."""
    arch = dict(n_latent=(100,), gen_hidden=(300,), rec_hidden=(300,))
    return {
        "fa": DLGMConfig(n_latent=(100,), gen_hidden=(), rec_hidden=(300,), covariance="diag"),
        "wake-sleep": DLGMConfig(**arch, covariance="diag"),
        "diag": DLGMConfig(**arch, covariance="diag"),
        "rank1": DLGMConfig(**arch, covariance="rank1"),
        "rank1-cap": DLGMConfig(**arch, covariance="rank1", u_cap=1.0),
    }


def row_specs(settings: dict, epochs: float, k: int, n: int | None, fa_train: int) -> dict:
    """Row key -> a thunk that trains (or reuses) and evaluates that row."""
    cache, c = RUNS / "fig2c", configs()

    def trained(method, key):
        command = f"python experiments/fig2c.py --rows {key} --epochs {epochs:g}"
        return lambda: trained_row(
            method, c[key], settings, epochs, k, n, cache / f"mnist-fig2c-{key}", command=command
        )

    card = _train_config(PRETRAINED_RANK1)
    card_epochs = card.pop("epochs")
    same_recipe = card_epochs == epochs and card == settings
    return {
        "fa": trained("factor analysis", "fa"),
        "wake-sleep": trained("wake-sleep", "wake-sleep"),
        "diag": trained("DLGM diagonal", "diag"),
        "rank1": (
            (lambda: pretrained_row("DLGM rank-one", PRETRAINED_RANK1, k, n))
            if same_recipe
            else trained("DLGM rank-one", "rank1")
        ),
        "rank1-cap": trained(CAPPED, "rank1-cap"),
        "fa-gaussian": lambda: factor_analysis_row(100, n, fa_train),
    }


def training_phrase(settings: dict, epochs: float) -> str:
    """The training settings of every trained row in words, e.g. "Adam, learning rate 0.001,
    batch 100, dynamic binarisation, seed 0, 30 epochs" (``table1.trained_row`` always
    binarises dynamically)."""
    decay = settings.get("lr_decay", 1.0)
    lr = f"learning rate {settings['lr']:g}" + (f" x {decay:g} per epoch" if decay != 1.0 else "")
    return (
        f"{settings['optimizer'].capitalize()}, {lr}, batch {settings['batch_size']}, "
        f"dynamic binarisation, seed {settings['seed']}, {epochs:g} epochs"
    )


def shipped_table(rows: list[dict], settings: dict, epochs: float, k: int, command: str) -> dict:
    """The rows as the Likelihoods page reads them (``pretrained/fig2c.json``): per row the
    NLL, its standard error over images and the paired difference against the rank-one row
    (None for that row, and for all rows if it is missing), without per-image values.
    ``settings`` are the trained rows' training settings (``table1._train_config``)."""
    ref = next((r for r in rows if r["method"] == "DLGM rank-one"), None)
    out = []
    for r in rows:
        per = np.asarray(r["nll_per_image"])
        paired = ref is not None and r is not ref and len(per) == len(ref["nll_per_image"])
        out.append(
            {
                "method": r["method"],
                "model": r.get("model_dir", "sklearn"),
                "nll": float(r["nll"]),
                "nll_se": float(per.std(ddof=1) / math.sqrt(len(per))),
                "vs_rank1": float(r["nll"] - ref["nll"]) if paired else None,
                "vs_rank1_se": paired_sem(per, ref["nll_per_image"]) if paired else None,
                "elbo": r.get("elbo"),
                "ess": r.get("ess"),
                "epochs": r["epochs"],
                "wall_s": r.get("wall_s"),
                "k": r["k"],
                "n": r["n"],
            }
        )
    return {
        "architecture": "100 latents -> 300 ReLU units -> 784 Bernoulli pixels; recognition "
        "784 -> 300 -> q (factor analysis: a linear T, no hidden layer)",
        "protocol": f"all {rows[0]['n']:,} MNIST test images binarised once with seed 1, K = {k} "
        f"importance samples from the model's own q (generator seed 0); "
        f"{training_phrase(settings, epochs)} for every trained row; paired: mean and standard "
        "error over images of the per-image NLL differences against DLGM rank-one",
        "command": command,
        "machine": machine(),
        "rows": out,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--rows", default=",".join(ROWS), help=f"comma-separated subset of {', '.join(ROWS)}"
    )
    p.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="epochs of every trained row (default: those of the mnist-fig2c-rank1 card, 30)",
    )
    p.add_argument("--k", type=int, default=5000, help="importance samples per image")
    p.add_argument("--limit", type=int, default=None, help="first N test images (default all)")
    p.add_argument("--fa-train", type=int, default=60000, help="training images for Gaussian FA")
    p.add_argument("--fresh", action="store_true", help="recompute cached rows")
    p.add_argument(
        "--write",
        type=Path,
        metavar="JSON",
        help="also write the rows (without per-image values) for the Likelihoods page "
        "(pretrained/fig2c.json)",
    )
    args = p.parse_args(argv)
    unknown = set(args.rows.split(",")) - set(ROWS)
    if unknown:
        p.error(f"--rows: unknown {sorted(unknown)}; choose from {', '.join(ROWS)}")
    torch.set_num_threads(1)
    settings = _train_config(PRETRAINED_RANK1)
    epochs = args.epochs or settings["epochs"]
    settings.pop("epochs")
    specs = row_specs(settings, epochs, args.k, args.limit, args.fa_train)
    rows = run_rows({key: specs[key] for key in args.rows.split(",")}, RUNS / "fig2c", args.fresh)
    print(markdown(rows, {}, reference="DLGM rank-one"))
    fa = next((r for r in rows if r["method"].startswith("Gaussian FA")), None)
    if fa:
        print(
            f"\nGaussian FA, literal Gaussian density at the binary test points: mean "
            f"-log p = {fa['nll_literal_mean']:.4g}, median {fa['nll_literal_median']:.4g} "
            f"nats ({fa['n_degenerate_pixels']} pixels with noise variance < 1e-6)"
        )
    models = [r for r in rows if r["method"] in COLOURS]
    if models:
        FIGURES.mkdir(parents=True, exist_ok=True)
        n = models[0]["n"]
        bar_chart(
            models,
            FIGURES / "fig2c.png",
            f"Fig. 2c: 100-300 architecture, {epochs:g} epochs, {n:,} MNIST test images, "
            f"K = {args.k}",
        )
    if args.write and rows:
        command = "python experiments/fig2c.py " + " ".join(argv or sys.argv[1:])
        table = shipped_table(rows, settings, epochs, args.k, command)
        args.write.write_text(json.dumps(table, indent=1) + "\n")
    print(f"\nmachine: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
