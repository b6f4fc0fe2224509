"""Ancestral sampling and layer-wise resampling (eq. 2-4)."""

import math

import pytest
import torch

from dlgm import DLGM, DLGMConfig
from dlgm.errors import ConfigError, ShapeError
from dlgm.sampling import Samples, ancestral, layer_influence, resample_from_layer


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _model(likelihood="bernoulli", n_latent=(2, 3)):
    model = DLGM(
        DLGMConfig(
            data_shape=(4, 4),
            n_latent=n_latent,
            gen_hidden=(8,),
            rec_hidden=(8,),
            likelihood=likelihood,
        )
    )
    g = _gen(123)
    with torch.no_grad():
        for p in model.parameters():  # deterministic weights without global seeding
            p.copy_(0.7 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_ancestral_shapes_and_ranges(likelihood):
    model = _model(likelihood)
    probs, binary, xi = ancestral(model, 7, generator=_gen())
    assert probs.shape == binary.shape == (7, 16) and xi.shape == (7, 5)
    assert probs.min() >= 0 and probs.max() <= 1
    assert binary.min() >= 0 and binary.max() <= 1
    if likelihood == "bernoulli":
        assert set(binary.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(probs, model.pixel_mean(xi).detach())


def test_ancestral_is_reproducible_and_calibrated():
    model = _model()
    a, b = ancestral(model, 4000, generator=_gen(5)), ancestral(model, 4000, generator=_gen(5))
    assert isinstance(a, Samples)
    torch.testing.assert_close(a.binary, b.binary)
    # E[v] = E[probs]: the empirical frequency of each pixel matches within 5 standard errors.
    se = math.sqrt(0.25 / 4000)
    assert (a.binary.mean(0) - a.probs.mean(0)).abs().max() < 5 * se
    assert a.xi.mean().abs() < 5 / math.sqrt(a.xi.numel())


def test_ancestral_bad_n():
    for n in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="n="):
            ancestral(_model(), n)


def test_resample_layer_keeps_upper_layers():
    model = _model(n_latent=(2, 3))
    xi = ancestral(model, 6, generator=_gen(1)).xi
    probs, binary, new = resample_from_layer(model, xi, 1, generator=_gen(2))
    assert new.shape == (6, 5) and probs.shape == binary.shape == (6, 16)
    torch.testing.assert_close(new[:, 2:], xi[:, 2:])  # xi_2 (the top) fixed
    assert (new[:, :2] != xi[:, :2]).all()  # xi_1 redrawn
    torch.testing.assert_close(probs, model.pixel_mean(new).detach())
    top = resample_from_layer(model, xi, 2, generator=_gen(3)).xi  # layer L: everything
    assert (top != xi).all()


def test_resample_variations_of_one_latent():
    model = _model(n_latent=(2, 3))
    xi = torch.arange(5.0)
    out = resample_from_layer(model, xi, 1, n=8, generator=_gen(4))
    assert out.xi.shape == (8, 5)
    torch.testing.assert_close(out.xi[:, 2:], xi[2:].expand(8, 3))
    assert out.xi[:, :2].std(0).min() > 0  # the variations differ


def test_resample_three_layers_keeps_every_layer_above():
    model = _model(n_latent=(1, 2, 3))
    xi = ancestral(model, 3, generator=_gen(7)).xi
    new = resample_from_layer(model, xi, 2, generator=_gen(8)).xi
    torch.testing.assert_close(new[:, 3:], xi[:, 3:])
    assert (new[:, :3] != xi[:, :3]).all()


def test_resample_errors():
    model = _model(n_latent=(2, 3))
    xi = torch.zeros(2, 5)
    for layer in (0, 3, -1, 1.0, True):
        with pytest.raises(ConfigError, match="layer"):
            resample_from_layer(model, xi, layer)
    with pytest.raises(ShapeError, match="xi"):
        resample_from_layer(model, torch.zeros(2, 4), 1)
    with pytest.raises(ShapeError, match="NaN"):
        resample_from_layer(model, torch.full((5,), math.nan), 1)
    with pytest.raises(ConfigError, match="n="):
        resample_from_layer(model, xi, 1, n=3)  # n needs a single xi


def test_layer_influence_matches_a_direct_redraw_and_is_zero_for_a_silent_top_layer():
    model = _model(n_latent=(2, 3)).double()
    got = layer_influence(model, 50, generator=_gen(4))
    # the same draws by hand: xi, then the redraw; swap one layer's block at a time
    g = _gen(4)
    xi = torch.randn(50, 5, generator=g, dtype=torch.float64)
    new = torch.randn(50, 5, generator=g, dtype=torch.float64)
    base = torch.sigmoid(model.decode(xi))
    low = torch.cat([new[:, :2], xi[:, 2:]], -1)
    top = torch.cat([xi[:, :2], new[:, 2:]], -1)
    want = [(torch.sigmoid(model.decode(z)) - base).abs().mean().item() for z in (low, top)]
    assert got == pytest.approx(want, rel=1e-12)
    assert min(got) > 0.01
    with torch.no_grad():
        model.G[1].zero_()  # h_2 = G_2 xi_2 = 0: xi_2 cannot reach the pixels
    bottom, silent = layer_influence(model, 50, generator=_gen(4))
    assert silent == 0.0 and bottom > 0.01


def test_layer_influence_of_one_layer_and_bad_n():
    model = _model(n_latent=(3,))
    (only,) = layer_influence(model, 20, generator=_gen())
    assert 0.0 < only <= 1.0
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="n="):
            layer_influence(model, bad)
