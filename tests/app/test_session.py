"""app/session.py and app/cache.py: one definition of the test images a model sees, used by
every page, and cache keys that tell models apart."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import TEST_MODEL, array, chart, charts, open_page, tiny_entry, with_model

from app import cache, session
from dlgm.data import as_seen_by


def _seen(name: str) -> np.ndarray:
    model = session.pretrained_entry(name).model
    return as_seen_by(model, session.test_images(model.metadata["data"]).x)[0]


def test_a_test_image_is_the_same_image_on_every_page():
    """Test image #i is ``dlgm.data.as_seen_by(model, x)[0][i]`` on the Likelihoods page (its
    worst-modelled gallery), the Posterior page and the Imputation page."""
    seen = _seen(TEST_MODEL)
    assert set(np.unique(seen)) == {0.0, 1.0}  # binarised, with the card's eval seed
    at = open_page("likelihoods")
    gallery = chart(at, "Worst-modelled")
    z = array(gallery["data"][0]["z"])  # 4 per row, 2 label rows above each 8x8 image
    rows = [int(a["text"].split(":")[0].lstrip("#")) for a in gallery["layout"]["annotations"]]
    for k, i in enumerate(rows):
        r, c = divmod(k, 4)
        np.testing.assert_array_equal(
            z[r * 10 + 2 : r * 10 + 10, c * 9 : c * 9 + 8], seen[i].reshape(8, 8)
        )
    i = rows[0]  # the worst-modelled image, now on the two other pages
    post = open_page("posterior", post_index=i)
    v = next(f for f in charts(post) if f["layout"]["title"]["text"] == "v")
    np.testing.assert_array_equal(array(v["data"][0]["z"]), seen[i].reshape(8, 8))
    imp = open_page("imputation", imp_index=i)
    strip = array(chart(imp, "Imputation chains")["data"][0]["z"])
    np.testing.assert_array_equal(strip[:8, :8], 254 * seen[i].reshape(8, 8))  # the truth
    # column (the strip is sent as uint8 levels 0..254)


def test_seen_images_are_shared_read_only_and_a_prefix_of_the_test_set():
    model = session.pretrained_entry(TEST_MODEL).model
    data, how = session.seen_test_images(model)
    again, _ = session.seen_test_images(model)
    assert data.x is again.x and not data.x.flags.writeable  # one shared copy
    assert how == {"kind": "dynamic", "eval_seed": 1}
    np.testing.assert_array_equal(
        data.x[:50], as_seen_by(model, session.test_images("digits").x[:50])[0]
    )  # binarising a prefix gives the prefix


def test_the_app_opens_on_the_shipped_mnist_model():
    assert session.DEFAULT_MODEL == "mnist-2d-rank1"
    assert session.DEFAULT_MODEL in session.pretrained_names()
    assert (session.SAMPLES / "mnist-test.npz").is_file()


def test_model_keys_tell_tab_models_from_pretrained_ones():
    """A pretrained model, a copy of it trained in a tab and an unnamed copy all have
    different cache keys; a session model's key changes with ``touch``."""
    entry = session.pretrained_entry(TEST_MODEL)
    assert cache.model_key(entry.model) == f"pretrained:{TEST_MODEL}"
    unnamed = copy.deepcopy(entry.model)
    assert cache.model_key(unnamed).startswith("weights:")
    assert cache.model_key(unnamed) == cache.model_key(copy.deepcopy(entry.model))
    tab = tiny_entry("mine")
    key = cache.model_key(tab.model)
    assert key == "trained:mine" != cache.model_key(entry.model)
    session.touch(tab)
    assert cache.model_key(tab.model) == tab.model_id != key


def test_cached_functions_hash_models_and_arrays():
    calls = []

    @cache.cache_data(show_spinner=False)
    def total(model, x: np.ndarray) -> float:
        calls.append(1)
        return float(x.sum()) + model.latent_dim

    a, b = tiny_entry("a"), tiny_entry("b")
    x = np.ones(4, np.float32)
    assert total(a.model, x) == total(a.model, x.copy()) == 7.0 and len(calls) == 1
    total(b.model, x)
    total(a.model, x + 1)
    assert len(calls) == 3


@pytest.mark.parametrize("page", ["posterior", "embedding", "samples", "imputation"])
def test_pages_show_an_error_when_the_images_do_not_fit_the_model(page):
    wrong = tiny_entry("wrong", n_latent=(2,), data_shape=(4, 4))  # its card says digits
    at = open_page(page, **with_model(wrong))
    assert any("expects 16 pixels" in e.value for e in at.error)
