"""Time the web app in headless chromium: page ready after start, and click to results for one person.

    .venv/bin/python scripts/bench_app.py --json docs/bench_app.json

Measures, on this machine:

* page ready after start: from launching ``python app.py`` to the page rendered in the browser, with an empty
  cache (the first start on a fresh machine: ORL's faces are detected and aligned, LFW's frozen-layer outputs
  computed) and with a warm one;
* click to results for one person (LFW: Colin Powell; ORL: s7), DLFD with its defaults, after the warm start: the
  first run (the gold model is trained too), the same run again (the gold model comes from the cache), and a run
  without the gold model; and, after the cold start, the first click made as soon as the page is ready (it waits
  for the model's outputs on every photo, which a first start computes in the background).

    .venv/bin/python scripts/bench_app.py --dataset lfw --repeat 3 --json docs/bench_app_lfw.json

Needs chromium and playwright (``make test`` installs both). A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dlfd_core.env import environment  # noqa: E402
from tests.browser.conftest import (  # noqa: E402
    CHROMIUM_FLAGS,
    DEFAULT_CHROMIUM,
    _answers_ok,
    _free_port,
    _stop,
    wait_for_gradio,
)

THUMBNAILS = "#identity-gallery .grid-container .thumbnail-item"


def start_app(
    cache: Path, sessions: Path, log: Path, dataset: str = "lfw"
) -> tuple[subprocess.Popen[bytes], str, float]:
    """Launch the app; return it, its URL and the launch time (monotonic)."""
    port = _free_port()
    env = {
        **os.environ,
        "DLFD_CACHE": str(cache),
        "DLFD_SESSIONS_DIR": str(sessions),
        "DLFD_PORT": str(port),
        "HF_HUB_OFFLINE": "1",
        "DLFD_DATASET": dataset,
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    started = time.monotonic()
    with log.open("ab") as sink:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}/", started


def page_ready(browser, url: str, process: subprocess.Popen[bytes], started: float):
    """Wait for the server, open the page, wait until rendered; return the page and seconds since launch."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while not _answers_ok(opener, url):
        if process.poll() is not None:
            raise SystemExit(f"app.py exited with {process.returncode}")
        time.sleep(0.1)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    wait_for_gradio(page, url, timeout_ms=120_000)
    return page, time.monotonic() - started


def click_to_results(page, person: str, *, gold: bool) -> float:
    """Select ``person`` (once), set the gold toggle, click Forget; seconds until the results are on the page."""
    chosen = page.locator("#forget-who").inner_text()
    if person not in chosen:
        names = page.locator(f"{THUMBNAILS} img").evaluate_all("els => els.map(e => e.alt)")
        page.locator(THUMBNAILS).nth(names.index(person)).click()
        page.locator("#forget-who").get_by_text(person).wait_for()
    box = page.locator("#with-gold input[type=checkbox]")
    if box.is_checked() != gold:
        box.click()
    runs = page.locator("#runs-table [role=gridcell]").count()
    started = time.monotonic()
    page.locator("#run").click()
    page.wait_for_function(
        "n => document.querySelectorAll('#runs-table [role=gridcell]').length > n"
        " && document.querySelector('#plot-attack .js-plotly-plot')",
        arg=runs,
        timeout=600_000,
    )
    return time.monotonic() - started


def server_seconds(page) -> float:
    """The run's own wall time as the app reports it ("Run #n ... finished in X s")."""
    text = page.locator("#run-status").inner_text()
    return float(text.rsplit("finished in", 1)[1].split("s")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--dataset", choices=("lfw", "orl"), default="lfw", help="the data and model the app opens")
    parser.add_argument("--person", help="who to forget, as the page names them (LFW: Colin Powell; ORL: s7)")
    parser.add_argument("--log", type=Path, help="keep the app's log here")
    parser.add_argument("--repeat", type=int, default=1, help="measure this many times (timings vary by ±3 s here)")
    parser.add_argument("--chromium", default=os.environ.get("DLFD_CHROMIUM", DEFAULT_CHROMIUM))
    args = parser.parse_args()
    args.person = args.person or {"lfw": "Colin Powell", "orl": "s7"}[args.dataset]
    runs = [measure(args) for _ in range(args.repeat)]
    result = {
        "command": " ".join(["python", *sys.argv]),
        "dataset": args.dataset,
        "person": args.person,
        "environment": environment(),
    }
    for name in runs[0]:
        values = sorted(run[name] for run in runs)
        result[name] = round(values[len(values) // 2], 2)  # the median
        if len(values) > 1:
            result[f"{name}_all"] = [round(run[name], 2) for run in runs]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def measure(args: argparse.Namespace) -> dict[str, float]:
    """One round of every measurement, each app started afresh."""
    from playwright.sync_api import sync_playwright

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        tmp_path = Path(tmp)
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=list(CHROMIUM_FLAGS))
        log = args.log or tmp_path / "app.log"
        for label in ("cold_cache", "warm_cache"):
            process, url, started = start_app(tmp_path / "cache", tmp_path / "sessions", log, args.dataset)
            try:
                page, seconds = page_ready(browser, url, process, started)
                figures[f"page_ready_after_start_{label}_s"] = seconds
                print(f"page ready after start ({label.replace('_', ' ')}): {seconds:.1f} s", flush=True)
                if label == "cold_cache":
                    seconds = click_to_results(page, args.person, gold=False)
                    figures["click_to_results_no_gold_right_after_cold_start_s"] = seconds
                    print(f"click to results right after a cold start, no gold model: {seconds:.1f} s", flush=True)
                else:
                    for name, gold in (("first_run_with_gold", True), ("again_gold_cached", True), ("no_gold", False)):
                        seconds = click_to_results(page, args.person, gold=gold)
                        figures[f"click_to_results_{name}_s"] = seconds
                        figures[f"server_run_{name}_s"] = server_seconds(page)
                        print(
                            f"click to results, DLFD on {args.person}, {name.replace('_', ' ')}: {seconds:.1f} s "
                            f"(the run itself, server side: {figures[f'server_run_{name}_s']:.1f} s)"
                        )
                page.close()
            finally:
                _stop(process)
        browser.close()
    return figures


if __name__ == "__main__":
    main()
