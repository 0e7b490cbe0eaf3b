"""The Gradio layer: the page builds on the bundled default, and settings forms turn into typed method settings."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

import app
from dlfd_core.errors import DLFDError
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
    with pytest.raises(DLFDError, match="must be an int"):
        app._typed(info, 2.5)
    with pytest.raises(DLFDError, match="empty"):
        app._typed(info, None)
    assert app._typed({"name": "lr", "type": "float", "default": 0.1}, "0.5") == 0.5
    with pytest.raises(DLFDError, match="must be a float"):
        app._typed({"name": "lr", "type": "float", "default": 0.1}, "fast")


def test_only_uploaded_files_are_read_or_deleted(tmp_path):
    """A path the client names outside Gradio's upload folder (e.g. another session's files) is refused."""
    from types import SimpleNamespace

    from gradio.utils import get_upload_folder

    session = SimpleNamespace(folder=tmp_path / "session")
    elsewhere = tmp_path / "other_session" / "enrol_000.png"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"x")
    with pytest.raises(DLFDError, match="not an uploaded file"):
        app._uploads(session, [str(elsewhere)])
    assert elsewhere.exists()
    upload = Path(get_upload_folder()) / "test_upload_check" / "me.png"
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_bytes(b"x")
    example = session.folder / "example" / "example_01.png"
    assert app._uploads(session, [str(upload), str(example)]) == [upload.resolve(), example.resolve()]
    app._delete_uploads([upload.resolve()])
    assert not upload.exists() and not upload.parent.exists()
