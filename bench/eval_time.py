"""Time of the test-set NLL estimate: ``python -m dlgm eval --k 5000`` on MNIST.

Runs the real command (``python -m dlgm eval --model M --k K --limit N --quiet``) in a
subprocess for each model and reports the CLI's own timing of the estimate (``seconds``: the
importance-sampling NLL with K samples per example plus the 10-sample ELBO, data already
loaded), the whole command's wall time (interpreter start, imports, loading data and model),
and examples/s. With ``--limit N`` < 10,000 the time for the full MNIST test set is
*extrapolated* linearly (cost is linear in N: examples are processed in independent batches of
100), and the output says so (``"full_test_set": "extrapolated"``).

Usage::

    python bench/eval_time.py                                    # mnist-table1-rank1, N=1000
    python bench/eval_time.py --models mnist-2d-diag mnist-table1-diag --limit 1000
    python bench/eval_time.py --limit 0                          # the full test set (slow)
    python bench/eval_time.py --limit 100 --sweep-max-elements 1048576 4194304 33554432
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
N_TEST = 10_000


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor()


def time_eval(
    model: str, k: int, limit: int | None, device: str, nice: int, threads: int | None = None
) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "dlgm",
        "eval",
        "--model",
        str(model),
        "--k",
        str(k),
        "--device",
        device,
        "--quiet",
    ]
    if limit:
        cmd += ["--limit", str(limit)]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    n, sec = res["n"], res["seconds"]
    out = {
        "model": str(model),
        "k": k,
        "n": n,
        "seconds": sec,
        "command_wall_s": round(wall, 2),
        "examples_per_s": round(n / sec, 2),
        "importance_samples_per_s": round(n * k / sec),
        "nll": round(res["nll"], 3),
        "elbo": round(res["elbo"], 3),
        "ess": round(res["ess"], 1),
        "device": res["device"],
        "omp_num_threads": env.get("OMP_NUM_THREADS", "(torch default)"),
        "command": "python -m dlgm " + " ".join(c for c in cmd[cmd.index("eval") :]),
    }
    if n < N_TEST:
        out["full_test_set"] = "extrapolated"
        out["full_test_set_seconds"] = round(sec * N_TEST / n, 1)
    else:
        out["full_test_set"] = "measured"
        out["full_test_set_seconds"] = sec
    return out


def sweep_max_elements(model: str, k: int, n: int, values: list[int], device: str) -> list:
    """In-process: the same estimate (``dlgm.likelihood.evaluate``, as the CLI calls it) on the
    first ``n`` test images with different ``max_elements`` (decoder outputs held at once).
    The result does not depend on it (fixed noise blocks); only speed and memory do."""
    sys.path.insert(0, str(ROOT))
    from dlgm import load
    from dlgm.data import model_images
    from dlgm.likelihood import evaluate

    m = load(ROOT / "pretrained" / model if (ROOT / "pretrained" / model).is_dir() else model)
    m.eval()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    x, _ = model_images(m, limit=n)
    x = torch.tensor(x, device=device)
    m = m.to(device)
    out = []
    for me in values:
        g = torch.Generator(device).manual_seed(0)
        t0 = time.perf_counter()
        res = evaluate(m, x, n_samples=k, generator=g, max_elements=me)
        if device == "cuda":
            torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        out.append(
            {
                "max_elements": me,
                "n": n,
                "k": k,
                "seconds": round(sec, 2),
                "examples_per_s": round(n / sec, 2),
                "nll": round(res["nll"], 4),
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models",
        nargs="+",
        default=["mnist-table1-rank1"],
        help="names in pretrained/ or paths to model directories",
    )
    p.add_argument("--k", type=int, default=5000)
    p.add_argument(
        "--limit", type=int, default=1000, help="first N test images (0: the whole test set)"
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--nice", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        help="OMP_NUM_THREADS of the eval command "
        "(and of the in-process sweep); default: inherited",
    )
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument(
        "--sweep-max-elements",
        type=int,
        nargs="+",
        metavar="M",
        help="instead: time evaluate() in-process on --limit images for each M",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sweep_max_elements:
        res = sweep_max_elements(
            args.models[0], args.k, args.limit or N_TEST, args.sweep_max_elements, args.device
        )
        print(json.dumps({"sweep": res}))
        return 0
    machine = {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    results = []
    for m in args.models:
        path = ROOT / "pretrained" / m if (ROOT / "pretrained" / m).is_dir() else Path(m)
        r = time_eval(
            path.relative_to(ROOT) if path.is_relative_to(ROOT) else path,
            args.k,
            args.limit or None,
            args.device,
            args.nice,
            args.threads,
        )
        results.append(r)
        print(json.dumps(r), flush=True)
    print(f"\n{'model':<24}{'K':>6}{'N':>7}{'seconds':>9}{'ex/s':>8}{'10k test set':>22}")
    for r in results:
        full = f"{r['full_test_set_seconds']:.0f} s ({r['full_test_set']})"
        print(
            f"{Path(r['model']).name:<24}{r['k']:>6}{r['n']:>7}{r['seconds']:>9.1f}"
            f"{r['examples_per_s']:>8.2f}{full:>22}"
        )
    summary = {"machine": machine, "results": results}
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
