"""Two recipes over several training seeds, paired by seed: is A ahead of B by more than the
seeds' spread? (issue #9: rank-one against diagonal at equal epochs, over 3 seeds)

Each recipe is a list of run folders (or cards), one per training seed, in the same seed order
for both. For every seed the script takes, from the cards alone (no evaluation is run):

- ``test_nll`` (the card's evaluation; all 10,000 MNIST test images with K = 5000 for the
  shipped protocol) and ``test_elbo``;
- the valid ELBO of the training history (first ``eval_limit`` test images, one sample) at
  milestone epochs, as the mean of the ``--window`` epochs ending there
  (``schedule.smoothed``), and the card's wall time;

and prints a markdown table: per seed A, B and A - B; then the mean of A - B over seeds with its
standard error (sd / sqrt(n), n = number of seeds: the paired error over training runs, which
is what "ahead over 3 seeds" must beat). For NLL lower is better, so A ahead means A - B < 0;
for the ELBOs A ahead means A - B > 0.

Pairs must match in training seed, epochs and evaluation protocol (``eval_k``, ``eval_n``,
``eval_binarization``); a mismatch is an error, not a footnote. Usage::

    python experiments/seed_pairs.py \\
        --a pretrained/mnist-table1-rank1-warmup experiments/models/mnist-table1-rank1-warmup-s1 \\
        --b pretrained/mnist-table1-diag-warmup experiments/models/mnist-table1-diag-warmup-s1 \\
        --names rank1-warmup diag-warmup
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from schedule import load_curve, smoothed  # noqa: E402

MILESTONES = (40, 121, 200, 300, 450, 655, 800, 1000)  # those a run has not reached are left out
PROTOCOL = ("eval_k", "eval_n", "eval_binarization")


def read_card(run: str | Path) -> dict:
    path = Path(run)
    return json.loads((path / "card.json" if path.is_dir() else path).read_text())


def seed_of(card: dict) -> int | None:
    return (card.get("training") or {}).get("seed", (card.get("config") or {}).get("seed"))


def epochs_of(card: dict) -> float | None:
    return (card.get("training") or {}).get("epochs")


def mean_se(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (sd with n - 1, over sqrt n); None for one value."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, None
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


def check_pairs(a: list[dict], b: list[dict]) -> None:
    """Raise ValueError unless the runs pair up seed by seed under one protocol."""
    if len(a) != len(b) or not a:
        raise ValueError(f"give the same number of runs for A and B (got {len(a)} and {len(b)})")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if seed_of(x) != seed_of(y):
            raise ValueError(f"pair {i}: training seeds differ ({seed_of(x)} vs {seed_of(y)})")
        if epochs_of(x) != epochs_of(y):
            raise ValueError(f"pair {i}: epochs differ ({epochs_of(x)} vs {epochs_of(y)})")
        for key in PROTOCOL:
            if x.get(key) != y.get(key):
                raise ValueError(f"pair {i}: {key} differs ({x.get(key)!r} vs {y.get(key)!r})")
        for card in (x, y):
            if card.get("test_nll") is None:
                raise ValueError(f"pair {i}: a card has no test_nll; evaluate it first")


def compare(a_runs: list, b_runs: list, window: int = 10, milestones=MILESTONES) -> dict:
    """Per seed and paired over seeds: ``rows`` (quantity -> list of (a, b, a - b)) and
    ``summary`` (quantity -> (mean of a - b, its standard error over seeds))."""
    a = [read_card(r) for r in a_runs]
    b = [read_card(r) for r in b_runs]
    check_pairs(a, b)
    quantities: dict[str, list[tuple[float, float]]] = {
        "test NLL": [(x["test_nll"], y["test_nll"]) for x, y in zip(a, b, strict=True)],
    }
    if all(c.get("test_elbo") is not None for c in a + b):
        quantities["test ELBO"] = [
            (x["test_elbo"], y["test_elbo"]) for x, y in zip(a, b, strict=True)
        ]
    curves_a = [load_curve(r) for r in a_runs]
    curves_b = [load_curve(r) for r in b_runs]
    for epoch in milestones:
        vals = [
            (smoothed(ca, epoch, window), smoothed(cb, epoch, window))
            for ca, cb in zip(curves_a, curves_b, strict=True)
        ]
        if all(va is not None and vb is not None for va, vb in vals):
            quantities[f"valid ELBO, epoch {epoch}"] = vals
    if all(c.get("wall_time_s") for c in a + b):
        quantities["wall time, s"] = [
            (x["wall_time_s"], y["wall_time_s"]) for x, y in zip(a, b, strict=True)
        ]
    rows = {q: [(va, vb, va - vb) for va, vb in v] for q, v in quantities.items()}
    summary = {q: mean_se([d for _, _, d in r]) for q, r in rows.items()}
    return {"seeds": [seed_of(c) for c in a], "rows": rows, "summary": summary}


def markdown(result: dict, names: tuple[str, str]) -> str:
    na, nb = names
    seeds = result["seeds"]
    head = (
        "| quantity | "
        + " | ".join(f"seed {s}: {na} / {nb} ({na} - {nb})" for s in seeds)
        + f" | {na} - {nb}, mean ± s.e. over seeds |"
    )
    lines = [head, "|" + "---|" * (len(seeds) + 2)]
    for q, row in result["rows"].items():
        cells = [f"{va:.2f} / {vb:.2f} ({d:+.2f})" for va, vb, d in row]
        m, se = result["summary"][q]
        cells.append(f"{m:+.2f}" + (f" ± {se:.2f}" if se is not None else ""))
        lines.append(f"| {q} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", nargs="+", required=True, help="recipe A's runs, one per seed")
    p.add_argument("--b", nargs="+", required=True, help="recipe B's runs, the same seeds")
    p.add_argument("--names", nargs=2, default=("A", "B"))
    p.add_argument("--window", type=int, default=10, help="epochs in each valid-ELBO mean")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = p.parse_args(argv)
    try:
        result = compare(args.a, args.b, window=args.window)
    except ValueError as e:
        raise SystemExit(f"seed_pairs: {e}") from None
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(markdown(result, tuple(args.names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
