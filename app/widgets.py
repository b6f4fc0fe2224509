"""Small widget helpers shared by the pages.

Helpers that draw widgets and return their values end in ``_ui``. Every one takes a ``key``
(unique across pages: it is also the widget's URL parameter) and a ``where`` (``st``,
``st.sidebar``, a column or a container; default ``st``). Their values are bound to the URL
(``bind="query-params"``: a link opens the same view; a default value leaves the URL clean) and
survive a page change (``persist_state="session"``); a kept value that is no longer allowed
(e.g. an index past the end of another model's data) falls back to the default.

Also here: :func:`show_figure` (``st.plotly_chart`` with the app's defaults) and
:func:`share_link_ui` (the link to the view). The test images a model sees come from
``app.session.test_data_ui``.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np
import streamlit as st

from app.picker import PICKER_KEY, is_tab_model, tab_only_note

PLOT_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["toImage"]}


def show_figure(
    fig,
    *,
    where=None,
    key: str | None = None,
    on_select="ignore",
    selection_mode=("points", "box", "lasso"),
    width="stretch",
):
    """``st.plotly_chart`` with the app's defaults; returns the selection event if
    ``on_select="rerun"`` (``event["selection"]["points"]``), else None."""
    where = where or st
    if on_select == "ignore":
        where.plotly_chart(fig, width=width, config=PLOT_CONFIG, key=key)
        return None
    return where.plotly_chart(
        fig,
        width=width,
        config=PLOT_CONFIG,
        key=key,
        on_select=on_select,
        selection_mode=selection_mode,
    )


def seed_ui(
    *,
    key: str,
    where=None,
    label="Seed",
    default: int = 0,
    help="The same seed gives the same random draws.",
) -> int:
    """A seed: an integer in [0, 2**31 - 1], kept across page changes."""
    where = where or st
    return int(
        where.number_input(
            label,
            min_value=0,
            max_value=2**31 - 1,
            value=default,
            step=1,
            key=key,
            help=help,
            bind="query-params",
            persist_state="session",
        )
    )


def image_index_ui(
    n_images: int, *, key: str, where=None, label="Test image #", default: int = 0
) -> int:
    """An image index in [0, n_images - 1]: a number input plus a "Random" button."""
    where = where or st
    default = min(default, n_images - 1)

    def _random():
        value = int(np.random.default_rng().integers(n_images))
        st.session_state[key] = value

    left, right = where.columns([3, 1], vertical_alignment="bottom")
    index = left.number_input(
        label,
        min_value=0,
        max_value=n_images - 1,
        value=default,
        step=1,
        key=key,
        help=f"0 to {n_images - 1}",
        bind="query-params",
        persist_state="session",
    )
    right.button(
        "Random",
        key=f"{key}_random",
        on_click=_random,
        icon=":material/casino:",
        width="stretch",
        help="Pick a random image",
    )
    return int(index)


def layer_ui(n_layers: int, *, key: str, where=None, label="Resample from layer l down") -> int:
    """A stochastic layer l in 1..L (1 = nearest the data, L = top); L when there is one layer
    (then no widget is drawn)."""
    if n_layers <= 1:
        return 1
    where = where or st
    return int(
        where.select_slider(
            label,
            options=list(range(1, n_layers + 1)),
            value=n_layers,
            key=key,
            bind="query-params",
            persist_state="session",
            help="Layers l+1..L stay fixed; ξ_1..ξ_l are drawn afresh. l = 1 is nearest the data, "
            "l = L resamples everything.",
        )
    )


def drawn_image_ui(shape: tuple[int, int], *, key: str, where=None) -> np.ndarray | None:
    """A drawing canvas (streamlit-drawable-canvas); returns the drawing resized to ``shape``
    as grey levels in [0, 1], shape (H * W,), or None while nothing is drawn (or when the
    canvas package is not installed, with a note)."""
    where = where or st
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception as e:  # optional dependency; it may also fail to register
        where.info(f"Drawing needs the package streamlit-drawable-canvas ({e}).")
        return None
    h, w = shape
    scale = max(1, 200 // max(h, w))
    with where:
        result = st_canvas(
            stroke_width=int(scale * (1.3 if h <= 8 else 2.2)),
            stroke_color="black",
            background_color="#ffffff",
            height=h * scale,
            width=w * scale,
            drawing_mode="freedraw",
            return_image_data=True,
            key=key,
        )
    rgba = getattr(result, "image_data", None)
    if rgba is None:
        return None
    rgba = np.asarray(rgba, dtype=np.float32)[: h * scale, : w * scale] / 255.0
    ink = rgba[..., 3] * (1.0 - rgba[..., :3].mean(-1))  # opaque and dark: a stroke
    ink = ink.reshape(h, scale, w, scale).mean(axis=(1, 3))  # (H, W) block means
    if ink.max() < 0.05:
        return None
    return np.clip(ink, 0.0, 1.0).reshape(-1).astype(np.float32)


def view_url(base: str | None, params: dict[str, list[str]]) -> str:
    """The link to a view: ``base`` (the page's URL, ``st.context.url``; its own query and
    fragment are dropped; None gives a relative link) and the query parameters ``params`` (name
    -> values, in order), URL-encoded."""
    parts = urlsplit(base or "")
    query = urlencode([(k, v) for k, values in params.items() for v in values])
    path = parts.path or ("/" if parts.netloc else "")
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def share_link_ui(where=None, skip=()) -> str:
    """The link to this view, in ``st.code`` (which has a copy button); returns it.

    Built from ``st.query_params``, which the bound widgets keep in step with the URL, so draw
    it after every bound widget of the page (``streamlit_app.py`` draws it after the page).
    A model trained or uploaded in this tab cannot travel in a link: a note says so. ``skip``:
    parameters to leave out (the model picker's on a page that does not draw it: its widget
    is gone, but its parameter leaves the URL only after the run)."""
    where = where or st.sidebar
    params = {k: st.query_params.get_all(k) for k in st.query_params if k not in skip}
    url = view_url(st.context.url, params)
    where.caption(
        "Link to this view",
        help="Opening it in another browser shows the same page, model and settings "
        "(not drawings, uploads, selections in a plot or the steps of the imputation chains).",
    )
    where.code(url, language=None, wrap_lines=True)
    model = params.get(PICKER_KEY, [None])[-1]
    if model is not None and is_tab_model(model):
        where.caption(tab_only_note(model))
    return url
