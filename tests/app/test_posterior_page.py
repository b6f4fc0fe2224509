"""AppTest: The Posterior page: the grid posterior's numbers, grid controls, twins.

Each test opens the page through the navigation (``conftest.open_page``, the tiny shipped digits
model unless a test selects another), checks it runs without an exception, then sets a widget,
reruns and checks what changed.
"""

from conftest import array, charts, metric, open_page, tiny_entry, with_model


def test_posterior_metric_changes_with_the_image():
    at = open_page("posterior")
    first = metric(at, "log p(v)")
    assert float(first) < 0
    assert {"ELBO", "KL(q ‖ p(ξ | v))", "gap log p(v) − ELBO"} <= {m.label for m in at.metric}
    post = [[t["type"] for t in fig["data"]] for fig in charts(at)][-1]
    assert post == ["contour", "contour", "scatter", "scatter", "scatter"]  # p, q, samples, MAP
    at.number_input(key="post_index").set_value(7).run()
    assert not at.exception
    assert metric(at, "log p(v)") != first


def test_posterior_grid_controls_and_twins():
    at = open_page("posterior")
    at.slider(key="post_grid").set_value(31).run()
    assert not at.exception
    post = charts(at)[-1]["data"][0]
    assert post["type"] == "contour" and array(post["z"]).shape == (31, 31)
    # a session model named like a covariance twin of the pretrained digits-2d-rank1
    twin = tiny_entry("digits-2d-rank1-joint", n_latent=(2,))
    at2 = open_page("posterior", **with_model(twin), post_grid=31)
    stems = [n for n in at2.sidebar.selectbox(key="model").options if n.startswith("digits-2d-")]
    panels = sum(m.label == "log p(v)" for m in at2.metric)
    assert panels == len(stems) >= 2  # one panel and one set of numbers per twin
    at2.toggle(key="post_twins").set_value(False).run()
    assert not at2.exception
    assert sum(m.label == "log p(v)" for m in at2.metric) == 1


def test_posterior_explains_models_without_two_latents():
    at = open_page("posterior", **with_model(tiny_entry("k3")))
    assert "exactly 2 latents" in at.info[0].value
    assert not at.metric
