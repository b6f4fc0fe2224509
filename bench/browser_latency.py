"""Latency a user feels, in a real browser: the first page, and one imputation step.

Starts the app as ``make run`` does (``streamlit run streamlit_app.py`` in the project, so
``.streamlit/config.toml`` applies), waits for ``/_stcore/health``, then in headless Chromium
(Playwright) measures, from the health answer:

- until the Models page's title shows, and until the model card shows (its tables);

then, once the server's background warm-up is over (its log says so), on the Imputation page
the time from a click on Step until the strip's title says the
new iteration (the figure has been redrawn), with the default pretrained model and, with
``--trained``, with a model trained in the tab (one short run on the Models page).

    python bench/browser_latency.py --steps 5 --trained

Prints one line per measurement and one JSON line. ``--root`` measures another copy of the
project (e.g. an older commit unpacked with ``git archive``), ``--server-arg`` passes extra
``streamlit run`` options (e.g. ``--server.fileWatcherType=auto``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("DLGM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, port: int, extra: list[str], log) -> tuple[subprocess.Popen, float]:
    """``streamlit run streamlit_app.py`` in ``root``; returns the process and the
    ``perf_counter`` time at which ``/_stcore/health`` first answered."""
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "streamlit_app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        *extra,
    ]
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc, time.perf_counter()
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("no answer from /_stcore/health")


def wait_idle(page, quiet_s: float = 0.7) -> None:
    """Until no "Running..." status widget has shown for ``quiet_s``."""
    status = page.locator('[data-testid="stStatusWidget"]')
    deadline = time.monotonic() + TIMEOUT_S
    quiet_since = None
    while time.monotonic() < deadline:
        if status.count() and status.first.is_visible():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.05)
    raise TimeoutError("the app kept running")


def first_page(page, base: str, t_health: float) -> dict:
    page.goto(base, wait_until="commit")
    page.get_by_role("heading", name="Models").first.wait_for()
    title = time.perf_counter() - t_health
    page.locator('[data-testid="stTable"]').first.wait_for()  # the model card's tables
    card = time.perf_counter() - t_health
    return {"models_title_s": round(title, 2), "model_card_s": round(card, 2)}


class Frames:
    """Times and sizes of the websocket frames the server sends (Streamlit's deltas)."""

    def __init__(self, page):
        self.log: list[tuple[float, int]] = []
        page.on("websocket", lambda ws: ws.on("framereceived", self._received))

    def _received(self, payload) -> None:
        self.log.append((time.perf_counter(), len(payload)))

    def since(self, start: float) -> list[tuple[float, int]]:
        return [(t - start, n) for t, n in self.log if t >= start]


def step_times(page, n: int, frames: Frames) -> dict:
    """Open the Imputation page, then click Step ``n`` times; seconds from each click until
    the strip shows the new iteration (``total``), until the server's last frame before that
    (``server``: the rerun and the transfer) and the kilobytes it sent."""
    # Through the sidebar: the same session (a new URL would start a new one, without the
    # models trained in the tab).
    page.get_by_role("link", name="Imputation").first.click()
    page.get_by_role("heading", name="Imputation").first.wait_for()
    page.get_by_text("Imputation chains, iteration 0").first.wait_for()
    wait_idle(page)
    out = {"total": [], "server": [], "kb": []}
    for t in range(1, n + 1):
        start = time.perf_counter()
        page.get_by_role("button", name="Step", exact=True).click()
        page.get_by_text(f"Imputation chains, iteration {t}", exact=True).first.wait_for()
        total = time.perf_counter() - start
        sent = [(dt, size) for dt, size in frames.since(start) if dt <= total]
        out["total"].append(total)
        out["server"].append(max((dt for dt, _ in sent), default=float("nan")))
        out["kb"].append(sum(size for _, size in sent) / 1000)
        wait_idle(page, quiet_s=0.3)
    return out


def train_in_tab(page, epochs: int) -> float:
    """Train a model with the form's defaults (digits, 2 latents, hidden 128, 128) for
    ``epochs`` on the Models page; returns the wall time until the run is reported."""
    page.get_by_role("link", name="Models").first.click()
    page.get_by_role("heading", name="Models").first.wait_for()
    wait_idle(page)
    page.get_by_role("tab", name="Train a new model").click()
    page.get_by_role("button", name="Train").first.wait_for()
    wait_idle(page)
    epochs_box = page.get_by_role("spinbutton", name="Epochs", exact=True)
    epochs_box.fill(str(epochs))
    epochs_box.press("Tab")
    start = time.perf_counter()
    page.get_by_role("button", name="Train").first.click()
    page.get_by_text("Trained '", exact=False).first.wait_for(timeout=TIMEOUT_S * 1000)
    wait_idle(page)
    return time.perf_counter() - start


def wait_warm_up(log_path: str, t_health: float) -> float | None:
    """Until the server logs that its background warm-up is over (``warm-up: ...``), so that
    the steps are timed without it; seconds after the health answer, None if never."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if "warm-up:" in Path(log_path).read_text():
            return time.perf_counter() - t_health
        time.sleep(0.2)
    return None


def _summary(steps: dict) -> dict:
    times = steps["total"]
    return {
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "min_s": round(min(times), 3),
        "n": len(times),
        "server_median_s": round(statistics.median(steps["server"]), 3),
        "kb_median": round(statistics.median(steps["kb"]), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=ROOT, help="the project copy to start")
    p.add_argument("--steps", type=int, default=5, help="Step clicks per model")
    p.add_argument(
        "--trained", action="store_true", help="also step with a model trained in the tab"
    )
    p.add_argument("--train-epochs", type=int, default=1)
    p.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra streamlit run option, e.g. --server-arg=--server.fileWatcherType=auto",
    )
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("w", prefix="browser_latency_", suffix=".log", delete=False)
    result: dict = {"root": str(args.root), "server_args": args.server_arg}
    proc, t_health = start_server(args.root, port, args.server_arg, log)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.set_default_timeout(TIMEOUT_S * 1000)
            frames = Frames(page)
            result.update(first_page(page, base, t_health))
            print(
                f"Models title {result['models_title_s']:.2f} s, model card "
                f"{result['model_card_s']:.2f} s after /_stcore/health"
            )
            wait_idle(page)
            log.flush()
            warm = wait_warm_up(log.name, t_health)
            result["warm_up_done_s"] = None if warm is None else round(warm, 1)
            result["step_pretrained"] = _summary(step_times(page, args.steps, frames))
            print(f"imputation Step, default pretrained model: {result['step_pretrained']}")
            if args.trained:
                result["train_s"] = round(train_in_tab(page, args.train_epochs), 2)
                result["step_trained"] = _summary(step_times(page, args.steps, frames))
                print(f"imputation Step, model trained in the tab: {result['step_trained']}")
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    result["server_log"] = log.name
    result["load_average"] = os.getloadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
