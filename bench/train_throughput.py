"""Training throughput of dlgm's ``Trainer`` against a plain hand-written PyTorch loop.

Both train the same model on the same data in the same process: the paper's Table 1
architecture (784 pixels; recognition 784 -> 200 -> 200 -> (mu, d) of 200 latents; generative
xi -> G xi -> 200 -> 200 -> 784 Bernoulli logits), diagonal covariance, one sample of xi per
example, batch 200, RMSprop (alpha 0.95, eps 1e-6, lr 3e-4). The plain loop is written here
independently of ``dlgm``: ``nn.Linear`` layers, reparameterised diagonal Gaussian,
BCE-with-logits, the analytic KL, ``opt.step()``. Both have exactly the same parameters.

Method: after a warm-up of both, the two are timed alternately (``--rounds`` rounds of
``--steps`` updates each) and the median samples/s of each is reported, with the ratio
dlgm / plain, by the wall clock and by this process's CPU time (with one thread the CPU-time
rate is robust to other jobs on a shared machine). Besides the default ``dlgm`` run (the CLI's
settings: kappa=1 weight prior, ``Trainer.run`` with a report every 50 steps), ``--variants``
can add ``dlgm-fast`` (the ``dlgm`` run with ``Trainer(fast=True)``: compiled step,
device-resident data and draws, and on CUDA one CUDA graph per update), ``dlgm-nokappa`` (no
weight prior, the plain loop's objective), ``dlgm-step``
(``Trainer.step()`` in a bare loop, no reports or snapshots) and ``dlgm-lean`` (both), which
show where time goes; ``--breakdown REPS`` times the pieces of one update (forward+backward of
each model, the weight prior, two forms of the Bernoulli log-likelihood, the optimiser step) and
``--profile`` prints torch.profiler tables of a few steps of each.

Data: real MNIST, binarised once (seed 0), or ``--data random`` (random binary pixels of MNIST
size). The Trainer runs with ``binarize="none"`` on the same binary data, so the two do the same
work per step.

Usage::

    python bench/train_throughput.py                       # CPU, MNIST
    python bench/train_throughput.py --device cuda --steps 200 --variants dlgm dlgm-fast
    python bench/train_throughput.py --threads 1 --variants dlgm dlgm-nokappa dlgm-step \
        dlgm-lean --breakdown 60
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
D, H, K, BATCH, LR = 784, 200, 200, 200, 3e-4


# ---------------------------------------------------------------------------- the plain loop
class PlainVAE(nn.Module):
    """The Table 1 DLGM written directly: no dlgm imports."""

    def __init__(self):
        super().__init__()
        self.rec = nn.Sequential(nn.Linear(D, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU())
        self.loc = nn.Linear(H, K)
        self.prec = nn.Linear(H, K)  # softplus -> diagonal precision
        self.G = nn.Linear(K, K, bias=False)  # h_1 = G xi
        self.gen = nn.Sequential(
            nn.Linear(K, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU(), nn.Linear(H, D)
        )

    def loss(self, x, eps):
        a = self.rec(x)
        mu = self.loc(a)  # (B, K)
        scale = (F.softplus(self.prec(a)) + 1e-4).rsqrt()  # (B, K)
        xi = mu + scale * eps  # (B, K)
        logits = self.gen(self.G(xi))  # (B, D)
        rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        var = scale.pow(2)
        kl = 0.5 * (var + mu.pow(2) - 1.0 - var.log()).sum(-1)  # analytic KL to N(0, I)
        return (kl - rec).mean()


class PlainLoop:
    def __init__(self, x, device, seed=0):
        torch.manual_seed(seed)
        self.model = PlainVAE().to(device)
        self.opt = torch.optim.RMSprop(self.model.parameters(), lr=LR, alpha=0.95, eps=1e-6)
        self.x, self.device = x, device
        self.gen = torch.Generator(device).manual_seed(seed)
        self.perm, self.pos = torch.randperm(len(x), device=device, generator=self.gen), 0

    def run(self, steps):
        for _ in range(steps):
            if self.pos + BATCH > len(self.x):
                self.perm = torch.randperm(len(self.x), device=self.device, generator=self.gen)
                self.pos = 0
            xb = self.x[self.perm[self.pos : self.pos + BATCH]]  # (B, D)
            self.pos += BATCH
            eps = torch.randn((len(xb), K), device=self.device, generator=self.gen)
            loss = self.model.loss(xb, eps)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return loss


# ---------------------------------------------------------------------------- dlgm's Trainer
class DlgmLoop:
    def __init__(self, x, device, *, kappa=1.0, mode="run", seed=0, fast=False):
        sys.path.insert(0, str(ROOT))
        from dlgm.model import DLGM, DLGMConfig
        from dlgm.train import Trainer

        cfg = DLGMConfig(
            data_shape=(28, 28),
            n_latent=(K,),
            gen_hidden=(H, H),
            rec_hidden=(H, H),
            covariance="diag",
            likelihood="bernoulli",
            kappa=kappa,
        )
        model = DLGM(cfg, seed=seed)
        self.trainer = Trainer(
            model,
            x,
            batch_size=BATCH,
            n_samples=1,
            optimizer="rmsprop",
            lr=LR,
            binarize="none",
            seed=seed,
            device=device,
            report_every=50,
            fast=fast,
        )
        self.mode = mode

    def run(self, steps):
        if self.mode == "step":
            for _ in range(steps):
                out = self.trainer.step()
            return out["loss"]
        last = deque(self.trainer.run(steps=steps), maxlen=1)  # the CLI's loop
        return last[0].free_energy


VARIANTS = {  # dlgm: as the CLI trains (kappa = 1 weight prior, Trainer.run with reports)
    "dlgm": dict(kappa=1.0, mode="run"),
    "dlgm-nokappa": dict(kappa=None, mode="run"),  # no weight prior: the plain loop's objective
    "dlgm-step": dict(kappa=1.0, mode="step"),  # Trainer.step() only: no reports/snapshots
    "dlgm-lean": dict(kappa=None, mode="step"),  # both
    "dlgm-fast": dict(kappa=1.0, mode="run", fast=True),  # as "dlgm", with Trainer(fast=True)
}


# ---------------------------------------------------------------------------- harness
def load_data(kind, device, n=60000):
    if kind == "random":
        g = np.random.default_rng(0)
        x = (g.random((n, D), dtype=np.float32) < 0.13).astype(np.float32)
    else:
        sys.path.insert(0, str(ROOT))
        from dlgm.data import load_dataset, static_binarize

        x = static_binarize(load_dataset("mnist", "train").x, 0)
    return torch.tensor(x, device=device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(loop, steps, device) -> tuple[float, float]:
    """Samples per second of ``steps`` updates: by the wall clock and by this process's CPU
    time (the second is robust to other jobs on a shared machine when running one thread)."""
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    loop.run(steps)
    _sync(device)
    return (steps * BATCH / (time.perf_counter() - t0), steps * BATCH / (time.process_time() - c0))


def machine(device) -> dict:
    cpu = (
        next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    info = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _median_ms(fn, reps, device) -> float:
    times = []
    for _ in range(reps):
        _sync(device)
        c0 = time.process_time() if device.type == "cpu" else time.perf_counter()
        fn()
        _sync(device)
        c1 = time.process_time() if device.type == "cpu" else time.perf_counter()
        times.append(1e3 * (c1 - c0))
    return statistics.median(times)


def breakdown(plain, x, device, reps) -> dict:
    """CPU (or, on CUDA, wall) milliseconds of the pieces of one update on a fixed batch,
    the dlgm model against the plain one, each piece timed ``reps`` times interleaved."""
    sys.path.insert(0, str(ROOT))
    from dlgm.model import DLGM, DLGMConfig

    cfg = dict(
        data_shape=(28, 28),
        n_latent=(K,),
        gen_hidden=(H, H),
        rec_hidden=(H, H),
        covariance="diag",
        likelihood="bernoulli",
    )
    m1 = DLGM(DLGMConfig(**cfg, kappa=1.0), seed=0).to(device)
    m0 = DLGM(DLGMConfig(**cfg, kappa=None), seed=0).to(device)
    xb = x[:BATCH]
    eps = torch.randn((1, BATCH, K), device=device)
    logits = torch.randn((1, BATCH, D), device=device, requires_grad=True)

    def dlgm_fb(m):
        # the weight prior in the loss (autograd), as the Trainer's fused gradient replaces
        return lambda: (m.free_energy(xb, eps=eps)["loss"] + m.weight_penalty() / 60000).backward()

    def ll_softplus():  # dlgm.model.log_likelihood's form: x * out - softplus(out)
        ((logits * xb).sum(-1) - F.softplus(logits).sum(-1)).mean().backward()

    def ll_bce():  # the fused kernel
        (
            -F.binary_cross_entropy_with_logits(logits, xb.expand_as(logits), reduction="none").sum(
                -1
            )
        ).mean().backward()

    def penalty():
        m1.weight_penalty().backward()

    pieces = {
        "plain forward+backward": lambda: plain.model.loss(xb, eps[0]).backward(),
        "dlgm forward+backward (kappa=1)": dlgm_fb(m1),
        "dlgm forward+backward (kappa=None)": dlgm_fb(m0),
        "weight penalty forward+backward": penalty,
        "log-lik x*out - softplus(out), fwd+bwd": ll_softplus,
        "log-lik BCE-with-logits, fwd+bwd": ll_bce,
        "RMSprop step (555,584 params)": plain.opt.step,
    }
    out = {k: [] for k in pieces}
    for _ in range(3):  # interleave: 3 blocks of reps // 3
        for k, fn in pieces.items():
            out[k].append(_median_ms(fn, max(1, reps // 3), device))
    res = {k: round(statistics.median(v), 3) for k, v in out.items()}
    print("\npiece (median ms)" + " " * 26 + ("CPU ms" if device.type == "cpu" else "ms"))
    for k, v in res.items():
        print(f"{k:<45}{v:>10.3f}")
    print(json.dumps({"breakdown_ms": res}))
    return res


def profile(loops, device, steps=20):
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for name, loop in loops.items():
        with tprofile(activities=acts) as prof:
            loop.run(steps)
            _sync(device)
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"\n### profile: {name}, {steps} steps\n")
        print(prof.key_averages().table(sort_by=key, row_limit=25))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--data", default="mnist", choices=("mnist", "random"))
    p.add_argument("--steps", type=int, default=50, help="updates per timed run")
    p.add_argument("--rounds", type=int, default=5, help="alternating timed runs of each")
    p.add_argument("--warmup", type=int, default=20, help="untimed updates of each first")
    p.add_argument("--variants", nargs="+", default=["dlgm"], choices=list(VARIANTS))
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--profile", action="store_true", help="print torch.profiler tables")
    p.add_argument(
        "--breakdown",
        type=int,
        metavar="REPS",
        default=0,
        help="also time the pieces of one update (median of REPS, CPU ms)",
    )
    p.add_argument("--json", help="also write the JSON result to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU available")
    x = load_data(args.data, device)
    loops = {"plain": PlainLoop(x, device)}
    for v in args.variants:
        loops[v] = DlgmLoop(x, device, **VARIANTS[v])
    n_plain = sum(q.numel() for q in loops["plain"].model.parameters())
    n_dlgm = sum(q.numel() for q in loops[args.variants[0]].trainer.model.parameters())
    assert n_plain == n_dlgm, (n_plain, n_dlgm)
    for loop in loops.values():
        loop.run(args.warmup)
    rates = {k: [] for k in loops}
    cpu_rates = {k: [] for k in loops}
    for _ in range(args.rounds):
        for name, loop in loops.items():
            wall, cpu = timed(loop, args.steps, device)
            rates[name].append(wall)
            cpu_rates[name].append(cpu)
    med = {k: statistics.median(v) for k, v in rates.items()}
    cmed = {k: statistics.median(v) for k, v in cpu_rates.items()}
    result = {
        "machine": machine(device),
        "data": args.data,
        "batch": BATCH,
        "steps": args.steps,
        "rounds": args.rounds,
        "parameters": n_plain,
        "samples_per_s": {k: round(v, 1) for k, v in med.items()},
        "ratio_to_plain": {k: round(v / med["plain"], 3) for k, v in med.items() if k != "plain"},
        "samples_per_cpu_s": {k: round(v, 1) for k, v in cmed.items()},
        "cpu_ratio_to_plain": {
            k: round(v / cmed["plain"], 3) for k, v in cmed.items() if k != "plain"
        },
        "all_runs": {k: [round(r, 1) for r in v] for k, v in rates.items()},
        "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
    }
    print(
        f"{'loop':<16}{'samples/s':>11}{'min':>8}{'max':>8}{'vs plain':>10}"
        f"{'samples/CPU-s':>15}{'vs plain':>10}"
    )
    for k, v in med.items():
        r = 1.0 if k == "plain" else v / med["plain"]
        rc = 1.0 if k == "plain" else cmed[k] / cmed["plain"]
        print(
            f"{k:<16}{v:>11.0f}{min(rates[k]):>8.0f}{max(rates[k]):>8.0f}{r:>10.3f}"
            f"{cmed[k]:>15.0f}{rc:>10.3f}"
        )
    print(json.dumps(result))
    if args.breakdown:
        result["breakdown_ms"] = breakdown(loops["plain"], x, device, args.breakdown)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.profile:
        profile(loops, device)
    if not all(math.isfinite(v) for v in med.values()):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
