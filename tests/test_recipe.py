"""Training recipes (#9): the output bias at the data's mean pixel, the IWAE paper's
learning-rate schedule (3^i epochs at lr * 10^(-i/7), i = 0..7), and a KL warm-up (the KL
term's weight beta rising linearly from 0 to 1).

Tiny models on slices of the 8x8 digits; every test takes a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import TINY_RUN  # tests/ is on sys.path (pytest's prepend import mode)

import dlgm
from dlgm.checkpoint import decode_tensors, encode_tensors, read_bytes
from dlgm.cli import _settings as cli_settings
from dlgm.cli import build_parser
from dlgm.data import load_dataset
from dlgm.errors import ConfigError
from dlgm.model import DLGM, DLGMConfig
from dlgm.train import STATE_FILE, Trainer, iwae_lr_factor, run_training

ROOT = Path(__file__).resolve().parent.parent
X = load_dataset("digits", "train").x  # (1437, 64), grey levels in [0, 1]


def _model(seed=0, covariance="diag", likelihood="bernoulli", gen_hidden=(16,), **extra):
    cfg = DLGMConfig(
        data_shape=(8, 8),
        n_latent=(2,),
        gen_hidden=gen_hidden,
        rec_hidden=(16,),
        covariance=covariance,
        likelihood=likelihood,
        **extra,
    )
    return DLGM(cfg, seed=seed)


def _run(trainer, steps):
    for _ in trainer.run(steps=steps):
        pass


def _logit_of_mean(x) -> np.ndarray:
    p = np.clip(np.asarray(x, dtype=np.float64).mean(0), 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


def _assert_equal_states(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


# ---------------------------------------------------------------------------- output bias
def test_init_output_bias_is_the_logit_of_the_clipped_mean_pixel():
    x = X[:300]
    assert (x.mean(0) < 1e-3).any(), "the clip should matter for some pixels (blank corners)"
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = Trainer(model, x, init_output_bias=True, device="cpu")
    bias = t.output_layer().bias
    assert bias is model.T[0][-1].bias  # the layer that outputs the logits
    np.testing.assert_allclose(bias.detach().numpy(), _logit_of_mean(x), rtol=1e-6, atol=1e-6)
    after = model.state_dict()
    for k in before:  # nothing else moved
        if k != "T.0.2.bias":
            assert torch.equal(before[k], after[k]), k
    assert t.settings["init_output_bias"] is True


def test_init_output_bias_off_leaves_the_model_alone():
    model = _model()
    before = model.T[0][-1].bias.detach().clone()
    t = Trainer(model, X[:300], device="cpu")
    assert t.settings["init_output_bias"] is False
    assert torch.equal(model.T[0][-1].bias, before)


def test_init_output_bias_for_an_nlgbn_and_for_gaussian_pixels():
    # NLGBN (no hidden layers, a probit input activation): T_0 = A probit(h) + b
    nlgbn = _model(gen_hidden=(), input_activation="probit")
    Trainer(nlgbn, X[:200], init_output_bias=True, device="cpu")
    np.testing.assert_allclose(
        nlgbn.T[0][-1].bias.detach().numpy(), _logit_of_mean(X[:200]), rtol=1e-6, atol=1e-6
    )
    # Gaussian pixels: the output is the mean, so the bias is the mean grey level itself
    gauss = _model(likelihood="gaussian")
    sigma = gauss.log_sigma.detach().clone()
    Trainer(gauss, X[:200], binarize="none", init_output_bias=True, device="cpu")
    np.testing.assert_allclose(
        gauss.T[0][-1].bias.detach().numpy(), X[:200].astype(np.float64).mean(0), atol=1e-6
    )
    assert torch.equal(gauss.log_sigma, sigma)


def test_init_output_bias_must_be_a_bool():
    for bad in ("yes", 1, None):
        with pytest.raises(ConfigError, match="init_output_bias"):
            Trainer(_model(), X[:100], init_output_bias=bad, device="cpu")


def test_init_output_bias_is_in_the_card_and_untouched_on_resume(tmp_path, monkeypatch):
    t = Trainer(_model(), X[:100], batch_size=50, lr=3e-2, init_output_bias=True, device="cpu")
    _run(t, 5)  # trains the bias away from its starting value
    t.save(tmp_path)
    saved = t.output_layer().bias.detach().clone()
    assert not np.allclose(saved.numpy(), _logit_of_mean(X[:100]), atol=1e-4)
    assert dlgm.load(tmp_path).metadata["training"]["init_output_bias"] is True
    calls = []
    monkeypatch.setattr(Trainer, "_init_output_bias", lambda self: calls.append(self))
    resumed = Trainer.resume(tmp_path, X[:100], device="cpu")
    assert calls == []  # not even set and then overwritten by the saved weights
    assert resumed.settings["init_output_bias"] is True
    assert torch.equal(resumed.output_layer().bias, saved)


# ---------------------------------------------------------------------------- IWAE schedule
def test_iwae_lr_factor_against_a_table():
    r = 10 ** (-1 / 7)
    table = {1: 1.0, 2: r, 3: r, 4: r, 5: r**2, 13: r**2, 14: r**3, 40: r**3, 41: r**4}
    table |= {121: r**4, 122: r**5, 364: r**5, 365: r**6, 1093: r**6, 1094: r**7}
    table |= {3280: 0.1, 3281: 0.1, 5000: 0.1}
    for epoch, factor in table.items():
        assert iwae_lr_factor(epoch) == pytest.approx(factor, rel=1e-12), epoch
    assert sum(3**i for i in range(8)) == 3280
    with pytest.raises(ValueError):
        iwae_lr_factor(0)


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_iwae_schedule_gives_the_optimizer_the_tabled_learning_rates(optimizer):
    lr = 2e-3
    t = Trainer(
        _model(),
        X[:40],
        batch_size=20,  # 2 steps per epoch
        optimizer=optimizer,
        lr=lr,
        lr_schedule="iwae",
        report_every=100,
        device="cpu",
    )
    seen = {}
    for p in t.run(epochs=15):
        assert p.end_of_epoch
        seen[round(p.epoch)] = p.lr
        for group in t.opt.param_groups:
            assert group["lr"] == p.lr
    assert sorted(seen) == list(range(1, 16))
    for epoch, value in seen.items():
        assert value == pytest.approx(lr * iwae_lr_factor(epoch), rel=1e-12), epoch
    assert t.settings["lr_schedule"] == "iwae"


def test_constant_schedule_keeps_lr_decay_working():
    t = Trainer(_model(), X[:40], batch_size=20, lr=1e-3, lr_decay=0.5, device="cpu")
    lrs = [p.lr for p in t.run(epochs=3)]
    assert lrs == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_bad_schedules_are_clear_errors():
    with pytest.raises(ConfigError, match="lr_schedule='cosine'"):
        Trainer(_model(), X[:100], lr_schedule="cosine", device="cpu")
    with pytest.raises(ConfigError, match="cannot be combined with lr_decay=0.9"):
        Trainer(_model(), X[:100], lr_schedule="iwae", lr_decay=0.9, device="cpu")


# ---------------------------------------------------------------------------- resume
@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_resume_with_both_options_is_bit_exact(tmp_path, optimizer):
    settings = dict(
        batch_size=50,  # 2 steps per epoch: 12 steps cross the stage changes at epochs 2 and 5
        optimizer=optimizer,
        lr=3e-3,
        seed=3,
        report_every=3,
        init_output_bias=True,
        lr_schedule="iwae",
        device="cpu",
    )
    x = X[:100]
    t_full = Trainer(_model(seed=1, covariance="rank1"), x, **settings)
    _run(t_full, 12)
    t_part = Trainer(_model(seed=1, covariance="rank1"), x, **settings)
    _run(t_part, 3)  # mid-way through epoch 2 (stage 1)
    t_part.save(tmp_path)
    del t_part
    t_res = Trainer.resume(tmp_path, x, device="cpu")
    assert t_res.step_count == 3 and t_res.settings == t_full.settings
    _run(t_res, 9)
    assert t_res.step_count == 12 and t_res.lr == t_full.lr
    assert t_full.lr == pytest.approx(3e-3 * iwae_lr_factor(6), rel=1e-12)
    _assert_equal_states(t_full.model.state_dict(), t_res.model.state_dict())


def test_old_checkpoints_without_the_options_load_and_resume(tmp_path):
    # a checkpoint shipped before the options existed
    old = dlgm.load(ROOT / "pretrained" / "mnist-table1-nlgbn")
    assert "u_delay" in old.metadata["training"]
    assert "init_output_bias" not in old.metadata["training"]
    # a training state written before them: its settings lack both keys
    t = Trainer(_model(), X[:100], batch_size=50, device="cpu")
    _run(t, 3)
    t.save(tmp_path)
    tensors, meta = decode_tensors(read_bytes(tmp_path / STATE_FILE))
    for key in ("init_output_bias", "lr_schedule"):
        del meta["train"]["settings"][key]
    (tmp_path / STATE_FILE).write_bytes(encode_tensors(tensors, meta))
    bias = t.output_layer().bias.detach().clone()
    resumed = Trainer.resume(tmp_path, X[:100], device="cpu")
    assert resumed.settings["init_output_bias"] is False
    assert resumed.settings["lr_schedule"] == "constant"
    assert torch.equal(resumed.output_layer().bias, bias)
    _run(resumed, 2)


# ---------------------------------------------------------------------------- CLI, config, run
def test_the_cli_and_a_json_config_set_both_options(tmp_path):
    args = build_parser().parse_args(["train", "--init-output-bias", "--lr-schedule", "iwae"])
    s = cli_settings(args)
    assert s["init_output_bias"] is True and s["lr_schedule"] == "iwae"
    s = cli_settings(build_parser().parse_args(["train"]))
    assert s["init_output_bias"] is False and s["lr_schedule"] == "constant"
    conf = tmp_path / "recipe.json"
    conf.write_text(json.dumps({"init_output_bias": True, "lr_schedule": "iwae"}))
    s = cli_settings(build_parser().parse_args(["train", "--config", str(conf)]))
    assert s["init_output_bias"] is True and s["lr_schedule"] == "iwae"
    s = cli_settings(
        build_parser().parse_args(["train", "--config", str(conf), "--lr-schedule", "constant"])
    )
    assert s["lr_schedule"] == "constant"  # a flag overrides the file


def test_run_training_records_both_options_in_the_card():
    res = run_training(TINY_RUN | {"epochs": 2, "init_output_bias": True, "lr_schedule": "iwae"})
    training = res["model"].metadata["training"]
    assert training["init_output_bias"] is True and training["lr_schedule"] == "iwae"
    assert res["trainer"].lr == pytest.approx(1e-3 * iwae_lr_factor(2), rel=1e-12)
    with pytest.raises(ConfigError, match="init_output_bias"):
        run_training(dict(data="digits", device="cpu", epochs=1, init_output_bias="yes"))


# ---------------------------------------------------------------------------- KL warm-up
def _grads(model, loss) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_kl_weight_scales_only_the_kl_terms_gradient():
    """loss(beta) = -rec + beta KL, so its gradient is linear in beta: grad(beta) =
    grad(0) + beta (grad(1) - grad(0)); beta = 1 is the free energy itself (float64, the same
    eps for every call)."""
    model = _model(seed=2, covariance="rank1").double()
    x = torch.tensor(X[:64], dtype=torch.float64).bernoulli(
        generator=torch.Generator().manual_seed(0)
    )
    eps = torch.randn((1, 64, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plain = model.free_energy(x, eps=eps)
    one = model.free_energy(x, eps=eps, kl_weight=1.0)
    assert torch.equal(plain["loss"], one["loss"])
    g = {b: _grads(model, model.free_energy(x, eps=eps, kl_weight=b)["loss"]) for b in (0, 0.3, 1)}
    torch.testing.assert_close(g[0.3], g[0] + 0.3 * (g[1] - g[0]), rtol=1e-10, atol=1e-12)
    assert float((g[1] - g[0]).abs().max()) > 1e-3  # the KL term has a gradient to scale
    zero = model.free_energy(x, eps=eps, kl_weight=0.0)
    assert float(zero["loss"].detach()) == pytest.approx(-float(zero["rec"]), rel=1e-12)
    # whatever beta, the reported ELBO is the true one
    assert float(zero["elbo"]) == pytest.approx(float(plain["elbo"]), rel=1e-12)


def test_kl_weight_rises_linearly_over_the_warmup_epochs():
    t = Trainer(_model(), X[:100], batch_size=20, kl_warmup=1.5, device="cpu")  # 5 steps/epoch
    assert [t.kl_weight(s) for s in (0, 1, 3, 7, 8, 100)] == pytest.approx(
        [0.0, 1 / 7.5, 3 / 7.5, 7 / 7.5, 1.0, 1.0]
    )
    assert Trainer(_model(), X[:100], batch_size=20, device="cpu").kl_weight(0) is None
    # the reports carry beta of their last step; the free energy stays the true one
    reports = list(t.run(epochs=3))
    assert [p.kl_weight for p in reports] == pytest.approx([4 / 7.5, 1.0, 1.0])
    for p in reports:
        assert p.free_energy == pytest.approx(-p.elbo + t.prior_term(), abs=0.05)
    assert t.record()["kl_warmup"] == 1.5


def test_a_kl_warmup_changes_the_first_update():
    """With beta < 1 the first update differs from a run without warm-up (the same
    minibatches and eps: the same seed)."""
    settings = dict(batch_size=20, lr=1e-2, seed=4, report_every=5, device="cpu")
    plain = Trainer(_model(seed=3), X[:100], **settings)
    warm = Trainer(_model(seed=3), X[:100], kl_warmup=1.0, **settings)
    _run(plain, 1)
    _run(warm, 1)  # step 0 has beta = 0: a gradient without the KL term
    diff = (
        (
            torch.cat([p.flatten() for p in plain.model.parameters()])
            - torch.cat([p.flatten() for p in warm.model.parameters()])
        )
        .abs()
        .max()
    )
    assert float(diff) > 1e-4


def test_bad_kl_warmups_are_clear_errors():
    for bad in (-1.0, float("nan"), float("inf"), 1e6):
        with pytest.raises(ConfigError, match="kl_warmup"):
            Trainer(_model(), X[:100], kl_warmup=bad, device="cpu")


def test_resume_in_the_middle_of_a_kl_warmup_is_bit_exact(tmp_path):
    settings = dict(batch_size=50, optimizer="adam", lr=3e-3, seed=5, report_every=2)
    x = X[:100]  # 2 steps per epoch: a warm-up of 3 epochs is 6 steps
    t_full = Trainer(_model(seed=1), x, kl_warmup=3.0, device="cpu", **settings)
    _run(t_full, 9)
    t_part = Trainer(_model(seed=1), x, kl_warmup=3.0, device="cpu", **settings)
    _run(t_part, 3)  # beta = 0.5 at the next step
    t_part.save(tmp_path)
    del t_part
    t_res = Trainer.resume(tmp_path, x, device="cpu")
    assert t_res.settings["kl_warmup"] == 3.0 and t_res.kl_weight() == 0.5
    _run(t_res, 6)
    _assert_equal_states(t_full.model.state_dict(), t_res.model.state_dict())


def test_old_training_states_without_kl_warmup_resume_without_one(tmp_path):
    t = Trainer(_model(), X[:100], batch_size=50, device="cpu")
    _run(t, 2)
    t.save(tmp_path)
    tensors, meta = decode_tensors(read_bytes(tmp_path / STATE_FILE))
    del meta["train"]["settings"]["kl_warmup"]
    (tmp_path / STATE_FILE).write_bytes(encode_tensors(tensors, meta))
    resumed = Trainer.resume(tmp_path, X[:100], device="cpu")
    assert resumed.settings["kl_warmup"] == 0.0 and resumed.kl_weight() is None


def test_the_cli_a_config_and_run_training_set_the_kl_warmup(tmp_path):
    s = cli_settings(build_parser().parse_args(["train", "--kl-warmup", "2.5"]))
    assert s["kl_warmup"] == 2.5
    assert cli_settings(build_parser().parse_args(["train"]))["kl_warmup"] == 0.0
    conf = tmp_path / "warm.json"
    conf.write_text(json.dumps({"kl_warmup": 4}))
    assert (
        cli_settings(build_parser().parse_args(["train", "--config", str(conf)]))["kl_warmup"] == 4
    )
    res = run_training(TINY_RUN | {"epochs": 2, "kl_warmup": 1.0})
    assert res["model"].metadata["training"]["kl_warmup"] == 1.0
    assert [h["kl_weight"] for h in res["model"].metadata["history"]][-1] == 1.0


# ---------------------------------------------------------------------------- free bits
def _deep(seed=0, covariance="diag"):
    """Two stochastic layers (3 and 2 latents), float64."""
    cfg = DLGMConfig(
        data_shape=(8, 8),
        n_latent=(3, 2),
        gen_hidden=(16,),
        rec_hidden=(16,),
        covariance=covariance,
    )
    return DLGM(cfg, seed=seed).double()


def _batch(n=64):
    x = torch.tensor(X[:n], dtype=torch.float64)
    return x.bernoulli(generator=torch.Generator().manual_seed(0))


def test_free_bits_add_the_shortfall_of_each_layers_mean_kl():
    """loss = -rec + KL + sum_l max(0, lambda - mean KL_l), with the layers' KLs from the dense
    marginals (dlgm.posteriors.layer_kl is tested against them); lambda below every layer's KL
    is the free energy itself, and the reported ELBO is the true one (float64, the same eps)."""
    from dlgm.posteriors import layer_kl

    model, x = _deep(seed=4, covariance="rank1-joint"), _batch()
    eps = torch.randn((1, 64, 5), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plain = model.free_energy(x, eps=eps)
    with torch.no_grad():
        kl_l = layer_kl(model.encode(x), (3, 2)).mean(0)
    for lam in (0.5 * float(kl_l.min()), float(kl_l.mean()), 2.0 * float(kl_l.max())):
        fb = model.free_energy(x, eps=eps, free_bits=lam)
        want = -float(plain["rec"]) + float(plain["kl"]) + float(torch.relu(lam - kl_l).sum())
        assert float(fb["loss"]) == pytest.approx(want, rel=1e-12)
        assert float(fb["elbo"]) == pytest.approx(float(plain["elbo"]), rel=1e-12)
    low = model.free_energy(x, eps=eps, free_bits=0.5 * float(kl_l.min()))
    assert float(low["loss"]) == pytest.approx(float(plain["loss"]), rel=1e-12)


@pytest.mark.parametrize("covariance", ["diag", "rank1"])
def test_free_bits_above_every_layers_kl_leave_only_the_reconstruction_gradient(covariance):
    """With q factorised over the layers (diagonal, or rank-one per layer as in eq. 12) the KL
    is the sum of the layers' KLs, so a floor above all of them removes the KL's gradient:
    the same update as beta = 0."""
    model, x = _deep(seed=5, covariance=covariance), _batch()
    eps = torch.randn((1, 64, 5), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    g_free = _grads(model, model.free_energy(x, eps=eps, free_bits=1e3)["loss"])
    g_rec = _grads(model, model.free_energy(x, eps=eps, kl_weight=0.0)["loss"])
    torch.testing.assert_close(g_free, g_rec, rtol=1e-10, atol=1e-12)
    g_plain = _grads(model, model.free_energy(x, eps=eps)["loss"])
    assert float((g_plain - g_rec).abs().max()) > 1e-3  # the floor did remove something


def test_free_bits_are_a_trainer_setting_in_the_card_and_resume_bit_exact(tmp_path):
    settings = dict(batch_size=50, optimizer="adam", lr=3e-3, seed=6, report_every=2)
    x = X[:100]
    t_full = Trainer(
        _deep(seed=1).float(), x, free_bits=1.5, kl_warmup=2.0, device="cpu", **settings
    )
    _run(t_full, 6)
    t_part = Trainer(
        _deep(seed=1).float(), x, free_bits=1.5, kl_warmup=2.0, device="cpu", **settings
    )
    _run(t_part, 3)
    t_part.save(tmp_path)
    t_res = Trainer.resume(tmp_path, x, device="cpu")
    assert t_res.settings["free_bits"] == 1.5 and t_res.record()["free_bits"] == 1.5
    _run(t_res, 3)
    _assert_equal_states(t_full.model.state_dict(), t_res.model.state_dict())
    # and they change the updates: the same run without them differs
    t_none = Trainer(_deep(seed=1).float(), x, kl_warmup=2.0, device="cpu", **settings)
    _run(t_none, 6)
    a, b = t_full.model.state_dict(), t_none.model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_bad_free_bits_are_clear_errors_and_old_states_resume_without_them(tmp_path):
    for bad in (-1.0, float("nan"), float("inf"), 1e5):
        with pytest.raises(ConfigError, match="free_bits"):
            Trainer(_model(), X[:100], free_bits=bad, device="cpu")
    t = Trainer(_model(), X[:100], batch_size=50, device="cpu")
    _run(t, 2)
    t.save(tmp_path)
    tensors, meta = decode_tensors(read_bytes(tmp_path / STATE_FILE))
    del meta["train"]["settings"]["free_bits"]
    (tmp_path / STATE_FILE).write_bytes(encode_tensors(tensors, meta))
    assert Trainer.resume(tmp_path, X[:100], device="cpu").settings["free_bits"] == 0.0


def test_the_cli_a_config_and_run_training_set_free_bits(tmp_path):
    s = cli_settings(build_parser().parse_args(["train", "--free-bits", "2"]))
    assert s["free_bits"] == 2.0
    assert cli_settings(build_parser().parse_args(["train"]))["free_bits"] == 0.0
    conf = tmp_path / "fb.json"
    conf.write_text(json.dumps({"free_bits": 3}))
    assert (
        cli_settings(build_parser().parse_args(["train", "--config", str(conf)]))["free_bits"] == 3
    )
    res = run_training(TINY_RUN | {"epochs": 1, "free_bits": 0.5})
    assert res["model"].metadata["training"]["free_bits"] == 0.5
