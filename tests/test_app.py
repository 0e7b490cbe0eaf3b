"""The Gradio layer: the page builds on the bundled default, and settings forms turn into typed method settings."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

import app
from dlfd_core import studio
from dlfd_core.errors import DLFDError
from dlfd_core.evaluate.attacks import LIRA_ATTACK
from dlfd_core.unlearn import create_method, method_class, method_names


@pytest.mark.slow
def test_build_demo_returns_blocks(orl_aligned):
    demo = app.build_demo()
    assert isinstance(demo, gr.Blocks)
    ids = {block.elem_id for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    assert {"identity-gallery", "forget-who", "method", "run", "cancel", "verdict", "cards"} <= ids
    assert {"plot-embedding", "plot-attack", "plot-runs", "runs-table", "downloads", "enrol-files"} <= ids


@pytest.mark.parametrize("name", method_names())
def test_every_method_form_gives_back_its_defaults(name):
    fields = method_class(name).fields_info()
    values = [app._field_component(f).value for f in fields]
    settings = {f["name"]: app._typed(f, v) for f, v in zip(fields, values, strict=True)}
    assert create_method(name, **settings).settings() == create_method(name).settings()


def test_form_values_are_typed_or_refused():
    info = {"name": "epochs", "type": "int", "default": 1}
    assert app._typed(info, 3.0) == 3
    with pytest.raises(DLFDError, match="Setting 'epochs' must be a whole number"):
        app._typed(info, 2.5)
    with pytest.raises(DLFDError, match="empty"):
        app._typed(info, None)
    assert app._typed({"name": "lr", "type": "float", "default": 0.1}, "0.5") == 0.5
    with pytest.raises(DLFDError, match="Setting 'lr' must be a finite number"):
        app._typed({"name": "lr", "type": "float", "default": 0.1}, "fast")


def _stub_workspace():
    from types import SimpleNamespace

    return SimpleNamespace(aligned=None, split=None, model=None, outputs=None, upload_owners=studio.UploadOwners())


def test_only_this_sessions_uploads_are_read_or_deleted(tmp_path):
    """A path the client names outside Gradio's upload folder, or an upload another session received, is refused
    and left in place; this session's own uploads and example copies are accepted."""
    from gradio.utils import get_upload_folder

    workspace = _stub_workspace()
    mine, theirs = (studio.Session.start(workspace, tmp_path / "sessions") for _ in range(2))
    elsewhere = tmp_path / "other_session" / "enrol_000.png"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"x")
    with pytest.raises(DLFDError, match="not one of this page's uploads"):
        app._uploads(mine, [str(elsewhere)])
    assert elsewhere.exists()
    folder = Path(get_upload_folder()) / "test_upload_check"
    folder.mkdir(parents=True, exist_ok=True)
    upload, other = folder / "me.png", folder / "them.png"
    for path in (upload, other):
        path.write_bytes(b"x")
    app._track(theirs, [str(other)])
    with pytest.raises(DLFDError, match="'them.png' is not one of this page's uploads"):
        app._uploads(mine, [str(other)])
    mine.release_upload(other.resolve())  # not ours: left alone
    assert other.exists() and theirs.owns_upload(other.resolve())
    example = mine.folder / "example" / "example_01.png"
    assert app._uploads(mine, [str(upload), str(example), str(upload)]) == [upload.resolve(), example.resolve()]
    assert mine.owns_upload(upload.resolve())
    app._track(mine, [str(elsewhere)])  # outside the upload folder: never handed over for deletion
    assert not mine.owns_upload(elsewhere.resolve())
    shared = folder / "same_photo.png"  # the same photo uploaded by both pages: Gradio gives both one file
    shared.write_bytes(b"y")
    app._track(theirs, [str(shared)])
    app._track(mine, [str(shared)])
    assert app._uploads(mine, [str(shared)]) == [shared.resolve()]
    mine.release_upload(shared.resolve())  # enrolled here: the other page still holds it
    assert shared.exists() and theirs.owns_upload(shared.resolve())
    mine.close()
    assert not upload.exists() and other.exists() and shared.exists()
    theirs.close()
    assert not other.exists() and not shared.exists()


def test_more_photos_than_allowed_are_refused_before_any_is_read(tmp_path):
    from gradio.utils import get_upload_folder

    session = studio.Session.start(_stub_workspace(), tmp_path / "sessions")
    folder = Path(get_upload_folder()) / "test_upload_many"
    paths = []
    for i in range(studio.MAX_UPLOAD_PHOTOS + 1):
        path = folder / f"{i}" / "p.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        paths.append(str(path))
    with pytest.raises(DLFDError, match=f"{studio.MAX_UPLOAD_PHOTOS + 1} photos chosen; at most"):
        app._uploads(session, paths)
    assert not any(Path(p).exists() for p in paths)  # this session's copies are deleted, nothing kept
    session.close()


def test_a_session_deletes_its_uploads_when_it_ends(tmp_path):
    """Uploads outside the session folder (chosen but never enrolled) go when the session closes; after it closed,
    a late upload is deleted at once."""
    session = studio.Session.start(_stub_workspace(), tmp_path / "sessions")
    kept = tmp_path / "cache" / "a" / "kept.png"
    uploads = [tmp_path / "cache" / name / "photo.png" for name in ("b", "c")]
    for path in (kept, *uploads):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    for path in uploads:
        session.track_upload(path)
    session.release_upload(uploads[0])  # enrolled: deleted at once, and no longer the session's to delete
    assert not uploads[0].exists() and uploads[0] not in session.uploads
    uploads[0].parent.mkdir()
    uploads[0].write_bytes(b"x")  # the same file uploaded again, by another session
    session.close()
    assert uploads[0].exists()
    uploads = uploads[1:]
    assert kept.exists() and not any(p.exists() or p.parent.exists() for p in uploads)
    late = tmp_path / "cache" / "d" / "late.png"
    late.parent.mkdir()
    late.write_bytes(b"x")
    session.track_upload(late)
    assert not late.exists()


@pytest.mark.slow  # builds the whole demo in a subprocess (11 s in a CI run)
def test_on_a_zerogpu_space_runs_go_through_the_gpu_decorator(tmp_path):
    """With SPACES_ZERO_GPU set, app.py imports `spaces` first, runs jobs through `spaces.GPU(execute_job)` and keeps
    its own work on the CPU although `spaces` reports CUDA (a stand-in `spaces` module records the decoration and
    patches torch.cuda.is_available like the real one; that exists only on Hugging Face)."""
    import os
    import subprocess
    import sys

    (tmp_path / "spaces.py").write_text(
        "import sys\n"
        "torch_first = 'torch' in sys.modules\n"
        "calls = []\n"
        "def GPU(duration=60):\n"
        "    import torch\n"
        "    torch.cuda.is_available = lambda: True  # what spaces does in the server process\n"
        "    def wrap(fn):\n"
        "        calls.append((fn.__module__, fn.__name__, duration))\n"
        "        return fn\n"
        "    return wrap\n"
    )
    code = (
        "import app, spaces\n"
        "assert not spaces.torch_first, 'spaces must be imported before torch'\n"
        "assert app.RUNNER is not None\n"
        "demo = app.build_demo()  # the workspace stays on the CPU (this torch has no CUDA: .to('cuda') would fail)\n"
        "assert any('ZeroGPU GPU' in str(getattr(b, 'value', '')) for b in demo.blocks.values())\n"
        "print(spaces.calls)\n"
    )
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "PYTHONPATH": f"{tmp_path}{os.pathsep}{Path.cwd()}"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "('dlfd_core.studio.runs', 'execute_job', 120)" in result.stdout


def test_the_job_board_counts_jobs_ahead_and_estimates_from_recent_ones():
    board = app.JobBoard(remember=3)
    a, b, c = object(), object(), object()
    assert board.book(a) == (0, None)  # nothing done yet: no estimate
    assert board.book(b) == (1, None)
    board.done(a, 10.0)
    board.done(b, 20.0)
    assert board.book(c) == (0, 15.0)
    assert board.book(a) == (1, 30.0)  # one job ahead: about two jobs' time until this one is done
    assert board.book(a) == (1, 30.0)  # a session books one job at a time
    board.done(c)  # refused or cancelled: no duration recorded
    assert board.book(b) == (1, 30.0)
    assert "1 job of other pages ahead" in app._waiting_text(1, 30.0) and "about 30 s" in app._waiting_text(1, 30.0)
    assert app._waiting_text(0, None) == "Starting…"


# ---------------------------------------------------------------------------------------------------------------------
# the handlers, called as Gradio calls them, without a browser


@pytest.fixture(scope="module")
def page_app(tmp_path_factory):
    """The page's App on the bundled default: its components laid out in a Blocks, its handlers unbound."""
    workspace = studio.load_workspace("orl")
    with gr.Blocks():
        ctx = app.App(page=None, workspaces=app.Workspaces(workspace), workspace=workspace)
        app._layout(ctx)
    return ctx


def _no_progress(*args, **kwargs):
    return None


def test_a_run_from_booking_to_results_through_the_handlers(page_app, tmp_path):
    page = page_app.page
    session = studio.Session.start(page_app.workspace, tmp_path)
    try:
        booked = app.book_job(page_app, "a run", session)
        assert booked[page.run_button] == gr.update(interactive=False)
        assert booked[page.verdict] is None and booked[page.run_status].startswith("Starting")
        with pytest.raises(gr.Error, match="already waiting or running"):  # a second click
            app.book_job(page_app, "a run", session)
        fields = method_class("class_reset").fields_info()
        out = app.do_run(
            page_app, "class_reset", session, ["s7"], 0, False, _no_progress, *(f["default"] for f in fields)
        )
        assert out[page.verdict].startswith("**s7: not judged.**")
        assert "data-metric='forget_train_acc'" in out[page.cards]
        # one attack scale: the card's AUC (with its interval over photos) is the figure's, and the page says how
        # to read it
        assert "data-metric='attack_auc'" in out[page.cards] and "class='dlfd-ci'" in out[page.cards]
        assert studio.SCALE_NOTE in out[page.cards]
        after = session.runs[0].outcome.reports["after"]
        assert after.meta["attack"] == LIRA_ATTACK  # the bundled model ships its reference statistics
        assert "Membership attack (AUC), LiRA" in out[page.cards]
        roc = [t.name for t in out[page.plot_attack].data if t.name and t.name.startswith("Unlearned: AUC")]
        assert roc == [f"Unlearned: AUC {after.metrics['attack_auc']:.0%} (LiRA)"]
        assert out[page.run_status].startswith("Run #1 class_reset finished")
        assert len(out[page.runs_table]["value"]) == 1 and len(out[page.downloads]) == 3
        assert app.job_ended(page_app, "a run", session) == {page.run_button: gr.update(interactive=True)}
        assert session.job is None
        assert app.cancel(page_app, session) == {page.run_status: "Nothing is running to cancel."}
    finally:
        app.close_session(session)


def test_a_bad_setting_is_a_message_and_leaves_the_session_as_it_was(page_app, tmp_path):
    page = page_app.page
    session = studio.Session.start(page_app.workspace, tmp_path)
    try:
        app.book_job(page_app, "a run", session)
        values = [f["default"] for f in method_class("finetune").fields_info()]
        values[[f["name"] for f in method_class("finetune").fields_info()].index("lr")] = -1
        with pytest.raises(gr.Error, match="lr"):
            app.do_run(page_app, "finetune", session, ["s7"], 0, False, _no_progress, *values)
        failed = app.job_failed(page_app, "a run", session)
        assert failed[page.run_status].startswith("**The run failed:**") and "lr" in failed[page.run_status]
        assert failed[page.run_button] == gr.update(interactive=True)
        assert session.runs == [] and session.job is None
    finally:
        app.close_session(session)


def test_selecting_faces_toggles_people_and_closing_a_session_is_one_idempotent_path(page_app, tmp_path):
    from types import SimpleNamespace

    page = page_app.page
    session = studio.Session.start(page_app.workspace, tmp_path)
    known = session.identities
    chosen = app.toggle(page_app, session, [], SimpleNamespace(index=2))[page.forget_who]
    assert chosen == [known[2]]
    assert app.toggle(page_app, session, chosen, SimpleNamespace(index=2))[page.forget_who] == []
    assert app.toggle(page_app, session, chosen, SimpleNamespace(index=999))[page.forget_who] == chosen
    request = SimpleNamespace(session_hash="hash-of-this-test", headers={})
    app._register(session, request)
    assert app._LIVE["hash-of-this-test"] is session
    app.end(request)  # the page closed
    assert "hash-of-this-test" not in app._LIVE and not session.folder.exists()
    app.close_session(session)  # and its state expired: nothing left to do, no error
    with pytest.raises(gr.Error, match="session has ended"):
        app.book_job(page_app, "a run", session)


def test_bound_handlers_keep_their_name_and_the_arguments_gradio_fills(page_app):
    import inspect

    bound = app._bind(app.switch, page_app)
    assert bound.__name__ == "switch"
    assert list(inspect.signature(bound).parameters) == ["session", "name", "request", "progress"]
    from gradio.utils import get_type_hints

    assert get_type_hints(bound)["request"] is gr.Request
