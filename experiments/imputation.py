"""Missing-data imputation (paper sec. 5.4, Fig. 5 and appendix F), measured.

On the first ``--n`` MNIST test images (binarised once with ``static_binarize(x, seed=1)``),
three kinds of missing pixels:

- ``MAR 60%`` and ``MAR 80%``: each pixel missing independently with probability 0.6 / 0.8
  (``dlgm.impute.mask_random``, one mask per image, seed 0);
- ``square 14x14``: the centre 14 x 14 square missing (NMAR, ``dlgm.impute.mask_square``).

Each is imputed by ``dlgm.impute.impute`` with ``--steps`` steps (missing pixels start as
Bernoulli(0.5) noise) by three methods: the paper's pseudo-Gibbs chain, Metropolis-within-Gibbs
(exact, Mattei & Frellsen 2018) and importance resampling (100 particles); then MWG and
importance resampling again, started from the pseudo-Gibbs chain's last state ("warm"). After
every step the error on the missing pixels of E[v | xi_t] (``dlgm.impute.missing_error``) is
averaged over images: cross-entropy (nats per missing pixel) and accuracy (p >= 0.5 against the
binary truth), with standard errors over images. Also the error of the average of E[v | xi_t]
over the last two thirds of the steps (a Monte Carlo estimate of E[v_m | v_o]), and for
importance resampling the error of its weighted mean.

Figures (PNG, drawn with PIL): ``experiments/figures/imputation_chains.png`` (like Fig. 5: truth,
the masked image with missing pixels grey, then the first 15 steps of E[v | xi_t]; for each
mask kind two images, each with a pseudo-Gibbs, an MWG and a warm MWG row) and
``experiments/figures/imputation_error.png`` (error against step, +- 1 s.e.).

Usage::

    OMP_NUM_THREADS=1 nice -n 5 python experiments/imputation.py [--models mnist-table1-rank1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dlgm  # noqa: E402
from dlgm.data import model_images  # noqa: E402
from dlgm.impute import impute, mask_random, mask_square, missing_error  # noqa: E402

sys.path.insert(0, str(ROOT / "experiments"))
from table1 import finished  # noqa: E402

FIGURES = ROOT / "experiments" / "figures"
RUNS = ROOT / "runs" / "experiments" / "imputation"
METHODS = ("pseudo-gibbs", "mwg", "importance")
WARM = ("mwg", "importance")  # rerun from pseudo-Gibbs's last state
COLOURS = {
    "pseudo-gibbs": (30, 90, 230),
    "mwg": (220, 30, 30),
    "importance": (0, 150, 0),
    "mwg (warm)": (240, 140, 0),
    "importance (warm)": (150, 0, 190),
}
PREFERRED = ("mnist-table1-rank1", "mnist-fig2c-rank1", "mnist-2d-rank1")


def masks(n: int, shape=(28, 28)) -> dict:
    """The three kinds of missing pixels, each (n, D) bool (True = missing)."""
    d = shape[0] * shape[1]
    g = torch.Generator().manual_seed(0)
    return {
        "MAR 60%": mask_random((n, d), 0.6, generator=g),
        "MAR 80%": mask_random((n, d), 0.8, generator=g),
        "square 14x14": mask_square(shape, 14).expand(n, d),
    }


def _measure(model, x, mask, method, steps, burn, init) -> tuple[dict, torch.Tensor]:
    """One imputation run: per-step errors and summary numbers; also its last filled image."""
    g = torch.Generator().manual_seed(1)
    t0 = time.perf_counter()
    res = impute(model, x, mask, method=method, n_steps=steps, init=init, generator=g)
    err = missing_error(res, x)
    avg = res.probs[burn + 1 :].mean(0)  # (B, D): mean of E[v | xi_t] after burn-in
    avg_err = missing_error(_single(res, avg), x)
    entry = {"steps": err["steps"], "seconds": round(time.perf_counter() - t0, 2)}
    for m in ("cross_entropy", "accuracy"):
        entry[m], entry[f"{m}_sem"] = err[m], err[f"{m}_sem"]
        entry[f"{m}_avg"] = float(avg_err[m][0])
        entry[f"{m}_avg_sem"] = float(avg_err[f"{m}_sem"][0])
    if method == "mwg":
        entry["acceptance_rate"] = res.acceptance_rate
        entry["step_acceptance"] = res.step_acceptance.numpy()
    if method == "importance":
        w_err = missing_error(_single(res, res.mean_imputation), x)
        entry["cross_entropy_weighted_mean"] = float(w_err["cross_entropy"][0])
        entry["accuracy_weighted_mean"] = float(w_err["accuracy"][0])
        entry["ess_mean"] = float(res.ess.mean())
    entry["probs"] = res.probs  # (T+1, B, D), for the figure
    return entry, res.images[-1]


def run_model(model, x: torch.Tensor, kinds: dict, steps: int, burn: int) -> dict:
    """Every (mask kind, method): per-step errors, the chain, and summary numbers.

    The three methods start from Bernoulli(0.5) noise; then MWG and importance resampling are
    run again from the pseudo-Gibbs chain's last state ("warm": their step 0 is pseudo-Gibbs's
    step T), which gives their proposal q(xi | v_o, v_m) a plausible fill to condition on.
    """
    out = {}
    for kind, mask in kinds.items():
        for method in METHODS:
            out[(kind, method)], last = _measure(model, x, mask, method, steps, burn, "noise")
            if method == "pseudo-gibbs":
                warm = last
        for method in WARM:
            out[(kind, f"{method} (warm)")], _ = _measure(model, x, mask, method, steps, burn, warm)
    return out


def _single(res, probs):
    """An ImputationResult-like holder of one (B, D) array of probabilities."""
    from dlgm.impute import ImputationResult

    return ImputationResult(
        images=probs[None],
        probs=probs[None],
        mask=res.mask,
        method=res.method,
        steps=torch.tensor([0]),
    )


def baseline(x: torch.Tensor, kinds: dict) -> str:
    """Reference without a model: every missing pixel predicted by its mean over the training
    images (grey level = probability of ink), and by 0 (background)."""
    from dlgm.data import load_dataset
    from dlgm.impute import ImputationResult

    mean = torch.tensor(load_dataset("mnist", "train").x.mean(0)).expand_as(x)  # (B, D)
    lines = []
    for kind, mask in kinds.items():
        res = ImputationResult(
            images=mean[None], probs=mean[None], mask=mask, method="mean", steps=torch.tensor([0])
        )
        err = missing_error(res, x)
        zero = float(((x < 0.5) & mask).sum() / mask.sum())
        lines.append(
            f"{kind}: training pixel means CE {err['cross_entropy'][0]:.3f}, "
            f"accuracy {err['accuracy'][0]:.3f}; all-background accuracy {zero:.3f}"
        )
    return "\n".join(lines)


def table(results: dict, steps: int, burn: int) -> str:
    """Markdown: error at steps 1, 5, 15, T and of the averaged imputation, per kind/method."""
    show = [s for s in (1, 5, 15, steps) if s <= steps]
    head = (
        "| mask | method | "
        + " | ".join(f"CE step {s}" for s in show)
        + f" | CE of mean over steps {burn + 1}-{steps} | accuracy step {steps} | "
        f"accuracy of mean | MWG acceptance | s/run |"
    )
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for (kind, method), e in results.items():
        ce = " | ".join(
            f"{e['cross_entropy'][s]:.3f} ± {e['cross_entropy_sem'][s]:.3f}" for s in show
        )
        acc = f"{e['accuracy'][steps]:.3f} ± {e['accuracy_sem'][steps]:.3f}"
        acc_avg = f"{e['accuracy_avg']:.3f} ± {e['accuracy_avg_sem']:.3f}"
        rate = f"{e['acceptance_rate']:.2f}" if "acceptance_rate" in e else "-"
        lines.append(
            f"| {kind} | {method} | {ce} | {e['cross_entropy_avg']:.3f} ± "
            f"{e['cross_entropy_avg_sem']:.3f} | {acc} | {acc_avg} | {rate} | "
            f"{e['seconds']:.1f} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- figures
def _grey(img: np.ndarray, mask: np.ndarray | None = None, scale: int = 2) -> Image.Image:
    """A (H, W) image in [0, 1] as black ink on white; masked pixels drawn mid-grey."""
    rgb = np.stack([255 * (1 - img)] * 3, -1)
    if mask is not None:
        rgb[mask] = (150, 150, 200)
    im = Image.fromarray(rgb.astype(np.uint8))
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST)


def chains_figure(x, kinds, results, path: Path, images=(0, 1), n_cols=15, scale=2) -> None:
    """Fig. 5-like grid: truth, masked, then E[v | xi_t] for t = 1..n_cols."""
    side, pad, label_w = 28 * scale, 2, 150
    rows = [
        (kind, i, method)
        for kind in kinds
        for i in images
        for method in ("pseudo-gibbs", "mwg", "mwg (warm)")
    ]
    w = label_w + (n_cols + 2) * (side + pad)
    h = 20 + len(rows) * (side + pad)
    canvas = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((label_w, 4), "truth", fill="black")
    draw.text((label_w + side + pad, 4), "masked", fill="black")
    draw.text((label_w + 2 * (side + pad), 4), f"E[v | xi_t], t = 1 .. {n_cols}", fill="black")
    for r, (kind, i, method) in enumerate(rows):
        top = 20 + r * (side + pad)
        m = kinds[kind][i].reshape(28, 28).numpy()
        truth = x[i].reshape(28, 28).numpy()
        draw.text((4, top + side // 2 - 6), f"{kind}, {method}", fill="black")
        canvas.paste(_grey(truth, scale=scale), (label_w, top))
        canvas.paste(_grey(truth, m, scale), (label_w + side + pad, top))
        probs = results[(kind, method)]["probs"]
        for t in range(1, n_cols + 1):
            img = probs[t, i].reshape(28, 28).numpy()
            canvas.paste(_grey(img, scale=scale), (label_w + (t + 1) * (side + pad), top))
    canvas.save(path, optimize=True)


def _axes(draw, box, x_max, y_lo, y_hi, title, y_label):
    """Frame, ticks and labels of one panel; returns the data -> pixel map."""
    left, top, right, bottom = box
    draw.rectangle(box, outline="black")
    draw.text((left, top - 14), title, fill="black")
    digits = 3 if y_hi - y_lo < 0.2 else 2
    for v in np.linspace(y_lo, y_hi, 5):
        yy = bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top)
        draw.line([(left - 3, yy), (left, yy)], fill="black")
        draw.text((left - 42, yy - 6), f"{v:.{digits}f}", fill="black")
    for t in range(0, x_max + 1, 5):
        xx = left + t / x_max * (right - left)
        draw.line([(xx, bottom), (xx, bottom + 3)], fill="black")
        draw.text((xx - 4, bottom + 5), str(t), fill="black")
    draw.text((left + (right - left) // 2 - 12, bottom + 18), "step", fill="black")
    draw.text((left - 40, top - 28), y_label, fill="black")

    def to_px(t, v):
        return (
            left + t / x_max * (right - left),
            bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top),
        )

    return to_px


def error_figure(results: dict, kinds, steps: int, path: Path) -> None:
    """Per mask kind: cross-entropy and accuracy against step, one line per method, +- 1 s.e."""
    pw, ph, mx, my = 300, 200, 70, 60
    metrics = (
        ("cross_entropy", "cross-entropy (nats / missing pixel)"),
        ("accuracy", "accuracy on missing pixels"),
    )
    canvas = Image.new("RGB", (len(kinds) * (pw + mx) + 20, 2 * (ph + my) + 50), "white")
    draw = ImageDraw.Draw(canvas)
    for j, (metric, label) in enumerate(metrics):
        for i, kind in enumerate(kinds):
            series = [results[(kind, m)] for m in COLOURS]
            lo = min(float(np.min(e[metric][1:] - e[f"{metric}_sem"][1:])) for e in series)
            hi = max(float(np.max(e[metric][1:] + e[f"{metric}_sem"][1:])) for e in series)
            lo, hi = lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)
            box = (
                mx + i * (pw + mx),
                my + j * (ph + my),
                mx + i * (pw + mx) + pw,
                my + j * (ph + my) + ph,
            )
            to_px = _axes(draw, box, steps, lo, hi, kind, label if i == 0 else "")
            for method, e in zip(COLOURS, series, strict=True):
                pts = [to_px(t, float(e[metric][t])) for t in range(1, steps + 1)]
                for t in range(1, steps + 1):
                    a = to_px(t, float(e[metric][t] - e[f"{metric}_sem"][t]))
                    b = to_px(t, float(e[metric][t] + e[f"{metric}_sem"][t]))
                    draw.line([a, b], fill=COLOURS[method])
                draw.line(pts, fill=COLOURS[method], width=2)
    for k, method in enumerate(COLOURS):
        x0 = 20 + k * 170
        y0 = canvas.height - 22
        draw.line([(x0, y0 + 6), (x0 + 25, y0 + 6)], fill=COLOURS[method], width=3)
        draw.text((x0 + 30, y0), method, fill="black")
    canvas.save(path, optimize=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated pretrained names (default: every one of "
        f"{', '.join(PREFERRED)} that exists; figures from the first)",
    )
    p.add_argument("--n", type=int, default=200, help="number of test images")
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    names = (
        args.models.split(",")
        if args.models
        else [m for m in PREFERRED if finished(ROOT / "pretrained" / m)]
    )
    x, how = model_images(dlgm.load(ROOT / "pretrained" / names[0]), limit=args.n)  # shared
    x = torch.tensor(x)
    kinds = masks(len(x))
    burn = args.steps // 3
    print(f"{len(x)} test images, binarisation {how}, {args.steps} steps, noise init\n")
    print("No model:\n" + baseline(x, kinds) + "\n")
    summary = {}
    for k, name in enumerate(names):
        model = dlgm.load(ROOT / "pretrained" / name)
        t0 = time.perf_counter()
        results = run_model(model, x, kinds, args.steps, burn)
        t = model.metadata.get("training", {})
        print(f"### {name} ({t.get('epochs')} epochs; {time.perf_counter() - t0:.0f} s)\n")
        print(table(results, args.steps, burn) + "\n")
        for (kind, method), e in results.items():
            if method.startswith("importance"):
                print(
                    f"{kind}, {method}: weighted mean CE {e['cross_entropy_weighted_mean']:.3f}"
                    f", accuracy {e['accuracy_weighted_mean']:.3f}, mean ESS "
                    f"{e['ess_mean']:.1f} of 100"
                )
        print()
        summary[name] = {
            f"{kind}|{method}": {
                key: (v.tolist() if isinstance(v, np.ndarray) else v)
                for key, v in e.items()
                if key != "probs"
            }
            for (kind, method), e in results.items()
        }
        if k == 0:
            FIGURES.mkdir(parents=True, exist_ok=True)
            chains_figure(x, kinds, results, FIGURES / "imputation_chains.png")
            error_figure(results, kinds, args.steps, FIGURES / "imputation_error.png")
            print(f"figures from {name}\n")
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / "results.json").write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
