"""The fast training path (``Trainer(fast=True)``) against the plain path.

The fast path compiles the step with ``torch.compile``, keeps data, permutation and random draws
on the device and, on CUDA, replays the whole update as one CUDA graph. It must give the plain
path's results: the same random numbers, the same updates up to floating-point rounding (the
compiled kernels sum in another order). On CPU every piece but the graph capture runs here;
the CUDA test runs where a GPU is present.

Tolerances: after 4 epochs of a tiny model (at most ~40 updates) the weights of the two paths
agree to 1e-5 (measured: 6e-8 with Adam, 7e-7 with RMSprop); a wrong random draw, a missed
weight prior, clip or learning-rate decay moves them by 1e-3 or more.
"""

from __future__ import annotations

import math

import pytest
import torch

from dlgm.data import load_dataset
from dlgm.model import DLGM, DLGMConfig
from dlgm.train import Trainer

X = load_dataset("digits", "train").x[:230]  # 230 = 4 x 50 + 30: a short last minibatch

# Every option that changes a step: dynamic binarisation, input noise, sample noise, S = 2,
# clipping, the weight prior (kappa), learning-rate decay, a KL warm-up over half the run, free
# bits, a short last minibatch.
SETTINGS = dict(
    kl_warmup=2.0,
    free_bits=1.0,
    batch_size=50,
    lr=1e-2,
    lr_decay=0.9,
    input_noise="bitflip",
    input_noise_p=0.1,
    sample_noise=0.1,
    clip_grad=5.0,
    report_every=3,
    n_samples=2,
    seed=3,
)


def _model(covariance="rank1"):
    cfg = DLGMConfig(
        data_shape=(8, 8),
        n_latent=(3,),
        gen_hidden=(16,),
        rec_hidden=(16,),
        covariance=covariance,
        kappa=1.0,
    )
    return DLGM(cfg, seed=0)


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().cpu() for p in model.parameters()])


def _train(fast, *, device="cpu", epochs=4, covariance="rank1", **settings):
    model = _model(covariance)
    t = Trainer(model, X, fast=fast, device=device, **{**SETTINGS, **settings})
    reports = list(t.run(epochs=epochs))
    return t, reports


@pytest.mark.parametrize("optimizer,covariance", [("adam", "rank1"), ("rmsprop", "diag")])
def test_fast_path_gives_the_plain_paths_results_on_cpu(optimizer, covariance):
    plain, p_reports = _train(False, optimizer=optimizer, covariance=covariance)
    fast, f_reports = _train(True, optimizer=optimizer, covariance=covariance)
    assert [r.step for r in f_reports] == [r.step for r in p_reports]
    assert fast.step_count == plain.step_count == 20  # 4 epochs of 5 minibatches
    for a, b in zip(p_reports, f_reports, strict=True):
        assert b.free_energy == pytest.approx(a.free_energy, rel=1e-5)
        assert b.lr == pytest.approx(a.lr, rel=1e-6)  # decayed 0.9 per epoch in both
    assert fast.lr == pytest.approx(1e-2 * 0.9**3, rel=1e-6)
    diff = float((_flat(plain.model) - _flat(fast.model)).abs().max())
    assert diff < 1e-5
    moved = float((_flat(_model(covariance)) - _flat(fast.model)).abs().max())
    assert moved > 1e-2  # it trained
    # The same random stream, consumed identically: the next draws agree exactly.
    assert torch.equal(plain.dev_gen.get_state(), fast.dev_gen.get_state())


def test_a_different_seed_is_told_apart():
    """The tolerance above separates paths that do differ: another seed's run (other draws)
    is farther from the plain run than 1e-5."""
    plain, _ = _train(False, optimizer="adam", epochs=1)
    other, _ = _train(True, optimizer="adam", epochs=1, seed=4)
    assert float((_flat(plain.model) - _flat(other.model)).abs().max()) > 1e-3


def test_fast_run_saved_and_resumed_matches_the_uninterrupted_run(tmp_path):
    whole, _ = _train(True, optimizer="adam", epochs=4)
    first, _ = _train(True, optimizer="adam", epochs=2)
    first.save(tmp_path / "run")
    resumed = Trainer.resume(tmp_path / "run", X, device="cpu")
    assert resumed.fast and isinstance(resumed.opt.param_groups[0]["lr"], torch.Tensor)
    list(resumed.run(epochs=2))
    assert resumed.step_count == whole.step_count
    assert torch.equal(_flat(resumed.model), _flat(whole.model))
    # A plain run's state resumes on the fast path (and the other way round).
    plain, _ = _train(False, optimizer="adam", epochs=2)
    plain.save(tmp_path / "plain")
    crossed = Trainer.resume(tmp_path / "plain", X, device="cpu", fast=True)
    list(crossed.run(epochs=2))
    assert float((_flat(crossed.model) - _flat(whole.model)).abs().max()) < 1e-5


def test_fast_path_recovers_from_non_finite_weights():
    model = _model()
    t = Trainer(
        model, X, fast=True, optimizer="rmsprop", device="cpu", **{**SETTINGS, "lr_decay": 1.0}
    )
    reports = []
    for p in t.run(epochs=4):
        reports.append(p)
        if len(reports) == 2:  # poison the weights between two reports
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
    recovered = [p for p in reports if p.message]
    assert len(recovered) == 1 and "non-finite" in recovered[0].message
    assert t.lr == pytest.approx(5e-3)
    lr = t.opt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and float(lr) == pytest.approx(5e-3)
    after = reports[reports.index(recovered[0]) + 1 :]
    assert after and all(math.isfinite(p.free_energy) for p in after)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_path_gives_the_plain_paths_results():
    plain, p_reports = _train(False, device="cuda", optimizer="adam", epochs=6)
    fast, f_reports = _train(True, device="cuda", optimizer="adam", epochs=6)
    assert fast._fast.graph is not None  # the full minibatches were replayed from a graph
    for a, b in zip(p_reports, f_reports, strict=True):
        assert b.free_energy == pytest.approx(a.free_energy, rel=1e-4)
    assert float((_flat(plain.model) - _flat(fast.model)).abs().max()) < 1e-4
