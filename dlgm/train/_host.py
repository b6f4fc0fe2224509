"""Where a run ran: the facts that decide the bits of its floating-point results.

The same seed gives the same weights, bit for bit, only under the same PyTorch, CPU kernels and
thread count: PyTorch picks its vectorised kernels by the CPU's instruction set (``AVX2``,
``AVX512``), and MKL picks its matrix kernels by the CPU, so a run resumed on another machine is
a valid continuation but not a replay. A run's card lists the hosts it ran on (``hosts``: one
entry per change, with the step it started at), so that such a difference can be told apart
from a bug.
"""

from __future__ import annotations

import platform

import torch

FACTS = ("torch", "cpu", "cpu_capability", "threads", "gpu")


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def describe(device) -> dict:
    """The facts of this process on ``device`` (a ``torch.device``), as JSON-able values."""
    facts = {
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


def same_host(a: dict, b: dict) -> bool:
    """Whether two host entries agree on every fact (their ``from_step`` aside)."""
    return all(a.get(k) == b.get(k) for k in FACTS)


def note_host(hosts: list[dict], device, step: int) -> list[dict]:
    """``hosts`` with this process appended (from ``step`` on) unless the last entry is it."""
    here = describe(device)
    if hosts and same_host(hosts[-1], here):
        return list(hosts)
    return [*hosts, {"from_step": int(step), **here}]
