"""AppTest: The Posterior page: the grid posterior's numbers, grid controls, twins.

Each test opens the page through the navigation (``conftest.open_page``, the tiny shipped digits
model unless a test selects another), checks it runs without an exception, then sets a widget,
reruns and checks what changed.
"""

from conftest import array, charts, metric, no_errors, open_page, tiny_entry, with_model


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


def test_posterior_best_gaussian_splits_the_gap():
    at = open_page("posterior", post_twins=False)  # digits-2d-rank1 alone
    assert "approximation gap" not in {m.label for m in at.metric}  # q* is off by default
    at.toggle(key="post_qstar").set_value(True).run()
    no_errors(at)
    approx, amort = float(metric(at, "approximation gap")), float(metric(at, "amortisation gap"))
    total = float(metric(at, "gap log p(v) − ELBO"))
    # both parts are >= 0 up to Monte Carlo error (1,000 draws) and add up to the whole gap
    # (whose ELBO comes from other draws: 0.1 nats of slack)
    assert approx > -0.05 and amort > -0.05
    assert abs(approx + amort - total) < 0.1
    post = charts(at)[-1]
    names = [t.get("name") for t in post["data"]]
    assert names[:3] == ["p(ξ | v)", "q (rank1)", "q* (rank1)"]
    assert post["data"][2]["line"]["dash"] == "dash"
    at.checkbox(key="post_qstar_full").set_value(True).run()
    no_errors(at)
    full = float(metric(at, "approx. gap, full q*"))
    # in 2-D a rank-one precision is any precision: both q* reach the same ELBO
    assert abs(full - approx) < 0.05
    assert "q* (full)" in [t.get("name") for t in charts(at)[-1]["data"]]
