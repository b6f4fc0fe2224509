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
import logging
import os
import threading
from contextlib import contextmanager

import streamlit as st
from streamlit.logger import get_logger


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
_LOGGER = get_logger(__name__)
_configured = threading.Lock()
WARM_UP_THREAD = "dlgm-warm-up"
_done = False
# What the pages import, some of it only on first use (scikit-learn for the digits data and
# PCA: about 2.5 s; torch._dynamo, imported by the meta-device context of dlgm.load's shape
# check: about 1 s).
WARM_MODULES = ("app.common", "app.figures.curves", "app.figures.images", "app.figures.latent",
                "app.widgets", "pandas",
                "dlgm.train", "dlgm.grid", "dlgm.impute", "dlgm.likelihood", "dlgm.sampling",
                "dlgm.estimators", "sklearn.datasets", "sklearn.decomposition",
                "streamlit_drawable_canvas")


# Python collects its youngest generation every 700 net allocations of containers by default:
# about 700 collections (and 65 of the middle generation) in a 20-session burst, 0.3-0.5 s of
# the server's time with the GIL held (``bench/RESULTS.md`` section 7). Every 50,000: 9 per
# burst. The older generations follow every 20 and every 10 collections of the one below.
GC_THRESHOLDS = (50_000, 20, 10)


def configure_server() -> None:
    """Once per server process (later calls return at once; ``streamlit_app.py`` calls it
    first thing on every run): set torch's intra-op threads to ``TORCH_THREADS``, the garbage
    collector's thresholds to ``GC_THRESHOLDS``, and start :func:`warm_up` in a background
    thread."""
    global _done
    with _configured:
        if _done:
            return
        _done = True
    import torch

    torch.set_num_threads(TORCH_THREADS)
    gc.set_threshold(*GC_THRESHOLDS)
    threading.Thread(target=warm_up, name=WARM_UP_THREAD, daemon=True).start()


def warm_up(modules=WARM_MODULES, defaults: bool = True) -> None:
    """Import ``modules`` (a missing optional one is skipped: its page reports it), then
    ``gc.freeze()`` everything allocated so far (about 300,000 objects of torch, plotly,
    pandas, streamlit...), so that the garbage collector's full collections, each about 0.2 s
    with the GIL held, no longer walk them. Then, if ``defaults``, compute what the pages show
    on a first visit with the default model and settings (``app.shared.warm_defaults``: the
    Likelihoods importance sampling, the Posterior grids, the Embedding and Samples figures),
    so that the first visitor finds it cached. Done once in the background, so that the first
    visitor of a page does not pay for its imports or that work while other sessions wait on
    the GIL. Nothing here may fail: a page computes whatever is missing itself."""
    import importlib
    import time

    start = time.perf_counter()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - optional, or reported by the page using it
            continue
    gc.collect()
    gc.freeze()
    imported = time.perf_counter()
    if not defaults:
        return
    # The cached functions look for a session (for their spinners) and Streamlit logs "missing
    # ScriptRunContext" each time one runs outside a session: not a problem in this thread.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
        _not_from_warm_up)
    try:
        from app.shared import warm_defaults

        done = warm_defaults()
    except Exception:  # noqa: BLE001 - the pages compute their defaults themselves
        done = []
    _LOGGER.info("warm-up: imports %.1f s, then defaults (%s) %.1f s", imported - start,
                 ", ".join(done) or "none", time.perf_counter() - imported)


def _not_from_warm_up(record: logging.LogRecord) -> bool:
    return record.threadName != WARM_UP_THREAD


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
