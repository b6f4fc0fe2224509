"""AppTest: The Gradient estimators page: the variance chart follows f and K.

Each test opens the page through the navigation (``conftest.open_page``, the tiny shipped digits
model unless a test selects another), checks it runs without an exception, then sets a widget,
reruns and checks what changed.
"""

import numpy as np
from conftest import array, chart, no_errors, open_page


def test_estimators_chart_follows_function_and_k():
    at = open_page("estimators")
    fig = chart(at, "Variance of")
    np.testing.assert_array_equal(array(fig["data"][0]["x"]), [1, 2, 5, 10, 20, 50, 100])
    score = array(fig["data"][0]["y"])
    assert score[-1] > 10 * score[0]  # the score function's variance grows with K

    at.select_slider(key="est_kmax").set_value(20).run()
    no_errors(at)
    np.testing.assert_array_equal(
        array(chart(at, "Variance of")["data"][0]["x"]), [1, 2, 5, 10, 20]
    )
    table = at.dataframe[0].value
    assert "variance at K=20" in table.columns

    at.selectbox(key="est_f").set_value("sin").run()
    no_errors(at)
    fig = chart(at, "Variance of")
    assert "f = sin" in fig["layout"]["title"]["text"]
    assert not np.allclose(array(fig["data"][0]["y"]), score[:5])
