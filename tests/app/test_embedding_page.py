"""AppTest: The Embedding page: the scatter by class, the manifold, PCA for more latents.

Each test opens the page through the navigation (``conftest.open_page``, the tiny shipped digits
model unless a test selects another), checks it runs without an exception, then sets a widget,
reruns and checks what changed.
"""

from conftest import array, charts, open_page, tiny_entry, trace_types, with_model


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


def test_embedding_of_grey_patches_is_coloured_by_photo():
    at = open_page("embedding", current_model="patches-2d-rank1")
    fig = charts(at)[0]
    names = [t["name"] for t in fig["data"]]
    assert names == ["photo china.jpg", "photo flower.jpg", "plane"]
    assert fig["layout"]["legend"]["title"]["text"] == "photo"  # y is the photo, not a class
    assert sum(len(array(t["customdata"])) for t in fig["data"][:2]) == 2000  # N_DEFAULT
    at.segmented_control(key="emb_view").set_value("Manifold").run()
    assert not at.exception
    z = array(charts(at)[0]["data"][0]["z"])
    assert z.shape == (15 * 9 - 1, 15 * 9 - 1)  # 15 x 15 decoded 8x8 patches, 1px gaps
