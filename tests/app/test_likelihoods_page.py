"""AppTest: The Likelihoods page: Table 1, Fig. 2c, the live estimate against K, the inference
gaps.

Each test opens the page through the navigation (``conftest.open_page``, the tiny shipped digits
model unless a test selects another), checks it runs without an exception, then sets a widget,
reruns and checks what changed.
"""

import json

import numpy as np
from conftest import APP, array, chart, metric, no_errors, open_page

from app.compute import likelihoods as compute
from app.compute.likelihoods import fig2c_rows, paired_cell

ROOT = APP.parent


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


def test_likelihoods_gaps_shipped_and_live():
    shipped = json.loads((ROOT / "pretrained" / "gaps.json").read_text())["models"]
    at = open_page("likelihoods", ll_n=10, ll_k=1, ll_gap_n=10, ll_gap_steps=25)
    no_errors(at)
    bars = chart(at, "Approximation and amortisation gaps")
    assert list(bars["data"][0]["y"]) == list(shipped)  # one bar per shipped model
    at.button(key="ll_gap_run").click().run()
    no_errors(at)
    bars = chart(at, "Approximation and amortisation gaps")
    live = "digits-2d-rank1 (live, 10 images)"
    assert list(bars["data"][0]["y"]) == [*shipped, live]
    approx, amort = (float(array(t["x"])[-1]) for t in bars["data"])
    assert approx > -0.05 and amort > -0.05  # each >= 0 up to Monte Carlo error
    table = at.dataframe[-1].value
    row = table[table["model"] == live].iloc[0]
    assert row["source"] == "live" and row["q* family"] == "rank1" and row["images"] == 10
    # a later rerun still shows the finished computation (its chunks come from the cache)
    at.run()
    no_errors(at)
    assert live in chart(at, "Approximation and amortisation gaps")["data"][0]["y"]


def test_likelihoods_gaps_after_a_stop_show_the_finished_images():
    # the state a Stop click leaves: 1 of the 2 chunks of 20 images done
    stopped = {
        "request": ("pretrained:digits-2d-rank1", 20, 25, "rank1"),
        "running": False,
        "done": 1,
    }
    at = open_page(
        "likelihoods",
        ll_n=10,
        ll_k=1,
        ll_gap_n=20,
        ll_gap_steps=25,
        ll_gap_run_state=stopped,
    )
    no_errors(at)
    assert any("Stopped after 10 of 20 images" in i.value for i in at.info)
    y = chart(at, "Approximation and amortisation gaps")["data"][0]["y"]
    assert y[-1] == "digits-2d-rank1 (live, 10 images)"


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


def test_likelihoods_table_has_errors_paired_differences_and_commands():
    """Table 1's rows carry their standard error, the paired difference against the reference
    of pretrained/paired.json, and the command that reproduces them; the wake-sleep row, whose
    model does not ship, comes from that table."""
    paired = json.loads((ROOT / "pretrained" / "paired.json").read_text())
    ref = paired["reference"]
    at = open_page("likelihoods", ll_n=10, ll_k=1)
    table = at.dataframe[0].value.set_index("model")
    column = f"vs {ref} (paired, nats)"
    assert table.loc[ref, column] == "reference"
    diag = paired["models"]["mnist-table1-diag"]
    assert table.loc["mnist-table1-diag", column] == (
        f"{diag['vs_reference']:+.2f} ± {diag['vs_reference_se']:.2f}"
    )
    card = json.loads((ROOT / "pretrained" / "mnist-table1-diag" / "card.json").read_text())
    assert table.loc["mnist-table1-diag", "± s.e."] == card["test_nll_se"]
    assert table.loc["mnist-table1-diag", "reproduce"] == (
        "python -m dlgm eval --model pretrained/mnist-table1-diag --k 5000"
    )
    assert table.loc["digits-2d-rank1", column] == ""  # not in the paired table (not MNIST)
    ws = table.loc["wake-sleep-model"]
    assert ws["source"].startswith("experiments (runs/experiments/table1/wake-sleep-model")
    assert ws["reproduce"].startswith("python experiments/table1.py --rows wake-sleep")
    assert ws["binarisation"] == table.loc["mnist-table1-diag", "binarisation"]  # same protocol
    assert ws["test NLL (nats)"] == paired["models"]["wake-sleep-model"]["nll"]
    assert any("per-image NLL differences" in c.value for c in at.caption)


def test_paired_cell_only_for_the_weights_it_was_measured_on():
    table = {
        "models": {
            "a": {"nll": 90.0, "vs_reference": -1.234, "vs_reference_se": 0.05},
            "r": {"nll": 91.0, "vs_reference": None},
        }
    }
    assert paired_cell(table, "a", 90.0) == "-1.23 ± 0.05"
    assert paired_cell(table, "r", 91.0) == "reference"
    assert paired_cell(table, "a", 89.5) == ""  # the card changed since: no stale pair
    assert paired_cell(table, "b", 90.0) == "" and paired_cell(None, "a", 90.0) == ""
    assert paired_cell(table, "a", float("nan")) == ""


def test_likelihoods_fig2c_shows_the_shipped_rows():
    """Fig. 2c's table and chart are pretrained/fig2c.json's rows: every one with its standard
    error and its paired difference against rank-one; the side note is in the table only."""
    shipped = json.loads((ROOT / "pretrained" / "fig2c.json").read_text())
    at = open_page("likelihoods", ll_n=10, ll_k=1)
    no_errors(at)
    table = next(d.value for d in at.dataframe if "vs DLGM rank-one (paired, nats)" in d.value)
    table = table.set_index("method")
    assert list(table.index) == [r["method"] for r in shipped["rows"]]
    for r in shipped["rows"]:
        assert table.loc[r["method"], "test NLL (nats)"] == r["nll"]
        assert table.loc[r["method"], "± s.e."] == r["nll_se"]
        if r["method"] != "DLGM rank-one":
            assert table.loc[r["method"], "vs DLGM rank-one (paired, nats)"] == (
                f"{r['vs_rank1']:+.2f} ± {r['vs_rank1_se']:.2f}"
            )
    assert table.loc["DLGM rank-one", "vs DLGM rank-one (paired, nats)"] == "reference"
    assert {"factor analysis", "wake-sleep", "DLGM diagonal"} <= set(table.index)
    bars = chart(at, "Fig. 2c")["data"][0]
    charted = [r["method"] for r in shipped["rows"] if not r["method"].startswith("Gaussian FA")]
    assert list(bars["y"]) == charted
    assert any(shipped["command"] in c.value for c in at.caption)


def test_likelihoods_fig2c_without_its_table(monkeypatch, tmp_path):
    monkeypatch.setattr(compute, "FIG2C_TABLE", tmp_path / "missing.json")
    at = open_page("likelihoods", ll_n=10, ll_k=1)
    no_errors(at)
    assert any("fig2c.json is missing" in i.value for i in at.info)
    assert not [c for c in at.get("plotly_chart") if "Fig. 2c" in c.proto.spec]


def test_fig2c_rows_leave_out_what_does_not_parse():
    good = {
        "method": "DLGM diagonal",
        "nll": 95.0,
        "nll_se": 0.2,
        "vs_rank1": -0.3,
        "vs_rank1_se": 0.05,
        "epochs": 30,
    }
    table = {
        "rows": [
            good,
            {"method": "no numbers"},
            {"method": "nan", "nll": float("nan"), "nll_se": 0.2},
            {"method": "bool", "nll": True, "nll_se": 0.2},
            {"nll": 1.0, "nll_se": 0.1},  # no method
            "a string",
            {"method": "half a pair", "nll": 96.0, "nll_se": 0.2, "vs_rank1": 1.0},
            {
                "method": "Gaussian FA on dequantised pixels (side note)",
                "nll": 294.9,
                "nll_se": 1.0,
                "epochs": "EM, 9 iterations",
            },
        ]
    }
    rows = fig2c_rows(table)
    assert [r["method"] for r in rows] == [
        "DLGM diagonal",
        "half a pair",
        "Gaussian FA on dequantised pixels (side note)",
    ]
    assert rows[0]["vs_rank1"] == -0.3 and rows[0]["epochs"] == 30 and not rows[0]["side_note"]
    assert rows[0]["training"] == "30 epochs" and rows[1]["training"] == "not recorded"
    assert rows[1]["vs_rank1"] is None and rows[1]["vs_rank1_se"] is None
    assert rows[0]["paired"] == "-0.30 ± 0.05" and rows[1]["paired"] == "not paired"
    assert rows[2]["side_note"] and rows[2]["training"] == "EM, 9 iterations"
    for bad in (None, {}, {"rows": "x"}, [], {"rows": None}):
        assert fig2c_rows(bad) == []
