"""The model picker: one select box in the sidebar, bound to the URL (``?model=<name>``).

``streamlit_app.py`` draws it (:func:`model_select_ui`) before it runs a page that uses a
model, so it is one widget of the main script on every page: its value and its URL parameter
survive page changes (a select box drawn by each page would be a new widget on every page, and
Streamlit 1.67 then returns its default on the first run after a page change). The page reads
the choice through ``app.session.model_picker_ui``, which loads the model.

This module imports nothing heavy (no torch): the main script draws the picker before a cold
server's first page has imported anything.

What a link cannot carry: models trained or uploaded in a browser tab live in that tab's
``st.session_state`` only. A link naming a model this server does not have opens the default
model with a warning (``MISSING_KEY``, shown by the page); a tab-only model gets a note under
the picker.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED = ROOT / "pretrained"
DEFAULT_MODEL = "mnist-2d-rank1"  # the paper's data; its 5,000 test images ship in samples/
MODELS_KEY = "user_models"  # {name: Entry} of this session (no widget owns these keys)
CURRENT_KEY = "current_model"  # the selected model's name (no widget owns it)
PICKER_KEY = "model"  # the select box; also its URL parameter
PENDING_KEY = "model_picker_pending"  # the picker must show CURRENT_KEY on the next run
MISSING_KEY = "model_missing"  # a model named by a link that this server does not have

_NAMES_TTL_S = 10.0
_names_cache: tuple[float, tuple[str, ...]] = (-_NAMES_TTL_S, ())


def pretrained_names() -> list[str]:
    """Names of the models shipped in pretrained/ (folders with a model.safetensors).

    The folder is listed at most every 10 s per process (a glob of it cost about 1 ms, three
    times per rerun of every page)."""
    global _names_cache
    now = time.monotonic()
    stamp, names = _names_cache
    if now - stamp >= _NAMES_TTL_S:
        names = tuple(sorted(p.parent.name for p in PRETRAINED.glob("*/model.safetensors")))
        _names_cache = (now, names)
    return list(names)


def model_names() -> list[str]:
    """Every model this session can see: the shipped ones, then this tab's."""
    return pretrained_names() + sorted(st.session_state.get(MODELS_KEY, {}))


def default_model_name(names: list[str]) -> str:
    """The model a view shows when nothing (a link, an earlier choice) names one."""
    return DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]


def is_tab_model(name: str) -> bool:
    """Whether ``name`` was trained or uploaded in this browser tab (so no link can carry it)."""
    return name in st.session_state.get(MODELS_KEY, {})


def tab_only_note(name: str) -> str:
    """Why a link cannot carry a model trained or uploaded in this tab."""
    return (
        f":material/link_off: {name!r} lives only in this browser tab (trained or uploaded "
        "here): a link cannot carry it and opens the default model elsewhere."
    )


def model_select_ui(where=None) -> str:
    """The model select box (default: in the sidebar); returns the chosen name and keeps it in
    ``st.session_state[CURRENT_KEY]``.

    Bound to the URL: a link's ``?model=<name>`` selects that model on the link's first load
    (a name this server does not have is dropped from the URL and recorded under
    ``MISSING_KEY``); the default model leaves the URL clean. A model added by
    ``app.session.add_session_model`` is selected from the next script run on."""
    where = where or st.sidebar
    names = model_names()
    default = default_model_name(names)
    linked = st.query_params.get(PICKER_KEY)
    if linked is not None and linked not in names:
        st.session_state[MISSING_KEY] = linked
    current = st.session_state.get(CURRENT_KEY)
    if current in names and (
        st.session_state.pop(PENDING_KEY, False)
        or (PICKER_KEY not in st.session_state and current != default)
    ):
        st.session_state[PICKER_KEY] = current  # a link's parameter still wins on first load
    choice = where.selectbox(
        "Model",
        names,
        index=names.index(default),
        key=PICKER_KEY,
        bind="query-params",
        persist_state="session",  # kept while a page without the picker is shown
    )
    if current is not None and current != choice:
        st.session_state.pop(MISSING_KEY, None)  # another model was picked
    st.session_state[CURRENT_KEY] = choice
    if is_tab_model(choice):
        where.caption(tab_only_note(choice))
    return choice
