"""AppTest: The Embedding page: the scatter by class, the manifold, PCA for more latents.

Each test opens the page through the navigation (``conftest.open_page``, the tiny shipped digits
model unless a test selects another), checks it runs without an exception, then sets a widget,
reruns and checks what changed.
"""

from conftest import charts, open_page, tiny_entry, trace_types, with_model


def test_embedding_loads_with_a_scatter_chart():
    at = open_page("embedding")
    types = trace_types(at)
    assert types.count("scattergl") == 11  # ten digit classes + the clickable plane
    fig = charts(at)[0]
    assert fig["layout"]["xaxis"]["title"]["text"] == "ξ₁"
    assert at.info  # the hint beside the chart


def test_embedding_manifold_and_pca_for_more_latents():
    at = open_page("embedding", **with_model(tiny_entry("k3", n_latent=(3,))))
    fig = charts(at)[0]
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("PC 1")
    at.segmented_control(key="emb_view").set_value("Manifold").run()
    assert not at.exception
    assert trace_types(at) == ["heatmap"]
    assert charts(at)[0]["layout"]["title"]["text"].startswith("Pixel means decoded on a 15")
