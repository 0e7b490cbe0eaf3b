"""Load the web app: several sessions pressing Forget at once, and the server's memory over many runs in one session.

    .venv/bin/python scripts/bench_load.py --json docs/bench_load.json

Starts ``python app.py`` on a free port (its own session and Gradio folders in a temporary folder) and drives it with
one headless chromium (Debian's, through playwright's async API):

1. concurrency: ``--sessions`` browser contexts (separate sessions) each select a different known person and
   ``--method``, untick the gold model (unless ``--gold``) and press Forget as nearly together as possible. While
   they wait, each page's status line (``#run-status``) is read every ``--poll`` seconds: the texts it shows
   (Gradio's queue position and ETA while a job waits, the progress while it runs), the first queue position,
   whether that was visible on the page (an element with a non-zero bounding box inside the status line), and the
   time from the click to "finished". Reported: the time to the last result, each page's time, and the queue
   positions shown.
2. memory: one page makes ``--runs`` runs one after another (the same person, ``--method``, no gold model unless
   ``--gold``), in the same server after part 1; the server process's resident memory (RSS) is read when the page
   has loaded and after every run.
   Reported: RSS after run 1 and after the last run, and the growth per run over the last 10 runs (MB/run), which
   should be near zero once the session keeps only its latest runs in full.

Each part also reports the CPU seconds the server, the browser and this script used, and the load average: on a
machine with few cores the browser competes with the server, and a busy machine slows every run.
``--sessions 0`` or ``--runs 0`` leaves a part out. Needs chromium and playwright (``make test`` installs both).
A benchmark, not a test: nothing here asserts a time or a size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dlfd_core.env import environment  # noqa: E402
from tests.browser.conftest import (  # noqa: E402
    CHROMIUM_FLAGS,
    DEFAULT_CHROMIUM,
    _answers_ok,
    _free_port,
    _read_log,
    _stop,
)

THUMBNAILS = "#identity-gallery .grid-container .thumbnail-item"
STATUS = "#run-status"
QUEUE_RE = re.compile(r"queue:\s*\d+\s*/\s*\d+")
TIMER_RE = re.compile(r"\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?s\b")  # Gradio's "12.3s" or "12.3/40.0s" (time/ETA)
# Gradio's own "12.3/40.0s", or the app's expected wait written at booking ("about 40 s until this one is done")
ETA_RE = re.compile(r"\d+(?:\.\d+)?/\d+(?:\.\d+)?s\b|about \d+ s until")
VIEWPORT = {"width": 1280, "height": 900}
SERVER_START_TIMEOUT_S = 180.0
MB = 1024 * 1024

# One look at a status line: its text, its box, and the element showing a queue position ("queue: 2/5 | 1.3/9.0s",
# drawn by Gradio's status tracker), if any, with its box and whether it lies inside the status line's box.
SNAPSHOT_JS = """
() => {
    const root = document.querySelector('#run-status');
    if (!root) return null;
    const box = root.getBoundingClientRect();
    let queue = null;
    for (const el of root.querySelectorAll('*')) {  // the deepest element whose text has the queue position
        if (/queue:\\s*\\d+\\s*\\/\\s*\\d+/.test(el.textContent || '')) queue = el;
    }
    let found = null;
    if (queue) {
        const r = queue.getBoundingClientRect();
        const shown = queue.checkVisibility ? queue.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})
            : true;
        const inside = Math.min(r.bottom, box.bottom) - Math.max(r.top, box.top) > 0
            && Math.min(r.right, box.right) - Math.max(r.left, box.left) > 0;
        found = {text: queue.textContent.replace(/\\s+/g, ' ').trim(), width: r.width, height: r.height,
                 shown: shown, inside: inside};
    }
    return {text: (root.innerText || '').replace(/\\s+/g, ' ').trim(), height: box.height, queue: found};
}
"""
# Run number n of this page has finished (its line says "Run #n <method> finished in X s."), or failed.
DONE_JS = """
(n) => {
    const text = document.querySelector('#run-status')?.innerText || '';
    return (text.includes('Run #' + n + ' ') && text.includes('finished in')) || /failed:/.test(text);
}
"""


# ------------------------------------------------------------------------------------------------- server
def start_app(folder: Path, log: Path, cache: Path | None) -> tuple[subprocess.Popen[bytes], str, float]:
    """Launch the app and wait until it answers; return it, its URL and the seconds it took."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {
        **os.environ,
        "DLFD_HOST": "127.0.0.1",
        "DLFD_PORT": str(port),
        "DLFD_SESSIONS_DIR": str(folder / "sessions"),
        "GRADIO_TEMP_DIR": str(folder / "gradio"),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
    }
    if cache is not None:
        env["DLFD_CACHE"] = str(cache)
    for name in ("sessions", "gradio"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    started = time.monotonic()
    with log.open("ab") as sink:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        while not _answers_ok(opener, url):
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with code {process.returncode}:\n{_read_log(log, 5000)}")
            if time.monotonic() - started > SERVER_START_TIMEOUT_S:
                raise RuntimeError(f"app.py did not answer {url} in {SERVER_START_TIMEOUT_S:.0f} s")
            time.sleep(0.25)
    except BaseException:
        _stop(process)
        raise
    return process, url, time.monotonic() - started


def rss_mb(pid: int) -> dict[str, float]:
    """The process's resident memory now (psutil if installed, else /proc) and its peak so far (/proc), in MB."""
    figures: dict[str, float] = {}
    try:
        import psutil

        figures["rss_mb"] = psutil.Process(pid).memory_info().rss / MB
    except ImportError:
        pass
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        lines = []
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    for key, name in (("VmRSS", "rss_mb"), ("VmHWM", "peak_mb")):
        if key in fields and name not in figures:
            figures[name] = int(fields[key].split()[0]) / 1024  # in kB
    return {key: round(value, 1) for key, value in figures.items()}


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, …), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _cpu_of(pid: int) -> float:
    """CPU seconds of a process and of its children it has waited for (Linux; 0 elsewhere)."""
    fields = _proc_stat(pid)
    if fields is None:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class CpuMeter:
    """CPU seconds used over a stretch of time by the server, by the browser (and playwright's driver), and by this
    script; on a machine with few cores the browser's share competes with the server's runs."""

    def __init__(self, server: int) -> None:
        self.server = server
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        server = {self.server} | _descendants(self.server)
        browser = _descendants(os.getpid()) - server
        times = os.times()
        return {
            "wall": time.monotonic(),
            "server": sum(_cpu_of(pid) for pid in server),
            "browser": sum(_cpu_of(pid) for pid in browser),
            "script": times.user + times.system,
            "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
        }

    def stop(self) -> dict[str, float]:
        end = self._now()
        return {
            "wall_s": round(end["wall"] - self.start["wall"], 1),
            "server_cpu_s": round(end["server"] - self.start["server"], 1),
            "browser_cpu_s": round(end["browser"] - self.start["browser"], 1),
            "script_cpu_s": round(end["script"] - self.start["script"], 1),
            "load_average_1min_before": round(self.start["load"], 2),
            "load_average_1min_after": round(end["load"], 2),
        }


def report_cpu(cpu: dict[str, float]) -> None:
    print(
        f"  CPU over {cpu['wall_s']} s: server {cpu['server_cpu_s']} s, browser {cpu['browser_cpu_s']} s, "
        f"this script {cpu['script_cpu_s']} s (load average {cpu['load_average_1min_before']} -> "
        f"{cpu['load_average_1min_after']} on {os.cpu_count()} CPUs)"
    )


# ------------------------------------------------------------------------------------------------- page
async def open_page(browser: Any, url: str, timeout_s: float) -> tuple[Any, Any]:
    """A new context (its own session) with the app rendered and its on-load events done."""
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(timeout_s * 1000)
    page = await context.new_page()
    await page.goto(url, wait_until="domcontentloaded")
    await page.locator("gradio-app .gradio-container .block").first.wait_for(state="visible")
    await page.locator(THUMBNAILS).first.wait_for(state="visible")
    await page.wait_for_function(
        "() => !document.querySelector('gradio-app [data-testid=\"status-tracker\"]:not(.hide)')"
    )
    return context, page


async def prepare(page: Any, index: int, method: str, gold: bool) -> str:
    """Select the ``index``-th known person, choose the method and the gold toggle; the person's name."""
    thumbs = page.locator(THUMBNAILS)
    count = await thumbs.count()
    thumb = thumbs.nth(index % count)
    name = await thumb.locator("img").get_attribute("alt")
    await thumb.click()
    await page.locator("#forget-who").get_by_text(name, exact=True).first.wait_for()
    if method != "dlfd":
        await page.locator("#method input[role=combobox]").click()
        await page.locator("ul[role=listbox] li", has_text=f"({method})").first.click()
        await page.get_by_text(f"Settings of {method}", exact=True).wait_for()
    box = page.locator("#with-gold input[type=checkbox]")
    if await box.is_checked() != gold:
        await box.click()
    if await box.is_checked() != gold:
        raise RuntimeError("the gold-model checkbox did not change")
    await page.locator("#run").wait_for(state="visible")
    return name


def server_seconds(text: str) -> float | None:
    """The run's own time as the app reports it ("Run #n ... finished in X s")."""
    match = re.search(r"finished in ([\d.]+) s", text)
    return float(match.group(1)) if match else None


async def queue_box(page: Any) -> dict[str, Any]:
    """Playwright's view of the element showing the queue position: visible, and its bounding box."""
    element = page.locator(STATUS).get_by_text(QUEUE_RE).last
    try:
        visible = await element.is_visible()
        box = await element.bounding_box(timeout=1000)
    except Exception as error:  # gone between the look and this call
        return {"visible": False, "box": None, "error": type(error).__name__}
    return {"visible": visible, "box": box}


class StatusLog:
    """What one page's status line showed: each change once (the running timer aside), queue positions, ETA."""

    def __init__(self) -> None:
        self.texts: list[list[Any]] = []  # [seconds since the click (first seen), (last seen), text when first seen]
        self.queue_positions: list[str] = []  # "queue: 3/5", each change once
        self.first_queue_text: str | None = None
        self.first_eta_text: str | None = None
        self.queue_in_text = False
        self.queue_visible = False
        self.queue_element: dict[str, Any] | None = None
        self.min_height: float | None = None

    async def look(self, page: Any, since: float) -> None:
        snap = await page.evaluate(SNAPSHOT_JS)
        now = round(time.monotonic() - since, 2)
        if snap is None:
            return
        height = snap["height"]
        self.min_height = height if self.min_height is None else min(self.min_height, height)
        text = snap["text"]
        if self.texts and TIMER_RE.sub("<t>", self.texts[-1][2]) == TIMER_RE.sub("<t>", text):
            self.texts[-1][1] = now
        else:
            self.texts.append([now, now, text])
        if self.first_eta_text is None and ETA_RE.search(text):
            self.first_eta_text = text
        queue = snap["queue"]
        if queue is None:
            return
        self.queue_in_text = True
        position = QUEUE_RE.search(queue["text"]).group(0)
        if not self.queue_positions or self.queue_positions[-1] != position:
            self.queue_positions.append(position)
        if self.first_queue_text is None:
            self.first_queue_text = queue["text"]
            self.queue_element = await queue_box(page)
        if queue["shown"] and queue["inside"] and queue["width"] > 0 and queue["height"] > 0:
            self.queue_visible = True

    @property
    def final(self) -> str:
        return self.texts[-1][2] if self.texts else ""

    def figures(self) -> dict[str, Any]:
        playwright_says = self.queue_element is None or bool(self.queue_element.get("visible"))
        return {
            "first_queue_position": self.queue_positions[0] if self.queue_positions else None,
            "queue_positions": self.queue_positions,
            "first_queue_text": self.first_queue_text,
            "first_eta_text": self.first_eta_text,
            "queue_position_in_text": self.queue_in_text,
            "queue_position_visible": self.queue_visible and playwright_says,
            "queue_element": self.queue_element,
            "status_min_height_px": self.min_height,
            "texts": self.texts,
        }


async def click_and_watch(page: Any, run: int, timeout_s: float, poll_s: float, go: asyncio.Event) -> dict[str, Any]:
    """Click Forget when ``go`` is set; read the status line every ``poll_s`` until run number ``run`` is done."""
    await go.wait()
    clicked = time.monotonic()
    try:
        await page.locator("#run").click()
    except Exception as error:
        return {"error": f"click: {type(error).__name__}: {str(error).splitlines()[0]}"}
    click_done = time.monotonic()

    async def done() -> float:
        await page.wait_for_function(DONE_JS, arg=run, polling=100, timeout=timeout_s * 1000)
        return time.monotonic()

    waiter = asyncio.create_task(done())
    status = StatusLog()
    try:
        while not waiter.done():
            await status.look(page, clicked)
            await asyncio.wait({waiter}, timeout=poll_s)
        finished = waiter.result()
        await status.look(page, clicked)  # the final text
    except Exception as error:
        waiter.cancel()
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0]}", **status.figures()}
    return {
        "click_at": clicked,
        "click_done_at": click_done,
        "click_s": round(click_done - clicked, 3),
        "seconds": round(finished - clicked, 2),
        "server_seconds": server_seconds(status.final),
        "failed": "failed:" in status.final,
        "final_text": status.final,
        **status.figures(),
    }


# ------------------------------------------------------------------------------------------------- parts
async def concurrency(browser: Any, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """``args.sessions`` pages press Forget at once; how long each waited, and what queue positions they showed."""
    pages = []
    try:
        for _ in range(args.sessions):
            context, page = await open_page(browser, url, args.timeout)
            pages.append((context, page))
        people = [await prepare(page, index, args.method, args.gold) for index, (_, page) in enumerate(pages)]
        go = asyncio.Event()
        limit = args.timeout * args.sessions  # the last one waits for all the others
        tasks = [asyncio.create_task(click_and_watch(page, 1, limit, args.poll, go)) for _, page in pages]
        await asyncio.sleep(0)  # every task is waiting for the signal
        go.set()
        results = await asyncio.gather(*tasks)
    finally:
        for context, _ in pages:
            await context.close()
    clicks = [r["click_at"] for r in results if "click_at" in r]
    landed = [r["click_done_at"] for r in results if "click_done_at" in r]
    first_click = min(clicks) if clicks else 0.0
    per_page = []
    for person, result in zip(people, results, strict=True):
        entry = {"person": person, **result}
        if "click_at" in entry:
            entry["click_offset_s"] = round(entry.pop("click_at") - first_click, 3)
            entry.pop("click_done_at")
        per_page.append(entry)
    ends = [p["click_offset_s"] + p["seconds"] for p in per_page if "seconds" in p]
    return {
        "sessions": args.sessions,
        "clicks_spread_s": round(max(landed) - min(landed), 3) if landed else None,  # between the clicks' ends
        "time_to_last_result_s": round(max(ends), 2) if len(ends) == len(per_page) else None,
        "errors": sum("error" in p or p.get("failed", False) for p in per_page),
        "pages_showing_queue_position": sum(bool(p.get("queue_position_visible")) for p in per_page),
        "pages": per_page,
    }


async def memory(browser: Any, url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """One page makes ``args.runs`` runs in a row; the server's RSS after each."""
    context, page = await open_page(browser, url, args.timeout)
    try:
        await asyncio.sleep(1.0)  # let the session's start settle
        loaded = rss_mb(pid)
        print(f"  page loaded: RSS {loaded.get('rss_mb', float('nan')):.0f} MB", flush=True)
        person = await prepare(page, args.memory_person, args.method, args.gold)
        after: list[dict[str, Any]] = []
        go = asyncio.Event()
        go.set()
        for run in range(1, args.runs + 1):
            result = await click_and_watch(page, run, args.timeout, args.poll, go)
            if "error" in result or result["failed"]:
                raise RuntimeError(f"run {run} did not finish: {result.get('error') or result['texts'][-1:]}")
            figures = rss_mb(pid)
            after.append(
                {"run": run, "seconds": result["seconds"], "server_seconds": result["server_seconds"], **figures}
            )
            print(
                f"  run {run:3d}: {result['seconds']:6.1f} s, RSS {figures.get('rss_mb', float('nan')):7.1f} MB "
                f"(peak {figures.get('peak_mb', float('nan')):.0f})",
                flush=True,
            )
    finally:
        await context.close()
    rss = [row["rss_mb"] for row in after if "rss_mb" in row]
    tail = rss[-10:]
    return {
        "runs": args.runs,
        "person": person,
        "rss_after_page_load_mb": loaded.get("rss_mb"),
        "rss_after_run_1_mb": rss[0] if rss else None,
        "rss_after_last_run_mb": rss[-1] if rss else None,
        "peak_rss_mb": after[-1].get("peak_mb") if after else None,
        "growth_last_runs": len(tail),
        "growth_mb_per_run": round(slope(tail), 2) if len(tail) >= 2 else None,
        "after_each_run": after,
    }


def slope(values: list[float]) -> float:
    """The least-squares slope of ``values`` against 0, 1, 2, …"""
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    covariance = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    return covariance / sum((i - mean_x) ** 2 for i in range(n))


# ------------------------------------------------------------------------------------------------- main
async def measure(args: argparse.Namespace, process: subprocess.Popen[bytes], url: str) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    result: dict[str, Any] = {}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=args.chromium, headless=True, args=list(CHROMIUM_FLAGS)
        )
        try:
            for part in ("memory", "concurrency") if args.memory_first else ("concurrency", "memory"):
                if part == "concurrency" and args.sessions > 0:
                    print(f"concurrency: {args.sessions} sessions press Forget at once", flush=True)
                    meter = CpuMeter(process.pid)
                    result["concurrency"] = await concurrency(browser, url, args)
                    result["concurrency"]["cpu"] = meter.stop()
                    report_concurrency(result["concurrency"])
                    report_cpu(result["concurrency"]["cpu"])
                if part == "memory" and args.runs > 0:
                    print(f"memory: {args.runs} runs in one session", flush=True)
                    meter = CpuMeter(process.pid)
                    result["memory"] = await memory(browser, url, process.pid, args)
                    result["memory"]["cpu"] = meter.stop()
                    report_memory(result["memory"])
                    report_cpu(result["memory"]["cpu"])
        finally:
            await browser.close()
    return result


def report_concurrency(part: dict[str, Any]) -> None:
    print(f"  the clicks ended within {part['clicks_spread_s']} s of each other")
    for page in part["pages"]:
        if "error" in page:
            print(f"  {page['person']:>5}: ERROR {page['error']}")
            continue
        if page["queue_position_in_text"]:
            shown = "visible" if page["queue_position_visible"] else "NOT visible"
            queue = (
                f"queue positions {' -> '.join(p.removeprefix('queue: ') for p in page['queue_positions'])} ({shown})"
            )
        else:
            queue = "no queue position shown"
        eta = "ETA shown" if page["first_eta_text"] else "no ETA"
        print(
            f"  {page['person']:>5}: click to finished {page['seconds']:6.1f} s "
            f"(the run itself {page['server_seconds']} s); {queue}; {eta}; "
            f"status line >= {page['status_min_height_px']:.0f} px high"
        )
    print(f"  time to the last result: {part['time_to_last_result_s']} s; failed or timed out: {part['errors']}")
    print(f"  pages that showed a queue position: {part['pages_showing_queue_position']} of {part['sessions']}")


def report_memory(part: dict[str, Any]) -> None:
    print(
        f"  RSS: page loaded {part['rss_after_page_load_mb']} MB, after run 1 {part['rss_after_run_1_mb']} MB, "
        f"after run {part['runs']} {part['rss_after_last_run_mb']} MB, peak {part['peak_rss_mb']} MB"
    )
    print(f"  growth over the last {part['growth_last_runs']} runs: {part['growth_mb_per_run']} MB/run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=5, help="pages pressing Forget at once (0: skip)")
    parser.add_argument("--runs", type=int, default=20, help="runs in a row in one page (0: skip)")
    parser.add_argument("--method", default="dlfd", help="the unlearning method of every run")
    parser.add_argument(
        "--gold", action=argparse.BooleanOptionalAction, default=False, help="also train the gold model"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one run may take")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between looks at the status lines")
    parser.add_argument("--memory-person", type=int, default=6, help="the gallery index of the memory runs' person")
    parser.add_argument(
        "--memory-first",
        action="store_true",
        help="the runs in one page first, so that the pages pressing Forget at once are shown the expected wait",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--log", type=Path, help="keep the app's log here")
    parser.add_argument("--cache", type=Path, help="DLFD_CACHE for the app (default: as in this environment)")
    parser.add_argument("--chromium", default=os.environ.get("DLFD_CHROMIUM", DEFAULT_CHROMIUM))
    args = parser.parse_args()
    from dlfd_core.unlearn import method_names

    if args.method not in method_names():
        parser.error(f"unknown method {args.method!r}; one of {', '.join(method_names())}")

    result: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "method": args.method,
        "gold": args.gold,
        "environment": environment(),
    }
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        log = args.log or Path(tmp) / "app.log"
        process, url, seconds = start_app(Path(tmp), log, args.cache)
        result["server_start_s"] = round(seconds, 2)
        print(f"app answering at {url} after {seconds:.1f} s (pid {process.pid}, RSS {rss_mb(process.pid)})")
        try:
            result.update(asyncio.run(measure(args, process, url)))
        except BaseException:
            print(f"--- app log (last lines) ---\n{_read_log(log, 4000)}", file=sys.stderr)
            raise
        finally:
            _stop(process)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
