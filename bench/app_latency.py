"""Server time of the app's main interactions on a pretrained MNIST model.

Each interaction is a real script rerun through Streamlit's AppTest (widgets set, page script
run, figures built), timed on the server side; the browser's rendering is not included. The
interactions: a new image on the Posterior page (a 101 x 101 grid for one model, not cached),
one imputation step (three chains), and opening the Embedding page with 5,000 points.

    python bench/app_latency.py --model mnist-2d-rank1 --repeats 5

The pages are driven by their widget keys only (``post_index``, ``imp_step``, ``emb_n``), so
the bench follows the app whatever module computes a page (``app/compute/<page>.py``). The
latency a user feels in a browser, rendering included: ``bench/browser_latency.py``.

Prints a table and one JSON line (median and max seconds per interaction).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def _open(app: str, page: str, model: str, **state) -> AppTest:
    at = AppTest.from_file(app, default_timeout=300)
    at.session_state["current_model"] = model
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(f"app/pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _timed(fn) -> float:
    t0 = time.perf_counter()
    at = fn()
    dt = time.perf_counter() - t0
    assert not at.exception, [e.value for e in at.exception]
    return dt


def wait_warm_up(timeout_s: float = 300.0) -> None:
    """Join the server's background warm-up (a thread of this process under AppTest), so that
    the interactions are timed without it."""
    for thread in threading.enumerate():
        if thread.name == "dlgm-warm-up":
            thread.join(timeout_s)


def bench(model: str, repeats: int, root: Path = ROOT) -> dict:
    times: dict[str, list[float]] = {
        "posterior: new image (101 x 101 grid)": [],
        "imputation: one step (3 chains)": [],
        "embedding: 5,000 points": [],
    }
    app = str(root / "streamlit_app.py")
    post = _open(app, "posterior", model, post_grid=101, post_twins=False)
    imp = _open(app, "imputation", model)
    wait_warm_up()
    for r in range(repeats):
        post.number_input(key="post_index").set_value(100 + r)  # a new image: not cached
        times["posterior: new image (101 x 101 grid)"].append(_timed(post.run))
        times["imputation: one step (3 chains)"].append(
            _timed(imp.button(key="imp_step").click().run)
        )
        emb = AppTest.from_file(app, default_timeout=300)
        emb.session_state["current_model"] = model
        emb.session_state["emb_n"] = 5000
        emb.run()
        emb.switch_page("app/pages/embedding.py")
        times["embedding: 5,000 points"].append(_timed(emb.run))  # cached after the first
    return {
        k: {
            "median_s": round(statistics.median(v), 3),
            "max_s": round(max(v), 3),
            "first_s": round(v[0], 3),
            "n": len(v),
        }
        for k, v in times.items()
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mnist-2d-rank1")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help="the project copy to measure (e.g. an older commit from git archive)",
    )
    args = p.parse_args()
    result = bench(args.model, args.repeats, args.root.resolve())
    print(f"{'interaction':42s} {'first s':>8s} {'median s':>9s} {'max s':>7s}")
    for name, r in result.items():
        print(f"{name:42s} {r['first_s']:8.3f} {r['median_s']:9.3f} {r['max_s']:7.3f}")
    print(json.dumps({"model": args.model, **result}))


if __name__ == "__main__":
    main()
