"""AppTest: every page that explores a model runs on the shipped two-layer model."""

import pytest
from conftest import no_errors, open_page

PAGES = ["models", "samples", "embedding", "posterior", "imputation", "likelihoods"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_on_the_deep_model(page):
    at = open_page(page, current_model="mnist-deep-rank1")
    no_errors(at)
    assert at.sidebar.selectbox(key="model").value == "mnist-deep-rank1"
