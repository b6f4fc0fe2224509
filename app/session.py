"""The models of this browser tab, the selected one (picked by :mod:`app.picker`), and the test
images as a model sees them.

Pretrained models are loaded once per server with ``st.cache_resource`` and shared by every
user, so they are read-only (``eval()``; training always works on a copy). Models a user trains
or uploads live in that browser tab's ``st.session_state`` only. Every model carries a cache
key (``Entry.model_id``, given to :mod:`app.cache`) that changes whenever its weights change.

The test images as a model sees them come from ``dlgm.data.as_seen_by`` only (binarised once
with the model's eval seed for Bernoulli models, grey levels for Gaussian ones), computed once
per (data set, seed) per server and shared read-only, so test image #i is the same image on
every page.

A data set the user uploads (an ``.npz`` file, on the Models page) lives in this tab's session
too, split into training and test images by ``dlgm.data.load_npz_splits``; its name
(``upload:<stem>-<digest of the file>``) is what the card of a model trained on it records, so
every page finds its test images through :func:`test_images` like a shipped data set's, and
the same name always means the same images.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass

import numpy as np
import streamlit as st

import dlgm
from app.cache import name_model, read_only
from app.picker import (  # noqa: F401 (DEFAULT_MODEL, PRETRAINED, pretrained_names: re-exported)
    CURRENT_KEY,
    DEFAULT_MODEL,
    MISSING_KEY,
    MODELS_KEY,
    PENDING_KEY,
    PRETRAINED,
    default_model_name,
    model_names,
    pretrained_names,
)
from dlgm.data import DataError, ImageData, as_seen_by, eval_seed, load_dataset

SAMPLES = PRETRAINED / "samples"
_DATA_KEY = "user_data"  # {name: UserData} uploaded in this session (no widget owns it)
USER_DATA_PREFIX = "upload:"


@dataclass
class Entry:
    """A model and what the app needs to know about it."""

    name: str
    model: dlgm.DLGM
    model_id: str  # the model's cache key; changes whenever the weights change
    source: str  # "pretrained", "trained" or "uploaded"

    def __post_init__(self):
        name_model(self.model, self.model_id)

    @property
    def data_name(self) -> str:
        return str(self.model.metadata.get("data", "digits"))


# ---------------------------------------------------------------------------- models
@st.cache_resource(show_spinner="Loading model...")
def _load_pretrained(name: str) -> dlgm.DLGM:
    model = dlgm.load(PRETRAINED / name)
    model.requires_grad_(False)
    return model.eval()


def _session_models() -> dict:
    if MODELS_KEY not in st.session_state:
        st.session_state[MODELS_KEY] = {}
    return st.session_state[MODELS_KEY]


def all_model_names() -> list[str]:
    return model_names()


def pretrained_entry(name: str) -> Entry:
    """The shipped model ``name``, shared by every session (no session needed)."""
    return Entry(name, _load_pretrained(name), f"pretrained:{name}", "pretrained")


def get_entry(name: str) -> Entry:
    user = _session_models()
    if name in user:
        return user[name]
    return pretrained_entry(name)


def add_session_model(name: str, model: dlgm.DLGM, source: str) -> Entry:
    """Store a model in this browser tab (overwriting a same-named one) and select it."""
    entry = Entry(name, model, f"{source}:{uuid.uuid4().hex}", source)
    _session_models()[name] = entry
    st.session_state[CURRENT_KEY] = name
    st.session_state[PENDING_KEY] = True  # the picker is already drawn in this run
    return entry


def touch(entry: Entry) -> None:
    """Give a session model a new id after its weights changed (invalidates cached results)."""
    entry.model_id = f"{entry.source}:{uuid.uuid4().hex}"
    name_model(entry.model, entry.model_id)


def trainable_copy(entry: Entry) -> dlgm.DLGM:
    """A copy that may be trained without touching the shared cached model."""
    model = copy.deepcopy(entry.model)
    model.requires_grad_(True)
    return model


def current_entry() -> Entry:
    """The model selected in this session (the default one at first)."""
    names = all_model_names()
    name = st.session_state.get(CURRENT_KEY)
    if name not in names:
        name = default_model_name(names)
        st.session_state[CURRENT_KEY] = name
    return get_entry(name)


def model_picker_ui() -> Entry:
    """The model picked in the sidebar, loaded; call it after the page's title (the first load
    of a model takes seconds).

    The select box itself (``app.picker.model_select_ui``) is drawn by ``streamlit_app.py``
    before the page, bound to the URL. When a link named a model this server does not have,
    this shows a warning (until another model is picked). A page that adds a model after the
    picker was drawn calls ``st.rerun()`` to show it selected at once."""
    entry = current_entry()
    missing = st.session_state.get(MISSING_KEY)
    if missing is not None:
        st.warning(
            f"The link names the model {missing!r}, which this server does not have (models "
            "trained or uploaded in a browser tab live only in that tab). Showing "
            f"{entry.name!r} instead.",
            icon=":material/link_off:",
        )
    return entry


# ---------------------------------------------------------------------------- user data
@dataclass(frozen=True)
class UserData:
    """A data set uploaded in this tab: its two splits and how they were made."""

    name: str  # "upload:<stem>-<digest>": the name a model's card records
    file_name: str
    train: ImageData
    test: ImageData
    split: dict  # dlgm.data.load_npz_splits's "how"
    binary: bool  # every pixel 0 or 1

    @property
    def label(self) -> str:
        """Short name for titles and model names: the file's stem."""
        return self.file_name.rsplit(".", 1)[0] or "data"


def is_user_data(data_name: str) -> bool:
    """Whether ``data_name`` names an uploaded data set (not a shipped one)."""
    return str(data_name).startswith(USER_DATA_PREFIX)


def session_datasets() -> dict[str, UserData]:
    """The data sets uploaded in this tab, by name."""
    if _DATA_KEY not in st.session_state:
        st.session_state[_DATA_KEY] = {}
    return st.session_state[_DATA_KEY]


def add_session_data(data: UserData) -> UserData:
    """Keep an uploaded data set in this tab (the same name is the same file: replaced)."""
    for split in (data.train, data.test):
        read_only(split.x)
        read_only(split.y)
    session_datasets()[data.name] = data
    return data


def user_data(data_name: str) -> UserData:
    """The uploaded data set ``data_name`` of this tab; DataError if it is not here."""
    found = session_datasets().get(data_name)
    if found is None:
        stem = data_name.removeprefix(USER_DATA_PREFIX).rsplit("-", 1)[0]
        raise DataError(
            f"{data_name!r} is a data set uploaded in a browser tab, and it lives in that tab "
            f"only; upload {stem}.npz again on the Models page (tab 'Train a new model') to "
            "use it here"
        )
    return found


def dataset_split(data_name: str, split: str) -> ImageData:
    """One split of a shipped data set (never downloaded here) or of one uploaded in this tab."""
    if is_user_data(data_name):
        data = user_data(data_name)
        return data.train if split == "train" else data.test
    return load_dataset(data_name, split, download=False)


def data_label(data_name: str) -> str:
    """How a data set is named in titles and model names: an uploaded one by its file's stem."""
    if is_user_data(data_name):
        found = session_datasets().get(data_name)
        return found.label if found else data_name.removeprefix(USER_DATA_PREFIX)
    return data_name


# ---------------------------------------------------------------------------- test images
def test_images(data_name: str) -> ImageData:
    """Test images of a data set as grey levels: for a data set uploaded in this tab, its test
    split; else the shipped sample in pretrained/samples if there is one (a prefix of the test
    split), else the data set's test split (digits is bundled with scikit-learn).

    Read-only arrays, shared (a shipped data set's by every session: ``st.cache_data`` made a
    copy on every call, 16 MB for the MNIST sample). Copy before handing to torch
    (``torch.from_numpy`` wants a writable array)."""
    if is_user_data(data_name):
        return user_data(data_name).test
    return _shipped_test_images(data_name)


@st.cache_resource(show_spinner="Loading images...", max_entries=8)
def _shipped_test_images(data_name: str) -> ImageData:
    """:func:`test_images` of a shipped data set, one copy per server."""
    sample = SAMPLES / f"{data_name}-test.npz"
    if sample.is_file():
        with np.load(sample, allow_pickle=False) as f:
            x = f["x"].reshape(len(f["x"]), -1).astype(np.float32) / 255.0
            y = f["y"].astype(np.int64) if "y" in f else None
            shape = tuple(int(s) for s in f["shape"]) if "shape" in f else (28, 28)
        data = ImageData(x=x, y=y, shape=shape, name=data_name)
    else:
        data = load_dataset(data_name, "test", download=False)
    read_only(data.x)
    read_only(data.y)
    return data


@st.cache_resource(show_spinner=False, max_entries=8)
def _seen(data_name: str, seed: int | None, _model: dlgm.DLGM) -> tuple[np.ndarray, dict]:
    """``as_seen_by(model, test images)``, once per (data set, eval seed): the result depends
    on the model only through its eval seed (None: grey levels)."""
    x, how = as_seen_by(_model, test_images(data_name).x)
    return read_only(x), how


def seen_test_images(model: dlgm.DLGM, data_name: str | None = None) -> tuple[ImageData, dict]:
    """The test images of ``model``'s data set as ``model`` sees them (``dlgm.data.as_seen_by``),
    read-only and shared; and how they were made (``{"kind", "eval_seed"}``)."""
    name = data_name or str(model.metadata.get("data", "digits"))
    data = test_images(name)
    x, how = _seen(name, eval_seed(model), model)
    return ImageData(x=x, y=data.y, shape=data.shape, name=name), how


def seen_label(how: dict) -> str:
    """How the images a model sees were made, for captions."""
    if how["kind"] == "none":
        return "grey levels"
    return f"binarised once with seed {how['eval_seed']}"


def test_data_ui(entry: Entry, *, where=None) -> ImageData | None:
    """:func:`seen_test_images` of ``entry``'s model, or None after showing an error when the
    data set is missing or its images do not fit the model."""
    where = where or st
    name = entry.data_name
    try:
        data = test_images(name)
    except DataError as e:
        where.error(f"The test images of {name!r} are not available: {e}")
        return None
    if data.x.shape[1] != entry.model.n_pixels:
        where.error(
            f"Model {entry.name!r} expects {entry.model.n_pixels} pixels per image, but "
            f"its data set {name!r} has {data.x.shape[1]}; its metadata names the wrong "
            "data set."
        )
        return None
    return seen_test_images(entry.model, name)[0]
