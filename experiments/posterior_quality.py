"""Posterior quality of the 2-latent MNIST models (paper sec. 5.1 and Fig. 2).

For each of ``--n`` test digits (the first N MNIST test images, binarised once with
``static_binarize(x, seed=1)``) and each model (``pretrained/mnist-2d-diag`` and
``pretrained/mnist-2d-rank1``), the true posterior p(xi | v) and the recognition model q(xi | v)
are compared on a grid with ``dlgm.grid.posterior_grid``:

- **coarse grid**: G = 101 nodes over [-5, 5]^2 (spacing 0.1), as in the paper;
- **zoomed grid**: G = 101 nodes over a square around the posterior (the smallest square holding q's
  mean +- 8 q standard deviations and the coarse grid's posterior mean +- 8 of its standard
  deviations and MAP), evaluated by ``posterior_grid`` on the model in the coordinates
  z = (xi - c) / s (an exact affine change of variables; its Jacobian is added to log p(v, xi)).
  The posteriors of these models are narrow (standard deviations of 0.03-0.1), so the coarse
  grid has only a few nodes in them and its KLs are crude; the zoomed grid resolves them.
- **refined**: the zoomed grid inside its window plus the coarse grid's nodes outside it (where
  a second mode may lie): log p(v) = log(mass inside + mass outside); KL(q || p) =
  log p(v) - ELBO on the zoomed grid (q has ~all its mass inside); KL(p || q) adds the outside
  nodes' share of p.

Per image: KL(q || p) and KL(p || q) on the coarse grid and refined; log p(v) by quadrature;
the ELBO by Monte Carlo (``DLGM.elbo``, analytic KL, ``--elbo-samples`` samples) and the ELBO
gap log p(v) - ELBO, which should equal KL(q || p) (a check by a second route); and log p(v) by
importance sampling (K = ``--k``, default 5000), a stochastic lower bound. Means +- standard
errors over the images, medians and quantiles (the KLs are heavy-tailed), and the paired
difference diagonal - rank-one (the two are different models, each compared with its own
true posterior).

Figure ``experiments/figures/posterior_grid.png`` (like the paper's Fig. 2): per digit, the
true posterior of each model (grey, darker = denser) on the zoomed grid with q's 1, 2, 3
standard-deviation contours (blue: diagonal, red: rank-one), the true posterior's contours at
the same density ratios (black) and the MAP (green).

Usage::

    OMP_NUM_THREADS=1 nice -n 5 python experiments/posterior_quality.py [--n 200]
"""

from __future__ import annotations

import argparse
import json
import math
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
from dlgm.grid import grid_basis, posterior_grid  # noqa: E402
from dlgm.likelihood import log_likelihood  # noqa: E402

MODELS = {"diagonal": "mnist-2d-diag", "rank-one": "mnist-2d-rank1"}
COLOURS = {"diagonal": (30, 90, 230), "rank-one": (220, 30, 30)}
FIGURES = ROOT / "experiments" / "figures"
RUNS = ROOT / "runs" / "experiments" / "posterior_quality"
GRID, RADIUS, SPAN = 101, 5.0, 8.0


class _Zoomed(torch.nn.Module):
    """A 2-latent model seen in the coordinates z = (xi - c) / s: log p(v, z) = log p(v, xi)
    + log|s| (the Jacobian), so ``posterior_grid`` over z in [-5, 5]^2 covers xi in c +- 5 s."""

    latent_dim = 2

    def __init__(self, model, c: torch.Tensor, s: torch.Tensor):
        super().__init__()
        self.model, self.c, self.s = model, c, s  # c, s: (2,)
        self.config = model.config

    def check_input(self, x, name="x"):
        return self.model.check_input(x, name)

    def log_joint(self, x, z, mask=None):
        return self.model.log_joint(x, self.c + self.s * z, mask) + self.s.log().sum()


def _q_in_z(q, c, s):
    """q(xi | v) of one image as a MultivariateNormal in z = (xi - c) / s."""
    mean = q.mean.reshape(2)
    cov = q.covariance_matrix.reshape(2, 2)
    return torch.distributions.MultivariateNormal((mean - c) / s, cov / torch.outer(s, s))


def _window(coarse, q) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre c and scale s (2,) of the zoomed square: it holds q's mean +- 8 sd, the coarse
    posterior mean +- 8 sd and its MAP; s = half-width / RADIUS, equal on both axes."""
    q_sd = np.sqrt(np.diag(coarse.q_cov))
    p_sd = np.sqrt(np.maximum(np.diag(coarse.post_cov), 1e-8))
    pts = np.stack(
        [
            coarse.q_mean - SPAN * q_sd,
            coarse.q_mean + SPAN * q_sd,
            coarse.post_mean - SPAN * p_sd,
            coarse.post_mean + SPAN * p_sd,
            coarse.map,
        ]
    )
    lo, hi = pts.min(0), pts.max(0)
    c, s = (lo + hi) / 2, np.full(2, (hi - lo).max() / 2 / RADIUS)  # square: true aspect
    return torch.tensor(c, dtype=torch.float32), torch.tensor(s, dtype=torch.float32)


def _refine(coarse, zoom, c, s) -> dict:
    """Combine the zoomed grid (inside its window) with the coarse grid's nodes outside it.

    log p(v) = log(mass inside, zoomed quadrature + mass outside, coarse quadrature). q lies
    inside the window (its mass there is ~1), so KL(q || p) = -ELBO_zoom + log p(v); KL(p || q)
    adds the outside nodes' share of p to the zoomed grid's (renormalised) KL.
    """
    lo, hi = c - RADIUS * s, c + RADIUS * s
    xx, yy = np.meshgrid(coarse.xs, coarse.ys)  # [i, j] = (xs[j], ys[i])
    out = ~((xx >= lo[0]) & (xx <= hi[0]) & (yy >= lo[1]) & (yy <= hi[1]))  # (G, G)
    log_area = math.log(coarse.cell_area)
    lj = coarse.log_joint[out]
    log_out = np.logaddexp.reduce(lj) + log_area if lj.size else -np.inf
    log_px = float(np.logaddexp(zoom.log_px, log_out))
    p_in = math.exp(zoom.log_px - log_px)
    log_post_out = lj - log_px  # log p(xi | v) at the outside nodes
    kl_pq_out = (
        float(np.sum(np.exp(log_post_out) * coarse.cell_area * (log_post_out - coarse.log_q[out])))
        if lj.size
        else 0.0
    )
    log_p_in = math.log(p_in) if p_in > 0 else 0.0  # p_in log p_in -> 0
    return {
        "log_px": log_px,
        "mass_outside": 1.0 - p_in,
        "kl_qp": zoom.kl_q_p + log_px - zoom.log_px,
        "kl_pq": p_in * (log_p_in + zoom.kl_p_q) + kl_pq_out,
    }


@torch.no_grad()
def refined_grid(model, v: torch.Tensor, basis) -> tuple:
    """One image v (D,): its coarse grid (over ``basis``), the zoomed grid around its posterior,
    the window's centre c and scale s (2,), and ``_refine``'s values (log p(v), KLs)."""
    coarse = posterior_grid(model, v, basis=basis)
    q = model.encode(v.unsqueeze(0))
    c, s = _window(coarse, q)
    zoom = posterior_grid(
        _Zoomed(model, c, s), v, grid_size=GRID, radius=RADIUS, q=_q_in_z(q, c, s)
    )
    return coarse, zoom, c, s, _refine(coarse, zoom, c.double().numpy(), s.double().numpy())


@torch.no_grad()
def analyse(model, x: torch.Tensor, elbo_samples: int, k: int) -> tuple[dict, list]:
    """Per-image metrics of one model on images x (N, D); returns arrays and zoomed grids."""
    out = {
        key: []
        for key in (
            "kl_qp_coarse",
            "kl_pq_coarse",
            "log_px_coarse",
            "kl_qp",
            "kl_pq",
            "log_px",
            "mass_outside",
            "log_px_zoom",
            "q_mass",
        )
    }
    grids = []
    basis = grid_basis(model, grid_size=GRID, radius=RADIUS)  # the coarse grid, decoded once
    for v in x:
        coarse, zoom, c, s, refined = refined_grid(model, v, basis)
        vals = refined | {
            "kl_qp_coarse": coarse.kl_q_p,
            "kl_pq_coarse": coarse.kl_p_q,
            "log_px_coarse": coarse.log_px,
            "log_px_zoom": zoom.log_px,
            "q_mass": zoom.q_mass,
        }
        for key, val in vals.items():
            out[key].append(val)
        grids.append((zoom, c.numpy(), s.numpy()))
    g = torch.Generator().manual_seed(0)
    out["elbo_mc"] = model.elbo(x, n_samples=elbo_samples, generator=g).tolist()
    out["log_px_is"] = log_likelihood(model, x, n_samples=k, generator=g).tolist()
    return {key: np.asarray(val, dtype=np.float64) for key, val in out.items()}, grids


def _mean_sem(a) -> str:
    a = np.asarray(a)
    return f"{a.mean():.3f} ± {a.std(ddof=1) / math.sqrt(len(a)):.3f}"


def summary(res: dict, k: int) -> str:
    """Markdown table of the per-model means and the paired difference."""
    rows = [
        ("KL(q ‖ p), coarse grid G=101 over [-5, 5]²", "kl_qp_coarse"),
        ("KL(p ‖ q), coarse grid", "kl_pq_coarse"),
        ("KL(q ‖ p), refined (zoomed + coarse outside)", "kl_qp"),
        ("KL(p ‖ q), refined", "kl_pq"),
        ("ELBO gap: log p(v) (refined quadrature) − ELBO (Monte Carlo)", "gap"),
        ("log p(v), refined quadrature", "log_px"),
        ("log p(v), coarse quadrature − refined", "coarse_minus_refined"),
        (f"log p(v), importance sampling K={k} − refined", "is_minus_refined"),
        ("posterior mass outside the zoomed window", "mass_outside"),
        ("mass of q inside the zoomed window", "q_mass"),
    ]
    names = list(res)
    lines = [
        "| quantity (nats, mean ± s.e. over images) | "
        + " | ".join(names)
        + " | diagonal − rank-one (paired) |",
        "|---" * (len(names) + 2) + "|",
    ]
    for label, key in rows:
        vals = [res[n][key] for n in names]
        diff = _mean_sem(vals[0] - vals[1]) if len(vals) == 2 else "-"
        lines.append(f"| {label} | " + " | ".join(_mean_sem(v) for v in vals) + f" | {diff} |")
    for label, key in (
        ("KL(q ‖ p) refined", "kl_qp"),
        ("KL(p ‖ q) refined", "kl_pq"),
        ("KL(q ‖ p) coarse", "kl_qp_coarse"),
    ):
        vals = [res[n][key] for n in names]
        diff = f"{np.median(vals[0] - vals[1]):.3f}" if len(vals) == 2 else "-"
        lines.append(
            f"| {label}: median [10%, 90% quantiles] | "
            + " | ".join(
                f"{np.median(v):.3f} [{np.quantile(v, 0.1):.2f}, {np.quantile(v, 0.9):.2f}]"
                for v in vals
            )
            + f" | {diff} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- figure
def _contours(logd: np.ndarray, levels, up: int) -> np.ndarray:
    """Boolean (up*G, up*G) mask of the level sets of log-density ``logd`` (G, G)."""
    big = np.kron(logd, np.ones((up, up)))
    mask = np.zeros(big.shape, dtype=bool)
    for lev in levels:
        inside = big >= lev
        edge = np.zeros_like(inside)
        edge[:-1] |= inside[:-1] != inside[1:]
        edge[:, :-1] |= inside[:, :-1] != inside[:, 1:]
        mask |= edge
    return mask


def _panel(zoom, c, s, colour, up=2) -> Image.Image:
    """The true posterior in grey with q's and p's contours, rows flipped so y points up."""
    p = np.exp(zoom.log_post - zoom.log_post.max())  # (G, G) in (0, 1]
    grey = np.kron(255 * (1 - 0.85 * p), np.ones((up, up)))
    rgb = np.stack([grey] * 3, -1)
    levels = [-0.5 * r * r for r in (1, 2, 3)]  # density ratios of 1, 2, 3 sd for a Gaussian
    rgb[_contours(zoom.log_post - zoom.log_post.max(), levels, up)] = (0, 0, 0)
    rgb[_contours(zoom.log_q - zoom.log_q.max(), levels, up)] = colour
    img = Image.fromarray(rgb[::-1].astype(np.uint8))  # row i = ys[i]: flip so y goes up
    m = (zoom.map - (-RADIUS)) / (2 * RADIUS) * (img.width - 1)
    ImageDraw.Draw(img).ellipse(
        [m[0] - 3, img.height - 1 - m[1] - 3, m[0] + 3, img.height - 1 - m[1] + 3], fill=(0, 170, 0)
    )
    return img


def figure(x, grids: dict, shape, path: Path, n_show: int = 4) -> None:
    """Rows: digits; columns: the digit, then each model's zoomed posterior with q."""
    up, cell = 2, 2 * GRID
    names = list(grids)
    n_show = min(n_show, len(x))
    w, h = 20 + (1 + len(names)) * (cell + 10), 30 + n_show * (cell + 26)
    canvas = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(
        ["digit", *[f"{n} (q: {('blue', 'red')[i]})" for i, n in enumerate(names)]]
    ):
        draw.text((10 + j * (cell + 10), 8), name, fill="black")
    for i in range(n_show):
        top = 26 + i * (cell + 26)
        digit = x[i].reshape(shape).numpy()
        im = Image.fromarray((255 * (1 - digit)).astype(np.uint8)).resize(
            (cell, cell), Image.NEAREST
        )
        canvas.paste(im, (10, top))
        for j, name in enumerate(names):
            zoom, c, s = grids[name][i]
            canvas.paste(_panel(zoom, c, s, COLOURS[name], up), (10 + (j + 1) * (cell + 10), top))
            lo, hi = c - RADIUS * s, c + RADIUS * s
            draw.text(
                (10 + (j + 1) * (cell + 10), top + cell + 2),
                f"x [{lo[0]:.2f}, {hi[0]:.2f}]  y [{lo[1]:.2f}, {hi[1]:.2f}]",
                fill="black",
            )
    canvas.save(path, optimize=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200, help="number of test digits")
    p.add_argument("--elbo-samples", type=int, default=1000)
    p.add_argument("--k", type=int, default=5000, help="importance samples for log p(v)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    first = dlgm.load(ROOT / "pretrained" / next(iter(MODELS.values())))
    x, how = model_images(first, limit=args.n)  # all MODELS share their data and binarisation
    x = torch.tensor(x)
    res, grids, info = {}, {}, {}
    for name, folder in MODELS.items():
        model = dlgm.load(ROOT / "pretrained" / folder)
        t0 = time.perf_counter()
        r, grids[name] = analyse(model, x, args.elbo_samples, args.k)
        r["gap"] = r["log_px"] - r["elbo_mc"]
        r["coarse_minus_refined"] = r["log_px_coarse"] - r["log_px"]
        r["is_minus_refined"] = r["log_px_is"] - r["log_px"]
        res[name] = r
        t = model.metadata.get("training", {})
        info[name] = {
            "model": f"pretrained/{folder}",
            "epochs": t.get("epochs"),
            "seconds": round(time.perf_counter() - t0, 1),
            "images_with_mass_outside_window_over_1%": int((r["mass_outside"] > 0.01).sum()),
            "max_abs_gap_minus_kl": float(np.abs(r["gap"] - r["kl_qp"]).max()),
        }
    print(f"{args.n} test images, binarisation {how}\n")
    print(summary(res, args.k))
    both = res["diagonal"]["kl_qp"] - res["rank-one"]["kl_qp"]
    print(
        f"\nrank-one has the smaller KL(q || p) (refined) on {int((both > 0).sum())} of "
        f"{len(both)} images"
    )
    print(json.dumps(info))
    FIGURES.mkdir(parents=True, exist_ok=True)
    figure(x, grids, (28, 28), FIGURES / "posterior_grid.png")
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / "per_image.json").write_text(
        json.dumps({n: {k: v.tolist() for k, v in r.items()} for n, r in res.items()})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
