"""Gradient estimators (paper sec. 3, appendix D): unbiasedness, variance growth, errors."""

import math

import numpy as np
import pytest
import torch

from dlgm.errors import ConfigError, ShapeError
from dlgm.estimators import (
    ESTIMATORS,
    FUNCTIONS,
    Integrand,
    closed_form,
    gradient_estimates,
    variance_vs_dimension,
)

MU = torch.tensor([0.5, -1.0, 2.0])
SIGMA = torch.tensor([0.7, 1.2, 0.5])


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _assert_unbiased(est, exact, n_sigma=5.0):
    """Mean of R estimates within n_sigma standard errors (plus float slack) of the exact value."""
    mean, se = est.mean(0), est.std(0) / math.sqrt(est.shape[0])
    assert torch.all((mean - exact).abs() <= n_sigma * se + 1e-4), (mean, exact, se)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("name", ["quadratic", "sin", "linear"])
def test_estimators_are_unbiased(estimator, name):
    est = gradient_estimates(
        name, MU, SIGMA, estimator=estimator, n_samples=10, n_repeats=4000, generator=_gen(1)
    )
    exact = closed_form(name, MU, SIGMA)
    assert est["mu"].shape == est["sigma"].shape == (4000, 3)
    _assert_unbiased(est["mu"], exact["mu"])
    _assert_unbiased(est["sigma"], exact["sigma"])


@pytest.mark.parametrize("baseline", [3.0, "loo"])
def test_score_baselines_stay_unbiased_and_help(baseline):
    kw = dict(estimator="score", n_samples=10, n_repeats=4000)
    plain = gradient_estimates("quadratic", MU, SIGMA, generator=_gen(2), **kw)
    based = gradient_estimates("quadratic", MU, SIGMA, generator=_gen(2), baseline=baseline, **kw)
    exact = closed_form("quadratic", MU, SIGMA)
    _assert_unbiased(based["mu"], exact["mu"])
    _assert_unbiased(based["sigma"], exact["sigma"])
    assert based["mu"].var(0).sum() < plain["mu"].var(0).sum()


def test_price_is_exact_for_the_quadratic():
    # Hessian of sum xi^2 is 2 I: Price's estimate sigma * E[H_kk] = 2 sigma with no noise.
    est = gradient_estimates(
        "quadratic", MU, SIGMA, estimator="price", n_samples=3, n_repeats=5, generator=_gen()
    )
    torch.testing.assert_close(est["sigma"], (2 * SIGMA).expand(5, 3))


def test_bonnet_equals_reparam_for_the_mean():
    # Same eps: E[grad f] (eq. 7) is what autograd of f(mu + sigma eps) gives for mu (eq. 10).
    a = gradient_estimates(
        "softplus", MU, SIGMA, estimator="price", n_samples=4, n_repeats=6, generator=_gen(3)
    )
    b = gradient_estimates(
        "softplus", MU, SIGMA, estimator="reparam", n_samples=4, n_repeats=6, generator=_gen(3)
    )
    torch.testing.assert_close(a["mu"], b["mu"])


def test_separable_and_general_hessian_paths_agree():
    general = Integrand("softplus-general", FUNCTIONS["softplus"].f, separable=False)
    kw = dict(estimator="price", n_samples=5, n_repeats=7)
    a = gradient_estimates("softplus", MU, SIGMA, generator=_gen(4), **kw)
    b = gradient_estimates(general, MU, SIGMA, generator=_gen(4), **kw)
    torch.testing.assert_close(a["sigma"], b["sigma"])


def test_non_separable_hessian_matches_closed_form():
    # f = softplus(-sum xi): H = s (1 - s) 1 1^T with s = sigmoid(-sum xi), so H_kk = s (1 - s).
    est = gradient_estimates(
        "logistic-loss", MU, SIGMA, estimator="price", n_samples=1, n_repeats=1, generator=_gen(5)
    )
    g = _gen(5)
    eps = torch.randn(1, 1, 3, generator=g)
    s = torch.sigmoid(-(MU + SIGMA * eps).sum(-1, keepdim=True))
    torch.testing.assert_close(est["sigma"], (SIGMA * s * (1 - s)).reshape(1, 3))


def test_score_variance_grows_with_dimension_and_reparam_does_not():
    out = variance_vs_dimension(
        "quadratic", [1, 50], n_samples=10, n_repeats=400, generator=_gen(6)
    )
    for key in ("variance_mu", "variance_sigma"):
        score, reparam = out[key]["score"], out[key]["reparam"]
        assert score[1] > 10 * score[0]
        assert 0.5 < reparam[1] / reparam[0] < 2.0
    assert out["variance_mu"]["price"][1] / out["variance_mu"]["price"][0] < 2.0
    # Exact: Var[2 xi_1] / S = 4 sigma^2 / 10 for the reparam estimate of d/dmu_1 at sigma = 1.
    assert out["variance_mu"]["reparam"] == pytest.approx([0.4, 0.4], rel=0.3)
    np.testing.assert_array_equal(out["ks"], [1, 50])


def test_loo_baseline_growth_is_about_linear():
    # With the leave-one-out baseline E[f] drops out: Var grows ~ O(K) (appendix D), not K^2.
    out = variance_vs_dimension(
        "quadratic",
        [10, 40],
        n_samples=10,
        n_repeats=400,
        estimators=("score",),
        baseline="loo",
        generator=_gen(7),
    )
    ratio = out["variance_mu"]["score"][1] / out["variance_mu"]["score"][0]
    assert 2.0 < ratio < 8.0  # K grew 4-fold


def test_custom_callable_and_registry():
    est = gradient_estimates(
        lambda xi: (xi**3).sum(-1),
        MU,
        1.0,
        estimator="reparam",
        n_samples=2,
        n_repeats=3,
        generator=_gen(),
    )
    assert est["mu"].shape == (3, 3)
    assert closed_form("softplus", MU, SIGMA) is None
    assert set(FUNCTIONS) >= {"quadratic", "sin", "softplus", "logistic-loss"}


def test_errors():
    with pytest.raises(ConfigError, match="estimator"):
        gradient_estimates("quadratic", MU, SIGMA, estimator="nope")
    with pytest.raises(ConfigError, match="f="):
        gradient_estimates("nope", MU, SIGMA, estimator="score")
    with pytest.raises(ConfigError, match="sigma"):
        gradient_estimates("quadratic", MU, -1.0, estimator="score")
    with pytest.raises(ShapeError):
        gradient_estimates("quadratic", MU, torch.ones(2), estimator="score")
    with pytest.raises(ConfigError, match="baseline"):
        gradient_estimates("quadratic", MU, SIGMA, estimator="reparam", baseline=1.0)
    with pytest.raises(ConfigError, match="loo"):
        gradient_estimates("quadratic", MU, SIGMA, estimator="score", baseline="loo", n_samples=1)
    with pytest.raises(ConfigError, match="n_samples"):
        gradient_estimates("quadratic", MU, SIGMA, estimator="score", n_samples=0)
    with pytest.raises(ConfigError, match="n_repeats"):
        variance_vs_dimension("quadratic", [1], n_repeats=1)
    with pytest.raises(ConfigError, match="ks"):
        variance_vs_dimension("quadratic", [0])
    with pytest.raises(ConfigError, match="estimators"):
        variance_vs_dimension("quadratic", [1], estimators=("score", "bogus"))
