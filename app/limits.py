"""Limits that protect a shared server, each configurable by an environment variable, and the
server's training slots.

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
with one user and idle cores (``app.server.configure_server`` applies it).
"""

from __future__ import annotations

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
