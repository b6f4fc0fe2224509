"""Which facts of the host decide a training run's bits? (issue #9: reruns of one arm in two
sessions gave different numbers)

The same short run (a config, a seed, ``--epochs``, by default 0.1: 60 steps of the Table 1
configs; one thread) is trained once per environment, each in a fresh process, and the weights
it ends with are compared bit for bit with the first environment's. The environments switch
PyTorch's and MKL's kernel choice the way another CPU would:

- ``ATEN_CPU_CAPABILITY=default``: PyTorch's elementwise and reduction kernels without the
  AVX2/AVX512 vector code it picks for this CPU;
- ``MKL_CBWR=COMPATIBLE``: MKL's matrix products on its conditional-numerical-reproducibility
  path instead of the kernels it picks for this CPU;
- ``OMP_NUM_THREADS=2`` with ``--threads 2``: two threads may split the reductions differently.

The first environment is repeated: two runs on one host agree bit for bit. Prints a markdown
table (environment, the SHA-256 of the weights (``evaluate_cards.weights_digest``, which skips
the card metadata), bit-identical to the first row, the largest absolute
weight difference from it) and, with ``--json``, the rows. Usage::

    python experiments/host_bits.py --config experiments/configs/mnist-table1-rank1-warmup-1000.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluate_cards import weights_digest  # noqa: E402

# (name, extra environment, threads)
ENVIRONMENTS = (
    ("this host", {}, 1),
    ("this host, again", {}, 1),
    ("ATEN_CPU_CAPABILITY=default", {"ATEN_CPU_CAPABILITY": "default"}, 1),
    ("MKL_CBWR=COMPATIBLE", {"MKL_CBWR": "COMPATIBLE"}, 1),
    ("two threads", {}, 2),
)


def train_once(
    config: str | None,
    extra: list[str],
    epochs: float,
    seed: int,
    env: dict,
    threads: int,
    out: Path,
) -> tuple[dict, str]:
    """Train in a fresh process; returns the final weights (name -> tensor) and their digest."""
    from safetensors.torch import load_file

    base = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    base.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads), **env)
    cmd = [
        sys.executable,
        "-m",
        "dlgm",
        "train",
        *(["--config", config] if config else []),
        *extra,
        "--seed",
        str(seed),
        "--epochs",
        repr(epochs),
        "--threads",
        str(threads),
        "--eval-k",
        "0",
        "--quiet",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, env=base, check=True, capture_output=True, cwd=ROOT)
    return load_file(str(out / "model.safetensors")), weights_digest(out)


def max_abs_diff(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="a training config (JSON), as for python -m dlgm train")
    p.add_argument(
        "--epochs",
        type=float,
        default=0.1,
        help="epochs to train (default 0.1: 60 steps of batch 100 on MNIST)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("extra", nargs="*", help="more flags for python -m dlgm train (after --)")
    args = p.parse_args(argv)
    rows, first, first_digest = [], None, None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, env, threads) in enumerate(ENVIRONMENTS):
            w, d = train_once(
                args.config, args.extra, args.epochs, args.seed, env, threads, Path(tmp) / f"run{i}"
            )
            first, first_digest = first or w, first_digest or d
            rows.append(
                {
                    "environment": name,
                    "sha256": d[:12],
                    "identical": d == first_digest,
                    "max_abs_diff": max_abs_diff(w, first),
                }
            )
    print(
        f"{args.epochs} epochs, seed {args.seed}, {args.config or ' '.join(args.extra)}; "
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}\n"
    )
    print("| environment | weights (SHA-256) | bit-identical to the first | max abs difference |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['environment']} | {r['sha256']} | {'yes' if r['identical'] else 'no'} | "
            f"{r['max_abs_diff']:.2e} |"
        )
    if args.json:
        print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
