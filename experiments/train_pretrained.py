"""Reproduce the models shipped in ``pretrained/``, one ``python -m dlgm train`` run each.

Every model ``NAME`` has its settings in ``experiments/configs/NAME.json`` (keys are the flags of
``python -m dlgm train`` with underscores) and is trained and evaluated by exactly::

    python -m dlgm train --config experiments/configs/NAME.json --out pretrained/NAME --quiet

(the config's ``eval_k`` / ``eval_limit`` make the CLI estimate the test NLL by importance
sampling after training and store it in the card). The training state
``train_state.safetensors`` is then deleted: only ``model.safetensors`` and ``card.json`` ship.

Usage::

    python experiments/train_pretrained.py --list
    python experiments/train_pretrained.py                      # every model, one after another
    python experiments/train_pretrained.py mnist-2d-diag digits-2d-rank1
    python experiments/train_pretrained.py --table              # print the README table only
    python experiments/train_pretrained.py --update-readme      # rewrite the README table

Runs are sequential (one training job at a time); ``--nice N`` lowers their CPU priority and
``--threads`` sets OMP_NUM_THREADS (default 1). After training, the table in
pretrained/README.md (between its ``models`` markers) is rewritten from the cards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "experiments" / "configs"
PRETRAINED = ROOT / "pretrained"
README = PRETRAINED / "README.md"
STATE_FILE = "train_state.safetensors"
TABLE_BEGIN, TABLE_END = "<!-- models:begin -->", "<!-- models:end -->"


def model_names() -> list[str]:
    """Every model that has a config, in alphabetical order."""
    return sorted(p.stem for p in CONFIGS.glob("*.json"))


def command(name: str) -> list[str]:
    """The training command of one model, relative to the repository root."""
    return [
        sys.executable,
        "-m",
        "dlgm",
        "train",
        "--config",
        f"experiments/configs/{name}.json",
        "--out",
        f"pretrained/{name}",
        "--quiet",
    ]


def train(name: str, nice: int = 0, threads: int = 1) -> dict:
    """Train and evaluate one model; return the CLI's JSON result (plus the elapsed time).

    ``threads`` sets OMP_NUM_THREADS: on a small shared machine one intra-op thread per run
    is many times faster than torch's default (see bench/RESULTS.md)."""
    cmd = command(name)
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: exit {proc.returncode}\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (PRETRAINED / name / STATE_FILE).unlink(missing_ok=True)  # do not ship the optimiser state
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    return result


# ---------------------------------------------------------------------------- the table
def _arch(c: dict) -> str:
    lat = ",".join(str(k) for k in c["n_latent"])
    gen = ",".join(str(h) for h in c["gen_hidden"]) or "-"
    rec = ",".join(str(h) for h in c["rec_hidden"]) or "-"
    f = c.get("input_activation")
    return f"latent {lat}; gen {f + '(h), ' if f else ''}{gen}; rec {rec}"


def _row(name: str) -> str | None:
    card_path = PRETRAINED / name / "card.json"
    if not card_path.is_file():
        return None
    card = json.loads(card_path.read_text())
    c, t = card["config"], card.get("training", {})
    b = card.get("binarization", {}).get("kind", "none")
    opt = f"{t.get('optimizer')} lr {t.get('lr'):g}, batch {t.get('batch_size')}"
    if t.get("lr_decay", 1.0) != 1.0:
        opt += f", lr x{t['lr_decay']:g} per epoch"

    def num(key):
        v = card.get(key)
        return "-" if v is None else f"{v:.2f}"

    ev = f"K={card.get('eval_k')}, N={card.get('eval_n')}" if card.get("eval_k") else "-"
    nll = num("test_nll")
    if card.get("test_nll_quadrature") is not None:  # 2 latents: also by quadrature
        nll += f" (quadrature {card['test_nll_quadrature']:.2f})"
    if c.get("likelihood") == "gaussian" and card.get("test_nll") is not None:
        # a density of grey levels: per image, and per dimension (pixel)
        d = math.prod(c["data_shape"])
        nll += f"; {card['test_nll'] / d:.3f} per dimension (/ {d})"
    if t.get("init_output_bias"):
        opt += ", output bias at the mean pixel"
    if t.get("lr_schedule", "constant") != "constant":
        opt += f", {t['lr_schedule']} lr schedule"
    if t.get("kl_warmup"):
        opt += f", KL warm-up {t['kl_warmup']:g} epochs"
    if t.get("free_bits"):
        opt += f", free bits {t['free_bits']:g} nats per layer"
    cov = c["covariance"] + (f", u'D^-1u capped at {c['u_cap']:g}" if c.get("u_cap") else "")
    cmd = card.get("command", "")
    epochs = f"{t.get('epochs', 0):g}" + (" (stopped: see the card)" if card.get("stopped") else "")
    wall = card.get("wall_time_s")
    wall = "-" if wall is None else f"{wall:.0f} s"
    return (
        f"| {name} | {card.get('data')} | {b} | {_arch(c)} | {cov} | {opt} | "
        f"{epochs} | {wall} | {card.get('device')} | "
        f"{num('test_elbo')} | {nll} | {ev} | `{cmd}` |"
    )


def table(names: list[str]) -> str:
    head = (
        "| model | data | binarisation | architecture | covariance | optimiser | epochs | "
        "wall time | device | test ELBO | test NLL | NLL estimate (K, N) | command |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [r for r in (_row(n) for n in names) if r]
    return "\n".join([head, *rows])


def update_readme(names: list[str]) -> None:
    text = README.read_text()
    start, end = text.index(TABLE_BEGIN) + len(TABLE_BEGIN), text.index(TABLE_END)
    README.write_text(text[:start] + "\n" + table(names) + "\n" + text[end:])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", help="models to train (default: all with a config)")
    p.add_argument("--list", action="store_true", help="print the models' commands and stop")
    p.add_argument("--table", action="store_true", help="print the README table and stop")
    p.add_argument(
        "--update-readme",
        action="store_true",
        help="rewrite the table in pretrained/README.md from the cards and stop",
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="do not retrain models whose model.safetensors exists",
    )
    p.add_argument("--nice", type=int, default=0, help="run training under nice -n N")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS of the runs (default 1; 0: torch's default)",
    )
    args = p.parse_args(argv)
    known = model_names()
    unknown = [m for m in args.models if m not in known]
    if unknown:
        p.error(f"no config for {unknown}; known: {', '.join(known)}")
    names = args.models or known
    if args.list:
        for n in names:
            print("python " + " ".join(command(n)[1:]))
        return 0
    if args.table:
        print(table(names))
        return 0
    if not args.update_readme:
        for n in names:
            if args.skip_existing and (PRETRAINED / n / "model.safetensors").is_file():
                continue
            print(f"training {n} ...", file=sys.stderr, flush=True)
            print(json.dumps({"model": n, **train(n, args.nice, args.threads)}), flush=True)
    if README.is_file() and TABLE_BEGIN in README.read_text():
        update_readme(known)
    return 0


if __name__ == "__main__":
    sys.exit(main())
