"""The web app builds on the bundled default and shows every known identity."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_identity_gallery_has_one_face_per_person(orl_aligned):
    import app

    items = app.identity_gallery(orl_aligned)
    assert len(items) == 40
    crop, caption = items[0]
    assert crop.shape == (150, 150, 3)
    assert caption == "s1 · 10 photos"


def test_build_demo_returns_blocks(orl_aligned):
    import gradio as gr

    import app

    demo = app.build_demo()
    assert isinstance(demo, gr.Blocks)
