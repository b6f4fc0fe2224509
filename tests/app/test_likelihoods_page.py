"""AppTest: The Likelihoods page: Table 1 and the live estimate against K.

Each test opens the page through the navigation (``conftest.open_page``, the tiny shipped digits
model unless a test selects another), checks it runs without an exception, then sets a widget,
reruns and checks what changed.
"""

import numpy as np
from conftest import array, chart, metric, no_errors, open_page


def test_likelihoods_k_slider_changes_the_estimate():
    at = open_page("likelihoods")
    table = at.dataframe[0].value
    assert {"Factor analysis", "DLGM, rank-one covariance"} <= set(table["model"])
    assert "digits-2d-rank1" in set(table["model"])
    at.slider(key="ll_n").set_value(50).run()
    at.select_slider(key="ll_k").set_value(1).run()
    no_errors(at)
    nll_1 = metric(at, "Test NLL, K = 1")
    at.select_slider(key="ll_k").set_value(20).run()
    no_errors(at)
    nll_20 = metric(at, "Test NLL, K = 20")
    assert nll_1 != nll_20
    curve = chart(at, "Importance-sampled log p(v)")
    np.testing.assert_array_equal(array(curve["data"][0]["x"]), [1, 2, 5, 10, 20])
    assert len(chart(at, "Worst-modelled")["layout"]["annotations"]) == 12


def test_likelihoods_of_grey_patches_per_image_and_per_dimension():
    """A continuous (Gaussian) model: the NLL per image and per dimension (/ 64 pixels), in
    the table (from the card) and live."""
    at = open_page("likelihoods", current_model="patches-2d-rank1")
    table = at.dataframe[0].value.set_index("model")
    row = table.loc["patches-2d-rank1"]
    assert row["binarisation"] == "none: grey levels (Gaussian pixels)" and row["pixels"] == 64
    np.testing.assert_allclose(
        row["test NLL per dimension (nats)"], row["test NLL (nats)"] / 64, rtol=1e-12
    )
    mnist = table.loc["DLGM, rank-one covariance"]
    np.testing.assert_allclose(mnist["test NLL per dimension (nats)"], 86.60 / 784, rtol=1e-12)
    assert any("have a density, not a probability" in c.value for c in at.caption)
    at.slider(key="ll_n").set_value(50).run()
    at.select_slider(key="ll_k").set_value(20).run()
    no_errors(at)
    per_image = float(metric(at, "Test NLL, K = 20").split()[0])
    per_dim = float(metric(at, "Test NLL per dimension, K = 20").split()[0])
    assert abs(per_dim - per_image / 64) < 0.001  # both rounded for display
