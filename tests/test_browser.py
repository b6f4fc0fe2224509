"""End to end: the real app in headless Chromium (Playwright), every page of the navigation.

Starts ``streamlit run streamlit_app.py`` on a free port, visits each page, waits for the script
to finish, and checks that no exception, error box or traceback shows and that the page's lesson
shows its equations as KaTeX (no render error, none clipped); on the Imputation page it makes a
mask and steps the chains. A screenshot of every page goes to a temporary directory
(or to ``$DLGM_SCREENSHOT_DIR``). A shared link, opened in a fresh browser context, shows the
view it names, and changing a widget changes the URL and the link. Without Chromium or
Playwright the tests are skipped, except when ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app.lessons import LESSONS

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("DLGM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = {  # URL path -> a heading the page shows
    "": "Models",
    "embedding": "Embedding",
    "posterior": "Posterior",
    "samples": "Samples",
    "imputation": "Imputation",
    "estimators": "Gradient estimators",
    "likelihoods": "Likelihoods",
}
ERRORS = (
    '[data-testid="stException"], [data-testid="stAlertContentError"], '
    '[data-testid="stNotificationContentError"]'
)
SERVER_START_S = 60
PAGE_TIMEOUT_S = 60


def _missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright_api():
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _missing(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the Python package playwright is not installed")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a free local port; terminated at the end, whatever happens."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("server") / "streamlit.log").open("w")
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "streamlit_app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer /_stcore/health in {SERVER_START_S} s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser(playwright_api):
    with playwright_api() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser_page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.set_default_timeout(PAGE_TIMEOUT_S * 1000)
    return page


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory) -> Path:
    wanted = os.environ.get("DLGM_SCREENSHOT_DIR")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        return Path(wanted)
    return tmp_path_factory.mktemp("screenshots")


def wait_idle(page, quiet_s: float = 0.7, timeout_s: float = PAGE_TIMEOUT_S) -> None:
    """Wait until the script has finished: no "Running..." status widget for ``quiet_s``."""
    page.wait_for_selector('[data-testid="stApp"]', state="attached")
    status = page.locator('[data-testid="stStatusWidget"]')
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        if status.count() and status.first.is_visible():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.1)
    raise AssertionError(f"the app was still running after {timeout_s} s")


def assert_no_errors(page, where: str) -> None:
    errors = page.locator(ERRORS)
    texts = [errors.nth(i).inner_text()[:300] for i in range(errors.count())]
    assert not texts, f"{where}: error boxes {texts}"
    body = page.locator("body").inner_text()
    assert "Traceback" not in body, f"{where}: a traceback is shown"


def check_lesson(page, path: str) -> None:
    """The page's lesson (app/lessons.py) is open on this first visit and shows every equation
    as KaTeX, none an error and none wider than the lesson (a clipped, scrolling equation)."""
    lesson = LESSONS[path or "models"]
    box = page.locator('[data-testid="stExpander"]').filter(has_text=f"Lesson: {lesson.title}")
    assert box.count() == 1, f"/{path}: no lesson"
    shown = box.locator(".katex-display")
    assert shown.count() == len(lesson.equations), f"/{path}: {shown.count()} equations shown"
    assert not page.locator(".katex-error").count(), f"/{path}: KaTeX could not render"
    clipped = shown.evaluate_all("els => els.filter(e => e.scrollWidth > e.clientWidth + 4).length")
    assert clipped == 0, f"/{path}: {clipped} equations wider than the lesson"


def visit(page, base: str, path: str, heading: str) -> None:
    page.goto(f"{base}/{path}")
    page.get_by_role("heading", name=heading).first.wait_for()
    wait_idle(page)


def run_imputation(page) -> None:
    """Make a mask (the 80% preset), then step the chains twice and check the strip."""
    page.get_by_role("button", name="80% missing").click()
    wait_idle(page)
    page.get_by_text("pixels missing)", exact=False).first.wait_for()  # the mask preview
    for step in (1, 2):
        page.get_by_role("button", name="Step", exact=True).click()
        page.get_by_text(f"Imputation chains, iteration {step}").first.wait_for()
        wait_idle(page)
    metric = page.locator('[data-testid="stMetricValue"]').first.inner_text()
    assert metric.strip() == "2"
    assert page.get_by_text("Error on the missing pixels against the truth").count()


def test_every_page_renders_and_imputation_steps(server, browser_page, screenshot_dir):
    page = browser_page
    seconds = {}
    for path, heading in PAGES.items():
        start = time.monotonic()
        visit(page, server, path, heading)
        assert_no_errors(page, f"/{path}")
        check_lesson(page, path)
        if path == "imputation":
            run_imputation(page)
            assert_no_errors(page, "/imputation after stepping")
        seconds[path or "models"] = round(time.monotonic() - start, 1)
        page.wait_for_timeout(500)  # let data frames (drawn on a canvas) paint
        page.screenshot(path=str(screenshot_dir / f"{path or 'models'}.png"), full_page=True)
    print(f"seconds per page: {seconds}; screenshots in {screenshot_dir}")


def test_upload_npz_train_and_see_it_on_samples(server, browser_page, tmp_path, screenshot_dir):
    """The real file uploader (set_input_files): a .npz of 40 grey 6x6 images becomes a data
    set of the tab, a 1-epoch model is trained on it, and the Samples page, reached through
    the navigation (same session), shows that model's test images."""
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, x=rng.integers(0, 256, size=(40, 6, 6), dtype=np.uint8))
    page = browser_page
    visit(page, server, "", "Models")
    page.get_by_role("tab", name="Train a new model").click()
    wait_idle(page)
    page.get_by_text("Your own images (.npz)").click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    page.get_by_text("Added mine.npz").wait_for()
    wait_idle(page)
    assert_no_errors(page, "/ after the upload")
    assert page.get_by_text("32 training and 8 test images of 6×6").count()
    page.get_by_role("textbox", name="Name (optional)").fill("mine-model")
    page.get_by_role("textbox", name="Hidden widths of every MLP").fill("16")
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill("1")
    page.get_by_role("button", name="Train").click()
    page.get_by_text("Trained 'mine-model'").wait_for()
    wait_idle(page)
    assert_no_errors(page, "/ after training")
    page.get_by_role("link", name="Samples").click()
    page.get_by_role("heading", name="Samples").first.wait_for()
    wait_idle(page)
    assert_no_errors(page, "/samples with the model trained on the upload")
    page.get_by_text("Test data: grey levels (upload:mine-").first.wait_for()
    page.screenshot(path=str(screenshot_dir / "samples-upload.png"), full_page=True)


def sidebar_link(page) -> str:
    """The link to the view shown in the sidebar (``app.widgets.share_link_ui``)."""
    return page.locator('[data-testid="stSidebar"] [data-testid="stCode"] code').inner_text()


def wait_for_link(page, wanted: dict[str, str]) -> dict[str, list[str]]:
    """Wait until the sidebar's link (drawn last, after the page) and the address bar both
    carry ``wanted``; return the link's parameters."""
    from urllib.parse import parse_qs, urlsplit

    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while True:
        links = page.locator('[data-testid="stSidebar"] [data-testid="stCode"] code')
        params = parse_qs(urlsplit(links.first.inner_text()).query) if links.count() else {}
        in_url = parse_qs(urlsplit(page.url).query)
        if all(params.get(k) == [v] and in_url.get(k) == [v] for k, v in wanted.items()):
            wait_idle(page)
            return params
        if time.monotonic() > deadline:
            raise AssertionError(f"link {params}, address {in_url}; wanted {wanted}")
        time.sleep(0.2)


def test_a_shared_link_opens_the_same_view(server, browser):
    """A link to the Posterior page, opened in a fresh browser context (no session, no cookies),
    shows the model, test image, grid and zoom it names; changing the image changes the address
    bar and the link; a link naming a model this server does not have says so."""
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_S * 1000)
        linked = {"model": "digits-2d-rank1", "post_index": "7", "post_grid": "31"}
        query = "&".join(f"{k}={v}" for k, v in linked.items())
        page.goto(f"{server}/posterior?{query}&post_zoom=false")
        page.get_by_role("heading", name="Posterior").first.wait_for()
        params = wait_for_link(page, {**linked, "post_zoom": "false"})
        assert sidebar_link(page).startswith(f"{server}/posterior?")
        assert set(params) == {*linked, "post_zoom"}
        picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"] input')
        assert picker.input_value() == "digits-2d-rank1"
        index = page.get_by_role("spinbutton", name="Test image #")
        assert index.input_value() == "7"
        grid = page.locator('[data-testid="stSlider"]').filter(has_text="Grid points per axis G")
        assert grid.locator('[data-testid="stSliderThumbValue"]').inner_text() == "31"
        assert not page.get_by_role("switch", name="Zoom on the posterior").is_checked()
        page.get_by_text("Test image #7, class").first.wait_for()  # the page used image 7
        page.get_by_text("digits-2d-rank1: p(ξ | v)").first.wait_for()  # and the model
        assert_no_errors(page, "a shared link")

        index.fill("9")
        index.press("Enter")
        wait_for_link(page, {**linked, "post_index": "9"})
        page.get_by_text("Test image #9, class").first.wait_for()

        page.goto(f"{server}/samples?model=trained-in-another-tab&smp_seed=4")
        page.get_by_role("heading", name="Samples").first.wait_for()
        params = wait_for_link(page, {"smp_seed": "4"})
        assert "model" not in params and "model=" not in page.url
        warning = page.locator('[data-testid="stAlertContentWarning"]').first.inner_text()
        assert "'trained-in-another-tab'" in warning and "mnist-2d-rank1" in warning
    finally:
        context.close()


PATCHES_MODEL = "patches-2d-rank1"  # Gaussian pixels: grey 8x8 patches of two photos


def select_model(page, name: str) -> None:
    """Pick ``name`` in the sidebar's model select box (this browser session keeps it)."""
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=name, exact=True).click()
    wait_idle(page)


def nav(page, title: str) -> None:
    """Go to a page through the sidebar navigation (the same session, unlike ``visit``)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title).first.wait_for()
    wait_idle(page)


def test_the_patches_model_renders_its_pages(server, browser_page, screenshot_dir):
    """The Gaussian patches model on Samples, Imputation (stepped), Embedding and
    Likelihoods: grey 8x8 patches, squared error, the NLL per dimension."""
    page = browser_page
    visit(page, server, "samples", "Samples")
    select_model(page, PATCHES_MODEL)
    page.get_by_text("Model: pixel means, seed 0").first.wait_for()
    page.get_by_text("Test data: grey levels (patches)").first.wait_for()
    assert_no_errors(page, f"/samples with {PATCHES_MODEL}")
    page.screenshot(path=str(screenshot_dir / "samples-patches.png"), full_page=True)
    for title in ("Imputation", "Embedding", "Likelihoods"):
        nav(page, title)
        assert_no_errors(page, f"/{title.lower()} with {PATCHES_MODEL}")
        if title == "Imputation":
            page.get_by_text("patches test image 0").first.wait_for()
            run_imputation(page)
            page.get_by_text("squared error of the pixel means").first.wait_for()
            assert_no_errors(page, f"/imputation with {PATCHES_MODEL} after stepping")
        if title == "Likelihoods":
            page.get_by_text("Test NLL per dimension, K = 100").first.wait_for()
        page.wait_for_timeout(500)
        page.screenshot(path=str(screenshot_dir / f"{title.lower()}-patches.png"), full_page=True)
