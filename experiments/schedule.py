"""Learning-rate schedules over long runs: the IWAE schedule against today's recipe (issue #9).

Reads the training histories that ``python -m dlgm train`` writes into each run's card (one row
per epoch: the learning rate of the epoch and the valid ELBO, one sample with analytic KL, on the
card's first ``eval_limit`` test images binarised once with its evaluation seed) and compares
the runs at equal epochs:

- the valid ELBO at milestone epochs (the mean of the ``--window`` epochs ending there, so that
  one noisy epoch does not decide), with the learning rate of that epoch;
- for each threshold, the first epoch at which that trailing mean reaches it ("-" if never).

Prints the markdown tables of ``experiments/RESULTS.md`` and draws
``experiments/figures/lr_schedule.png`` (valid ELBO and learning rate against epochs). Usage::

    python experiments/schedule.py pretrained/mnist-table1-diag-long \\
        experiments/models/mnist-table1-diag-iwae --png experiments/figures/lr_schedule.png

A run is a folder with ``card.json`` (a running one too: its card is rewritten at every
checkpoint) or the card itself.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw

MILESTONES = (1, 4, 13, 40, 121, 200, 300, 364, 450, 550, 655)
THRESHOLDS = (-100.0, -97.0, -95.0, -94.0, -93.5, -93.0, -92.5, -92.0)
COLOURS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
)


def load_curve(run: str | Path) -> list[tuple[int, float, float]]:
    """``[(epoch, valid_elbo, lr), ...]`` of a run folder or card, one row per whole epoch."""
    path = Path(run)
    card = json.loads((path / "card.json" if path.is_dir() else path).read_text())
    history = card.get("history") or card.get("training", {}).get("history")
    if not history:
        raise ValueError(f"{run}: the card has no training history")
    rows = [
        (int(round(h["epoch"])), float(h["valid_elbo"]), float(h["lr"]))
        for h in history
        if "valid_elbo" in h and abs(h["epoch"] - round(h["epoch"])) < 1e-9
    ]
    if not rows:
        raise ValueError(f"{run}: no epoch of the history has a valid ELBO")
    return rows


def smoothed(curve: list[tuple[int, float, float]], epoch: int, window: int) -> float | None:
    """The mean valid ELBO over the ``window`` epochs ending at ``epoch`` (fewer at the start);
    None if the run has not reached ``epoch``."""
    if window < 1:
        raise ValueError(f"window={window}: at least 1")
    vals = [v for e, v, _ in curve if epoch - window < e <= epoch]
    if not any(e == epoch for e, _, _ in curve):
        return None
    return sum(vals) / len(vals)


def first_reach(curve: list[tuple[int, float, float]], threshold: float, window: int) -> int | None:
    """The first epoch whose trailing ``window``-epoch mean valid ELBO is >= ``threshold``."""
    for e, _, _ in curve:
        s = smoothed(curve, e, window)
        if s is not None and s >= threshold:
            return e
    return None


def lr_at(curve: list[tuple[int, float, float]], epoch: int) -> float | None:
    return next((lr for e, _, lr in curve if e == epoch), None)


def milestone_table(
    curves: dict[str, list], milestones=MILESTONES, window: int = 5, baseline: str | None = None
) -> str:
    """Markdown: valid ELBO (trailing mean) and lr per run at each milestone epoch, with the
    difference to ``baseline`` (default: the first run) where both have reached it."""
    names = list(curves)
    base = baseline or names[0]
    head = "| epoch | " + " | ".join(f"{n}: valid ELBO (lr)" for n in names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 1)]
    for m in milestones:
        if all(smoothed(c, m, window) is None for c in curves.values()):
            continue
        cells = []
        b = smoothed(curves[base], m, window)
        for n in names:
            s = smoothed(curves[n], m, window)
            if s is None:
                cells.append("-")
                continue
            diff = f" [{s - b:+.2f}]" if n != base and b is not None else ""
            cells.append(f"{s:.2f}{diff} ({lr_at(curves[n], m):.2e})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reach_table(curves: dict[str, list], thresholds=THRESHOLDS, window: int = 5) -> str:
    """Markdown: the first epoch at which each run's trailing-mean valid ELBO reaches each
    threshold, and the last epoch of each run."""
    names = list(curves)
    lines = [
        "| valid ELBO >= | " + " | ".join(names) + " |",
        "|" + "---|" * (len(names) + 1),
    ]
    for t in thresholds:
        cells = [first_reach(curves[n], t, window) for n in names]
        lines.append(
            f"| {t:.1f} | " + " | ".join("-" if c is None else str(c) for c in cells) + " |"
        )
    last = [f"{c[-1][0]} ({smoothed(c, c[-1][0], window):.2f})" for c in curves.values()]
    lines.append("| last epoch (valid ELBO) | " + " | ".join(last) + " |")
    return "\n".join(lines)


def curves_png(
    curves: dict[str, list], path: Path, title: str, lo: float = -105.0, hi: float | None = None
) -> None:
    """Two panels over the same epoch axis: valid ELBO (clipped to [lo, hi]) and log10 lr."""
    left, width, top, h1, h2, gap = 70, 720, 40, 330, 120, 50
    canvas = Image.new(
        "RGB", (left + width + 30, top + h1 + gap + h2 + 50 + 14 * len(curves)), "white"
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 10), title, fill="black")
    e_max = max(c[-1][0] for c in curves.values())
    best = max(v for c in curves.values() for _, v, _ in c)
    hi = hi if hi is not None else math.ceil(best + 0.5)
    lrs = [lr for c in curves.values() for _, _, lr in c]
    l_lo, l_hi = math.floor(math.log10(min(lrs))), math.ceil(math.log10(max(lrs)) + 1e-9)
    l_hi = max(l_hi, l_lo + 1)

    def px(e):
        return left + (e - 1) / max(e_max - 1, 1) * width

    def py1(v):
        return top + (hi - min(max(v, lo), hi)) / (hi - lo) * h1

    def py2(lr):
        return top + h1 + gap + (l_hi - math.log10(lr)) / (l_hi - l_lo) * h2

    for y0, y1 in ((top, top + h1), (top + h1 + gap, top + h1 + gap + h2)):
        draw.rectangle([left, y0, left + width, y1], outline="black")
    for v in range(math.ceil(lo), math.floor(hi) + 1):
        if v % (1 if hi - lo <= 12 else 2 if hi - lo <= 24 else 5) == 0:
            draw.line([(left, py1(v)), (left + width, py1(v))], fill=(225, 225, 225))
            draw.text((left - 40, py1(v) - 6), f"{v}", fill="black")
    for k in range(l_lo, l_hi + 1):
        draw.text((left - 40, py2(10.0**k) - 6), f"1e{k}", fill="black")
    step = 10 ** max(0, int(math.log10(max(e_max, 1))) - 1) * (5 if e_max > 400 else 2)
    for e in range(step, e_max + 1, step):
        draw.line([(px(e), top + h1 + gap + h2), (px(e), top + h1 + gap + h2 + 4)], fill="black")
        draw.text((px(e) - 8, top + h1 + gap + h2 + 6), f"{e}", fill="black")
    draw.text((left, top + h1 + 8), "valid ELBO (nats per image)", fill="black")
    draw.text((left, top + h1 + gap + h2 + 22), "epoch; lower panel: learning rate", fill="black")
    for i, (name, c) in enumerate(curves.items()):
        colour = COLOURS[i % len(COLOURS)]
        draw.line([(px(e), py1(v)) for e, v, _ in c], fill=colour, width=2)
        draw.line([(px(e), py2(lr)) for e, _, lr in c], fill=colour, width=2)
        y = top + h1 + gap + h2 + 40 + 14 * i
        draw.rectangle([left, y + 2, left + 14, y + 10], fill=colour)
        draw.text((left + 20, y), name, fill="black")
    canvas.save(path, optimize=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders (or cards); the first is the baseline")
    p.add_argument("--names", nargs="*", help="labels (default: the folder names)")
    p.add_argument("--window", type=int, default=5, help="epochs in the trailing mean")
    p.add_argument("--png", type=Path, help="write the figure here")
    p.add_argument("--lo", type=float, default=-105.0, help="lowest valid ELBO drawn")
    args = p.parse_args(argv)
    names = args.names or [
        Path(r).name if Path(r).is_dir() else Path(r).parent.name for r in args.runs
    ]
    if len(names) != len(args.runs):
        p.error(f"{len(names)} names for {len(args.runs)} runs")
    curves = {n: load_curve(r) for n, r in zip(names, args.runs, strict=True)}
    print(milestone_table(curves, window=args.window))
    print()
    print(reach_table(curves, window=args.window))
    if args.png:
        args.png.parent.mkdir(parents=True, exist_ok=True)
        curves_png(curves, args.png, "Valid ELBO and learning rate against epochs", lo=args.lo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
