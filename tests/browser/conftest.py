"""Browser tests: the real app in a subprocess, driven by Debian's chromium through playwright's sync API.

`make test-slow` installs chromium with apt-get (target `browser`); never `playwright install`, which downloads a
browser of its own. Without a browser or without playwright these tests skip, except under CI (`CI=true`), where
they fail so that a broken set-up cannot pass unnoticed. Every test in this folder is marked `browser` and `slow`
(`pytest -m "not browser"` leaves them out).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# No --user-data-dir: playwright's launch() rejects it (it points to launch_persistent_context) and gives every
# launch a fresh temporary profile of its own, which is what that flag was for.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
SERVER_START_TIMEOUT_S = 120.0
RENDER_TIMEOUT_MS = 30_000

_HERE = Path(__file__).resolve().parent
_SERVER_LOG = pytest.StashKey[Path]()
_SESSIONS_DIR = pytest.StashKey[Path]()
_GRADIO_TEMP = pytest.StashKey[Path]()


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it under CI, where the browser tests must run."""
    if _in_ci():
        pytest.fail(f"browser tests cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in this folder `browser` and `slow`."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the app server's log to the report of a failed browser test."""
    report = yield
    log = item.config.stash.get(_SERVER_LOG, None)
    if report.failed and log is not None and _HERE in Path(str(item.path)).resolve().parents:
        report.sections.append(("app server log", _read_log(log)))
    return report


def _read_log(path: Path, limit: int = 20_000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(cannot read {path}: {error})"
    return text if len(text) <= limit else "...\n" + text[-limit:]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The chromium executable: `DLFD_CHROMIUM` if set, else Debian's /usr/bin/chromium."""
    if importlib.util.find_spec("playwright") is None:
        _unavailable("playwright is not installed (it comes with requirements-dev.txt)")
    path = os.environ.get("DLFD_CHROMIUM") or DEFAULT_CHROMIUM
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        _unavailable(f"no chromium at {path} (`make browser` installs it with apt-get; or set DLFD_CHROMIUM)")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_ok(opener: urllib.request.OpenerDirector, url: str) -> bool:
    try:
        with opener.open(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@pytest.fixture(scope="session")
def app_server(
    chromium_path: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """Run `python app.py` on a free local port and yield its base URL, e.g. ``http://127.0.0.1:40123/``.

    Depends on `chromium_path` so that a missing browser skips before the app spends its start-up aligning faces.
    The app's output goes to a log file, shown when start-up fails and beside every failed browser test.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {
        **os.environ,  # includes the session's isolated DLFD_CACHE from tests/conftest.py
        "DLFD_HOST": "127.0.0.1",
        "DLFD_PORT": str(port),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path_factory.mktemp("app_server") / "app.log"
    env["DLFD_SESSIONS_DIR"] = str(tmp_path_factory.mktemp("app_sessions"))
    env["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio_temp"))  # where uploads land
    request.config.stash[_SERVER_LOG] = log
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        while not _answers_ok(opener, url):
            if process.poll() is not None:
                pytest.fail(
                    f"app.py exited with code {process.returncode} before serving {url}:\n{_read_log(log)}",
                    pytrace=False,
                )
            if time.monotonic() - started > SERVER_START_TIMEOUT_S:
                pytest.fail(
                    f"app.py did not answer {url} within {SERVER_START_TIMEOUT_S:.0f} s:\n{_read_log(log)}",
                    pytrace=False,
                )
            time.sleep(0.5)
        print(f"\napp server ready at {url} after {time.monotonic() - started:.1f} s", file=sys.stderr)
        request.config.stash[_SESSIONS_DIR] = Path(env["DLFD_SESSIONS_DIR"])
        request.config.stash[_GRADIO_TEMP] = Path(env["GRADIO_TEMP_DIR"])
        yield url
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def launch(chromium_path: str) -> Iterator[Callable[..., Browser]]:
    """``launch(*extra_flags)``: a headless chromium (closed at the end of the test session)."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    launched: list[Browser] = []

    def start(*extra_flags: str) -> Browser:
        try:
            browser = playwright.chromium.launch(
                executable_path=chromium_path, headless=True, args=[*CHROMIUM_FLAGS, *extra_flags]
            )
        except PlaywrightError as error:
            _unavailable(f"chromium at {chromium_path} does not start: {error}")
        launched.append(browser)
        return browser

    try:
        yield start
    finally:
        for browser in launched:
            browser.close()
        playwright.stop()


@pytest.fixture(scope="session")
def browser(launch: Callable[..., Browser]) -> Browser:
    """One headless chromium for the whole session."""
    return launch()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context (cookies, storage) and page per test; 30 s default timeout for waits and actions."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(RENDER_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def wait_for_gradio(page: Page, url: str, *, timeout_ms: int = RENDER_TIMEOUT_MS) -> float:
    """Open `url` and wait until Gradio has rendered the page and finished its on-load events.

    Rendered means the `.gradio-container` inside `<gradio-app>` is visible with at least one component
    (`.block`) in it; finished means no status tracker is showing (Gradio adds the class `hide` to a
    component's `[data-testid="status-tracker"]` while no event is pending on it).

    Args:
        page: A playwright page.
        url: The app's address.
        timeout_ms: Limit for the whole wait.

    Returns:
        Seconds from navigation to ready, for information only.
    """
    started = time.monotonic()
    deadline = started + timeout_ms / 1000

    def left_ms() -> float:
        return max(1.0, (deadline - time.monotonic()) * 1000)

    page.goto(url, wait_until="domcontentloaded", timeout=left_ms())
    page.locator("gradio-app .gradio-container").wait_for(state="visible", timeout=left_ms())
    page.locator("gradio-app .gradio-container .block").first.wait_for(state="visible", timeout=left_ms())
    page.wait_for_function(
        "() => !document.querySelector('gradio-app [data-testid=\"status-tracker\"]:not(.hide)')",
        timeout=left_ms(),
    )
    return time.monotonic() - started


@pytest.fixture
def app_page(page: Page, app_server: str) -> Page:
    """The app's page, opened and rendered."""
    seconds = wait_for_gradio(page, app_server)
    print(f"\napp page ready after {seconds:.2f} s", file=sys.stderr)
    return page


@pytest.fixture
def sessions_dir(app_server: str, request: pytest.FixtureRequest) -> Path:
    """The folder under which the app server keeps each browser session's private folder."""
    return request.config.stash[_SESSIONS_DIR]


@pytest.fixture
def gradio_temp(app_server: str, request: pytest.FixtureRequest) -> Path:
    """The app server's Gradio cache folder (uploads and files Gradio copies for the page)."""
    return request.config.stash[_GRADIO_TEMP]
