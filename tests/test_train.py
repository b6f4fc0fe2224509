"""Training (Algorithm 1): learning, progress, stopping, NaN recovery, resume, kill, DDP.

Tiny models on the 8x8 digits keep every test to a few seconds. Subprocess tests run
``python -m dlgm train`` for real (killed with SIGKILL, resumed; under ``torchrun`` with gloo).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import dlgm
from dlgm.checkpoint import read_bytes
from dlgm.data import load_dataset
from dlgm.errors import ConfigError, TrainingError
from dlgm.model import DLGM, DLGMConfig
from dlgm.train import STATE_FILE, Trainer, fit

ROOT = Path(__file__).resolve().parent.parent
X = load_dataset("digits", "train").x  # (1437, 64)
X_VALID = load_dataset("digits", "test").x  # (360, 64)
TINY = [
    "--data",
    "digits",
    "--latent",
    "2",
    "--gen-hidden",
    "16",
    "--rec-hidden",
    "16",
    "--device",
    "cpu",
    "--quiet",
]


def _model(seed=0, covariance="diag"):
    cfg = DLGMConfig(
        data_shape=(8, 8), n_latent=(2,), gen_hidden=(16,), rec_hidden=(16,), covariance=covariance
    )
    return DLGM(cfg, seed=seed)


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_equal_states(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs by {float((a[k] - b[k]).abs().max())}"


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _dlgm(*args) -> list[str]:
    return [sys.executable, "-m", "dlgm", *args]


def _poison_step(model, step: int, calls: list):
    """Make the ``step``-th call (1-based) of ``model.free_energy`` return a NaN loss."""
    original = model.free_energy

    def free_energy(*args, **kwargs):
        calls.append(1)
        out = original(*args, **kwargs)
        if len(calls) == step:
            out["loss"] = out["loss"] * float("nan")
        return out

    model.free_energy = free_energy  # forward() looks it up on the instance


# ---------------------------------------------------------------------------- learning
def test_free_energy_decreases_and_progress_is_sane():
    model = _model()
    t = Trainer(
        model,
        X,
        batch_size=100,
        optimizer="adam",
        lr=1e-2,
        report_every=5,
        seed=0,
        x_valid=X_VALID,
        device="cpu",
    )
    reports = list(t.run(steps=60))  # 15 steps per epoch: 4 epochs
    fe = [p.free_energy for p in reports]
    first, last = sum(fe[:3]) / 3, sum(fe[-3:]) / 3
    assert first - last > 3.0, f"free energy went from {first:.2f} to {last:.2f} nats"
    steps = [p.step for p in reports]
    assert steps == sorted(set(steps)) and steps[-1] == 60 == t.step_count
    epochs = [p.epoch for p in reports]
    assert all(b > a for a, b in zip(epochs, epochs[1:], strict=False))
    assert math.isclose(epochs[-1], 4.0)
    ends = [p for p in reports if p.end_of_epoch]
    assert [round(p.epoch) for p in ends] == [1, 2, 3, 4]
    assert len(t.history) == 4
    for p in reports:
        assert math.isfinite(p.free_energy) and math.isfinite(p.elbo)
        assert 0 < p.free_energy < 100 and p.samples_per_s > 0
        assert p.free_energy >= -p.elbo - 1e-4  # F = -ELBO + weight prior / N
        assert p.lr == 1e-2 and p.message is None
        assert (p.valid_elbo is not None) == p.end_of_epoch
        if p.valid_elbo is not None:
            assert -100 < p.valid_elbo < 0


def test_breaking_out_keeps_the_model_trained_so_far():
    model = _model()
    init = _state(model)
    t = Trainer(model, X, batch_size=50, lr=3e-3, report_every=4, device="cpu")
    for p in t.run(epochs=100):
        if p.step >= 20:
            break
    assert t.step_count == 20
    now = model.state_dict()
    assert all(torch.isfinite(v).all() for v in now.values())
    assert any(not torch.equal(init[k], now[k]) for k in init)
    more = next(t.run(steps=4))  # the trainer goes on from where it stopped
    assert more.step == 24


def test_run_needs_a_valid_length():
    t = Trainer(_model(), X[:50], batch_size=10, device="cpu")
    with pytest.raises(ConfigError):
        next(t.run())
    with pytest.raises(ConfigError, match="epochs"):
        next(t.run(epochs=-1))


# ---------------------------------------------------------------------------- NaN recovery
def test_nan_loss_restores_the_last_good_state_and_lowers_lr(tmp_path):
    model = _model()
    calls: list = []
    _poison_step(model, 7, calls)  # in the second report window (steps 5-8)
    t = Trainer(model, X, batch_size=100, lr=1e-2, report_every=4, lr_backoff=0.5, device="cpu")
    runner = t.run(steps=16)
    good = next(runner)  # step 4: a good state, snapshotted
    assert good.message is None
    good_state = _state(model)
    bad = next(runner)  # step 8: the NaN of step 7 is found
    assert bad.step == 8 and bad.message and "non-finite" in bad.message
    assert "0.01" in bad.message and "0.005" in bad.message
    assert bad.lr == pytest.approx(5e-3) and t.lr == pytest.approx(5e-3)
    assert not bad.end_of_epoch and t.recoveries == 1
    _assert_equal_states(good_state, model.state_dict())  # restored, bit for bit
    t.save(tmp_path / "after")  # a good state again: saving works
    rest = list(runner)  # training goes on at the lower rate
    assert [p.step for p in rest] == [12, 15, 16]
    assert all(p.message is None and math.isfinite(p.free_energy) for p in rest)
    assert all(p.lr == pytest.approx(5e-3) for p in rest)
    assert any(not torch.equal(good_state[k], v) for k, v in model.state_dict().items())
    loaded = dlgm.load(tmp_path / "after")
    assert all(torch.isfinite(v).all() for v in loaded.state_dict().values())


def test_nan_weights_set_by_a_callback_never_reach_a_checkpoint(tmp_path):
    seen = []

    def callback(p):
        seen.append(p)
        if len(seen) == 2:  # poison the weights mid-run (after the step-8 report)
            with torch.no_grad():
                model.T[0][0].weight.fill_(float("nan"))

    model = _model()
    t = fit(
        model,
        X,
        epochs=3,
        callback=callback,
        checkpoint_dir=tmp_path,
        batch_size=200,
        report_every=4,
        device="cpu",
    )
    messages = [p.message for p in seen if p.message]
    assert len(messages) == 1 and t.recoveries == 1
    assert t.step_count == 24
    loaded = dlgm.load(tmp_path)  # the checkpoints were written from good states only
    assert all(torch.isfinite(v).all() for v in loaded.state_dict().values())
    assert loaded.metadata["training"]["steps"] == 24


def test_save_refuses_non_finite_weights(tmp_path):
    model = _model()
    t = Trainer(model, X[:100], batch_size=50, device="cpu")
    with torch.no_grad():
        model.G[0][0, 0] = float("inf")
    with pytest.raises(TrainingError, match="non-finite"):
        t.save(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt" / "model.safetensors").exists()
    assert not (tmp_path / "ckpt" / STATE_FILE).exists()


def _always_nan_trainer(max_recoveries):
    model = _model()
    original = model.free_energy

    def always_nan(*args, **kwargs):
        out = original(*args, **kwargs)
        out["loss"] = out["loss"] * float("nan")
        return out

    model.free_energy = always_nan
    return Trainer(
        model,
        X[:200],
        batch_size=50,
        lr=3e-4,
        report_every=2,
        max_recoveries=max_recoveries,
        device="cpu",
    )


def test_too_many_recoveries_raise_training_error():
    t = _always_nan_trainer(3)
    reports = []
    with pytest.raises(TrainingError, match="non-finite after 3 recoveries"):
        for p in t.run(steps=100):
            reports.append(p)
    assert len(reports) == 3 and all(p.message for p in reports)
    assert [p.step for p in reports] == [2, 4, 6]


def test_consecutive_recoveries_keep_lowering_the_learning_rate():
    t = _always_nan_trainer(3)
    lrs = []
    with pytest.raises(TrainingError):
        for p in t.run(steps=100):
            lrs.append(p.lr)
    assert lrs == pytest.approx([1.5e-4, 7.5e-5, 3.75e-5])


# ---------------------------------------------------------------------------- resume
@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_resume_is_bit_exact(tmp_path, optimizer):
    settings = dict(
        batch_size=200,
        n_samples=2,
        optimizer=optimizer,
        lr=3e-3,
        input_noise="bitflip",
        input_noise_p=0.1,
        sample_noise=0.1,
        seed=3,
        report_every=5,
        device="cpu",
    )
    full = _model(seed=1, covariance="rank1")
    t_full = Trainer(full, X, **settings)
    for _ in t_full.run(steps=20):  # 8 steps per epoch: crosses two epoch boundaries
        pass

    part = _model(seed=1, covariance="rank1")
    t_part = Trainer(part, X, **settings)
    for _ in t_part.run(steps=11):  # stop mid-epoch
        pass
    t_part.save(tmp_path)
    seconds = t_part.seconds
    del t_part, part
    t_res = Trainer.resume(tmp_path, X, device="cpu")
    assert t_res.step_count == 11 and t_res.settings == t_full.settings
    assert t_res.seconds == seconds > 0  # the wall time so far goes on from where it was
    for _ in t_res.run(steps=9):
        pass
    assert t_res.step_count == 20
    _assert_equal_states(t_full.model.state_dict(), t_res.model.state_dict())


def test_a_state_without_its_wall_time_estimates_it_from_the_history(tmp_path):
    from dlgm.checkpoint import decode_tensors, encode_tensors, read_bytes

    t = Trainer(_model(), X, batch_size=200, lr=3e-3, report_every=4, device="cpu")
    for _ in t.run(epochs=2):
        pass
    t.save(tmp_path)
    tensors, meta = decode_tensors(read_bytes(tmp_path / STATE_FILE))
    del meta["train"]["seconds"]  # as written before states recorded it
    (tmp_path / STATE_FILE).write_bytes(encode_tensors(tensors, meta))
    again = Trainer.resume(tmp_path, X, device="cpu")
    expected = sum(len(X) / h["samples_per_s"] for h in t.history)  # epoch / its throughput
    assert len(t.history) == 2 and again.seconds == pytest.approx(expected, rel=1e-12)


def test_the_card_lists_the_hosts_a_run_ran_on(tmp_path, monkeypatch):
    from dlgm.checkpoint import decode_tensors, encode_tensors, read_bytes
    from dlgm.train import _host

    t = Trainer(_model(), X, batch_size=200, lr=3e-3, report_every=4, device="cpu")
    for _ in t.run(steps=3):
        pass
    t.save(tmp_path)
    card = json.loads((tmp_path / "card.json").read_text())
    (here,) = card["hosts"]
    assert here == {"from_step": 0, **_host.describe(torch.device("cpu"))}
    assert here["torch"] == torch.__version__ and here["threads"] == torch.get_num_threads()
    assert here["cpu_capability"] == torch.backends.cpu.get_cpu_capability() != ""

    same = Trainer.resume(tmp_path, X, device="cpu")  # the same host: no new entry
    assert same.hosts == card["hosts"]
    monkeypatch.setattr(_host, "cpu_name", lambda: "Another CPU")
    moved = Trainer.resume(tmp_path, X, device="cpu")  # another host: a new entry from step 3
    for _ in moved.run(steps=2):
        pass
    moved.save(tmp_path)
    hosts = json.loads((tmp_path / "card.json").read_text())["hosts"]
    assert [h["from_step"] for h in hosts] == [0, 3]
    assert [h["cpu"] for h in hosts] == [here["cpu"], "Another CPU"]

    tensors, meta = decode_tensors(read_bytes(tmp_path / STATE_FILE))
    meta["train"]["hosts"] = "not a list"  # as written before states recorded it, or damaged
    (tmp_path / STATE_FILE).write_bytes(encode_tensors(tensors, meta))
    old = Trainer.resume(tmp_path, X, device="cpu")
    assert [h["from_step"] for h in old.hosts] == [5]  # only what is known: here, from step 5


def test_resume_after_a_kill_between_the_two_checkpoint_files(tmp_path, monkeypatch):
    import dlgm.train._state as train_mod

    def run(t, steps):
        for _ in t.run(steps=steps):
            pass

    full = Trainer(_model(), X, batch_size=200, lr=3e-3, report_every=4, device="cpu")
    run(full, 16)
    t = Trainer(_model(), X, batch_size=200, lr=3e-3, report_every=4, device="cpu")
    run(t, 4)
    t.save(tmp_path)  # a complete checkpoint at step 4
    run(t, 4)
    real_write = train_mod.atomic_write_bytes

    def killed(path, data):  # the process dies before the second file is written
        if Path(path).name == STATE_FILE:
            raise KeyboardInterrupt
        real_write(path, data)

    monkeypatch.setattr(train_mod, "atomic_write_bytes", killed)
    with pytest.raises(KeyboardInterrupt):
        t.save(tmp_path)  # model.safetensors now holds step 8, the state step 4
    monkeypatch.setattr(train_mod, "atomic_write_bytes", real_write)
    resumed = Trainer.resume(tmp_path, X, device="cpu")
    run(resumed, 16 - resumed.step_count)
    _assert_equal_states(full.model.state_dict(), resumed.model.state_dict())


# ---------------------------------------------------------------------------- subprocesses
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which(
    "torchrun"
)
DDP_ARGS = [*TINY, "--batch-size", "20", "--epochs", "0.5"]  # 36 steps, all batches even
# 1437 = 3 x 478 + 3: the epoch's last batch has 3 rows, split 2 + 1 over two processes.
DDP_UNEVEN_ARGS = [*TINY, "--batch-size", "478", "--epochs", "1"]
KILL_EPOCHS = 30  # 8 steps per epoch at batch 200
KILL_ARGS = [*TINY, "--epochs", str(KILL_EPOCHS), "--checkpoint-every", "1"]


def _gloo_available() -> bool:
    return dist.is_available() and dist.is_gloo_available()


def _popen(cmd, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _weights(path) -> dict:
    """The tensors of a checkpoint file (or DIR/model.safetensors), read by safetensors itself
    (every byte is checked; a partly written file fails)."""
    from safetensors.torch import load

    return load(read_bytes(path))


def _meta(path) -> dict:
    """The JSON metadata of a checkpoint file (model or training state)."""
    data = read_bytes(path)
    header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    return {
        k: json.loads(v)
        for k, v in header["__metadata__"].items()
        if k not in ("format", "version")
    }


def _cli(*args) -> None:
    """Run ``python -m dlgm ...`` in this process (same code path, no interpreter start-up)."""
    from dlgm.cli import main

    assert main(list(args)) == 0


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """Start the ``torchrun --nproc_per_node 2 -m dlgm train`` jobs in the background, early
    (they overlap the killed-process test; the DDP tests collect them)."""
    if not _gloo_available() or TORCHRUN is None:
        yield None
        return
    d = tmp_path_factory.mktemp("ddp")
    jobs = {
        name: (
            d / name,
            _popen(
                [
                    TORCHRUN,
                    "--standalone",
                    "--nproc_per_node",
                    "2",
                    "-m",
                    "dlgm",
                    "train",
                    *args,
                    "--out",
                    str(d / name),
                ]
            ),
        )
        for name, args in (("even", DDP_ARGS), ("uneven", DDP_UNEVEN_ARGS))
    }
    yield jobs
    for _, proc in jobs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.usefixtures("ddp_runs")  # only to start the DDP runs early, in parallel
def test_killed_training_resumes_to_the_same_weights(tmp_path, capsys):
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    victim = subprocess.Popen(
        _dlgm("train", *KILL_ARGS, "--out", str(killed)),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (killed / STATE_FILE).exists():
            assert victim.poll() is None, victim.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.02)
        # Read the checkpoints while they are being rewritten: always complete.
        reads = 0
        t_end = time.monotonic() + 0.3
        while time.monotonic() < t_end and victim.poll() is None:
            _weights(killed), _meta(killed)
            _weights(killed / STATE_FILE), _meta(killed / STATE_FILE)
            reads += 1
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.stderr.close()
    assert victim.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert reads > 0
    # Whatever is there right after the kill is complete.
    _weights(killed), _weights(killed / STATE_FILE)
    step_state = _meta(killed / STATE_FILE)["train"]["step"]
    assert 8 <= step_state < 8 * KILL_EPOCHS, "the kill should land mid-run"
    seconds_killed = _meta(killed / STATE_FILE)["train"]["seconds"]
    assert seconds_killed > 0

    resume = _popen(_dlgm("train", *KILL_ARGS, "--out", str(killed), "--resume"))
    _cli("train", *KILL_ARGS, "--out", str(ref))  # the uninterrupted run, meanwhile
    out, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, err
    assert f'"steps": {8 * KILL_EPOCHS}' in out
    a, b = _weights(ref), _weights(killed)
    _assert_equal_states(a, b)
    # the card's training time counts the killed session's too
    card = json.loads((killed / "card.json").read_text())
    assert card["wall_time_s"] >= round(seconds_killed, 2)


def _compare_ddp(jobs, name, args, tmp_path, atol=1e-5):
    if jobs is None:
        pytest.skip("torchrun or torch.distributed with gloo is unavailable")
    d, two = jobs[name]
    _cli("train", *args, "--out", str(tmp_path / "one"))  # the same command, one process
    out, err = two.communicate(timeout=300)
    assert two.returncode == 0, err
    steps = _meta(tmp_path / "one")["metadata"]["training"]["steps"]
    assert out.count(f'"steps": {steps}') == 1  # rank 0 alone reports (and writes)
    assert _meta(d)["metadata"]["device"] == "cpu x2"
    a, b = _weights(d), _weights(tmp_path / "one")
    init = _model().state_dict()  # the CLI's initialisation (seed 0)
    assert any(not torch.equal(a[k], init[k]) for k in a)
    for k in a:
        # Same noise, same gradients: only the order of float sums differs (seen: 3e-8).
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0)


def test_ddp_two_processes_match_one(ddp_runs, tmp_path, capsys):
    _compare_ddp(ddp_runs, "even", DDP_ARGS, tmp_path)


def test_ddp_matches_one_process_over_an_uneven_last_batch(ddp_runs, tmp_path, capsys):
    _compare_ddp(ddp_runs, "uneven", DDP_UNEVEN_ARGS, tmp_path)


@pytest.fixture
def fake_world_of_two():
    """A process group of two ranks inside this process (no communication happens)."""
    try:
        from torch.testing._internal.distributed.fake_pg import FakeStore
    except ImportError:
        pytest.skip("torch's fake process group is unavailable")
    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    dist.init_process_group("fake", rank=0, world_size=2, store=FakeStore())
    yield
    dist.destroy_process_group()


def test_batch_size_not_divisible_by_world_size_is_a_clear_error(fake_world_of_two):
    with pytest.raises(
        ConfigError,
        match=r"batch_size=21 must be divisible by the number of "
        r"processes \(2\)",
    ):
        Trainer(_model(), X[:100], batch_size=21, device="cpu")


# ---------------------------------------------------------------------------- delayed u
def test_u_delay_keeps_q_diagonal_then_trains_u():
    model = _model(seed=0, covariance="rank1")
    trainer = Trainer(
        model,
        X,
        batch_size=200,
        optimizer="adam",
        lr=3e-3,
        seed=0,
        u_delay=2,
        device="cpu",
        report_every=100,
    )
    x = torch.tensor(X[:50])
    for p in trainer.run(epochs=2):  # 8 steps per epoch
        q = model.encode(x)
        assert torch.equal(q.u, torch.zeros_like(q.u)), f"u moved at epoch {p.epoch}"
    assert trainer.epoch == 1 and trainer.pos == len(trainer.perm)
    for _ in trainer.run(steps=1):  # the first step of epoch 3 starts u
        pass
    assert model.head_u.weight.abs().max() > 0
    before = model.head_u.weight.detach().clone()
    for _ in trainer.run(steps=8):
        pass
    assert not torch.equal(before, model.head_u.weight), "u was not trained after the delay"


def test_u_delay_resume_across_the_switch_is_bit_exact(tmp_path):
    settings = dict(
        batch_size=200, optimizer="adam", lr=3e-3, seed=5, u_delay=1, report_every=3, device="cpu"
    )
    t_full = Trainer(_model(seed=2, covariance="rank1"), X, **settings)
    for _ in t_full.run(steps=20):
        pass
    t_part = Trainer(_model(seed=2, covariance="rank1"), X, **settings)
    for _ in t_part.run(steps=6):  # still in the delay
        pass
    t_part.save(tmp_path)
    t_res = Trainer.resume(tmp_path, X, device="cpu")
    for _ in t_res.run(steps=14):
        pass
    _assert_equal_states(t_full.model.state_dict(), t_res.model.state_dict())


def test_u_delay_needs_a_rank_one_model():
    with pytest.raises(ConfigError, match="only a rank-one"):
        Trainer(_model(covariance="diag"), X, u_delay=3, device="cpu")
    with pytest.raises(ConfigError, match="u_delay"):
        Trainer(_model(covariance="rank1"), X, u_delay=-1, device="cpu")


# ---------------------------------------------------------------------------- run_training
TINY_RUN = dict(
    data="digits",
    latent="2",
    gen_hidden="16",
    rec_hidden="16",
    device="cpu",
    batch_size=100,
    optimizer="adam",
    lr=1e-3,
    report_every=5,
    seed=3,
)


def test_run_training_in_memory_gives_the_model_and_can_be_stopped():
    from dlgm.data import load_dataset as load
    from dlgm.train import run_training

    started, seen = [], []

    def progress(p):
        seen.append(p)
        return len(seen) < 3  # False at the third report: stop

    res = run_training(
        TINY_RUN | {"epochs": 5},
        progress=progress,
        on_start=started.append,
        data=(load("digits", "train"), X_VALID),
    )
    assert res["stopped"] and len(seen) == 3 and res["steps"] == 15
    trainer, model = res["trainer"], res["model"]
    assert started == [trainer] and trainer.model is model and res["out"] is None
    assert model.metadata["data"] == "digits"
    assert model.metadata["binarization"] == {"kind": "dynamic"}
    assert model.metadata["training"]["steps"] == 15


def test_run_training_matches_a_trainer_built_by_hand():
    from dlgm.train import run_training

    res = run_training(TINY_RUN | {"epochs": 1})
    t = Trainer(
        DLGM(
            DLGMConfig(data_shape=(8, 8), n_latent=(2,), gen_hidden=(16,), rec_hidden=(16,)), seed=3
        ),
        X,
        batch_size=100,
        optimizer="adam",
        lr=1e-3,
        report_every=5,
        seed=3,
        device="cpu",
    )
    fit_steps = math.ceil(len(X) / 100)
    for _ in t.run(steps=fit_steps):
        pass
    _assert_equal_states(_state(res["model"]), _state(t.model))


def test_run_training_refuses_unknown_settings():
    from dlgm.train import run_training

    with pytest.raises(ConfigError, match="unknown training settings"):
        run_training(TINY_RUN | {"epochz": 1})


def test_build_trainer_follows_the_run_rules():
    """One place for the settings -> Trainer rules: run_training's and step mode's."""
    from dlgm.train import build_trainer

    t = build_trainer(
        _model(covariance="rank1"),
        X,
        {"batch_size": 50, "optimizer": "adam", "u_delay": 2, "seed": 4},
        device="cpu",
    )
    assert t.settings["binarize"] == "dynamic" and t.settings["u_delay"] == 2
    assert t.settings["batch_size"] == 50 and t.settings["optimizer"] == "adam"
    gauss = DLGM(
        DLGMConfig(
            data_shape=(8, 8),
            n_latent=(2,),
            gen_hidden=(16,),
            rec_hidden=(16,),
            likelihood="gaussian",
        ),
        seed=0,
    )
    assert build_trainer(gauss, X, device="cpu").settings["binarize"] == "none"
    with pytest.raises(ConfigError, match="unknown training settings"):
        build_trainer(_model(), X, {"epochz": 1}, device="cpu")


def test_run_training_builds_the_nlgbn_with_a_delayed_u():
    """input_activation and u_delay reach the model and the Trainer (what the app's form sets)."""
    from dlgm.train import run_training

    res = run_training(
        TINY_RUN
        | {
            "epochs": 1,
            "gen_hidden": "",
            "covariance": "rank1",
            "input_activation": "probit",
            "u_delay": 1,
        }
    )
    model = res["model"]
    assert model.config.gen_hidden == () and model.config.input_activation == "probit"
    assert model.metadata["training"]["u_delay"] == 1
    assert torch.count_nonzero(model.head_u.weight) == 0  # u = 0 during the first epoch
