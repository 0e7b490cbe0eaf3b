"""DLFD Studio: pick or upload a face, make a face-recognition model forget it, and see what changed.

A thin Gradio layer over ``dlfd_core``: the session logic is :mod:`dlfd_core.studio`, the figures
:mod:`dlfd_core.viz`, the methods :mod:`dlfd_core.unlearn`. Run with ``make run`` (or ``python app.py``); it works
offline on the bundled default. ``DLFD_HOST`` / ``DLFD_PORT`` (or Gradio's ``GRADIO_SERVER_NAME`` /
``GRADIO_SERVER_PORT``) choose where it listens.

Sessions: each browser session gets its own :class:`~dlfd_core.studio.Session` (held in ``gr.State``) with a private
folder under ``SESSIONS_ROOT``; the folder (reports, models, face crops) is deleted when the page is closed, and
uploaded photos are deleted as soon as their faces are aligned. Heavy jobs share one queue slot, so one runs at a
time on the device.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import http.cookies
import inspect
import logging
import math
import os
import re
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# On a ZeroGPU Hugging Face Space (which sets SPACES_ZERO_GPU), `spaces` must be imported before torch, and each run
# goes through its GPU decorator (see RUNNER); everywhere else the app does not need the package.
ZERO_GPU = bool(os.environ.get("SPACES_ZERO_GPU"))
if ZERO_GPU:
    import spaces

import dlfd_core.faces  # noqa: E402, F401  (imported here, not first in the preload thread below)
from dlfd_core import studio  # noqa: E402
from dlfd_core.bundled import DEFAULT_BUNDLE, bundle, bundle_names  # noqa: E402

#: The data and model the page opens with (``DLFD_DATASET=orl`` or ``lfw``); the page can switch to the other.
DEFAULT_DATASET = os.environ.get("DLFD_DATASET", DEFAULT_BUNDLE)
# Where this process computes (the workspace, enrolment). On ZeroGPU it must stay on the CPU: `spaces` makes
# torch.cuda.is_available() true in the server process, but CUDA exists only inside a spaces.GPU call.
HOST_DEVICE = "cpu" if ZERO_GPU else None

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    # Start loading the bundled default (faces, model, outputs: torch work, which releases the GIL) before Gradio and
    # plotly are imported (Python work), so the two overlap at start-up; build_demo() waits for it.
    _PRELOAD: concurrent.futures.Future[studio.Workspace] | None = concurrent.futures.ThreadPoolExecutor(
        1, thread_name_prefix="workspace"
    ).submit(studio.load_workspace, DEFAULT_DATASET, device=HOST_DEVICE, background=True)
else:
    _PRELOAD = None

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from dlfd_core.checks import MAX_SEED, check_seed, read_flag, read_number, read_whole, shown  # noqa: E402
from dlfd_core.errors import CancelledError, DLFDError, TooFewFacesError  # noqa: E402
from dlfd_core.evaluate.report import METRICS, percent  # noqa: E402
from dlfd_core.evaluate.verdict import LIRA_ATTACK  # noqa: E402
from dlfd_core.unlearn import create_method, method_class, method_names  # noqa: E402
from dlfd_core.viz import attack_figure, embedding_figure, runs_figure  # noqa: E402

log = logging.getLogger("dlfd_studio")

SESSIONS_ROOT = Path(os.environ.get("DLFD_SESSIONS_DIR", Path(tempfile.gettempdir()) / "dlfd-studio-sessions"))
RUN_COLUMNS = ["run", "forgot", "method", "settings", "seed", "device", *studio.CARD_METRICS]
RUN_COLUMNS += ["unlearn_seconds", "total_seconds"]
#: The runs table's column titles, in words (the report files keep the keys).
RUN_HEADERS = {
    "run": "Run",
    "forgot": "Forgot",
    "method": "Method",
    "settings": "Settings changed",
    "seed": "Seed",
    "device": "Device",
    **{name: METRICS[name].title for name in studio.CARD_METRICS},
    "unlearn_seconds": "Unlearning (s)",
    "total_seconds": "Whole run (s)",
}
#: Jobs (runs and enrolments of all sessions) that may wait for the device at once; more are refused with a message.
MAX_QUEUE = int(os.environ.get("DLFD_MAX_QUEUE", "16"))
#: The largest file a person may upload.
MAX_FILE_SIZE = "25mb"
CREDITS = (
    "Faces: Labeled Faces in the Wild (Huang, Ramesh, Berg, Learned-Miller, UMass Amherst TR 07-49, 2007; news "
    "photos of public figures, for research) and the ORL Database of Faces, © AT&T Laboratories Cambridge. Face "
    "descriptor: dlib's ResNet (Davis King, CC0) as ported by face-api. DLFD: Choi & Na, arXiv 2409.14747."
)
#: Page styles: status lines keep their height (so progress and queue position show), galleries wrap to the width.
CSS = """
.dlfd-status { min-height: 3.2em; }
.dlfd-status .progress-text, .dlfd-status .meta-text { font-size: 0.95em; }
#identity-gallery .grid-container {
    grid-template-columns: repeat(auto-fill, minmax(72px, 1fr)) !important;
    grid-auto-rows: auto !important;
}
#identity-gallery .grid-wrap, #identity-gallery .grid-wrap.fixed-height {
    max-height: none !important; height: auto !important; min-height: 0 !important; overflow: visible !important;
}
#identity-gallery .thumbnail-item { aspect-ratio: 1 / 1; min-width: 0; }
"""

# How a run executes: on a ZeroGPU Space through its decorator (the job is pickled into the GPU worker process, and
# the outcome back; the duration allows the slowest default run, a method plus the gold model, with room, and
# ZeroGPU charges the quota by actual use); everywhere else in this process, with progress and Cancel.
ZERO_GPU_SECONDS = 120
RUNNER: studio.JobRunner | None = spaces.GPU(duration=ZERO_GPU_SECONDS)(studio.execute_job) if ZERO_GPU else None


# ------------------------------------------------------------------------------------------------- sessions
_LIVE: dict[str, studio.Session] = {}  # session hash -> session, to clean up when the page closes
_LOCK = threading.Lock()
#: The cookie that says which browser a session belongs to; a session's files are served to that browser only.
OWNER_COOKIE = "dlfd_owner"
_OWNERS: dict[str, str] = {}  # session folder name -> owner cookie value


def _cookie(headers: Any, name: str = OWNER_COOKIE) -> str | None:
    """The value of cookie ``name`` in request headers (a mapping or ASGI ``(bytes, bytes)`` pairs), or None."""
    if isinstance(headers, (list, tuple)):
        raw = "; ".join(v.decode("latin-1") for k, v in headers if k.lower() == b"cookie")
    else:
        raw = headers.get("cookie", "") if headers is not None else ""
    jar = http.cookies.SimpleCookie()
    try:
        jar.load(raw)
    except http.cookies.CookieError:
        return None
    value = jar[name].value if name in jar else None
    return value if value and re.fullmatch(r"[A-Za-z0-9_-]{20,100}", value) else None


_FILE_ROUTE = re.compile(r"/file[=/](.*)", re.DOTALL)


def _session_folder_of(target: str) -> str | None:
    """The session folder name a requested file lies in, or None for any file outside the session folders."""
    try:
        resolved = Path(os.path.abspath(target)).resolve()
        relative = resolved.relative_to(SESSIONS_ROOT.resolve())
    except (ValueError, OSError, RuntimeError):
        return None
    first = relative.parts[0] if relative.parts else ""
    return first if first and first != "_bundled" else None


class SessionFileGuard:
    """ASGI middleware: a file in a session's folder is served only to the browser that owns the session.

    Every browser gets a random owner cookie on its first request; :func:`build_demo`'s ``start`` records it with the
    session. A request for a file under another session's folder (a shared link, a guessed or leaked path) gets 404,
    as if the file did not exist. Files outside the session folders pass through to Gradio's own checks.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        owner = _cookie(headers)
        path = scope.get("path", "")
        served = _FILE_ROUTE.search(path)  # Gradio serves files at .../file=<path> and at .../file/<path>
        if served is not None:
            folder = _session_folder_of(served.group(1))
            if folder is not None and (owner is None or _OWNERS.get(folder) != owner):
                await send(
                    {"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]}
                )
                await send({"type": "http.response.body", "body": b"Not found"})
                return
        if owner is not None:
            await self.app(scope, receive, send)
            return
        forwarded = dict(headers).get(b"x-forwarded-proto", b"").decode("latin-1")
        secure = scope.get("scheme") == "https" or forwarded.split(",")[0].strip() == "https"
        # in an https iframe (a Hugging Face Space) the cookie must be SameSite=None; Partitioned keeps it per site
        flags = "; Secure; SameSite=None; Partitioned" if secure else "; SameSite=Lax"
        cookie = f"{OWNER_COOKIE}={secrets.token_urlsafe(32)}; Path=/; HttpOnly{flags}".encode("latin-1")

        async def send_with_cookie(message: dict) -> None:
            if message.get("type") == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class JobBoard:
    """The jobs booked for the device across all sessions, and how long recent ones took: the expected wait that a
    new booking is shown (Gradio's tracker then shows the live queue position; it has no estimate of its own for
    events defined per session, as the run is)."""

    def __init__(self, remember: int = 10) -> None:
        self._booked: dict[int, float] = {}  # session id -> when its job was booked
        self._durations: collections.deque[float] = collections.deque(maxlen=remember)
        self._lock = threading.Lock()

    def book(self, session: object) -> tuple[int, float | None]:
        """Book a job for ``session``; (jobs booked before it and not done, expected seconds until it is done)."""
        with self._lock:
            ahead = len(self._booked) - (id(session) in self._booked)
            self._booked[id(session)] = time.monotonic()
            typical = statistics.median(self._durations) if self._durations else None
        return ahead, None if typical is None else typical * (ahead + 1)

    def done(self, session: object, seconds: float | None = None) -> None:
        """The session's job ended (``seconds``: how long it ran, when it did)."""
        with self._lock:
            self._booked.pop(id(session), None)
            if seconds is not None and math.isfinite(seconds):
                self._durations.append(seconds)


JOBS = JobBoard()


def _waiting_text(ahead: int, expected: float | None) -> str:
    """What a booked job's status line says until it starts."""
    if not ahead:
        return "Starting…" if expected is None else f"Starting… (recent jobs took about {expected:.0f} s)"
    jobs = f"{ahead} {'job' if ahead == 1 else 'jobs'} of other pages ahead of this one"
    return f"Waiting for the device: {jobs}" + (
        f", about {expected:.0f} s until this one is done." if expected else "."
    )


def _friendly(error: BaseException, session: studio.Session | None = None) -> gr.Error:
    """A message for the page: ours verbatim, anything else without a traceback (logged here). The session keeps
    it, for the status line under its button."""
    if isinstance(error, gr.Error):  # already meant for the page (e.g. a ZeroGPU quota message)
        if session is not None:
            session.last_error = str(error.message)
        return error
    if isinstance(error, DLFDError):
        message = str(error)
    else:
        log.exception("unexpected error", exc_info=error)
        message = f"Something went wrong ({type(error).__name__}); it is in the server's log. Try again."
    if session is not None:
        session.last_error = message
    return gr.Error(message)


def _file_path(item: Any) -> str:
    """The server path of a file Gradio handed to a handler (a path string, or an object with ``.name``/``path``)."""
    if isinstance(item, str):
        return item
    path = getattr(item, "path", None) or getattr(item, "name", None)
    if isinstance(item, dict):
        path = item.get("path") or item.get("name")
    if not isinstance(path, str):
        raise DLFDError("An uploaded file came without a name; upload the photos again.")
    return path


def _progress(progress: gr.Progress, every: float = 0.25) -> Callable[[float, str], None]:
    """Forward progress to the page at most every ``every`` seconds (or when the stage changes)."""
    last = {"time": 0.0, "message": None}

    def update(fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if message == last["message"] and now - last["time"] < every and fraction < 1.0:
            return
        last["time"], last["message"] = now, message
        progress(min(max(fraction, 0.0), 1.0), desc=message or None)

    return update


def _upload_folder() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def _track(session: studio.Session | None, paths: list[str]) -> None:
    """Hand the session the photos Gradio received for it, so that they are deleted when it ends, enrolled or not."""
    if session is None:
        return
    root = _upload_folder()
    for path in paths:
        resolved = Path(path).resolve()
        if resolved.is_relative_to(root):  # anything else is not an upload (and is never deleted)
            # Gradio names an upload by its content: two pages that upload the same photo share the file
            session.track_upload(resolved, shared=True)


def _uploads(session: studio.Session, paths: list[str]) -> list[Path]:
    """The photos to enrol: files this session received as uploads, or its own example copies.

    A path named by a hand-made request is refused (neither read nor deleted) unless it is in Gradio's upload folder
    and no other session received it, or in this session's example folder. More than
    :data:`~dlfd_core.studio.MAX_UPLOAD_PHOTOS` are refused before any is read; this session's copies are deleted.
    """
    root, example = _upload_folder(), (session.folder / "example").resolve()
    photos, refused = [], []
    for path in dict.fromkeys(paths):  # the same file named twice is one photo
        if not isinstance(path, str) or not path.strip():
            raise DLFDError("An uploaded file came without a name; upload the photos again.")
        resolved = Path(path).resolve()
        if resolved.is_relative_to(example):
            photos.append(resolved)
        elif resolved.is_relative_to(root) and (session.owns_upload(resolved) or session.track_upload(resolved)):
            photos.append(resolved)
        else:
            refused.append(Path(path).name)
    if refused:
        raise DLFDError(f"'{refused[0]}' is not one of this page's uploads; upload the photos again.")
    if len(photos) > studio.MAX_UPLOAD_PHOTOS:
        for photo in photos:
            if not photo.is_relative_to(example):
                session.release_upload(photo)
        raise DLFDError(
            f"{len(photos)} photos chosen; at most {studio.MAX_UPLOAD_PHOTOS} are accepted. They were deleted from the "
            "server; choose at most that many."
        )
    return photos


def _gallery_files(folder: Path, crops: list[np.ndarray], captions: list[str], names: list[str]) -> list[tuple]:
    """Write crops as PNG files into a served folder; (path, caption) pairs for a gallery."""
    from PIL import Image

    items = []
    for crop, caption, name in zip(crops, captions, names, strict=True):
        path = folder / f"{name}.png"
        Image.fromarray(crop).save(path)
        items.append((str(path), caption))
    return items


def _bundled_gallery(workspace: studio.Workspace) -> list[tuple]:
    """The known people's faces (public crops of the bundled dataset), written once per process."""
    folder = SESSIONS_ROOT / "_bundled" / workspace.bundle.name
    folder.mkdir(parents=True, exist_ok=True)
    crops, names = zip(*workspace.gallery(), strict=True)
    return _gallery_files(folder, list(crops), [studio.display_name(n) for n in names], list(names))


def _people_choices(identities: Any) -> list[tuple[str, str]]:
    """Dropdown choices: (name as shown, identity)."""
    return [(studio.display_name(i), i) for i in identities]


class Workspaces:
    """The bundled workspaces this process has loaded, each loaded once, on first use (thread-safe)."""

    def __init__(self, first: studio.Workspace) -> None:
        self._loaded = {first.bundle.name: first}
        self._galleries: dict[str, list[tuple]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, progress: Callable[[float, str], None] = lambda f, m="": None) -> studio.Workspace:
        bundle(name)  # an unknown name is refused before any lock is taken
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = studio.load_workspace(name, device=HOST_DEVICE, progress=progress, background=True)
            return self._loaded[name]

    def gallery(self, workspace: studio.Workspace) -> list[tuple]:
        with self._lock:
            name = workspace.bundle.name
            if name not in self._galleries:
                self._galleries[name] = _bundled_gallery(workspace)
            return self._galleries[name]


def _image_paths(session: studio.Session, crops: list[np.ndarray], captions: list[str], tag: str) -> list[tuple]:
    """Write crops into the session's folder (served from there, deleted with it) for a gallery."""
    folder = session.folder / "images"
    folder.mkdir(exist_ok=True)
    return _gallery_files(folder, crops, captions, [f"{tag}_{i:03d}" for i in range(len(crops))])


def _as_sent(payload: Any) -> Any:
    return payload


def _number(*args: Any, **kwargs: Any) -> gr.Number:
    """A number field whose value reaches the handler as sent, for the app's own checks (:func:`_seed`, :func:`_typed`),
    whose messages name the field: Gradio's would round 2.5 to 2 and fail on text or NaN without a message. Set on
    the instance: Gradio writes a ``.pyi`` file beside any module that subclasses one of its components."""
    field = gr.Number(*args, **kwargs)
    field.preprocess = _as_sent  # type: ignore[method-assign]
    return field


# ------------------------------------------------------------------------------------------------- page
INTRO = """# DLFD Studio
Make a face-recognition model **forget a person**, and check that it really did: against a "gold" model retrained
without them, with membership attacks and the embedding. Pick people below (or upload your own face set), choose a
method (DLFD, Choi & Na 2024, by default), and run.

**Model:** {description}
"""


@dataclasses.dataclass(eq=False, repr=False)
class Page:
    """The page's components, by what they are (:func:`_layout` creates them; the handlers return values keyed by
    them, so a handler says what it changes by name, never by position)."""

    session_state: gr.State
    pending: gr.State
    intro: gr.Markdown
    dataset_choice: gr.Radio
    people: gr.Gallery
    forget_who: gr.Dropdown
    enrol_name: gr.Textbox
    example_button: gr.Button
    enrol_files: gr.File
    webcam: gr.Image
    add_photo: gr.Button
    photo_count: gr.Markdown
    enrol_button: gr.Button
    enrol_status: gr.Markdown
    enrol_failures: gr.Markdown
    enrol_crops: gr.HTML
    enrol_held: gr.HTML
    method: gr.Dropdown
    method_info: gr.Markdown
    seed: gr.Number
    with_gold: gr.Checkbox
    run_button: gr.Button
    cancel_button: gr.Button
    run_status: gr.Markdown
    verdict: gr.Markdown
    cards: gr.HTML
    predictions: gr.HTML
    plot_embedding: gr.Plot
    plot_attack: gr.Plot
    runs_table: gr.Dataframe
    plot_runs: gr.Plot
    downloads: gr.File

    @property
    def results(self) -> list[gr.components.Component]:
        """What a run shows (cleared when a new run is booked)."""
        return [self.verdict, self.cards, self.predictions, self.plot_embedding, self.plot_attack, self.downloads]

    @property
    def enrolment_outputs(self) -> list[gr.components.Component]:
        """What an enrolment changes."""
        return [
            self.enrol_status,
            self.enrol_crops,
            self.enrol_failures,
            self.enrol_held,
            self.forget_who,
            self.people,
            self.enrol_files,
            self.pending,
        ]


@dataclasses.dataclass(eq=False, repr=False)
class App:
    """What the handlers share: the page, the workspaces this process loaded, the one the page opens with."""

    page: Page  # set by _layout
    workspaces: Workspaces
    workspace: studio.Workspace
    #: where runs go, in words, when not this process's device (ZeroGPU)
    where: str | None = None

    def intro(self, workspace: studio.Workspace) -> str:
        return INTRO.format(description=workspace.describe(self.where))

    def gallery(self, workspace: studio.Workspace, enrolled: tuple[str, str] | None = None) -> list[tuple]:
        """The known people; an enrolled face is served from its session's folder, never Gradio's shared cache."""
        bundled = self.workspaces.gallery(workspace)
        return [*bundled, enrolled] if enrolled else list(bundled)


# ------------------------------------------------------------------------------------------------- handlers
# Each handler is a module-level function of the page's inputs (the App first, bound by _bind) that
# returns {component: value} for what it changes, so each can be called and checked without a browser.


def _register(session: studio.Session, request: gr.Request) -> None:
    key = getattr(request, "session_hash", None)
    owner = _cookie(getattr(request, "headers", None))
    with _LOCK:
        if key:
            _LIVE[key] = session
        if owner:
            _OWNERS[session.folder.name] = owner


def close_session(session: studio.Session | None) -> None:
    """The one clean-up path of a session (the page closed, its state expired, or the page switched data): its job
    is stopped and unbooked, its folder and uploads deleted, and it is forgotten by the server's tables. Idempotent:
    Gradio may report the end of one page twice (unload and state expiry)."""
    if session is None:
        return
    with _LOCK:
        for key in [k for k, s in _LIVE.items() if s is session]:
            del _LIVE[key]
        _OWNERS.pop(session.folder.name, None)
    JOBS.done(session)
    session.close()


def start(app: App, request: gr.Request) -> studio.Session:
    """A page opened: its own session on the default workspace."""
    session = studio.Session.start(app.workspace, SESSIONS_ROOT)
    _register(session, request)
    return session


def end(request: gr.Request) -> None:
    """A page closed."""
    with _LOCK:
        session = _LIVE.get(getattr(request, "session_hash", None))
    close_session(session)


def switch(
    app: App,
    session: studio.Session | None,
    name: str,
    request: gr.Request,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> dict[Any, Any]:
    """Open another bundled data set and model: a fresh session on it (this page's runs and enrolment end)."""
    page = app.page
    try:
        _check_session(session)
        if name == session.workspace.bundle.name:
            return {}
        session.reserve("a change of model")
        try:
            workspace = app.workspaces.get(name, progress=_progress(progress))
        finally:
            session.release_booking("a change of model")
    except Exception as error:
        raise _friendly(error, session) from None
    fresh = studio.Session.start(workspace, SESSIONS_ROOT)
    _register(fresh, request)
    close_session(session)
    return {
        page.session_state: fresh,
        page.intro: app.intro(workspace),
        page.people: app.gallery(workspace),
        page.forget_who: gr.update(choices=_people_choices(workspace.split.known), value=[]),
        **dict.fromkeys(page.results, None),
        page.runs_table: gr.update(value=[]),
        page.plot_runs: None,
        page.run_status: f"Loaded the {workspace.bundle.title.split(':')[0]} model: choose whom it should forget.",
        page.enrol_status: "",
        page.enrol_crops: "",
        page.enrol_failures: "",
        page.enrol_held: "",
        page.enrol_files: None,
        page.pending: [],
        page.photo_count: "",
    }


def restore_choice(app: App, session: studio.Session | None) -> dict[Any, Any]:
    """After a failed switch, the chooser shows what is still loaded."""
    loaded = session.workspace if session is not None else app.workspace
    return {app.page.dataset_choice: loaded.bundle.name}


def toggle(app: App, session: studio.Session | None, chosen: list[str] | None, evt: gr.SelectData) -> dict[Any, Any]:
    """A face clicked in the gallery: select that person, or unselect them."""
    known = session.identities if session is not None else app.workspace.split.known
    chosen = list(chosen or [])
    if evt.index is not None and 0 <= int(evt.index) < len(known):
        name = known[int(evt.index)]
        chosen = [c for c in chosen if c != name] if name in chosen else [*chosen, name]
    return {app.page.forget_who: chosen}


def add_webcam(app: App, session: studio.Session | None, photo: str | None, shots: list[str]) -> dict[Any, Any]:
    if not photo:
        raise gr.Error("Take a photo with the webcam first.")
    _track(session, [photo])
    shots = [*(shots or []), photo]
    page = app.page
    return {page.webcam: None, page.pending: shots, page.photo_count: f"{len(shots)} webcam photo(s) ready to enrol."}


def track_webcam(session: studio.Session | None, photo: str | None) -> None:
    """A webcam photo arrived: it is this session's upload (deleted with it), enrolled or not."""
    _track(session, [photo] if photo else [])


def use_example(app: App, session: studio.Session | None) -> dict[Any, Any]:
    _check_session(session)
    paths = [str(p) for p in studio.example_photos(session)]
    page = app.page
    count = f"{len(paths)} example photos chosen."
    return {page.enrol_files: paths, page.enrol_name: "visitor", page.photo_count: count}


def check_photos(app: App, session: studio.Session | None, files: Any, shots: list[str] | None) -> dict[Any, Any]:
    """How many photos are waiting to be enrolled (each one is handed to the session for deletion at its end)."""
    _track(session, [_file_path(f) for f in (files or [])])
    count = len(files or []) + len(shots or [])
    return {app.page.photo_count: f"{count} {'photo' if count == 1 else 'photos'} chosen." if count else ""}


def do_enrol(
    app: App,
    session: studio.Session | None,
    name: str,
    files: Any,
    shots: list[str] | None,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> dict[Any, Any]:
    """Enrol the chosen photos as a new person (the photos are deleted once their faces are cut out)."""
    page = app.page
    photos: list[Path] = []
    try:
        _check_session(session)
        studio.check_name(name, session.workspace.split)  # before the photos are taken: a bad name deletes nothing
        photos = _uploads(session, [_file_path(f) for f in (files or [])] + list(shots or []))
        enrolment = studio.enrol(session, name, photos, progress=_progress(progress), should_stop=session.cancel.is_set)
    except CancelledError:
        return {page.enrol_status: "Enrolment cancelled; nothing changed."}
    except Exception as error:  # every failure reaches the page as a message
        if isinstance(error, TooFewFacesError) and photos:
            error = TooFewFacesError(f"{error} The photos were deleted from the server; choose them again.")
        raise _friendly(error, session) from None
    finally:
        for photo in photos:  # the faces live on as aligned crops in the session only
            session.release_upload(photo)
    JOBS.done(session, enrolment.seconds)
    face = _image_paths(session, enrolment.crops[:1], [enrolment.name], "enrolled")[0]
    failures = "\n".join(f"- **{n}**: {why}" for n, why in enrolment.failures)
    if failures:
        count = len(enrolment.failures)
        failures = f"**{count} {'photo' if count == 1 else 'photos'} without a usable face**\n{failures}"
    return {
        page.enrol_status: enrolment.summary,
        page.enrol_crops: studio.faces_html(enrolment.crops, enrolment.captions),
        page.enrol_failures: failures,
        page.enrol_held: studio.predictions_html(enrolment.predictions),
        page.forget_who: gr.update(choices=_people_choices(session.identities), value=[enrolment.name]),
        page.people: app.gallery(session.workspace, (face[0], enrolment.name)),
        page.enrol_files: None,
        page.pending: [],
    }


def method_help(name: str) -> str:
    """The method's title and the first paragraph of its docstring (which names its paper)."""
    cls = method_class(name)
    doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    return f"**{cls.title}** — {doc}"


def _job_widgets(app: App, what: str) -> tuple[gr.Markdown, gr.Button]:
    """The status line and the button of a job ("a run" or "an enrolment")."""
    page = app.page
    return (page.run_status, page.run_button) if what == "a run" else (page.enrol_status, page.enrol_button)


def book_job(app: App, what: str, session: studio.Session | None) -> dict[Any, Any]:
    """At the click, before the job waits in the queue: book the session (a second click is refused, Cancel counts
    from now), clear a run's old results, show the expected wait, disable the button."""
    try:
        _check_session(session)
        session.reserve(what)
    except Exception as error:
        raise _friendly(error, session) from None
    status, button = _job_widgets(app, what)
    cleared = dict.fromkeys(app.page.results, None) if what == "a run" else {}
    # the expected wait; Gradio's tracker shows the live queue position over it
    return {**cleared, status: _waiting_text(*JOBS.book(session)), button: gr.update(interactive=False)}


def job_failed(app: App, what: str, session: studio.Session | None) -> dict[Any, Any]:
    """A booked job's event failed (its message was shown): the status line says so, the button comes back."""
    message = session.last_error if session is not None and session.last_error else "see the message above"
    if session is not None:
        session.release_booking(what)
    status, button = _job_widgets(app, what)
    return {status: f"**The {what.split()[-1]} failed:** {message}", button: gr.update(interactive=True)}


def job_ended(app: App, what: str, session: studio.Session | None) -> dict[Any, Any]:
    """A booked job's event ended, however: a booking whose job never ran (refused, queue full) ends too."""
    if session is not None:
        JOBS.done(session)
        session.release_booking(what)
    return {_job_widgets(app, what)[1]: gr.update(interactive=True)}


def do_run(
    app: App,
    method_name: str,
    session: studio.Session | None,
    chosen: list[str] | None,
    seed: Any,
    with_gold: Any,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
    *values: Any,
) -> dict[Any, Any]:
    """Forget the chosen people with ``method_name`` at the form's ``values``; show the verdict, cards and figures."""
    page = app.page
    fields = method_class(method_name).fields_info()
    try:
        _check_session(session)
        settings = {f["name"]: _typed(f, v) for f, v in zip(fields, values, strict=True)}
        log.info("run %s with %s", method_name, settings)
        record = studio.run_forget(
            session,
            chosen or [],
            create_method(method_name, **settings),
            seed=_seed(seed),
            with_gold=read_flag(with_gold, "'Also train the gold model'"),
            progress=_progress(progress),
            should_stop=session.cancel.is_set,
            runner=RUNNER,
        )
    except CancelledError:
        return {page.run_status: "Run cancelled; nothing changed."}
    except Exception as error:
        raise _friendly(error, session) from None
    JOBS.done(session, record.seconds)
    log.info("run %s: %.1f s in all; %s", record.label, record.seconds, record.outcome.timings)
    try:
        return _run_results(page, session, record)
    except Exception as error:  # the run is recorded; a page part that cannot be drawn gets a message, not a trace
        raise _friendly(error, session) from None


def _run_results(page: Page, session: studio.Session, record: studio.RunRecord) -> dict[Any, Any]:
    """What a finished run shows: the verdict, cards, predictions, figures, the runs table and the files."""
    outputs = record.outcome.outputs
    rows = session.runs_table()
    return {
        page.verdict: record.verdict,
        page.cards: studio.cards_html(record),
        page.predictions: studio.predictions_html(record.predictions),
        page.plot_embedding: embedding_figure(outputs["before"], outputs["after"], gold=outputs.get("gold")),
        # the app forgets whole people: their non-members are the unseen people
        page.plot_attack: attack_figure(
            outputs["before"],
            outputs["after"],
            forget_mode="identity",
            gold=outputs.get("gold"),
            attack=record.attack,
        ),
        page.runs_table: gr.update(value=[_table_row(row) for row in rows]),
        page.plot_runs: runs_figure(rows),
        page.downloads: [str(path) for path in record.files.values()],
        page.run_status: f"Run {record.label} finished in {record.seconds:.1f} s.",
    }


def cancel(app: App, session: studio.Session | None) -> dict[Any, Any]:
    text = "Cancelling…" if session is not None and session.request_cancel() else "Nothing is running to cancel."
    return {app.page.run_status: text}


# ------------------------------------------------------------------------------------------------- layout and wiring
def _bind(handler: Callable[..., Any], *bound: Any) -> Callable[..., Any]:
    """``handler`` with its first arguments bound, as a function Gradio can read: its name (the event's API name),
    and the signature and type hints of the arguments left, by which Gradio passes ``gr.Request``,
    ``gr.SelectData`` and ``gr.Progress`` (a ``functools.partial`` hides the hints, so Gradio would not)."""

    @functools.wraps(handler)
    def bound_handler(*args: Any, **kwargs: Any) -> Any:
        return handler(*bound, *args, **kwargs)

    signature = inspect.signature(handler)
    bound_handler.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[len(bound) :]
    )
    return bound_handler


def _layout(app: App) -> Page:
    """Create the page's components in their places (inside a ``gr.Blocks``); no event is wired here but the
    settings form's, which is rebuilt with the method."""
    workspace = app.workspace
    session_state = gr.State(None, delete_callback=close_session)
    pending = gr.State([])
    intro_md = gr.Markdown(app.intro(workspace), elem_id="intro")
    dataset_choice = gr.Radio(
        choices=[(bundle(n).title, n) for n in bundle_names()],
        value=workspace.bundle.name,
        label="Data and model",
        info="Switching starts afresh: this page's runs and enrolled face set are dropped.",
        elem_id="dataset",
    )
    # Results first (unrendered), so the settings form's run event can name them; placed below.
    verdict = gr.Markdown(elem_id="verdict", render=False)
    cards = gr.HTML(elem_id="cards", render=False)
    predictions = gr.HTML(label="Predictions before → after (→ gold)", elem_id="predictions", render=False)
    plot_embedding = gr.Plot(label="Feature distributions", elem_id="plot-embedding", render=False)
    plot_attack = gr.Plot(label="Membership attack", elem_id="plot-attack", render=False)
    runs_table = gr.Dataframe(
        headers=[RUN_HEADERS.get(c, c) for c in RUN_COLUMNS],
        interactive=False,
        elem_id="runs-table",
        wrap=True,
        render=False,
    )
    plot_runs = gr.Plot(label="Compare runs", elem_id="plot-runs", render=False)
    downloads = gr.File(
        label="Downloads: report (JSON, Markdown) and the unlearned model (safetensors)",
        file_count="multiple",
        interactive=False,
        elem_id="downloads",
        render=False,
    )
    with gr.Row():
        with gr.Column(scale=3):
            gr.Markdown("### 1. Who should the model forget?\nClick faces to select or unselect them.")
            people = gr.Gallery(
                value=app.gallery(workspace),
                label="People the model knows",
                columns=10,
                height="auto",
                allow_preview=False,
                elem_id="identity-gallery",
            )
            forget_who = gr.Dropdown(
                choices=_people_choices(workspace.split.known),
                value=[],
                multiselect=True,
                label="People to forget",
                elem_id="forget-who",
            )
            with gr.Accordion(
                f"Or upload your own face set ({studio.MIN_ENROL_FACES}–{studio.MAX_UPLOAD_PHOTOS} photos of "
                "one person)",
                open=False,
            ):
                gr.Markdown(
                    "Your photos are used only in this browser session: faces are cut out, the photos deleted "
                    "at once, and everything else when you close the page. The model is retrained with you as "
                    "a new person, so that you can then be forgotten like anyone else. Copies of one photo are "
                    "used once, and faces that look like someone else are pointed out. With fewer than "
                    f"{studio.MIN_ATTACK_PHOTOS + 3} faces the membership attack has too few photos to judge."
                )
                enrol_name = gr.Textbox(label="Name", placeholder="e.g. me", elem_id="enrol-name")
                example_button = gr.Button(
                    "No photos at hand? Use an example face set (a person the model never saw)",
                    size="sm",
                    elem_id="enrol-example",
                )
                enrol_files = gr.File(
                    file_count="multiple", file_types=["image"], label="Photos", elem_id="enrol-files"
                )
                with gr.Row():
                    webcam = gr.Image(
                        sources=["webcam"],
                        type="filepath",
                        image_mode=None,
                        label="Or take photos",
                        elem_id="enrol-webcam",
                    )
                    add_photo = gr.Button("Add webcam photo", size="sm", elem_id="enrol-add-webcam")
                photo_count = gr.Markdown(elem_id="enrol-count")
                enrol_button = gr.Button("Enrol this person", variant="primary", elem_id="enrol-button")
                enrol_status = gr.Markdown(elem_id="enrol-status", elem_classes=["dlfd-status"])
                enrol_failures = gr.Markdown(elem_id="enrol-failures")
                gr.Markdown("**Faces found**")
                enrol_crops = gr.HTML(elem_id="enrol-crops")
                gr.Markdown("**Recognition of the held-out photos**")
                enrol_held = gr.HTML(elem_id="enrol-heldout")
        with gr.Column(scale=2):
            gr.Markdown("### 2. Method and settings")
            method = gr.Dropdown(
                choices=[(f"{method_class(n).title} ({n})", n) for n in method_names()],
                value="dlfd",
                label="Method",
                elem_id="method",
            )
            method_info = gr.Markdown(method_help("dlfd"), elem_id="method-info")
            with gr.Row():
                seed = _number(
                    0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="seed", interactive=True
                )
                with_gold = gr.Checkbox(
                    True,
                    label="Also train the gold model (retrained without them)",
                    elem_id="with-gold",
                    interactive=True,
                )
            with gr.Row():
                run_button = gr.Button("Forget", variant="primary", elem_id="run")
                cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel")
            run_status = gr.Markdown(elem_id="run-status", elem_classes=["dlfd-status"])
            page = Page(
                session_state=session_state,
                pending=pending,
                intro=intro_md,
                dataset_choice=dataset_choice,
                people=people,
                forget_who=forget_who,
                enrol_name=enrol_name,
                example_button=example_button,
                enrol_files=enrol_files,
                webcam=webcam,
                add_photo=add_photo,
                photo_count=photo_count,
                enrol_button=enrol_button,
                enrol_status=enrol_status,
                enrol_failures=enrol_failures,
                enrol_crops=enrol_crops,
                enrol_held=enrol_held,
                method=method,
                method_info=method_info,
                seed=seed,
                with_gold=with_gold,
                run_button=run_button,
                cancel_button=cancel_button,
                run_status=run_status,
                verdict=verdict,
                cards=cards,
                predictions=predictions,
                plot_embedding=plot_embedding,
                plot_attack=plot_attack,
                runs_table=runs_table,
                plot_runs=plot_runs,
                downloads=downloads,
            )
            app.page = page

            @gr.render(inputs=method)
            def settings_form(name: str) -> None:  # the form follows the method
                _settings_form(app, name)

    gr.Markdown("### 3. Results")
    verdict.render()
    cards.render()
    gr.Markdown("**Predictions before → after (→ gold)**")
    predictions.render()
    plot_embedding.render()
    plot_attack.render()
    gr.Markdown("### Runs in this session")
    runs_table.render()
    plot_runs.render()
    downloads.render()
    gr.Markdown(CREDITS, elem_id="credits")
    return page


def _settings_form(app: App, name: str) -> None:
    """The method's settings and its run event (re-rendered when the method changes): the run's method is the one
    this form was built for."""
    page = app.page
    with gr.Accordion(f"Settings of {name}", open=False, elem_id="settings"):
        values = [_field_component(f) for f in method_class(name).fields_info()]
    # the session is booked at the click, so a Cancel pressed while the run waits in the queue still counts, and a
    # second click is refused
    booked = page.run_button.click(
        _bind(book_job, app, "a run"),
        inputs=page.session_state,
        outputs=[*page.results, page.run_status, page.run_button],
        queue=False,
        api_name="book_run",
        api_visibility="undocumented",
    )
    run = booked.success(
        _bind(do_run, app, name),
        inputs=[page.session_state, page.forget_who, page.seed, page.with_gold, *values],
        outputs=[*page.results, page.runs_table, page.plot_runs, page.run_status],
        concurrency_id="device",
        concurrency_limit=1,
        show_progress_on=[page.run_status],  # one progress bar, not an animated overlay per output
        api_name="forget",
    )
    _after_job(app, run, "a run")


def _after_job(app: App, event: Any, what: str) -> None:
    """Once a booked job's event ends: on failure its message goes to the status line; in any case the booking ends
    and the button comes back."""
    common = {"inputs": app.page.session_state, "queue": False, "api_visibility": "private"}
    status, button = _job_widgets(app, what)
    event.failure(_bind(job_failed, app, what), outputs=[status, button], **common)
    event.then(_bind(job_ended, app, what), outputs=button, **common)


def _wire(app: App, demo: gr.Blocks) -> None:
    """Connect the page's events to the handlers."""
    page = app.page
    demo.load(_bind(start, app), outputs=page.session_state)
    demo.unload(end)
    page.people.select(_bind(toggle, app), inputs=[page.session_state, page.forget_who], outputs=page.forget_who)
    switching = page.dataset_choice.input(
        _bind(switch, app),
        inputs=[page.session_state, page.dataset_choice],
        outputs=[
            page.session_state,
            page.intro,
            page.people,
            page.forget_who,
            *page.results,
            page.runs_table,
            page.plot_runs,
            page.run_status,
            page.enrol_status,
            page.enrol_crops,
            page.enrol_failures,
            page.enrol_held,
            page.enrol_files,
            page.pending,
            page.photo_count,
        ],
        concurrency_id="device",
        concurrency_limit=1,
        show_progress_on=[page.run_status],
        api_name="switch_model",
    )
    switching.failure(_bind(restore_choice, app), inputs=page.session_state, outputs=page.dataset_choice, queue=False)
    page.method.change(method_help, inputs=page.method, outputs=page.method_info)
    page.add_photo.click(
        _bind(add_webcam, app),
        inputs=[page.session_state, page.webcam, page.pending],
        outputs=[page.webcam, page.pending, page.photo_count],
    )
    page.webcam.change(track_webcam, [page.session_state, page.webcam])
    page.example_button.click(
        _bind(use_example, app),
        inputs=page.session_state,
        outputs=[page.enrol_files, page.enrol_name, page.photo_count],
    )
    # preprocess=False: the handlers read the files' records themselves (_file_path); Gradio's gr.File.preprocess
    # would leave an empty temporary file per named photo, as many as a hand-made request names
    page.enrol_files.change(
        _bind(check_photos, app),
        inputs=[page.session_state, page.enrol_files, page.pending],
        outputs=page.photo_count,
        preprocess=False,
    )
    booked = page.enrol_button.click(
        _bind(book_job, app, "an enrolment"),
        inputs=page.session_state,
        outputs=[page.enrol_status, page.enrol_button],
        queue=False,
        api_name="book_enrolment",
        api_visibility="undocumented",
    )
    enrolling = booked.success(
        _bind(do_enrol, app),
        inputs=[page.session_state, page.enrol_name, page.enrol_files, page.pending],
        outputs=page.enrolment_outputs,
        concurrency_id="device",
        concurrency_limit=1,
        show_progress_on=[page.enrol_status],
        api_name="enrol",
        preprocess=False,
    )
    _after_job(app, enrolling, "an enrolment")
    page.cancel_button.click(
        _bind(cancel, app),
        inputs=page.session_state,
        outputs=page.run_status,
        queue=False,
        api_name="cancel",
    )


def build_demo(workspace: studio.Workspace | None = None) -> gr.Blocks:
    """Build the page on a loaded workspace (the bundled default when omitted): lay it out, then wire it."""
    if workspace is None:
        workspace = (
            _PRELOAD.result()
            if _PRELOAD is not None
            else studio.load_workspace(DEFAULT_DATASET, device=HOST_DEVICE, background=True)
        )
    SESSIONS_ROOT.mkdir(parents=True, exist_ok=True)
    # session folders an earlier run of the server left (after a crash); nothing else in the folder is touched
    studio.remove_stale_sessions(SESSIONS_ROOT)
    gr.set_static_paths([str(SESSIONS_ROOT)])
    workspaces = Workspaces(workspace)
    # on ZeroGPU this process has no GPU; each run gets one (enrolment trains here, on the CPU)
    where = "ZeroGPU GPU, one run at a time (enrolment trains on the CPU)" if ZERO_GPU else None
    with gr.Blocks(title="DLFD Studio", delete_cache=(600, 1800)) as demo:
        app = App(page=None, workspaces=workspaces, workspace=workspace, where=where)  # type: ignore[arg-type]
        _layout(app)
        _wire(app, demo)
    return demo


def _check_session(session: studio.Session | None) -> None:
    if session is None:
        raise DLFDError("The page is still starting (or its session expired); wait a moment or reload the page.")
    session.check_open()


def _field_component(info: dict[str, Any]) -> gr.components.Component:
    """One form field for a method setting; the method itself checks ranges (its message names the setting)."""
    label, default = info["name"], info["default"]
    limits = [f"{word} {info[key]}" for key, word in (("min", "min"), ("max", "max")) if info.get(key) is not None]
    shown_default = f"default {info['display']}" if info.get("display") else ""
    help_text = "; ".join(part for part in (info.get("help") or "", shown_default, *limits) if part)
    common = {"label": label, "info": help_text, "interactive": True}
    if info.get("choices"):
        return gr.Dropdown(choices=list(info["choices"]), value=default, **common)
    if info["type"] == "bool":
        return gr.Checkbox(value=default, **common)
    if info["type"] == "int":
        return _number(value=default, precision=0, step=1, **common)
    if info["type"] == "float":
        step = 10.0 ** math.floor(math.log10(abs(default))) if default else 0.01
        return _number(value=default, step=step, **common)
    return gr.Textbox(value=str(default), **common)


def _seed(value: Any) -> int:
    """The run's seed from the form or a hand-made request: a whole number from 0 to :data:`MAX_SEED`."""
    if value is None or value == "":
        raise DLFDError(f"The seed is empty; give a whole number from 0 to {MAX_SEED}.")
    return check_seed(read_whole(value, "The seed"), "The seed")


def _typed(info: dict[str, Any], value: Any) -> Any:
    """A form value as the setting's type (the method's own checks give the range errors)."""
    name = info["name"]
    if value is None or value == "":
        raise DLFDError(f"Setting '{name}' is empty; its default is {info.get('display', info['default'])}.")
    what = f"Setting '{name}'"
    kind = info["type"]
    if kind == "int":
        return read_whole(value, what)
    if kind == "float":
        return read_number(value, what)
    if kind == "bool":
        return read_flag(value, what)
    if info.get("choices") and value not in info["choices"]:
        raise DLFDError(f"{what} must be one of {', '.join(map(str, info['choices']))}; got {shown(value)}.")
    return str(value)


def _unknown_endpoint(request: Any, error: Exception) -> Any:
    """A hand-made request for an API name no event has: 404 with Gradio's message, not a 500 (and a traceback)."""
    from starlette.responses import JSONResponse

    return JSONResponse({"detail": str(error)}, status_code=404)


def _table_row(row: Mapping[str, Any]) -> list[Any]:
    """A run as the runs table shows it: the cards' metrics in percent on the cards' scale (the attack named when it
    is LiRA, as on its card), seconds to one decimal."""
    cells = []
    for column in RUN_COLUMNS:
        value = row.get(column)
        if column in studio.CARD_METRICS:
            value = percent(value) + (" (LiRA)" if column == "attack_auc" and row.get("attack") == LIRA_ATTACK else "")
        elif isinstance(value, float):
            value = round(value, 1)
        cells.append(value)
    return cells


if __name__ == "__main__":
    from gradio.route_utils import FnIndexInferError
    from starlette.middleware import Middleware

    # one-time library loading (about 3 s of mostly Python work) overlaps the workspace's torch work at start-up,
    # instead of landing on the first click
    threading.Thread(target=studio.warm_up, name="warm-up", daemon=True).start()
    build_demo().queue(default_concurrency_limit=1, max_size=MAX_QUEUE).launch(
        server_name=os.environ.get("DLFD_HOST", os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")),
        server_port=int(os.environ.get("DLFD_PORT", os.environ.get("GRADIO_SERVER_PORT", "7860"))),
        css=CSS,
        max_file_size=MAX_FILE_SIZE,
        app_kwargs={
            "middleware": [Middleware(SessionFileGuard)],
            "exception_handlers": {FnIndexInferError: _unknown_endpoint},
        },
    )
