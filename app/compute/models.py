"""Models page: the data sets at hand, training runs built from the form's settings, step mode,
and the training history chart.

The page's live training loop stays in the page (it draws the progress as it goes).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import dlgm
from app.cache import cache_data, cache_resource
from app.figures.curves import history_figure
from app.figures.style import freeze
from app.session import Entry, trainable_copy
from dlgm.data import DATASETS, DataError, load_dataset
from dlgm.train import Trainer

REPORTS_PER_EPOCH = 5


@cache_data(ttl=60, show_spinner=False)
def available_datasets() -> dict[str, str | None]:
    """Data set -> None if it can be loaded without downloading, else the reason."""
    out = {}
    for name in DATASETS:
        try:
            load_dataset(name, "test", download=False)
            out[name] = None
        except DataError as e:
            out[name] = str(e)
    return out


@cache_resource(show_spinner=False, max_entries=64)
def _history_chart(_history: Sequence[Mapping], key: str, title: str):
    return freeze(history_figure(_history, title))


def history_chart(history: Sequence[Mapping], title: str):
    """``history_figure``, frozen and shared, keyed by what it draws (a card's history can
    change without its model's id changing)."""
    drawn = repr([(h["epoch"], h["free_energy"], h.get("valid_elbo")) for h in history])
    key = hashlib.blake2b(drawn.encode(), digest_size=16).hexdigest()
    return _history_chart(history, key, title)


def parse_sizes(text: str, what: str) -> tuple[int, ...]:
    """'200, 200' -> (200, 200); '' -> (). Raises ValueError with a readable message."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a list of whole numbers, e.g. '200, 200'") \
            from None


def build_run(s: dict) -> tuple[dlgm.DLGM, Trainer]:
    """A fresh model and its Trainer from the form settings; raises ConfigError / DataError /
    ValueError with a message for the user."""
    train = load_dataset(s["data"], "train", download=False)
    valid = load_dataset(s["data"], "test", download=False)
    hidden = parse_sizes(s["hidden"], "hidden widths")
    config = dlgm.DLGMConfig(data_shape=train.shape, n_latent=parse_sizes(s["latents"], "latents"),
                             gen_hidden=hidden, rec_hidden=hidden or (200,),
                             covariance=s["covariance"], likelihood=s["likelihood"])
    binarize = "dynamic" if s["likelihood"] == "bernoulli" else "none"
    model = dlgm.DLGM(config, metadata={"data": s["data"], "binarization": {"kind": binarize}},
                      seed=s["seed"])
    steps = math.ceil(len(train) / s["batch_size"])
    trainer = Trainer(model, train.x, batch_size=s["batch_size"], optimizer=s["optimizer"],
                      lr=s["lr"], binarize=binarize, seed=s["seed"], device="cpu",
                      x_valid=valid.x, report_every=max(1, steps // REPORTS_PER_EPOCH))
    return model, trainer


def step_trainer(entry: Entry, fresh: bool, s: dict) -> Trainer:
    """A Trainer of one update per report for step mode: on a copy of ``entry``'s model, or on
    a fresh model of its architecture; raises DLGMError / ValueError with a message."""
    train = load_dataset(entry.data_name, "train", download=False)
    if fresh:
        model = dlgm.DLGM(entry.model.config, metadata={
            k: v for k, v in entry.model.metadata.items() if k in ("data", "binarization")},
            seed=s["seed"])
    else:
        model = trainable_copy(entry)
    binarize = "dynamic" if model.config.likelihood == "bernoulli" else "none"
    return Trainer(model, train.x, batch_size=s["batch_size"], optimizer=s["optimizer"],
                   lr=s["lr"], binarize=binarize, seed=s["seed"], device="cpu", report_every=1)
