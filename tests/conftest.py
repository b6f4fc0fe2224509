"""Test-wide settings: one intra-op thread (tiny models run faster without thread handoffs, and
subprocesses inherit it), and no GUI back ends."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
