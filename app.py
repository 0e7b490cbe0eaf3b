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

import concurrent.futures
import functools
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
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

# Where this process computes (the workspace, enrolment). On ZeroGPU it must stay on the CPU: `spaces` makes
# torch.cuda.is_available() true in the server process, but CUDA exists only inside a spaces.GPU call.
HOST_DEVICE = "cpu" if ZERO_GPU else None

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    # Start loading the bundled default (faces, model, outputs: torch work, which releases the GIL) before Gradio and
    # plotly are imported (Python work), so the two overlap at start-up; build_demo() waits for it.
    _PRELOAD: concurrent.futures.Future[studio.Workspace] | None = concurrent.futures.ThreadPoolExecutor(
        1, thread_name_prefix="workspace"
    ).submit(studio.load_workspace, device=HOST_DEVICE)
else:
    _PRELOAD = None

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from dlfd_core.errors import CancelledError, DLFDError  # noqa: E402
from dlfd_core.unlearn import create_method, method_class, method_names  # noqa: E402
from dlfd_core.viz import attack_figure, embedding_figure, runs_figure  # noqa: E402

log = logging.getLogger("dlfd_studio")

SESSIONS_ROOT = Path(os.environ.get("DLFD_SESSIONS_DIR", Path(tempfile.gettempdir()) / "dlfd-studio-sessions"))
RUN_COLUMNS = ["run", "forgot", "method", "settings", "seed", "device", *(m for m, _, _ in studio.CARD_METRICS)]
RUN_COLUMNS += ["unlearn_seconds", "total_seconds"]

# How a run executes: on a ZeroGPU Space through its decorator (the job is pickled into the GPU worker process, and
# the outcome back; the duration allows the slowest default run, a method plus the gold model, with room, and
# ZeroGPU charges the quota by actual use); everywhere else in this process, with progress and Cancel.
ZERO_GPU_SECONDS = 120
RUNNER: studio.JobRunner | None = spaces.GPU(duration=ZERO_GPU_SECONDS)(studio.execute_job) if ZERO_GPU else None


# ------------------------------------------------------------------------------------------------- sessions
_LIVE: dict[str, studio.Session] = {}  # session hash -> session, to clean up when the page closes
_LOCK = threading.Lock()


def _close(session: studio.Session | None) -> None:
    if session is not None:
        session.close()


def _friendly(error: BaseException) -> gr.Error:
    """A message for the page: ours verbatim, anything else without a traceback (logged here)."""
    if isinstance(error, DLFDError):
        return gr.Error(str(error))
    log.exception("unexpected error", exc_info=error)
    return gr.Error(f"Something went wrong ({type(error).__name__}); it is in the server's log. Try again.")


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
            session.track_upload(resolved)


def _uploads(session: studio.Session, paths: list[str]) -> list[Path]:
    """The photos to enrol, each one a file Gradio received as an upload or this session's example copy.

    Anything else (a path under the served folders sent by a hand-made request) is refused: it is neither read nor
    deleted.
    """
    allowed = (_upload_folder(), (session.folder / "example").resolve())
    photos = []
    for path in paths:
        resolved = Path(path).resolve()
        if not any(resolved.is_relative_to(root) for root in allowed):
            raise DLFDError(f"'{Path(path).name}' is not an uploaded file; upload the photos again.")
        photos.append(resolved)
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
    """The known people's faces (public ORL crops), written once per process."""
    folder = SESSIONS_ROOT / "_bundled"
    folder.mkdir(parents=True, exist_ok=True)
    crops, names = zip(*workspace.gallery(), strict=True)
    return _gallery_files(folder, list(crops), list(names), list(names))


def _image_paths(session: studio.Session, crops: list[np.ndarray], captions: list[str], tag: str) -> list[tuple]:
    """Write crops into the session's folder (served from there, deleted with it) for a gallery."""
    folder = session.folder / "images"
    folder.mkdir(exist_ok=True)
    return _gallery_files(folder, crops, captions, [f"{tag}_{i:03d}" for i in range(len(crops))])


# ------------------------------------------------------------------------------------------------- page
INTRO = """# DLFD Studio
Make a face-recognition model **forget a person**, and check that it really did: against a "gold" model retrained
without them, with membership attacks and the embedding. Pick people below (or upload your own face set), choose a
method (DLFD, Choi & Na 2024, by default), and run.

**Model:** {description}
"""


def build_demo(workspace: studio.Workspace | None = None) -> gr.Blocks:
    """Build the page on a loaded workspace (the bundled default when omitted)."""
    if workspace is None:
        workspace = _PRELOAD.result() if _PRELOAD is not None else studio.load_workspace(device=HOST_DEVICE)
    SESSIONS_ROOT.mkdir(parents=True, exist_ok=True)
    for stale in SESSIONS_ROOT.iterdir():  # sessions of an earlier run of the server (e.g. after a crash)
        if stale.is_dir() and stale.name != "_bundled":
            shutil.rmtree(stale, ignore_errors=True)
    gr.set_static_paths([str(SESSIONS_ROOT)])
    names = method_names()

    def start(request: gr.Request):
        session = studio.Session.start(workspace, SESSIONS_ROOT)
        key = getattr(request, "session_hash", None)
        if key:
            with _LOCK:
                _LIVE[key] = session
        return session

    def end(request: gr.Request):
        key = getattr(request, "session_hash", None)
        with _LOCK:
            session = _LIVE.pop(key, None)
        _close(session)

    bundled = _bundled_gallery(workspace)

    def gallery_items(enrolled: tuple[str, str] | None = None):
        """The known people; an enrolled face is served from its session's folder, never Gradio's shared cache."""
        return [*bundled, enrolled] if enrolled else list(bundled)

    def toggle(session: studio.Session, chosen: list[str] | None, evt: gr.SelectData):
        known = session.identities if session is not None else workspace.split.known
        chosen = list(chosen or [])
        if evt.index is None or not 0 <= int(evt.index) < len(known):
            return chosen
        name = known[int(evt.index)]
        return [c for c in chosen if c != name] if name in chosen else [*chosen, name]

    def add_webcam(session, photo: str | None, pending: list[str]):
        if not photo:
            raise gr.Error("Take a photo with the webcam first.")
        _track(session, [photo])
        pending = [*pending, photo]
        return None, pending, f"{len(pending)} webcam photo(s) ready to enrol."

    def do_enrol(session, name, files, pending, progress=gr.Progress()):  # noqa: B008
        try:
            _check_session(session)
            photos = _uploads(session, [str(f) for f in (files or [])] + list(pending or []))
        except Exception as error:
            raise _friendly(error) from None
        try:
            enrolment = studio.enrol(
                session,
                name,
                photos,
                device=HOST_DEVICE or studio.default_device(),
                progress=_progress(progress),
                should_stop=session.cancel.is_set,
            )
        except CancelledError:
            return ("Enrolment cancelled; nothing changed.",) + (gr.skip(),) * 5 + (None, [])
        except Exception as error:  # every failure reaches the page as a message
            if isinstance(error, DLFDError) and "usable faces" in str(error):
                error = DLFDError(f"{error} The photos were deleted from the server; choose them again.")
            raise _friendly(error) from None
        finally:
            for photo in photos:  # the faces live on as aligned crops in the session only
                session.release_upload(photo)
        crops = _image_paths(session, enrolment.crops, [f"face {i + 1}" for i in range(len(enrolment.crops))], "enrol")
        held = _image_paths(
            session, [p.crop for p in enrolment.predictions], [p.caption for p in enrolment.predictions], "heldout"
        )
        failures = "\n".join(f"- **{n}**: {why}" for n, why in enrolment.failures)
        failures = f"**Photos without a usable face ({len(enrolment.failures)})**\n{failures}" if failures else ""
        who = gr.update(choices=list(session.identities), value=[enrolment.name])
        people_items = gallery_items((crops[0][0], enrolment.name))
        return enrolment.summary, crops, failures, held, who, people_items, None, []

    def use_example(session):
        paths = [str(p) for p in studio.example_photos(session)]
        return paths, "visitor", f"{len(paths)} example photos chosen."

    def check_photos(session, files, pending):
        """How many photos are waiting to be enrolled (each one is handed to the session for deletion at its end)."""
        _track(session, [str(f) for f in (files or [])])
        return f"{len(files or []) + len(pending or [])} photo(s) chosen." if files or pending else ""

    def method_help(name: str) -> str:
        cls = method_class(name)
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        return f"**{cls.title}** — {cls.paper}. {doc}"

    def do_run(method_name, session, chosen, seed, with_gold, progress=gr.Progress(), *values):  # noqa: B008
        fields = method_class(method_name).fields_info()
        try:
            _check_session(session)
            if seed is None or seed < 0 or seed != int(seed):
                raise DLFDError("The seed must be a whole number, 0 or more.")
            settings = {f["name"]: _typed(f, v) for f, v in zip(fields, values, strict=True)}
            log.info("run %s with %s", method_name, settings)
            method = create_method(method_name, **settings)
            record = studio.run_forget(
                session,
                chosen or [],
                method,
                seed=int(seed),
                with_gold=bool(with_gold),
                progress=_progress(progress),
                should_stop=session.cancel.is_set,
                runner=RUNNER,
            )
        except CancelledError:
            return (gr.skip(),) * 8 + ("Run cancelled; nothing changed.",)
        except Exception as error:
            raise _friendly(error) from None
        log.info("run %s: %.1f s in all; %s", record.label, record.seconds, record.outcome.timings)
        outputs = record.outcome.outputs
        predictions = _image_paths(
            session,
            [p.crop for p in record.predictions],
            [p.caption for p in record.predictions],
            f"run{record.number:02d}",
        )
        rows = session.runs_table()
        table = [[_cell(row.get(c)) for c in RUN_COLUMNS] for row in rows]
        files = [str(path) for path in record.files.values()]
        return (
            record.verdict,
            studio.cards_html(record),
            predictions,
            embedding_figure(outputs["before"], outputs["after"], gold=outputs.get("gold")),
            attack_figure(outputs["before"], outputs["after"], gold=outputs.get("gold")),
            table,
            runs_figure([{**row, "run": row["run"]} for row in rows]),
            files,
            f"Run {record.label} finished in {record.seconds:.1f} s.",
        )

    def cancel(session: studio.Session | None):
        if session is not None:
            session.cancel.set()
        return "Cancelling…"

    with gr.Blocks(title="DLFD Studio", delete_cache=(600, 1800)) as demo:
        session_state = gr.State(None, delete_callback=_close)
        pending = gr.State([])
        # on ZeroGPU this process has no GPU; each run gets one (enrolment trains here, on the CPU)
        where = "ZeroGPU GPU, one run at a time (enrolment trains on the CPU)" if ZERO_GPU else None
        gr.Markdown(INTRO.format(description=workspace.describe(where)), elem_id="intro")
        # Results first (unrendered), so the settings form's run event can name them; placed below.
        verdict = gr.Markdown(elem_id="verdict", render=False)
        cards = gr.HTML(elem_id="cards", render=False)
        predictions = gr.Gallery(
            label="Predictions before → after (→ gold)",
            columns=6,
            height=300,
            elem_id="predictions",
            interactive=False,
            render=False,
        )
        plot_embedding = gr.Plot(label="Feature distributions", elem_id="plot-embedding", render=False)
        plot_attack = gr.Plot(label="Membership attack", elem_id="plot-attack", render=False)
        runs_table = gr.Dataframe(headers=RUN_COLUMNS, interactive=False, elem_id="runs-table", wrap=True, render=False)
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
                    value=gallery_items(),
                    label="People the model knows",
                    columns=10,
                    height=330,
                    allow_preview=False,
                    elem_id="identity-gallery",
                )
                forget_who = gr.Dropdown(
                    choices=list(workspace.split.known),
                    value=[],
                    multiselect=True,
                    label="People to forget",
                    elem_id="forget-who",
                )
                with gr.Accordion("Or upload your own face set (5–40 photos of one person)", open=False):
                    gr.Markdown(
                        "Your photos are used only in this browser session: faces are cut out, the photos deleted "
                        "at once, and everything else when you close the page. The model is retrained with you as "
                        "a new person, so that you can then be forgotten like anyone else."
                    )
                    enrol_name = gr.Textbox(label="Name", placeholder="e.g. me", elem_id="enrol-name")
                    example_button = gr.Button(
                        "No photos at hand? Use an example face set (an ORL person the model never saw)",
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
                    enrol_status = gr.Markdown(elem_id="enrol-status")
                    enrol_failures = gr.Markdown(elem_id="enrol-failures")
                    enrol_crops = gr.Gallery(
                        label="Faces found", columns=8, height=200, elem_id="enrol-crops", interactive=False
                    )
                    enrol_held = gr.Gallery(
                        label="Recognition of the held-out photos",
                        columns=4,
                        height=220,
                        elem_id="enrol-heldout",
                        interactive=False,
                    )
            with gr.Column(scale=2):
                gr.Markdown("### 2. Method and settings")
                method = gr.Dropdown(
                    choices=[(f"{method_class(n).title} ({n})", n) for n in names],
                    value="dlfd",
                    label="Method",
                    elem_id="method",
                )
                method_info = gr.Markdown(method_help("dlfd"), elem_id="method-info")
                with gr.Row():
                    seed = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="seed", interactive=True)
                    with_gold = gr.Checkbox(
                        True,
                        label="Also train the gold model (retrained without them)",
                        elem_id="with-gold",
                        interactive=True,
                    )
                with gr.Row():
                    run_button = gr.Button("Forget", variant="primary", elem_id="run")
                    cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel")
                run_status = gr.Markdown(elem_id="run-status")

                @gr.render(inputs=method)
                def settings_form(name: str):
                    with gr.Accordion(f"Settings of {name} (paper defaults)", open=False, elem_id="settings"):
                        values = [_field_component(f) for f in method_class(name).fields_info()]
                    # the run's method is the one this form was built for; the flag is reset at the click, so a
                    # Cancel pressed while the run waits in the queue still counts
                    run_button.click(_arm, inputs=session_state, queue=False).then(
                        functools.partial(do_run, name),
                        inputs=[session_state, forget_who, seed, with_gold, *values],
                        outputs=[
                            verdict,
                            cards,
                            predictions,
                            plot_embedding,
                            plot_attack,
                            runs_table,
                            plot_runs,
                            downloads,
                            run_status,
                        ],
                        concurrency_id="device",
                        concurrency_limit=1,
                        show_progress_on=[run_status],  # one progress bar, not an animated overlay per output
                    )

        gr.Markdown("### 3. Results")
        verdict.render()
        cards.render()
        predictions.render()
        plot_embedding.render()
        plot_attack.render()
        gr.Markdown("### Runs in this session")
        runs_table.render()
        plot_runs.render()
        downloads.render()

        demo.load(start, outputs=session_state)
        demo.unload(end)
        people.select(toggle, inputs=[session_state, forget_who], outputs=forget_who)
        method.change(method_help, inputs=method, outputs=method_info)
        add_photo.click(add_webcam, inputs=[session_state, webcam, pending], outputs=[webcam, pending, photo_count])
        webcam.change(lambda session, photo: _track(session, [photo] if photo else []), [session_state, webcam])
        example_button.click(use_example, inputs=session_state, outputs=[enrol_files, enrol_name, photo_count])
        enrol_files.change(check_photos, inputs=[session_state, enrol_files, pending], outputs=photo_count)
        enrol_button.click(_arm, inputs=session_state, queue=False).then(
            do_enrol,
            inputs=[session_state, enrol_name, enrol_files, pending],
            outputs=[enrol_status, enrol_crops, enrol_failures, enrol_held, forget_who, people, enrol_files, pending],
            concurrency_id="device",
            concurrency_limit=1,
            show_progress_on=[enrol_status],
        )
        cancel_button.click(cancel, inputs=session_state, outputs=run_status, queue=False)
    return demo


def _check_session(session: studio.Session | None) -> None:
    if session is None:
        raise DLFDError("The page is still starting (or its session expired); wait a moment or reload the page.")
    session.check_open()


def _arm(session: studio.Session | None) -> None:
    """At a click: forget any earlier Cancel, so that only a Cancel pressed from now on stops the new job."""
    if session is not None:
        session.cancel.clear()


def _field_component(info: dict[str, Any]) -> gr.components.Component:
    """One form field for a method setting; the method itself checks ranges (its message names the setting)."""
    label, default = info["name"], info["default"]
    limits = [f"{word} {info[key]}" for key, word in (("min", "min"), ("max", "max")) if info.get(key) is not None]
    help_text = "; ".join([info.get("help") or "", *limits]).strip("; ")
    common = {"label": label, "info": help_text, "interactive": True}
    if info.get("choices"):
        return gr.Dropdown(choices=list(info["choices"]), value=default, **common)
    if info["type"] == "bool":
        return gr.Checkbox(value=default, **common)
    if info["type"] == "int":
        return gr.Number(value=default, precision=0, step=1, **common)
    if info["type"] == "float":
        step = 10.0 ** math.floor(math.log10(abs(default))) if default else 0.01
        return gr.Number(value=default, step=step, **common)
    return gr.Textbox(value=str(default), **common)


def _typed(info: dict[str, Any], value: Any) -> Any:
    """A form value as the setting's type (the method's own checks give the range errors)."""
    if value is None or value == "":
        raise DLFDError(f"Setting '{info['name']}' is empty; its default is {info['default']}.")
    kind = info["type"]
    try:
        if kind == "int":
            if float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind == "float":
            return float(value)
        if kind == "bool":
            return bool(value)
    except (TypeError, ValueError):
        raise DLFDError(
            f"Setting '{info['name']}' must be a{'n' if kind == 'int' else ''} {kind}, got {value!r}."
        ) from None
    return str(value)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    return value


if __name__ == "__main__":
    # one-time library loading (about 3 s of mostly Python work) overlaps the workspace's torch work at start-up,
    # instead of landing on the first click
    threading.Thread(target=studio.warm_up, name="warm-up", daemon=True).start()
    build_demo().queue(default_concurrency_limit=1).launch(
        server_name=os.environ.get("DLFD_HOST", os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")),
        server_port=int(os.environ.get("DLFD_PORT", os.environ.get("GRADIO_SERVER_PORT", "7860"))),
    )
