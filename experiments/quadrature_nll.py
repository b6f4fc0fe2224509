"""Test NLL of the 2-latent pretrained models by quadrature, beside their importance-sampled NLL.

With two latents, log p(v) = log of the integral of p(v, xi) over the plane can be computed by
quadrature instead of importance sampling. This script does it on exactly the images behind
each card's ``test_nll`` (the first ``eval_n`` test images, binarised as ``python -m dlgm eval``
does) with the refined rule of ``experiments/posterior_quality.py``: a 101 x 101 grid over
[-5, 5]^2, and a zoomed 101 x 101 grid around each image's posterior (q's mean and the coarse
posterior's mean +- 8 standard deviations and its MAP) that replaces the coarse nodes inside
it. Importance sampling with q as the proposal (K = 5000) is a stochastic lower bound on
log p(v) that falls far short on the images where q misses the posterior (see
experiments/RESULTS.md, posterior quality); the quadrature does not depend on q.

With ``--update-cards`` the result is written into each model's card (``test_nll_quadrature``
and ``quadrature``), which the app shows next to the importance-sampled ``test_nll``.

Usage::

    OMP_NUM_THREADS=1 python experiments/quadrature_nll.py [--update-cards] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import posterior_quality as pq  # noqa: E402

import dlgm  # noqa: E402
from dlgm.data import model_images  # noqa: E402
from dlgm.grid import grid_basis  # noqa: E402

MODELS = (
    "digits-2d-diag",
    "digits-2d-rank1",
    "mnist-2d-diag",
    "mnist-2d-rank1",
    "fashion-2d-rank1",
)


@torch.no_grad()
def quadrature_log_px(model, x: torch.Tensor) -> np.ndarray:
    """log p(v) of each image (N, D) by the refined quadrature, nats, (N,)."""
    basis = grid_basis(model, grid_size=pq.GRID, radius=pq.RADIUS)
    return np.asarray([pq.refined_grid(model, v, basis)[-1]["log_px"] for v in x])


def run(name: str, update: bool) -> dict:
    path = ROOT / "pretrained" / name
    model = dlgm.load(path).eval()
    meta = model.metadata
    n = int(meta.get("eval_n") or 1000)
    x, how = model_images(model, limit=n)
    t0 = time.perf_counter()
    log_px = quadrature_log_px(model, torch.tensor(x))
    seconds = time.perf_counter() - t0
    nll = float(-log_px.mean())
    sem = float(log_px.std(ddof=1) / np.sqrt(len(log_px)))
    res = {
        "model": name,
        "n": len(x),
        "test_nll_is": meta.get("test_nll"),
        "eval_k": meta.get("eval_k"),
        "test_nll_quadrature": round(nll, 3),
        "sem": round(sem, 3),
        "seconds": round(seconds, 1),
        "binarization": how,
    }
    if update:
        meta["test_nll_quadrature"] = round(nll, 3)
        meta["quadrature"] = (
            "refined grid quadrature of log p(v) on the same "
            f"{len(x)} test images: 101 x 101 over [-5, 5]^2 plus a zoomed "
            "101 x 101 grid around each posterior "
            "(experiments/quadrature_nll.py)"
        )
        dlgm.save(model, path)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", default=list(MODELS))
    p.add_argument("--update-cards", action="store_true")
    args = p.parse_args(argv)
    print(f"{'model':<20}{'n':>6}{'NLL (IS, K)':>18}{'NLL (quadrature)':>20}{'IS - quad':>11}")
    for name in args.names:
        r = run(name, args.update_cards)
        gap = r["test_nll_is"] - r["test_nll_quadrature"] if r["test_nll_is"] else float("nan")
        print(
            f"{name:<20}{r['n']:>6}{r['test_nll_is']:>11.2f} ({r['eval_k']})"
            f"{r['test_nll_quadrature']:>13.2f} +- {r['sem']:.2f}{gap:>11.2f}",
            flush=True,
        )
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
