"""Limits that protect a shared server, each configurable by an environment variable.

=========================  ===========================  =======
variable                   what it bounds               default
=========================  ===========================  =======
DLGM_MAX_UPLOAD_MB         checkpoint / data uploads    64
DLGM_MAX_GRID              posterior grid side G        201
DLGM_MAX_K                 importance samples K         5000
DLGM_MAX_TRAINING_RUNS     concurrent training runs     2
DLGM_MAX_TRAIN_EPOCHS      epochs of one app run        200
DLGM_TORCH_THREADS         torch threads per operation  1
=========================  ===========================  =======

``DLGM_TORCH_THREADS``: the server runs every session's script in a thread of its own, and
torch releases the GIL inside an operation, so sessions already share the cores; one intra-op
thread per operation keeps N sessions from starting N x cores threads (on 2 busy cores, two
threads made training 7-9x slower: ``bench/RESULTS.md`` section 0). Set it higher for a server
with one user and idle cores.
"""

from __future__ import annotations

import gc
import os
import threading
from contextlib import contextmanager

import streamlit as st


def _env_int(name: str, default: int, low: int = 1) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return max(low, value)


MAX_UPLOAD_MB = _env_int("DLGM_MAX_UPLOAD_MB", 64)
MAX_GRID = _env_int("DLGM_MAX_GRID", 201, low=3)
MAX_K = _env_int("DLGM_MAX_K", 5000)
MAX_TRAINING_RUNS = _env_int("DLGM_MAX_TRAINING_RUNS", 2)
MAX_TRAIN_EPOCHS = _env_int("DLGM_MAX_TRAIN_EPOCHS", 200)
TORCH_THREADS = _env_int("DLGM_TORCH_THREADS", 1)
_configured = threading.Lock()
_done = False
# What the pages import, some of it only on first use (scikit-learn for the digits data and
# PCA: about 2.5 s; torch._dynamo through dlgm.train: about 1.5 s).
WARM_MODULES = ("app.common", "app.figures", "app.figures_extra", "app.widgets", "pandas",
                "dlgm.train", "dlgm.grid", "dlgm.impute", "dlgm.likelihood", "dlgm.sampling",
                "dlgm.estimators", "sklearn.datasets", "sklearn.decomposition",
                "streamlit_drawable_canvas")


def configure_server() -> None:
    """Once per server process (later calls return at once; ``streamlit_app.py`` calls it
    first thing on every run): set torch's intra-op threads to ``TORCH_THREADS`` and start
    :func:`warm_up` in a background thread."""
    global _done
    with _configured:
        if _done:
            return
        _done = True
    import torch

    torch.set_num_threads(TORCH_THREADS)
    threading.Thread(target=warm_up, name="dlgm-warm-up", daemon=True).start()


def warm_up(modules=WARM_MODULES) -> None:
    """Import ``modules`` (a missing optional one is skipped: its page reports it), then
    ``gc.freeze()`` everything allocated so far (about 300,000 objects of torch, plotly,
    pandas, streamlit...), so that the garbage collector's full collections, each about 0.2 s
    with the GIL held, no longer walk them. Done once in the background, so that the first
    visitor of a page does not pay for its imports while other sessions wait on the GIL."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - optional, or reported by the page using it
            continue
    gc.collect()
    gc.freeze()


@st.cache_resource
def _training_slots() -> threading.BoundedSemaphore:
    """One semaphore per server process, shared by every session."""
    return threading.BoundedSemaphore(MAX_TRAINING_RUNS)


@contextmanager
def training_slot():
    """Hold one of the server's training slots; yields False (and holds none) if all are busy."""
    slots = _training_slots()
    got = slots.acquire(blocking=False)
    try:
        yield got
    finally:
        if got:
            slots.release()
