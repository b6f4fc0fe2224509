"""Test NLL of shipped models by one protocol, with per-image values kept for paired errors.

The protocol is that of ``python -m dlgm eval --model pretrained/NAME --k K``: the model's test
images as it sees them (``dlgm.data.model_images``: all of them unless ``--limit``, binarised
once with the card's evaluation seed), importance sampling with K samples from the model's own
q (``dlgm.likelihood.evaluate``, generator seed 0), so the CLI reproduces every number here.

Per-image results are cached in ``runs/experiments/eval/NAME-K{K}-N{N}.json`` (git-ignored;
a cache entry is only reused for the same weights: it records the SHA-256 of the
checkpoint's tensors, ``weights_digest``).
``--update-cards`` writes ``test_nll``, ``test_nll_se`` (standard error over images),
``test_elbo``, ``eval_k``, ``eval_n``, ``eval_seconds`` and ``eval_binarization`` into each
model's card (and its checkpoint metadata).

Usage::

    OMP_NUM_THREADS=1 python experiments/evaluate_cards.py mnist-table1-diag --k 5000
    OMP_NUM_THREADS=1 python experiments/evaluate_cards.py --all-mnist --update-cards
    python experiments/evaluate_cards.py --table mnist-table1-rank1 --all-mnist   # cached only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dlgm  # noqa: E402
from dlgm.checkpoint import save  # noqa: E402
from dlgm.data import model_images  # noqa: E402
from dlgm.likelihood import evaluate  # noqa: E402

CACHE = ROOT / "runs" / "experiments" / "eval"
PRETRAINED = ROOT / "pretrained"


def weights_digest(path: Path) -> str:
    """SHA-256 of the checkpoint's tensors (names, shapes, dtypes and bytes), not of its metadata:
    writing an evaluation into the card (``update_card``) keeps the cache entry valid."""
    raw = (path / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    return hashlib.sha256(json.dumps(header, sort_keys=True).encode() + raw[8 + n :]).hexdigest()


def evaluate_model(path: Path, k: int = 5000, limit: int | None = None) -> dict:
    """Per-image NLL and ELBO (nats) of the model in ``path`` by the CLI's protocol; cached."""
    path = Path(path)
    model = dlgm.load(path).eval()
    x, how = model_images(model, "test", limit=limit)
    key = f"{path.name}-K{k}-N{len(x)}"
    cache = CACHE / f"{key}.json"
    digest = weights_digest(path)
    if cache.is_file():
        hit = json.loads(cache.read_text())
        if hit.get("sha256") == digest:
            return hit
    t0 = time.perf_counter()
    res = evaluate(
        model,
        torch.tensor(x),
        n_samples=k,
        generator=torch.Generator().manual_seed(0),
        return_per_example=True,
    )
    nll = res["nll_per_example"]
    out = {
        "model": path.name,
        "sha256": digest,
        "nll": res["nll"],
        "nll_se": float(nll.std(ddof=1) / math.sqrt(len(nll))),
        "elbo": res["elbo"],
        "ess": res["ess"],
        "k": k,
        "n": len(x),
        "eval_binarization": how,
        "eval_seconds": round(time.perf_counter() - t0, 1),
        "nll_per_image": np.round(nll, 5).tolist(),
        "elbo_per_image": np.round(res["elbo_per_example"], 5).tolist(),
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    return out


def update_card(path: Path, r: dict) -> None:
    """Write the evaluation ``r`` into the model's card and checkpoint metadata."""
    model = dlgm.load(path)
    model.metadata.update(
        test_nll=r["nll"],
        test_nll_se=r["nll_se"],
        test_elbo=r["elbo"],
        eval_k=r["k"],
        eval_n=r["n"],
        eval_seconds=r["eval_seconds"],
        eval_binarization=r["eval_binarization"],
    )
    save(model, path)


def cached(name: str, k: int, limit: int | None, model=None) -> dict | None:
    """The cached evaluation of ``name`` for its current weights, or None; ``model``: the
    model in ``name`` if the caller has loaded it already."""
    path = _path(name)
    model = dlgm.load(path) if model is None else model
    n = len(model_images(model, "test", limit=limit)[0])
    cache = CACHE / f"{path.name}-K{k}-N{n}.json"
    if not cache.is_file():
        return None
    hit = json.loads(cache.read_text())
    return hit if hit.get("sha256") == weights_digest(path) else None


def _path(name: str) -> Path:
    return Path(name) if Path(name).is_dir() else PRETRAINED / name


def paired_rows(names: list[str], reference: str, k: int, limit: int | None) -> list[dict]:
    """Per model (cached results only): NLL and its s.e. over images, the paired difference
    against ``reference`` (mean and s.e. of the per-image differences: the same images and
    binarisation; None for the reference itself), -ELBO, ESS, the NLL of the first 1,000 images
    (the cards' earlier protocol), and what the app's table needs from the card. A model
    without a cached evaluation, or not on this machine, has ``nll`` None."""
    ref = cached(reference, k, limit)
    if ref is None:
        raise SystemExit(f"{reference}: no cached evaluation with K={k}; run it first")
    ref_nll = np.asarray(ref["nll_per_image"])
    rows = []
    for name in names:
        path = _path(name)
        if not path.is_dir():  # e.g. a model of runs/ that this checkout does not have
            rows.append({"model": Path(name).name, "path": name, "nll": None})
            continue
        model = dlgm.load(path)
        r = cached(name, k, limit, model)
        row = {"model": path.name, "path": _shown(path), "nll": None}
        if r is not None:
            nll = np.asarray(r["nll_per_image"])
            d = nll - ref_nll
            same = path.name == _path(reference).name
            row |= {
                "nll": r["nll"],
                "nll_se": r["nll_se"],
                "vs_reference": None if same else float(d.mean()),
                "vs_reference_se": None if same else float(d.std(ddof=1) / math.sqrt(len(d))),
                "elbo": r["elbo"],
                "ess": r["ess"],
                "n": r["n"],
                "k": r["k"],
                "first_1000": float(nll[:1000].mean()),
                "eval_binarization": r["eval_binarization"],
                "data": model.metadata.get("data"),
                "pixels": model.n_pixels,
                "latents": sum(model.config.n_latent),
                "covariance": model.config.covariance,
                "command": model.metadata.get("command"),
                "sha256": r["sha256"],
            }
        rows.append(row)
    return rows


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def table(names: list[str], reference: str, k: int, limit: int | None) -> str:
    """Markdown of :func:`paired_rows`."""
    lines = [
        "| model | -ln p(v) (nats) | ± s.e. | vs " + reference + " (paired) | −ELBO | ESS "
        "| images | K | first 1,000 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in paired_rows(names, reference, k, limit):
        name = r["model"] if r["path"] == f"pretrained/{r['model']}" else r["path"]
        if r["nll"] is None:
            lines.append(f"| {name} | not evaluated | | | | | | | |")
            continue
        diff = (
            "-"
            if r["vs_reference"] is None
            else f"{r['vs_reference']:+.2f} ± {r['vs_reference_se']:.2f}"
        )
        lines.append(
            f"| {name} | {r['nll']:.2f} | {r['nll_se']:.2f} | {diff} | {-r['elbo']:.2f} "
            f"| {r['ess']:.0f} | {r['n']:,} | {r['k']} | {r['first_1000']:.2f} |"
        )
    return "\n".join(lines)


def paired_json(
    names: list[str], reference: str, k: int, limit: int | None, argv, previous: dict | None = None
) -> dict:
    """The shipped table of paired differences (``pretrained/paired.json``, read by the
    Likelihoods page): :func:`paired_rows` of the evaluated models, with the protocol and the
    command that wrote it.

    ``previous`` (the table this one replaces) fills in the named models this machine has no
    cached evaluation for, so that one new model does not mean evaluating every model again:
    a row is kept only if the protocol and the reference's weights are the same and the model's
    weights are those the row was computed from (a model not on this machine, such as one in
    the git-ignored ``runs/``, is kept as it was)."""
    rows = paired_rows(names, reference, k, limit)
    protocol = (
        f"the CLI's: each model's test images as it sees them (MNIST: all 10,000, "
        f"binarised once with the card's evaluation seed), K = {k} importance samples from the "
        "model's own q, generator seed 0; paired: mean and standard error over images of the "
        "per-image NLL differences against the reference"
    )
    ref = _path(reference).name
    old = (previous or {}).get("models", {})
    same = (
        previous is not None
        and previous.get("reference") == ref
        and previous.get("protocol") == protocol
        and old.get(ref, {}).get("sha256") == cached(reference, k, limit)["sha256"]
    )
    models = {}
    for r in rows:
        if r["nll"] is not None:
            models[r["model"]] = r
        elif same and r["model"] in old:
            path = ROOT / old[r["model"]]["path"]
            if not path.is_dir() or weights_digest(path) == old[r["model"]]["sha256"]:
                models[r["model"]] = old[r["model"]]
    return {
        "reference": ref,
        "protocol": protocol,
        "command": "python experiments/evaluate_cards.py " + " ".join(argv),
        "models": models,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="model folders in pretrained/ (or paths)")
    p.add_argument("--all-mnist", action="store_true", help="every shipped MNIST model")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--limit", type=int, default=None, help="first N test images (default all)")
    p.add_argument("--update-cards", action="store_true")
    p.add_argument(
        "--table",
        metavar="REFERENCE",
        help="print a markdown table of the models' cached results (evaluates none), with the "
        "paired difference against model REFERENCE",
    )
    p.add_argument(
        "--write",
        type=Path,
        metavar="JSON",
        help="with --table: also write the rows as JSON (pretrained/paired.json: the app's); "
        "rows of the file there are kept for named models without a cached evaluation here, "
        "if their weights and the reference's are unchanged",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    names = list(args.names)
    if args.all_mnist:
        names += [
            c.parent.name
            for c in sorted(PRETRAINED.glob("*/card.json"))
            if json.loads(c.read_text()).get("data") == "mnist"
        ]
    if args.write and not args.table:
        p.error("--write needs --table REFERENCE")
    if args.table:
        print(table(names, args.table, args.k, args.limit))
        if args.write:
            previous = json.loads(args.write.read_text()) if args.write.is_file() else None
            out = paired_json(names, args.table, args.k, args.limit, argv or sys.argv[1:], previous)
            args.write.write_text(json.dumps(out, indent=1) + "\n")
        return 0
    for name in names:
        path = _path(name)
        r = evaluate_model(path, args.k, args.limit)
        print(json.dumps({k: v for k, v in r.items() if not k.endswith("per_image")}), flush=True)
        if args.update_cards:
            update_card(path, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
