"""AppTest: The Samples page: seeds, resampling from a layer, settings kept across pages.

Each test opens the page through the navigation (``conftest.open_page``, the tiny shipped digits
model unless a test selects another), checks it runs without an exception, then sets a widget,
reruns and checks what changed.
"""

import numpy as np
from conftest import array, charts, open_page, tiny_entry, trace_types, with_model


def test_samples_seed_changes_the_images():
    at = open_page("samples")
    assert trace_types(at) == ["heatmap"] * 4
    before = array(charts(at)[0]["data"][0]["z"])
    at.number_input(key="smp_seed").set_value(3).run()
    assert not at.exception
    after = array(charts(at)[0]["data"][0]["z"])
    assert after.shape == before.shape == (6 * 9 - 1, 6 * 9 - 1)  # 36 images of 8x8, 1px gaps
    assert not np.array_equal(after, before)
    assert "one stochastic layer" in at.info[0].value


def test_samples_resample_from_a_layer():
    at = open_page("samples", **with_model(tiny_entry("deep", n_latent=(3, 2))))
    assert trace_types(at) == ["heatmap"] * 5
    top = array(charts(at)[-1]["data"][0]["z"])
    at.select_slider(key="smp_layer").set_value(1).run()
    assert not at.exception
    assert not np.array_equal(array(charts(at)[-1]["data"][0]["z"]), top)


def test_samples_number_survives_a_page_change():
    at = open_page("samples")
    at.select_slider(key="smp_n").set_value(16).run()
    at.switch_page("app/pages/models.py").run()
    at.switch_page("app/pages/samples.py").run()
    assert at.select_slider(key="smp_n").value == 16


def test_samples_of_grey_patches():
    """The Gaussian patches model: pixel means and sampled grey levels beside 8x8 test patches,
    which the model sees as they are (no binarisation)."""
    at = open_page("samples", current_model="patches-2d-rank1")
    assert trace_types(at) == ["heatmap"] * 4
    titles = [c["layout"]["title"]["text"] for c in charts(at)]
    assert titles == [
        "Model: pixel means, seed 0",
        "Test data: grey levels (patches)",
        "Model: sampled pixels v ~ π(v | h(ξ))",
        "Test data as the model sees it",
    ]
    grids = [array(c["data"][0]["z"]) for c in charts(at)]
    assert all(g.shape == (6 * 9 - 1, 6 * 9 - 1) for g in grids)  # 36 patches of 8x8, 1px gaps
    np.testing.assert_array_equal(grids[3], grids[1])  # grey levels, not binarised
    assert len(np.unique(grids[2])) > 10  # sampled grey levels, not two values


def test_samples_of_the_shipped_deep_model_resample_from_layer_1():
    """The shipped two-layer model (100 and 50 latents): resampling only layer 1 keeps each
    image's layer-2 draw, so the images change less than a fresh draw from the top."""
    at = open_page("samples", current_model="mnist-deep-rank1")
    assert trace_types(at) == ["heatmap"] * 5
    top = array(charts(at)[-1]["data"][0]["z"])
    assert all(n % 29 == 28 for n in top.shape)  # tiles of 28x28 MNIST images, 1px gaps
    at.select_slider(key="smp_layer").set_value(1).run()
    assert not at.exception
    assert not np.array_equal(array(charts(at)[-1]["data"][0]["z"]), top)


def test_samples_page_names_a_layer_the_model_does_not_use():
    """A two-layer model whose top layer cannot reach the pixels (G_2 = 0): the page says so;
    with G_2 as trained (here: as initialised) it only states each layer's influence."""
    import torch

    entry = tiny_entry("deep", n_latent=(3, 2))
    at = open_page("samples", **with_model(entry))
    (said,) = [c.value for c in at.caption if c.value.startswith("Redrawing one layer")]
    assert "ξ_1 by" in said and "ξ_2 by" in said
    assert not at.warning
    silent = tiny_entry("silent-top", n_latent=(3, 2))
    with torch.no_grad():
        silent.model.G[1].zero_()
    at = open_page("samples", **with_model(silent))
    assert not at.exception
    (said,) = [c.value for c in at.caption if c.value.startswith("Redrawing one layer")]
    assert "ξ_2 by 0.000" in said
    assert "does not use ξ_2" in at.warning[0].value
    assert "free bits" in at.warning[0].value  # and how to keep a top layer
    assert "mnist-deep-rank1-freebits" in at.warning[0].value


def test_influence_text_flags_the_silent_layers():
    from app.compute.samples import influence_text

    text, silent = influence_text((0.156, 0.0))
    assert text.startswith("Redrawing one layer alone") and "ξ_1 by 0.156, ξ_2 by 0.000" in text
    assert silent == [2]
    assert influence_text((0.1, 0.08, 0.0009))[1] == [3]
    assert influence_text((0.2,))[1] == []


def test_the_shipped_deep_models_top_layers():
    """mnist-deep-rank1 uses both layers; its KL warm-up twin trained its top layer out of use
    (redrawing ξ_2 moves its pixel probabilities by about 2e-5), and the page says so; with free
    bits the same recipe keeps the top layer (ξ_2 moves the pixels by about 0.09)."""
    for name in ("mnist-deep-rank1", "mnist-deep-rank1-freebits"):
        at = open_page("samples", current_model=name)
        assert not at.exception and not at.warning, name
    at = open_page("samples", current_model="mnist-deep-rank1-warmup")
    assert not at.exception
    assert "does not use ξ_2" in at.warning[0].value
    assert "free bits" in at.warning[0].value  # and how to keep a top layer
    assert "mnist-deep-rank1-freebits" in at.warning[0].value
