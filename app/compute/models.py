"""Models page: the data sets at hand, an uploaded ``.npz`` file as a data set, fetching MNIST
and Fashion-MNIST, the form's settings as a training run's, step mode, and the training history
chart.

Training itself is ``dlgm.train.run_training`` (live runs) and ``dlgm.train.build_trainer``
(step mode): the page only draws the progress.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

import dlgm
from app.cache import cache_data, cache_resource
from app.figures.curves import history_figure
from app.figures.style import freeze
from app.session import USER_DATA_PREFIX, Entry, UserData, dataset_split, trainable_copy
from dlgm.data import DATASETS, DataError, data_dir, fetch, load_dataset, load_npz_splits
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
    analysis) the recognition MLP keeps one layer of 200. ``u_delay`` and ``u_cap`` (0: none)
    only apply to rank-one covariances and are dropped for "diag"."""
    train = dataset_split(s["data"], "train")
    valid = dataset_split(s["data"], "test")
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
        u_cap=(s.get("u_cap") or None) if s["covariance"] != "diag" else None,
        init_output_bias=bool(s.get("init_output_bias", False)),
        lr_schedule=s.get("lr_schedule", "constant"),
        kl_warmup=float(s.get("kl_warmup", 0.0)),
        free_bits=float(s.get("free_bits", 0.0)),
        device="cpu",
        report_every=max(1, steps // REPORTS_PER_EPOCH),
    )
    return settings, (train, valid.x)


def step_trainer(entry: Entry, fresh: bool, s: dict) -> Trainer:
    """A Trainer of one update per report for step mode: on a copy of ``entry``'s model, or on
    a fresh model of its architecture; raises DLGMError / ValueError with a message."""
    train = dataset_split(entry.data_name, "train")
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


# ---------------------------------------------------------------------------- user data
def describe_hosts(hosts) -> str:
    """The card's ``hosts`` (where a run ran, ``dlgm.train._host``) in one line, e.g.
    ``"AMD EPYC (AVX2), torch 2.13.0+cpu, 1 thread"``; a run resumed elsewhere adds
    ``"; from step 600: ..."``. ``"not recorded"`` for cards written before hosts were."""
    entries = [h for h in hosts if isinstance(h, Mapping)] if isinstance(hosts, list) else []
    if not entries:
        return "not recorded"
    parts = []
    for i, h in enumerate(entries):  # an uploaded card may hold anything: str() every value
        threads, step = h.get("threads"), h.get("from_step")
        text = ", ".join(
            str(x)
            for x in (
                f"{h.get('cpu', '?')} ({h.get('cpu_capability', '?')})",
                h.get("gpu"),
                f"torch {h.get('torch', '?')}",
                None if threads is None else f"{threads} thread{'s' * (threads != 1)}",
            )
            if x
        )
        step = f"{step:,}" if isinstance(step, int) and not isinstance(step, bool) else "?"
        parts.append(text if i == 0 else f"from step {step}: {text}")
    return "; ".join(parts)


def read_user_data(file_name: str, blob: bytes, *, max_bytes: int) -> UserData:
    """An uploaded ``.npz`` file as a data set of this tab; raises DataError with the reason.

    The file is checked by ``dlgm.data.load_npz_splits`` (shapes, dtypes, values in range,
    no NaN, never unpickled, arrays of at most ``max_bytes``) and split there: its own
    ``x_train`` / ``x_test``, else 20% held out by a fixed permutation (seed 0). The name is
    ``upload:<stem>-<first 8 hex digits of the file's BLAKE2b>``: the same file, the same name.
    """
    if len(blob) > max_bytes:
        raise DataError(
            f"{file_name} is {len(blob) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:g} MB"
        )
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(file_name).stem).strip("-.")[:40] or "data"
    with tempfile.TemporaryDirectory(prefix="dlgm-upload-") as tmp:
        path = Path(tmp) / f"{stem}.npz"
        path.write_bytes(blob)
        train, test, how = load_npz_splits(path, max_bytes=max_bytes, name=stem)
    name = f"{USER_DATA_PREFIX}{stem}-{hashlib.blake2b(blob, digest_size=4).hexdigest()}"
    binary = all(bool(np.isin(d.x, (0.0, 1.0)).all()) for d in (train, test))
    return UserData(
        name=name,
        file_name=f"{stem}.npz",
        train=dataclasses.replace(train, name=name),
        test=dataclasses.replace(test, name=name),
        split=how,
        binary=binary,
    )


def describe_user_data(data: UserData) -> str:
    """One line on an uploaded data set: sizes, how it was split, binary or grey."""
    h, w = data.train.shape
    split = (
        "the file's own x_train / x_test"
        if data.split["kind"] == "file"
        else f"{data.split['test_fraction']:.0%} held out for testing by a fixed permutation "
        f"(seed {data.split['seed']})"
    )
    pixels = (
        "binary pixels: the Bernoulli likelihood fits them as they are"
        if data.binary
        else "grey levels: train with the Bernoulli likelihood (pixels binarised afresh each "
        "minibatch, test images once) or the Gaussian one (the grey levels themselves)"
    )
    labels = "with labels" if data.train.y is not None else "no labels"
    return (
        f"**{data.file_name}**: {len(data.train):,} training and {len(data.test):,} test "
        f"images of {h}×{w} ({split}; {labels}); {pixels}."
    )


# ---------------------------------------------------------------------------- fetching
FETCHABLE = ("mnist", "fashion-mnist")  # dlgm.data.fetch knows these


@cache_resource(show_spinner=False)
def _fetch_locks() -> dict[str, threading.Lock]:
    """One lock per data set per server: one session fetches it at a time."""
    return {name: threading.Lock() for name in FETCHABLE}


def fetch_dataset(name: str, progress) -> Path:
    """``dlgm.data.fetch(name, progress=progress)`` (its default routes), one session at a
    time; then the list of data sets at hand is read afresh. Raises DataError (the routes'
    failures and how to get the files by hand) or RuntimeError if another session is fetching
    ``name`` now."""
    lock = _fetch_locks()[name]
    if not lock.acquire(blocking=False):
        raise RuntimeError(f"Another session is fetching {name} now; try again in a minute.")
    try:
        return fetch(name, progress=progress)
    finally:
        lock.release()
        available_datasets.clear()


def fetch_help(name: str) -> str:
    """What to do when the app cannot fetch ``name``: the command line, or where the files go."""
    return (
        f"On a machine that can reach the internet, run `python -m dlgm data fetch {name}` "
        f"(with the server's `DLGM_DATA`, if it sets one), or put the four IDX files "
        f"(`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, "
        f"`t10k-labels-idx1-ubyte`, raw or `.gz`) in `{data_dir() / name}`; then reload "
        "this page."
    )
