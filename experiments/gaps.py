"""The inference-gap lab: where each shipped model's nats go (Cremer, Li & Duvenaud, 2018).

For each model in ``pretrained/`` (or those named), on the first ``--n`` test images as the model
sees them (``dlgm.data.as_seen_by``: binarised once with the card's evaluation seed; the images
are the app's, from ``pretrained/samples/`` where the data set has a sample there, a prefix of
its test split, so that test image #i is the app's test image #i):

- q*, per image, the Gaussian of the recognition model's own family (diagonal or rank-one) with
  the highest ELBO for that image alone (``dlgm.gap.optimal_q``: ``--steps`` Adam steps of 16
  samples, learning rate 0.05 decayed linearly to 0, started from the encoder's q); for
  2-latent models also the best full-covariance Gaussian;
- ELBO(q) and ELBO(q*) from the same 1,000 draws (analytic KL) (``dlgm.gap.inference_gaps``);
- log p(v): for 2-latent models by quadrature on the refined grid of
  ``experiments/posterior_quality.py`` (101 x 101 nodes over [-5, 5]^2 plus 101 x 101 nodes
  over a square around the posterior), else by importance sampling with K = ``--k`` from the
  defensive mixture 1/2 q + 1/2 q* (``dlgm.gap.mixture_log_likelihood``; importance sampling
  from q alone is printed beside it for comparison);
- approximation gap = log p(v) - ELBO(q*), amortisation gap = ELBO(q*) - ELBO(q), their means
  and standard errors over the images (``dlgm.gap.gap_summary``).

Writes ``pretrained/gaps.json`` (the table the Likelihoods page shows), the figures
``experiments/figures/gaps.png`` (stacked bars per model) and
``experiments/figures/gaps_posterior.png`` (q, q* and the full-covariance q* over the true
posterior of three MNIST digits), and prints the markdown table of README.md. Per-model results
are kept in ``runs/experiments/gaps/`` (not committed; ``--fresh`` recomputes them). Usage::

    OMP_NUM_THREADS=1 nice -n 5 python experiments/gaps.py --n 100            # every model
    python experiments/gaps.py digits-2d-diag digits-2d-rank1 --n 20 --steps 100
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from posterior_quality import RADIUS, refined_grid  # noqa: E402
from table1 import machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dlgm  # noqa: E402
from dlgm.data import as_seen_by, model_images  # noqa: E402
from dlgm.gap import (  # noqa: E402
    GAP_KEYS,
    gap_summary,
    inference_gaps,
    mixture_log_likelihood,
    optimal_q,
    own_family,
)
from dlgm.grid import grid_basis  # noqa: E402
from dlgm.likelihood import log_likelihood  # noqa: E402

PRETRAINED = ROOT / "pretrained"
TABLE = PRETRAINED / "gaps.json"
FIGURES = ROOT / "experiments" / "figures"
RUNS = ROOT / "runs" / "experiments" / "gaps"
N_SAMPLES, LR, ELBO_SAMPLES = 16, 0.05, 1000
GRID = 101  # the coarse grid of posterior_quality.refined_grid, over [-RADIUS, RADIUS]^2
FIGURE_MODEL = "mnist-2d-diag"


def test_images(model, n: int) -> tuple[torch.Tensor, dict]:
    """The first ``n`` test images of the model's data set as it sees them, and how they were
    made: from ``pretrained/samples/<data>-test.npz`` (as the app) if there, else the split."""
    sample = PRETRAINED / "samples" / f"{model.metadata.get('data')}-test.npz"
    if not sample.is_file():
        x, how = model_images(model, limit=n)
        return torch.tensor(x), how
    with np.load(sample, allow_pickle=False) as f:
        grey = f["x"][:n].reshape(min(n, len(f["x"])), -1).astype(np.float32) / 255.0
    x, how = as_seen_by(model, grey, "test")
    return torch.tensor(x), how


# ---------------------------------------------------------------------------- measuring
def fit_q_stars(model, x: torch.Tensor, families, *, steps: int, seed: int = 0) -> dict:
    """family -> (q*, CPU seconds, wall seconds) of ``optimal_q`` on the images ``x``."""
    out = {}
    for family in families:
        g = torch.Generator().manual_seed(seed)
        cpu, wall = time.process_time(), time.perf_counter()
        q_star = optimal_q(
            model, x, family=family, steps=steps, n_samples=N_SAMPLES, lr=LR, generator=g
        )
        out[family] = (q_star, time.process_time() - cpu, time.perf_counter() - wall)
    return out


@torch.no_grad()
def log_px_of(model, x: torch.Tensor, k: int, q_star=None, seed: int = 1) -> tuple:
    """log p(v) of each image (N,), nats, and how it was computed: refined grid quadrature for
    2-latent models; else importance sampling with K = ``k`` from q, or (given ``q_star``)
    from 1/2 q + 1/2 q*."""
    if model.latent_dim == 2:
        basis = grid_basis(model, grid_size=GRID, radius=RADIUS)
        values = [refined_grid(model, v, basis)[4]["log_px"] for v in x]
        how = f"quadrature, refined grid ({GRID}² nodes over [-5, 5]² + {GRID}² zoomed)"
        return torch.tensor(values, dtype=x.dtype), how
    if q_star is not None:
        g = torch.Generator().manual_seed(seed)
        log_px = mixture_log_likelihood(model, x, q_star, n_samples=k, generator=g)
        return log_px, f"importance sampling, K = {k}, from ½ q + ½ q*"
    g = torch.Generator().manual_seed(seed)
    return log_likelihood(model, x, n_samples=k, generator=g), f"importance sampling, K = {k}"


def model_gaps(
    model,
    x: torch.Tensor,
    log_px: torch.Tensor,
    families,
    *,
    steps: int,
    seed: int = 0,
    fitted: dict | None = None,
) -> dict:
    """For each q* family: ``inference_gaps``' per-image values (lists, nats, 4 decimals), its
    summary (means, standard errors), the CPU and wall seconds of the fit, and for 2-latent
    models each image's q* (``loc`` (N, 2), ``cov`` (N, 2, 2)). ``fitted``: q* already found
    (``fit_q_stars``) for some families."""
    fitted = dict(fitted or {})
    missing = [f for f in families if f not in fitted]
    fitted |= fit_q_stars(model, x, missing, steps=steps, seed=seed)
    out = {}
    for family in families:
        q_star, cpu, wall = fitted[family]
        g = torch.Generator().manual_seed(seed + 1)
        r = inference_gaps(
            model, x, q_star=q_star, log_px=log_px, elbo_samples=ELBO_SAMPLES, generator=g
        )
        res = {key: np.round(r[key], 4).tolist() for key in GAP_KEYS}
        res |= {
            "summary": gap_summary(r),
            "fit_cpu_s": round(cpu, 1),
            "fit_wall_s": round(wall, 1),
            "steps": steps,
            "n_samples": N_SAMPLES,
            "lr": LR,
            "elbo_samples": ELBO_SAMPLES,
        }
        if model.latent_dim == 2:
            res["q_star"] = {
                "loc": q_star.mean.tolist(),
                "cov": q_star.covariance_matrix.tolist(),
            }
        out[family] = res
    return out


def run_model(name: str, args) -> dict:
    """One model's row (cached in RUNS unless ``--fresh`` or the settings changed)."""
    cache = RUNS / f"{name}-n{args.n}-s{args.steps}-k{args.k}.json"
    if cache.is_file() and not args.fresh:
        return json.loads(cache.read_text())
    model = dlgm.load(PRETRAINED / name).eval().requires_grad_(False)
    x, how = test_images(model, args.n)
    own = own_family(model)
    families = [own] + (["full"] if model.latent_dim == 2 else [])
    fitted = fit_q_stars(model, x, [own], steps=args.steps)
    t0 = time.perf_counter()
    log_px, method = log_px_of(model, x, args.k, q_star=fitted[own][0])
    row = {
        "model": name,
        "data": str(model.metadata.get("data")),
        "binarisation": how,
        "latents": model.latent_dim,
        "covariance": model.config.covariance,
        "n": len(x),
        "log_px_method": method,
        "log_px_s": round(time.perf_counter() - t0, 1),
    }
    if model.latent_dim != 2:  # what importance sampling from q alone gives, for comparison
        log_px_q = log_px_of(model, x, args.k)[0]
        row["log_px_q_is"] = np.round(log_px_q.double().numpy(), 4).tolist()
    row["families"] = model_gaps(model, x, log_px, families, steps=args.steps, fitted=fitted)
    RUNS.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(row))
    return row


# ---------------------------------------------------------------------------- outputs
def table_json(rows: list[dict], args) -> dict:
    """The small table the Likelihoods page reads: summaries only, and the protocol."""
    return {
        "command": "OMP_NUM_THREADS=1 python experiments/gaps.py "
        + f"--n {args.n} --steps {args.steps} --k {args.k}",
        "protocol": (
            f"First {args.n} test images of each model's data set as the model sees them "
            "(binarised once with the card's evaluation seed). q*: per image, the best Gaussian "
            f"of the recognition model's own family (and, for 2-latent models, of any "
            f"covariance), {args.steps} Adam steps of {N_SAMPLES} samples, learning rate "
            f"{LR} decayed linearly to 0, from the encoder's q (dlgm.gap.optimal_q). ELBO(q) "
            f"and ELBO(q*) from the same {ELBO_SAMPLES} draws, analytic KL. log p(v): "
            "quadrature on a refined grid for 2-latent models, importance sampling from "
            f"½ q + ½ q* with K = {args.k} otherwise (dlgm.gap.mixture_log_likelihood). "
            "Means ± standard errors over the images, nats per image."
        ),
        "machine": machine(),
        "models": {
            r["model"]: {
                key: r[key]
                for key in ("data", "latents", "covariance", "n", "log_px_method", "binarisation")
            }
            | {
                "families": {
                    f: {"summary": v["summary"], "fit_cpu_s": v["fit_cpu_s"], "steps": v["steps"]}
                    for f, v in r["families"].items()
                }
            }
            for r in rows
        },
    }


def markdown(rows: list[dict]) -> str:
    def ms(s, key):
        return f"{s[key]['mean']:.2f} ± {s[key]['se']:.2f}"

    lines = [
        "| model | latents | q* family | log p(v) | ELBO(q) | ELBO(q*) | approximation gap "
        "(median) | amortisation gap (median) | fit, CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for family, v in r["families"].items():
            s = v["summary"]
            med = {k: float(np.median(v[k])) for k in ("approximation_gap", "amortisation_gap")}
            lines.append(
                f"| {r['model']} | {r['latents']} | {family} | {ms(s, 'log_px')} | "
                f"{ms(s, 'elbo_q')} | {ms(s, 'elbo_qstar')} | {ms(s, 'approximation_gap')} "
                f"({med['approximation_gap']:.2f}) | {ms(s, 'amortisation_gap')} "
                f"({med['amortisation_gap']:.2f}) | {v['fit_cpu_s']:.0f} |"
            )
    lines += [
        "",
        "| model | log p(v), IS from q | log p(v), IS from ½ q + ½ q* | difference (paired) | "
        "images where ELBO(q*) > IS from q |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if "log_px_q_is" not in r:
            continue
        alone = np.array(r["log_px_q_is"])
        fam = next(iter(r["families"].values()))
        mixed, elbo_star = np.array(fam["log_px"]), np.array(fam["elbo_qstar"])
        diff = mixed - alone
        lines.append(
            f"| {r['model']} | {alone.mean():.2f} | {mixed.mean():.2f} | "
            f"{diff.mean():+.2f} ± {diff.std(ddof=1) / math.sqrt(len(diff)):.2f} | "
            f"{int((elbo_star > alone).sum())} of {len(alone)} |"
        )
    return "\n".join(lines)


BLUE, ORANGE, GREEN, RED, GREY = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (90, 90, 90),
)


def bars_png(rows: list[dict], path: Path, title: str) -> None:
    """Stacked horizontal bars (approximation gap, then amortisation gap) per model, own family,
    with +- 1 s.e. whiskers at each segment's end."""
    items = [
        (r["model"], r["families"][own]["summary"]) for r in rows for own in list(r["families"])[:1]
    ]
    left, width, bar_h, gap = 190, 520, 18, 10
    top = 46
    height = top + len(items) * (bar_h + gap) + 70
    canvas = Image.new("RGB", (left + width + 190, height), "white")  # room for the labels
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 8), title, fill="black")
    hi = max(s["approximation_gap"]["mean"] + s["amortisation_gap"]["mean"] for _, s in items)
    hi = max(1.0, math.ceil(hi))
    scale = width / hi

    def px(v):
        return left + v * scale

    for i, (name, s) in enumerate(items):
        y = top + i * (bar_h + gap)
        draw.text((10, y + 3), name, fill="black")
        a, b = s["approximation_gap"]["mean"], s["amortisation_gap"]["mean"]
        x0 = px(0)
        xa = px(max(a, 0.0))
        draw.rectangle([x0, y, xa, y + bar_h], fill=BLUE)
        draw.rectangle([xa, y, px(max(a, 0.0) + b), y + bar_h], fill=ORANGE)
        for end, se in (
            (max(a, 0.0), s["approximation_gap"]["se"]),
            (max(a, 0.0) + b, s["amortisation_gap"]["se"]),
        ):
            draw.line([(px(end - se), y + bar_h / 2), (px(end + se), y + bar_h / 2)], fill="black")
        label_x = px(max(a, 0.0) + b + s["amortisation_gap"]["se"]) + 6
        draw.text((label_x, y + 3), f"{a:.2f} + {b:.2f}", fill="black")
    bottom = top + len(items) * (bar_h + gap)
    draw.line([(left, bottom), (left + width, bottom)], fill="black")
    step = 1 if hi <= 10 else 2
    for v in range(0, int(hi) + 1, step):
        draw.line([(px(v), bottom), (px(v), bottom + 4)], fill="black")
        draw.text((px(v) - 3, bottom + 6), f"{v}", fill="black")
    draw.text(
        (left + width // 2 - 120, bottom + 20),
        "nats per image (mean; whiskers +- 1 s.e.)",
        fill="black",
    )
    y = bottom + 40
    draw.rectangle([left, y, left + 14, y + 10], fill=BLUE)
    draw.text((left + 20, y), "approximation gap log p(v) - ELBO(q*)", fill="black")
    draw.rectangle([left + 280, y, left + 294, y + 10], fill=ORANGE)
    draw.text((left + 300, y), "amortisation gap ELBO(q*) - ELBO(q)", fill="black")
    canvas.save(path, optimize=True)


def _ellipse(loc, cov, r, c, s, size) -> list[tuple[float, float]]:
    """The r-sigma ellipse of N(loc, cov) in pixel coordinates of a zoomed panel."""
    t = np.linspace(0, 2 * np.pi, 90)
    pts = (
        np.asarray(loc)
        + r * np.stack([np.cos(t), np.sin(t)], 1) @ np.linalg.cholesky(np.asarray(cov)).T
    )
    z = (pts - c) / s  # the panel shows z in [-RADIUS, RADIUS]^2
    u = (z + RADIUS) / (2 * RADIUS) * (size - 1)
    return [(float(a), float(size - 1 - b)) for a, b in u]


def posterior_png(model, x, row: dict, picks: list[tuple[int, str]], path: Path) -> None:
    """For each picked image: the digit, then its true posterior (grey) on the zoomed grid with
    the 1-2-3 sigma ellipses of q (red), q* of the own family (orange) and the full-covariance
    q* (green), and the gaps."""
    own = own_family(model)
    basis = grid_basis(model, grid_size=GRID, radius=RADIUS)
    q = model.encode(x)
    cell, up = 2 * GRID, 2
    w, h = 20 + 2 * (cell + 10) + 250, 30 + len(picks) * (cell + 16)
    canvas = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text(
        (10, 8),
        f"{row['model']}: p(xi | v) grey; q red, q* ({own}) orange, q* (full) green",
        fill="black",
    )
    for k, (i, why) in enumerate(picks):
        top = 26 + k * (cell + 16)
        digit = x[i].reshape(model.data_shape).numpy()
        canvas.paste(
            Image.fromarray((255 * (1 - digit)).astype(np.uint8)).resize(
                (cell, cell), Image.NEAREST
            ),
            (10, top),
        )
        _, zoom, c, s, _ = refined_grid(model, x[i], basis)
        c, s = c.double().numpy(), s.double().numpy()
        p = np.exp(zoom.log_post - zoom.log_post.max())
        grey = np.kron(255 * (1 - 0.85 * p), np.ones((up, up)))[::-1]
        panel = Image.fromarray(np.stack([grey] * 3, -1).astype(np.uint8))
        pd = ImageDraw.Draw(panel)
        gaussians = [(q.mean[i].numpy(), q.covariance_matrix[i].numpy(), RED)]
        for family, colour in ((own, ORANGE), ("full", GREEN)):
            qs = row["families"][family]["q_star"]
            gaussians.append((np.array(qs["loc"][i]), np.array(qs["cov"][i]), colour))
        for loc, cov, colour in gaussians:
            for r in (1, 2, 3):
                pd.line(_ellipse(loc, cov, r, c, s, panel.width), fill=colour, width=2)
        left = 20 + cell
        canvas.paste(panel, (left, top))
        fam = row["families"]
        text = [
            why,
            f"image #{i}",
            f"approximation gap, q* ({own}): {fam[own]['approximation_gap'][i]:.2f}",
            f"approximation gap, q* (full): {fam['full']['approximation_gap'][i]:.2f}",
            f"amortisation gap: {fam[own]['amortisation_gap'][i]:.2f}",
            f"x [{c[0] - RADIUS * s[0]:.2f}, {c[0] + RADIUS * s[0]:.2f}]",
            f"y [{c[1] - RADIUS * s[1]:.2f}, {c[1] + RADIUS * s[1]:.2f}]",
        ]
        for j, line in enumerate(text):
            draw.text((left + cell + 10, top + 4 + 16 * j), line, fill="black")
    canvas.save(path, optimize=True)


def picks_of(row: dict, far: float = 5.0) -> list[tuple[int, str]]:
    """Three images of a 2-latent model, by rule: the largest approximation gap of the own
    family among images where the full-covariance q* leaves < 0.1 nats (a Gaussian-like
    posterior that q*'s family cannot tilt or shape); the largest gap the full-covariance q*
    leaves below ``far`` nats (a non-Gaussian posterior; the larger ones are posteriors with
    modes q* does not reach, too spread out to draw); the largest amortisation gap among the
    rest with the full q*'s gap below ``far``."""
    own = list(row["families"])[0]
    a_own = np.array(row["families"][own]["approximation_gap"])
    a_full = np.array(row["families"]["full"]["approximation_gap"])
    amort = np.array(row["families"][own]["amortisation_gap"])
    first = int(np.argmax(np.where(a_full < 0.1, a_own, -np.inf)))
    second = int(
        np.argmax(np.where((a_full < far) & (np.arange(len(a_full)) != first), a_full, -np.inf))
    )
    taken = np.isin(np.arange(len(amort)), [first, second])
    third = int(np.argmax(np.where(taken | (a_full >= far), -np.inf, amort)))
    return [
        (first, "Gaussian-like: the full q* closes the gap"),
        (second, f"non-Gaussian: the largest gap of the full q* below {far:.0f}"),
        (third, f"the largest amortisation gap (full q* gap below {far:.0f})"),
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", help="names in pretrained/ (default: all)")
    p.add_argument("--n", type=int, default=100, help="first N test images")
    p.add_argument("--steps", type=int, default=300, help="Adam steps of q*")
    p.add_argument(
        "--k", type=int, default=5000, help="importance samples (models with > 2 latents)"
    )
    p.add_argument("--fresh", action="store_true", help="recompute cached rows")
    p.add_argument("--no-write", action="store_true", help="print only: no table, no figures")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    names = args.models or sorted(q.parent.name for q in PRETRAINED.glob("*/model.safetensors"))
    rows = []
    for name in names:
        t0 = time.perf_counter()
        rows.append(run_model(name, args))
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(markdown(rows))
    print(f"\nmachine: {machine()}")
    if args.no_write:
        return 0
    TABLE.write_text(json.dumps(table_json(rows, args), indent=1) + "\n")
    FIGURES.mkdir(parents=True, exist_ok=True)
    bars_png(
        rows, FIGURES / "gaps.png", f"Where the nats go: first {args.n} test images, own-family q*"
    )
    fig_row = next((r for r in rows if r["model"] == FIGURE_MODEL), None)
    if fig_row is not None:
        model = dlgm.load(PRETRAINED / FIGURE_MODEL).eval().requires_grad_(False)
        x = test_images(model, args.n)[0]
        with torch.no_grad():
            posterior_png(model, x, fig_row, picks_of(fig_row), FIGURES / "gaps_posterior.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
