"""The command line: the issue's commands for real, then every subcommand and bad input.

The issue's two commands run as real subprocesses; the rest call ``dlgm.cli.main`` in this
process (the same code path without a second interpreter start-up, which costs seconds here).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dlgm
from dlgm.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--data",
    "digits",
    "--latent",
    "2",
    "--gen-hidden",
    "8",
    "--rec-hidden",
    "8",
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--quiet",
]


def _run(*args, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dlgm", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _one_json_line(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout, got {stdout!r}"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def issue_model(tmp_path_factory):
    """The issue's exact training command, in a real process."""
    out = tmp_path_factory.mktemp("cli") / "model"
    done = _run(
        "train",
        "--data",
        "digits",
        "--latent",
        "2",
        "--covariance",
        "rank1",
        "--epochs",
        "5",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    result = _one_json_line(done.stdout)
    assert result["steps"] == 40 and result["out"] == str(out)  # 1437 rows / 200 = 8 per epoch
    return out


# ---------------------------------------------------------------------------- the issue's commands
def test_train_writes_a_model_that_load_reads(issue_model):
    model = dlgm.load(issue_model)
    assert model.config.n_latent == (2,) and model.config.covariance == "rank1"
    assert model.config.data_shape == (8, 8)
    assert model.metadata["data"] == "digits"
    assert model.metadata["training"]["steps"] == 40 and len(model.metadata["history"]) == 5
    assert (issue_model / "card.json").is_file()


def test_eval_prints_one_json_line_with_nll_and_elbo(issue_model):
    done = _run(
        "eval", "--model", str(issue_model), "--data", "digits", "--split", "test", "--k", "1000"
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    res = _one_json_line(done.stdout)
    assert res["k"] == 1000 and res["n"] == 360 and res["split"] == "test"
    # nats per example: 64 binary pixels cost at most 64 ln 2 = 44.4 nats untrained.
    assert 0 < res["nll"] < 45
    assert res["elbo"] <= -res["nll"] + 0.05  # a lower bound, up to Monte Carlo error
    assert res["gap"] == pytest.approx(-res["nll"] - res["elbo"])


# ---------------------------------------------------------------------------- other commands
def _main(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_train_small_and_eval_in_process(tmp_path, capsys):
    out_dir = tmp_path / "a-small-model"
    code, out, err = _main(
        capsys,
        "train",
        *TINY,
        "--eval-k",
        "5",
        "--eval-limit",
        "20",
        "--gen-hidden",
        "8,8",
        "--out",
        str(out_dir),
    )
    assert code == 0, err
    res = _one_json_line(out)
    assert res["steps"] == 8 and res["n"] == 20 and res["k"] == 5 and res["nll"] > 0
    card = json.loads((out_dir / "card.json").read_text())
    assert card["test_nll"] == res["nll"] and card["eval_k"] == 5
    code, out, _ = _main(
        capsys, "eval", "--model", str(out_dir), "--k", "3", "--limit", "10", "--quiet"
    )
    assert code == 0 and _one_json_line(out)["n"] == 10  # data from the model's metadata


def test_train_with_u_cap_records_it_and_load_keeps_it(tmp_path, capsys):
    out_dir = tmp_path / "capped"
    flags = ["--covariance", "rank1", "--u-cap", "3"]
    code, _, err = _main(capsys, "train", *TINY, *flags, "--out", str(out_dir))
    assert code == 0, err
    assert json.loads((out_dir / "card.json").read_text())["config"]["u_cap"] == 3.0
    model = dlgm.load(out_dir)
    x = torch.rand(4, model.n_pixels, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.head_u.weight.mul_(1e5)  # u far past the cap: uncapped, eta would be near 0
        assert torch.all(model.encode(x).eta >= 1.0 / 4.0 - 1e-6)


def test_sample_writes_a_png(issue_model, tmp_path, capsys):
    from PIL import Image

    png = tmp_path / "grid.png"
    code, out, _ = _main(
        capsys, "sample", "--model", str(issue_model), "--n", "12", "--ncol", "4", "--out", str(png)
    )
    assert code == 0 and _one_json_line(out)["n"] == 12
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        assert im.width > im.height > 0  # 4 columns, 3 rows of 8x8 digits


@pytest.mark.parametrize("method", ["pseudo-gibbs", "mwg"])
def test_impute_prints_the_cross_entropy_of_every_step(issue_model, capsys, method):
    code, out, _ = _main(
        capsys,
        "impute",
        "--model",
        str(issue_model),
        "--steps",
        "4",
        "--method",
        method,
        "--mask",
        "square:4",
        "--index",
        "3",
    )
    assert code == 0
    res = _one_json_line(out)
    assert res["missing"] == 16 and res["steps"] == 4
    assert len(res["cross_entropy"]) == 5  # the initial fill, then every step
    assert all(0 < v < 10 for v in res["cross_entropy"])
    if method == "mwg":
        assert 0 <= res["acceptance_rate"] <= 1


def test_train_eval_impute_on_grey_patches(tmp_path, capsys):
    """A Gaussian model of the patches: trained without binarisation, evaluated on grey levels,
    and its imputation error reported as squared error (cross-entropy is for binary pixels)."""
    out = tmp_path / "patches"
    argv = [*TINY[2:-1], "--data", "patches", "--likelihood", "gaussian", "--epochs", "0.05"]
    code, res, err = _main(capsys, "train", *argv, "--out", str(out), "--quiet")
    assert code == 0, err
    model = dlgm.load(out)
    assert model.metadata["data"] == "patches" and model.metadata["binarization"] == {
        "kind": "none"
    }
    code, res, _ = _main(capsys, "eval", "--model", str(out), "--k", "10", "--limit", "20")
    res = _one_json_line(res)
    assert code == 0 and res["data"] == "patches" and res["binarization"] == {"kind": "none"}
    assert res["n"] == 20 and all(map(math.isfinite, (res["nll"], res["elbo"])))
    code, res, _ = _main(
        capsys, "impute", "--model", str(out), "--steps", "3", "--mask", "square:4"
    )
    res = _one_json_line(res)
    assert code == 0 and "cross_entropy" not in res and res["missing"] == 16
    assert len(res["squared_error"]) == 4 and all(0 <= v <= 1 for v in res["squared_error"])


def test_data_info_digits(capsys):
    code, out, _ = _main(capsys, "data", "info", "digits")
    assert code == 0
    res = _one_json_line(out)
    assert res["train"] == {"n": 1437, "shape": [8, 8]}
    assert res["test"] == {"n": 360, "shape": [8, 8]}


def test_data_info_patches(capsys):
    code, out, _ = _main(capsys, "data", "info", "patches")
    assert code == 0
    res = _one_json_line(out)
    assert res["train"] == {"n": 26_670, "shape": [8, 8]}
    assert res["test"] == {"n": 6_510, "shape": [8, 8]}


# ---------------------------------------------------------------------------- bad input
def _assert_clean_error(code, err, match):
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert match in lines[0], lines[0]


TRAIN_ERRORS = [
    (["--latent", "0"], "n_latent=(0,): every size must be in [1, 100000]"),
    (["--latent", "2,-1"], "every size must be in [1, 100000]"),
    (["--gen-hidden", "0"], "gen_hidden=(0,)"),
    (["--lr", "0"], "lr=0.0: must be in (0, 10]"),
    (["--lr", "-1"], "lr=-1.0: must be in (0, 10]"),
    (["--lr", "nan"], "must be in (0, 10]"),
    (["--batch-size", "0"], "batch_size=0: must be in [1, 1000000]"),
    (["--samples", "0"], "n_samples=0: must be in [1, 10000]"),
    (["--kappa", "-1"], "kappa=-1.0"),
    (["--input-noise-p", "1.5"], "input_noise_p=1.5: must be in [0, 1)"),
    (["--data", "nosuch"], "unknown data set 'nosuch'"),
    (["--covariance", "rank1", "--u-cap", "-1"], "u_cap=-1.0: must be a finite number > 0"),
    (["--covariance", "rank1", "--u-cap", "0"], "u_cap=0.0: must be a finite number > 0"),
    (["--u-cap", "4"], "u_cap bounds the rank-one term"),
]


@pytest.mark.parametrize(
    ("flags", "match"), TRAIN_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_train_rejects_bad_settings(tmp_path, capsys, flags, match):
    code, _, err = _main(capsys, "train", *TINY, *flags, "--out", str(tmp_path / "m"))
    _assert_clean_error(code, err, match)
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_train_needs_out(capsys):
    code, _, err = _main(capsys, "train", *TINY)
    _assert_clean_error(code, err, "--out DIR is required")


@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_train_rejects_non_positive_epochs(tmp_path, capsys, epochs):
    code, _, err = _main(capsys, "train", *TINY, "--epochs", epochs, "--out", str(tmp_path))
    _assert_clean_error(code, err, "epochs")


def test_train_rejects_an_empty_recognition_network(tmp_path, capsys):
    code, _, err = _main(capsys, "train", *TINY, "--rec-hidden", "none", "--out", str(tmp_path))
    _assert_clean_error(code, err, "rec_hidden")


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--covariance", "full"], "argument --covariance: invalid choice: 'full'"),
        (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    ],
)
def test_train_rejects_malformed_flags(capsys, flags, match):
    code, _, err = _main(capsys, "train", *TINY, *flags, "--out", "unused")
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]  # argparse prints its usage line, then the error
    assert last.startswith("python -m dlgm train: error: ") and match in last


def test_train_rejects_non_integer_sizes(capsys):
    try:
        code, _, err = _main(capsys, "train", *TINY, "--latent", "a,b", "--out", "unused")
    except Exception as e:  # noqa: BLE001 - any escape is the failure
        pytest.fail(f"{type(e).__name__} escaped: {e}")
    _assert_clean_error(code, err, "give comma-separated integers")


def test_eval_rejects_k_zero(issue_model, capsys):
    code, _, err = _main(capsys, "eval", "--model", str(issue_model), "--k", "0", "--quiet")
    _assert_clean_error(code, err, "--k 0: must be an integer >= 1")


def test_eval_rejects_a_missing_checkpoint(tmp_path, capsys):
    code, _, err = _main(capsys, "eval", "--model", str(tmp_path / "nothing"), "--quiet")
    _assert_clean_error(code, err, "no checkpoint at")


def _copy_model(src: Path, dst: Path, data: bytes | None = None) -> Path:
    dst.mkdir()
    raw = (src / "model.safetensors").read_bytes()
    (dst / "model.safetensors").write_bytes(raw if data is None else data(raw))
    return dst


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda raw: raw[:100], "truncated"),
        (lambda raw: raw[: len(raw) // 2], "not a valid safetensors file"),
        (lambda raw: raw[:5], "too short"),
        (lambda raw: raw[:8] + b"[" + raw[9:], "not a valid safetensors file"),
        (lambda raw: b"", "too short"),
    ],
)
def test_eval_rejects_a_corrupted_checkpoint(issue_model, tmp_path, capsys, damage, match):
    bad = _copy_model(issue_model, tmp_path / "bad", damage)
    code, _, err = _main(capsys, "eval", "--model", str(bad), "--k", "1", "--quiet")
    _assert_clean_error(code, err, match)


class _Touch:
    """A pickle payload that creates a marker file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_posing_as_a_checkpoint_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(pickle.dumps(_Touch(marker)))
    done = _run("eval", "--model", str(bad), "--k", "1", "--quiet")  # a real process
    _assert_clean_error(done.returncode, done.stderr, "pickle")
    assert done.stdout == "" and not marker.exists()


def test_a_torch_save_file_posing_as_a_checkpoint_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"payload": _Touch(marker)}, bad / "model.safetensors")
    code, _, err = _main(capsys, "sample", "--model", str(bad), "--out", str(tmp_path / "s.png"))
    _assert_clean_error(code, err, "zip archive")
    assert not marker.exists() and not (tmp_path / "s.png").exists()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["sample", "--n", "0"], "--n 0: must be in [1, 10000]"),
        (["impute", "--index", "360"], "--index 360: must be in [0, 359]"),
        (["impute", "--mask", "half"], "--mask half: use random:RATE or square:SIZE"),
    ],
)
def test_sample_and_impute_reject_bad_input(issue_model, tmp_path, capsys, argv, match):
    argv = [*argv, "--model", str(issue_model)]
    if argv[0] == "sample":
        argv += ["--out", str(tmp_path / "s.png")]
    code, _, err = _main(capsys, *argv)
    _assert_clean_error(code, err, match)
