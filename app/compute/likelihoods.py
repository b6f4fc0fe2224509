"""Likelihoods page: the live importance-sampled estimate of log p(v), Table 1's chart, Fig.
2c's shipped rows, and the inference gap's two parts per model (shipped table and live, in
cached chunks of images)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

import dlgm
from app.cache import cache_data, cache_resource
from app.compute import posterior as posterior_compute
from app.figures.curves import (
    fig2c_figure,
    gap_bars_figure,
    k_curve_figure,
    nll_histogram_figure,
    paired_text,
    table1_figure,
)
from app.figures.images import image_gallery_figure
from app.figures.style import freeze
from app.limits import MAX_K
from app.session import PRETRAINED, Entry, pretrained_entry, pretrained_names, seen_test_images
from dlgm.gap import GAP_KEYS, gap_summary, inference_gaps
from dlgm.grid import posterior_grid
from dlgm.likelihood import log_likelihood

K_CHOICES = tuple(k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if k <= MAX_K)
N_WORST = 12
# The inference gap: the table experiments/gaps.py ships, and the live computation's settings.
GAPS_TABLE = PRETRAINED / "gaps.json"
PAIRED_TABLE = PRETRAINED / "paired.json"  # Table 1's paired differences (evaluate_cards.py)
FIG2C_TABLE = PRETRAINED / "fig2c.json"  # Fig. 2c's rows (experiments/fig2c.py --write)
GAP_CHUNK = 10  # images per cached chunk (the progress bar's step): 1-3 s of CPU at 100 steps
GAP_STEPS = (25, 50, 100, 200, 300)  # Adam steps of q*
GAP_N, GAP_STEPS_DEFAULT, GAP_SEED = 20, 100, 0
GAP_LR, GAP_SAMPLES, GAP_ELBO_SAMPLES, GAP_K = 0.1, 16, 1000, min(1000, MAX_K)


def live_defaults(n_max: int) -> tuple[int, int, int]:
    """The live estimate's default (test images, K, seed) for a data set of ``n_max`` images."""
    return min(200, n_max), min(100, K_CHOICES[-1]), 0


def _images(model: dlgm.DLGM, data_name: str, n_images: int) -> torch.Tensor:
    """The first ``n_images`` test images as ``model`` sees them, a copy for torch."""
    return torch.tensor(seen_test_images(model, data_name)[0].x[:n_images])


@cache_data(show_spinner=False, max_entries=256)
def log_px(model: dlgm.DLGM, data_name: str, n_images: int, k: int, seed: int) -> np.ndarray:
    """Importance-sampled log p(v) per test image (nats), K = ``k`` samples; (n_images,)."""
    g = torch.Generator().manual_seed(seed * 100_003 + k)
    x = _images(model, data_name, n_images)
    return log_likelihood(model, x, n_samples=k, generator=g).double().numpy()


@cache_data(show_spinner=False, max_entries=64)
def elbo(model: dlgm.DLGM, data_name: str, n_images: int, seed: int) -> np.ndarray:
    """Per-image ELBO (analytic KL, 10 samples for the reconstruction), nats; (n_images,)."""
    g = torch.Generator().manual_seed(seed)
    return (
        model.elbo(_images(model, data_name, n_images), n_samples=10, generator=g).double().numpy()
    )


@cache_resource(show_spinner=False, max_entries=64)
def live_results(
    model: dlgm.DLGM,
    name: str,
    data_name: str,
    n_images: int,
    k: int,
    seed: int,
    k_choices: tuple[int, ...] = K_CHOICES,
    n_worst: int = N_WORST,
) -> dict:
    """The page's live estimate for one model and setting: mean log p(v) at K = ``k`` and the
    mean ELBO (nats) and its three figures, frozen. Each K's per-image estimates come from
    :func:`log_px`, so raising K computes only the new K."""
    ks = [kk for kk in k_choices if kk <= k]
    curves = [log_px(model, data_name, n_images, kk, seed) for kk in ks]
    mean_elbo = float(elbo(model, data_name, n_images, seed).mean())
    last = curves[-1]
    means = np.array([c.mean() for c in curves])
    nll = -last
    worst = np.argsort(nll)[::-1][:n_worst]
    images = seen_test_images(model, data_name)[0].x[worst].reshape(-1, *model.data_shape)
    labels = [f"#{i}: {nll[i]:.1f}" for i in worst]
    return dict(
        log_px_mean=float(last.mean()),
        elbo_mean=mean_elbo,
        k_curve=freeze(
            k_curve_figure(
                np.array(ks),
                means,
                mean_elbo,
                chosen=k,
                title=f"Importance-sampled log p(v) against K, {name}",
            )
        ),
        histogram=freeze(nll_histogram_figure(nll, title=f"Per-example test NLL, K = {k}")),
        worst=freeze(
            image_gallery_figure(
                images, labels, n_cols=4, title="Worst-modelled test images (NLL, nats)"
            )
        ),
    )


@cache_resource(show_spinner=False, max_entries=32)
def table1_chart(rows: tuple[tuple[tuple[str, str], ...], ...], _rows: list[dict]):
    """``table1_figure`` of the charted rows ``_rows``, frozen; ``rows`` is their content as a
    hashable tuple (a model's card can change without its id changing)."""
    return freeze(table1_figure(_rows))


@cache_data(show_spinner=False, max_entries=8)
def _read_json(path: str, mtime: float) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _shipped(path: Path) -> dict | None:
    """A JSON table in ``pretrained/``, re-read when the file changes; None if missing."""
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return _read_json(str(path), mtime)


def shipped_paired() -> dict | None:
    """``pretrained/paired.json`` (``experiments/evaluate_cards.py --table REF --write``): per
    model the NLL on all its test images and the paired difference against the reference."""
    return _shipped(PAIRED_TABLE)


def paired_cell(paired: dict | None, name: str, card_nll: float) -> str:
    """The paired difference of model ``name`` against the table's reference, "+1.69 ± 0.05"
    nats ("reference" for the reference itself), or "" if the table has no row for it or its
    row is of other weights (its NLL is not the card's: retrained or re-evaluated since)."""
    row = ((paired or {}).get("models") or {}).get(name)
    if row is None or math.isnan(card_nll) or abs(row["nll"] - card_nll) > 1e-6:
        return ""
    diff = row.get("vs_reference")
    return paired_text(diff, row.get("vs_reference_se"), reference=diff is None)


# ---------------------------------------------------------------------------- Fig. 2c
def shipped_fig2c() -> dict | None:
    """``pretrained/fig2c.json`` (``experiments/fig2c.py --write``), or None if missing."""
    return _shipped(FIG2C_TABLE)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fig2c_rows(table: dict | None) -> list[dict]:
    """The well-formed rows of a Fig. 2c table, in its order: ``method`` (str), ``nll`` and
    ``nll_se`` (finite floats), ``vs_rank1`` / ``vs_rank1_se`` (floats, or both None), the
    rest as given; ``side_note`` is True for a row that is not one of the paper's models (the
    Gaussian FA of grey levels); ``training`` says how long ("30 epochs"); ``paired`` is the
    paired difference as text (``paired_text``). A row that does not parse is left out, never
    an error."""
    rows = []
    raw = (table or {}).get("rows") if isinstance(table, dict) else None
    for r in raw if isinstance(raw, list) else []:
        if not isinstance(r, dict) or not isinstance(r.get("method"), str):
            continue
        nll, se = _number(r.get("nll")), _number(r.get("nll_se"))
        if nll is None or se is None:
            continue
        diff, diff_se = _number(r.get("vs_rank1")), _number(r.get("vs_rank1_se"))
        if diff is None or diff_se is None:
            diff = diff_se = None
        rows.append(
            r
            | {
                "nll": nll,
                "nll_se": se,
                "vs_rank1": diff,
                "vs_rank1_se": diff_se,
                "side_note": r["method"].startswith("Gaussian FA"),
                "paired": paired_text(diff, diff_se, reference=r["method"] == "DLGM rank-one"),
                "training": f"{epochs:g} epochs"
                if (epochs := _number(r.get("epochs"))) is not None
                else str(r.get("epochs") or "not recorded"),
            }
        )
    return rows


@cache_resource(show_spinner=False, max_entries=4)
def fig2c_chart(rows: tuple[tuple[tuple[str, str], ...], ...], _rows: list[dict], title: str):
    """``fig2c_figure`` of ``_rows``, frozen; ``rows`` is their content as a hashable tuple."""
    return freeze(fig2c_figure(_rows, title=title))


# ---------------------------------------------------------------------------- inference gap
def shipped_gaps() -> dict | None:
    """``pretrained/gaps.json`` (written by ``experiments/gaps.py``), or None if missing."""
    return _shipped(GAPS_TABLE)


def gap_row(label: str, summary: dict, **extra) -> dict:
    """One bar / table row from a ``dlgm.gap.gap_summary``: means and standard errors."""
    row = {"model": label, "n": summary["n"]}
    for key in GAP_KEYS:
        row[key], row[f"{key}_se"] = summary[key]["mean"], summary[key]["se"]
    return row | extra


def shipped_gap_rows(table: dict | None) -> list[dict]:
    """A row per shipped model, q* of its own family (the first), in the table's order."""
    rows = []
    for name, m in ((table or {}).get("models") or {}).items():
        family, f = next(iter(m["families"].items()))
        rows.append(
            gap_row(
                name,
                f["summary"],
                source="shipped",
                family=family,
                steps=f["steps"],
                log_px_method=m["log_px_method"],
            )
        )
    return rows


def gap_chunks(n_images: int, chunk: int = GAP_CHUNK) -> list[tuple[int, int]]:
    """(start, stop) of the chunks of the first ``n_images`` images."""
    return [(a, min(a + chunk, n_images)) for a in range(0, n_images, chunk)]


@cache_data(show_spinner=False, max_entries=512)
def gap_chunk(
    model: dlgm.DLGM, data_name: str, start: int, stop: int, family: str, steps: int, seed: int
) -> dict:
    """``dlgm.gap.inference_gaps`` of test images ``start`` to ``stop - 1``: per-image arrays
    (nats) keyed by ``GAP_KEYS``. log p(v) by quadrature on the Posterior page's grid for
    2-latent models, else importance sampling with K = ``GAP_K`` from 1/2 q + 1/2 q*."""
    x = _images(model, data_name, stop)[start:]
    log_px = None
    if model.latent_dim == 2:
        grid = posterior_compute.basis(model, posterior_compute.GRID, posterior_compute.RADIUS)
        log_px = torch.tensor([posterior_grid(model, v, basis=grid).log_px for v in x])
    r = inference_gaps(
        model,
        x,
        family=family,
        k=GAP_K,
        elbo_samples=GAP_ELBO_SAMPLES,
        steps=steps,
        n_samples=GAP_SAMPLES,
        lr=GAP_LR,
        generator=torch.Generator().manual_seed(seed * 1_000_003 + start),
        log_px=log_px,
    )
    return {key: r[key] for key in GAP_KEYS}


def live_gap_row(label: str, parts: list[dict], **extra) -> dict:
    """The row of the chunks computed so far (their images pooled)."""
    pooled = {key: np.concatenate([p[key] for p in parts]) for key in GAP_KEYS}
    return gap_row(label, gap_summary(pooled), source="live", **extra)


def gap_log_px_method(model: dlgm.DLGM) -> str:
    if model.latent_dim == 2:
        g, r = posterior_compute.GRID, posterior_compute.RADIUS
        return f"quadrature, {g} x {g} grid over [-{r:g}, {r:g}]²"
    return f"importance sampling, K = {GAP_K}, from ½ q + ½ q*"


def gap_table(rows: list[dict]) -> list[dict]:
    """The rows as the page's table: mean ± s.e. strings, nats per image."""

    def ms(r, key):
        se = r[f"{key}_se"]
        return f"{r[key]:.2f}" + ("" if math.isnan(se) else f" ± {se:.2f}")

    return [
        {
            "model": r["model"],
            "source": r["source"],
            "q* family": r["family"],
            "images": r["n"],
            "Adam steps": r["steps"],
            "log p(v)": ms(r, "log_px"),
            "ELBO(q)": ms(r, "elbo_q"),
            "ELBO(q*)": ms(r, "elbo_qstar"),
            "approximation gap": ms(r, "approximation_gap"),
            "amortisation gap": ms(r, "amortisation_gap"),
            "log p(v) by": r["log_px_method"],
        }
        for r in rows
    ]


@cache_resource(show_spinner=False, max_entries=32)
def gap_chart(rows: tuple, _rows: list[dict], title: str):
    """``gap_bars_figure`` of ``_rows``, frozen; ``rows`` is their content, hashable."""
    return freeze(gap_bars_figure(_rows, title=title))


def warm(entry: Entry) -> None:
    """The first visit's live estimate, and every shipped model loaded (the table reads their
    cards)."""
    data, _ = seen_test_images(entry.model, entry.data_name)
    n, k, seed = live_defaults(len(data.x))
    live_results(entry.model, entry.name, entry.data_name, n, k, seed)
    for other in pretrained_names():
        pretrained_entry(other)
