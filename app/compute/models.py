"""Models page: the data sets at hand, the form's settings as a training run's, step mode,
and the training history chart.

Training itself is ``dlgm.train.run_training`` (live runs) and ``dlgm.train.build_trainer``
(step mode): the page only draws the progress.
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
from dlgm.train import Trainer, build_trainer

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


def run_settings(s: dict) -> tuple[dict, tuple]:
    """The form's settings as ``dlgm.train.run_training``'s settings and in-memory data
    ``(train, valid)``; raises ConfigError / DataError with a message for the user.

    One "hidden widths" field sets both MLPs; with none (affine T_l, e.g. the NLGBN or factor
    analysis) the recognition MLP keeps one layer of 200. ``u_delay`` only applies to rank-one
    covariances and is dropped for "diag"."""
    train = load_dataset(s["data"], "train", download=False)
    valid = load_dataset(s["data"], "test", download=False)
    hidden = dlgm.parse_sizes(s["hidden"], "hidden widths")
    steps = math.ceil(len(train) / s["batch_size"])
    settings = dict(
        data=s["data"],
        latent=s["latents"],
        gen_hidden=hidden,
        rec_hidden=hidden or (200,),
        covariance=s["covariance"],
        likelihood=s["likelihood"],
        input_activation=s["input_activation"],
        optimizer=s["optimizer"],
        lr=s["lr"],
        epochs=s["epochs"],
        batch_size=s["batch_size"],
        seed=s["seed"],
        u_delay=s["u_delay"] if s["covariance"] != "diag" else 0,
        device="cpu",
        report_every=max(1, steps // REPORTS_PER_EPOCH),
    )
    return settings, (train, valid.x)


def step_trainer(entry: Entry, fresh: bool, s: dict) -> Trainer:
    """A Trainer of one update per report for step mode: on a copy of ``entry``'s model, or on
    a fresh model of its architecture; raises DLGMError / ValueError with a message."""
    train = load_dataset(entry.data_name, "train", download=False)
    if fresh:
        model = dlgm.DLGM(
            entry.model.config,
            metadata={
                k: v for k, v in entry.model.metadata.items() if k in ("data", "binarization")
            },
            seed=s["seed"],
        )
    else:
        model = trainable_copy(entry)
    return build_trainer(model, train.x, dict(s, report_every=1), device="cpu")
