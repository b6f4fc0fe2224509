"""Once per server process: torch threads, the garbage collector, and the background warm-up.

``streamlit_app.py`` calls :func:`configure_server` first thing on every run (later calls
return at once) and :func:`first_page_done` after every page. The first page is served before
anything else is done: the warm-up thread waits until a page has been drawn, then imports what
the other pages need and computes the default model's first visit of each page through the
pages' own cached functions (``warm`` of each module of :mod:`app.compute`), so that the next
visitor finds them cached.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
import time

from streamlit.logger import get_logger

from app.limits import TORCH_THREADS

_LOGGER = get_logger(__name__)
_configured = threading.Lock()
_first_page = threading.Event()
_done = False
WARM_UP_THREAD = "dlgm-warm-up"
WARM_UP_DELAY_S = 1.0  # after the first page: let the browser draw it first
# What the pages import, some of it only on first use (scikit-learn for the digits data and
# PCA: about 2.5 s).
WARM_MODULES = (
    "pandas",
    "app.session",
    "app.widgets",
    "app.figures.curves",
    "app.figures.images",
    "app.figures.latent",
    "app.compute.models",
    "app.compute.embedding",
    "app.compute.posterior",
    "app.compute.samples",
    "app.compute.imputation",
    "app.compute.estimators",
    "app.compute.likelihoods",
    "dlgm.train",
    "dlgm.grid",
    "dlgm.impute",
    "dlgm.likelihood",
    "dlgm.sampling",
    "dlgm.estimators",
    "sklearn.datasets",
    "sklearn.decomposition",
    "streamlit_drawable_canvas",
)
WARM_PAGES = ("likelihoods", "posterior", "embedding", "samples")  # app.compute.<page>.warm
# Python collects its youngest generation every 700 net allocations of containers by default:
# about 700 collections (and 65 of the middle generation) in a 20-session burst, 0.3-0.5 s of
# the server's time with the GIL held (``bench/RESULTS.md`` section 7). Every 50,000: 9 per
# burst. The older generations follow every 20 and every 10 collections of the one below.
GC_THRESHOLDS = (50_000, 20, 10)


def configure_server() -> None:
    """Once per server process: set the garbage collector's thresholds to ``GC_THRESHOLDS``
    and start the warm-up thread (which waits for :func:`first_page_done`, which also sets
    torch's intra-op threads to ``TORCH_THREADS``)."""
    global _done
    with _configured:
        if _done:
            return
        _done = True
    # torch's threads are set after the first page (``first_page_done``): importing torch here
    # took seconds on a cold server, and the first page's title waited for it.
    gc.set_threshold(*GC_THRESHOLDS)
    threading.Thread(target=_warm_up_after_first_page, name=WARM_UP_THREAD, daemon=True).start()


def first_page_done() -> None:
    """Called after every page run: after the first one, sets torch's threads and lets the
    warm-up start."""
    if not _first_page.is_set():
        configure_torch()
    _first_page.set()


def configure_torch() -> None:
    """torch's intra-op threads to ``TORCH_THREADS`` (imports torch if no page did yet)."""
    import torch

    if torch.get_num_threads() != TORCH_THREADS:
        torch.set_num_threads(TORCH_THREADS)


def _warm_up_after_first_page() -> None:
    _first_page.wait()
    time.sleep(WARM_UP_DELAY_S)
    warm_up()


def warm_up(modules=WARM_MODULES, defaults: bool = True) -> None:
    """Import ``modules`` (a missing optional one is skipped: its page reports it), then
    ``gc.freeze()`` everything allocated so far (about 300,000 objects of torch, plotly,
    pandas, streamlit...), so that the garbage collector's full collections, each about 0.2 s
    with the GIL held, no longer walk them. Then, if ``defaults``, :func:`warm_defaults`.
    Nothing here may fail: a page computes whatever is missing itself."""
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
        _not_from_warm_up
    )
    try:
        done = warm_defaults()
    except Exception:  # noqa: BLE001 - the pages compute their defaults themselves
        done = []
    _LOGGER.info(
        "warm-up: imports %.1f s, then defaults (%s) %.1f s",
        imported - start,
        ", ".join(done) or "none",
        time.perf_counter() - imported,
    )


def warm_defaults(name: str | None = None, pages=WARM_PAGES) -> list[str]:
    """Compute what a first visit of ``pages`` shows for the model ``name`` (default: the
    app's default model) with the default settings, through each page's ``warm`` in
    :mod:`app.compute`. A page whose part fails is skipped (the page computes it, or reports
    the problem, itself). Returns the pages done."""
    from app.session import DEFAULT_MODEL, pretrained_entry, test_images

    try:
        entry = pretrained_entry(name or DEFAULT_MODEL)
        data = test_images(entry.data_name)
    except Exception:  # noqa: BLE001 - the pages report a missing model or data set
        return []
    if len(entry.model.data_shape) != 2 or data.x.shape[1] != entry.model.n_pixels:
        return []
    done = []
    for page in pages:
        try:
            importlib.import_module(f"app.compute.{page}").warm(entry)
            done.append(page)
        except Exception:  # noqa: BLE001, S112 - the page computes it itself
            continue
    return done


def _not_from_warm_up(record: logging.LogRecord) -> bool:
    return record.threadName != WARM_UP_THREAD
