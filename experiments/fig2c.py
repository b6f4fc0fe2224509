"""Fig. 2c of the paper: test -ln p(v) of factor analysis, wake-sleep and the DLGM with
diagonal and rank-one recognition covariance, all with the 100-300 architecture (100 latents
-> 300 deterministic ReLU units -> 784 Bernoulli pixels; the recognition model alike).

Same budget for every trained row: ``--epochs`` (default 10) epochs with the training settings
of ``experiments/configs/mnist-fig2c-rank1.json`` (Adam, lr, batch size, seed, kappa = 1,
dynamic binarisation): wake-sleep (``dlgm.wake_sleep``), and Algorithm 1 (``dlgm.train.fit``)
with a diagonal and with a rank-one q. ``pretrained/mnist-fig2c-rank1`` (trained longer; its
epochs are in the table) is added as a further row when it exists. Factor analysis has 100
factors; see ``experiments/table1.py`` for its two numbers (the literal Gaussian density on
binary data, and the dequantised bound that is the row's value). The evaluation protocol is
Table 1's (``table1.evaluate_model``): the first ``--limit`` test images binarised once with
``static_binarize(x, seed=1)``, K = ``--k`` importance samples, generator seed 0.

Rows are cached in ``runs/experiments/fig2c/`` (git-ignored; ``--fresh`` redoes them). The bar
chart goes to ``experiments/figures/fig2c.png``. Usage::

    OMP_NUM_THREADS=1 nice -n 5 python experiments/fig2c.py [--epochs 10]
"""

from __future__ import annotations

import argparse
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
    pretrained_row,
    run_rows,
    trained_row,
)

from dlgm.model import DLGMConfig  # noqa: E402

FIGURES = ROOT / "experiments" / "figures"
COLOURS = {
    "factor analysis": (120, 120, 120),
    "wake-sleep": (0, 150, 0),
    "DLGM diagonal": (30, 90, 230),
    "DLGM rank-one": (220, 30, 30),
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=float, default=10, help="epochs of every trained row")
    p.add_argument("--k", type=int, default=5000, help="importance samples per image")
    p.add_argument("--limit", type=int, default=1000, help="first N test images")
    p.add_argument("--fa-train", type=int, default=60000, help="training images for FA")
    p.add_argument("--fresh", action="store_true", help="recompute cached rows")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    settings = _train_config("mnist-fig2c-rank1")
    settings.pop("epochs")
    arch = dict(n_latent=(100,), gen_hidden=(300,), rec_hidden=(300,))
    diag, rank1 = DLGMConfig(**arch, covariance="diag"), DLGMConfig(**arch, covariance="rank1")
    cache, k, n, e = RUNS / "fig2c", args.k, args.limit, args.epochs
    specs = {
        "fa": lambda: factor_analysis_row(100, n, args.fa_train),
        "wake-sleep": lambda: trained_row(
            "wake-sleep", diag, settings, e, k, n, cache / "wake-sleep-model"
        ),
        "diag": lambda: trained_row("DLGM diagonal", diag, settings, e, k, n, cache / "diag-model"),
        "rank1": lambda: trained_row(
            "DLGM rank-one", rank1, settings, e, k, n, cache / "rank1-model"
        ),
        "rank1-pretrained": lambda: pretrained_row(
            "DLGM rank-one (pretrained)", "mnist-fig2c-rank1", k, n
        ),
    }
    rows = run_rows(specs, cache, args.fresh)
    print(markdown(rows, {}, reference="DLGM rank-one"))
    fa = next((r for r in rows if r["method"] == "factor analysis"), None)
    if fa:
        print(
            f"\nfactor analysis, literal Gaussian density at the binary test points: mean "
            f"-log p = {fa['nll_literal_mean']:.4g}, median {fa['nll_literal_median']:.4g} "
            f"nats ({fa['n_degenerate_pixels']} pixels with noise variance < 1e-6)"
        )
    FIGURES.mkdir(parents=True, exist_ok=True)
    bar_chart(
        rows,
        FIGURES / "fig2c.png",
        f"Fig. 2c: 100-300 architecture, first {n} MNIST test images, K = {k}",
    )
    print(f"\nmachine: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
