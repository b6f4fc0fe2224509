"""Checkpoints: round trips, and a CheckpointError (never code execution) for every bad file."""

import io
import json
import pathlib
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

import dlgm
from dlgm.checkpoint import CARD_FILE, MODEL_FILE, encode_tensors
from dlgm.errors import CheckpointError
from dlgm.model import DLGM, DLGMConfig

CFG = DLGMConfig(
    data_shape=(3, 4), n_latent=(2,), gen_hidden=(5,), rec_hidden=(5,), covariance="rank1"
)


def _model(seed=0, cfg=CFG):
    return DLGM(cfg, seed=seed)


def _assert_same(a, b):
    assert a.config == b.config
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _meta(model, **overrides):
    meta = {"config": model.config.to_dict(), "metadata": {}}
    meta.update(overrides)
    return meta


def _write(tmp_path, data, name="bad.safetensors"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _raises(path_or_bytes, match=None):
    with pytest.raises(CheckpointError, match=match):
        if isinstance(path_or_bytes, bytes):
            dlgm.from_bytes(path_or_bytes)
        else:
            dlgm.load(path_or_bytes)


# ----------------------------------------------------------------- round trips
def test_round_trip_directory(tmp_path):
    m = _model()
    dlgm.save(m, tmp_path / "ck", metadata=dict(dataset="digits", test_nll=12.5))
    assert (tmp_path / "ck" / MODEL_FILE).is_file()
    card = json.loads((tmp_path / "ck" / CARD_FILE).read_text())
    assert card["dataset"] == "digits" and DLGMConfig.from_dict(card["config"]) == CFG
    m2 = dlgm.load(tmp_path / "ck")
    _assert_same(m, m2)
    assert m2.metadata == {"dataset": "digits", "test_nll": 12.5}
    assert not m2.training  # loaded models are in eval mode


def test_round_trip_single_file(tmp_path):
    m = _model(1)
    dlgm.save(m, tmp_path / "m.safetensors", metadata=dict(epochs=3))
    _assert_same(m, dlgm.load(tmp_path / "m.safetensors"))
    assert not (tmp_path / CARD_FILE).exists()


def test_round_trip_bytes():
    m = _model(2)
    m2 = dlgm.from_bytes(dlgm.to_bytes(m, {"note": "x"}))
    _assert_same(m, m2)
    assert m2.metadata["note"] == "x"


# ----------------------------------------------------------------- bad files
def test_missing(tmp_path):
    _raises(tmp_path / "nope.safetensors", match="no checkpoint")
    (tmp_path / "empty_dir").mkdir()
    _raises(tmp_path / "empty_dir", match="no checkpoint")


def test_over_size_limit(tmp_path):
    path = tmp_path / "m.safetensors"
    dlgm.save(_model(), path)
    with pytest.raises(CheckpointError, match="over the limit"):
        dlgm.load(path, max_bytes=100)


def test_truncated(tmp_path):
    data = dlgm.to_bytes(_model())
    for cut in sorted({0, 1, 7, 8, 9, 20, 100, len(data) // 2, len(data) - 8, len(data) - 1}):
        _raises(_write(tmp_path, data[:cut]))


def test_random_bytes(tmp_path):
    rng = np.random.default_rng(0)
    for n in (5, 64, 4096):
        _raises(_write(tmp_path, rng.bytes(n)))
    _raises(b"{not a checkpoint at all}")


def test_safetensors_without_dlgm_metadata(tmp_path):
    tensors = _model().state_dict()
    _raises(_write(tmp_path, st_save(tensors)), match="format != 'dlgm'")
    _raises(_write(tmp_path, st_save(tensors, metadata={"format": "pt"})), match="format")


def test_bad_json_in_metadata():
    tensors = _model().state_dict()
    bad = st_save(tensors, metadata={"format": "dlgm", "version": "1", "config": "{oops"})
    _raises(bad, match="not valid JSON")


@pytest.mark.parametrize(
    ("version", "match"), [("2", "newer"), ("99", "newer"), ("abc", "unreadable")]
)
def test_bad_version(version, match):
    m = _model()
    meta = {k: json.dumps(v) for k, v in _meta(m).items()}
    data = st_save(m.state_dict(), metadata={"format": "dlgm", "version": version, **meta})
    _raises(data, match=match)


@pytest.mark.parametrize(
    "meta",
    [
        {"metadata": {}},  # no config
        {"config": [1, 2], "metadata": {}},
        {"config": {**CFG.to_dict(), "n_flows": 4}, "metadata": {}},  # unknown field
        {"config": {**CFG.to_dict(), "n_latent": [0]}, "metadata": {}},  # out of range
        {"config": {**CFG.to_dict(), "covariance": "full"}, "metadata": {}},
        {"config": {**CFG.to_dict(), "kappa": "big"}, "metadata": {}},
        {"config": CFG.to_dict(), "metadata": [1, 2]},  # metadata not an object
    ],
)
def test_bad_config(meta):
    _raises(encode_tensors(_model().state_dict(), meta))


@pytest.mark.parametrize("n_latent", ['["a"]', "[1e400]"])
def test_non_numeric_config_sizes(n_latent):
    m = _model()
    config = json.dumps(CFG.to_dict()).replace('"n_latent": [2]', f'"n_latent": {n_latent}')
    assert n_latent in config
    _raises(
        st_save(
            m.state_dict(),
            metadata={"format": "dlgm", "version": "1", "config": config, "metadata": "{}"},
        )
    )


def test_weights_that_do_not_match_the_config():
    m = _model()
    other = _model(cfg=DLGMConfig(**{**CFG.to_dict(), "gen_hidden": (6,)}))
    _raises(encode_tensors(other.state_dict(), _meta(m)), match="shape")
    tensors = dict(m.state_dict())
    tensors.pop("head_u.bias")
    _raises(encode_tensors(tensors, _meta(m)), match="missing")
    _raises(
        encode_tensors({**m.state_dict(), "extra": torch.zeros(2)}, _meta(m)), match="unexpected"
    )
    ints = {k: (v.to(torch.int32) if k == "G.0" else v) for k, v in m.state_dict().items()}
    _raises(encode_tensors(ints, _meta(m)), match="dtype")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights(value):
    m = _model()
    tensors = dict(m.state_dict())
    tensors["head_loc.weight"] = tensors["head_loc.weight"].clone()
    tensors["head_loc.weight"][0, 0] = value
    _raises(encode_tensors(tensors, _meta(m)), match="NaN or infinite")


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_file(tmp_path, protocol):
    for obj in ({"a": 1}, [1, 2, 3], "text", CFG):
        _raises(_write(tmp_path, pickle.dumps(obj, protocol=protocol)))


@pytest.mark.parametrize("zipfile", [True, False])
def test_torch_save_file(tmp_path, zipfile):
    buf = io.BytesIO()
    torch.save(_model().state_dict(), buf, _use_new_zipfile_serialization=zipfile)
    _raises(_write(tmp_path, buf.getvalue(), "model.pt"), match="pickle")


class _Evil:
    """Unpickling this calls pathlib.Path.touch(marker): arbitrary code execution."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_malicious_pickle_never_runs(tmp_path, protocol):
    # The payload is real: plain pickle.loads creates its marker.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Evil(probe), protocol=protocol))
    assert probe.exists()
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker), protocol=protocol)
    (tmp_path / "ck").mkdir()
    for path in (
        _write(tmp_path, payload, "evil.safetensors"),
        _write(tmp_path, payload, "ck/" + MODEL_FILE),
        tmp_path / "ck",
    ):
        _raises(path)
    _raises(payload)
    assert not marker.exists()


def test_valid_file_whose_header_length_starts_with_0x80(tmp_path):
    m = _model()
    for pad in range(300):  # metadata lengths cover every header length mod 256 (steps of 8)
        data = dlgm.to_bytes(m, {"pad": "x" * pad})
        if data[0] == 0x80:
            break
    assert data[0] == 0x80
    dlgm.from_bytes(data)


def test_hostile_config_allocates_nothing():
    # A config of 100,000-unit layers (a 40 GB model) over small weights: refused from the
    # shapes alone, before any model is built.
    m = _model()
    cfg = {**CFG.to_dict(), "gen_hidden": [100_000, 100_000], "rec_hidden": [100_000]}
    _raises(encode_tensors(m.state_dict(), _meta(m, config=cfg)), match="missing")
    cfg = {**CFG.to_dict(), "rec_hidden": [100_000]}  # same names, wrong shapes
    _raises(encode_tensors(m.state_dict(), _meta(m, config=cfg)), match="shape")
