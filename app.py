"""DLFD Studio: the Gradio web app over ``dlfd_core``.

This first version shows the bundled default dataset (ORL, detected and aligned by the project's MTCNN)
as a gallery of the identities the model will know. Unlearning controls arrive with the unlearning issue.
Run with ``make run`` (or ``python app.py``); it works offline.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from dlfd_core.data import align_dataset, load_orl  # noqa: E402

log = logging.getLogger("dlfd_studio")

INTRO = """# DLFD Studio
Remove people from a face-recognition model, and check that it really forgot them.

The bundled default is the **ORL Database of Faces** (AT&T Laboratories Cambridge): {identities} people,
{images} photos, every face found and aligned by this project's MTCNN ({aligned} aligned, {failures} failed).
"""


def identity_gallery(aligned) -> list[tuple[np.ndarray, str]]:
    """One (crop, caption) per identity: the first aligned face and the number of photos."""
    first: dict[str, int] = {}
    counts: dict[str, int] = {}
    for index, identity in enumerate(aligned.identities):
        first.setdefault(identity, index)
        counts[identity] = counts.get(identity, 0) + 1
    return [(aligned.crops[i], f"{identity} · {counts[identity]} photos") for identity, i in first.items()]


def build_demo() -> gr.Blocks:
    """Build the page. Loads and aligns the bundled dataset once (cached on disk)."""
    dataset = load_orl()
    aligned = align_dataset(dataset)
    with gr.Blocks(title="DLFD Studio") as demo:
        gr.Markdown(
            INTRO.format(
                identities=len(dataset.identities),
                images=len(dataset),
                aligned=len(aligned.keys),
                failures=len(aligned.failures),
            )
        )
        gr.Gallery(
            value=identity_gallery(aligned),
            label="Known identities",
            columns=8,
            height="auto",
            elem_id="identity-gallery",
            allow_preview=True,
        )
    return demo


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    build_demo().queue(default_concurrency_limit=1).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
