"""What the web app does, without the web: the bundled workspace, per-session state, enrolment, forgetting runs.

``app.py`` is a thin Gradio layer over this package (and :mod:`dlfd_core.viz` for the figures). Everything here is
plain Python and can be driven from a notebook or a test. One concept a module, each importing only those above it
in this list:

* :mod:`~dlfd_core.studio.records`: what a session keeps (:class:`Prediction`, :class:`Enrolment`,
  :class:`RunRecord`) and the headline metrics (:data:`CARD_METRICS`).
* :mod:`~dlfd_core.studio.uploads`: who holds which uploaded file (:class:`UploadOwners`).
* :mod:`~dlfd_core.studio.workspace`: :class:`Workspace`, the bundled default (faces, split, shipped model and its
  outputs on every photo), loaded once by :func:`load_workspace` and shared read-only by every session.
* :mod:`~dlfd_core.studio.session`: :class:`Session`, one person's copy of the working state (the model they forget
  from, their enrolled faces, gold models, runs, a private folder that :meth:`Session.close` deletes).
* :mod:`~dlfd_core.studio.enrolment`: :func:`enrol`, a person added from their own photos.
* :mod:`~dlfd_core.studio.presentation`: the verdict in words and the page's HTML (cards, faces, predictions).
* :mod:`~dlfd_core.studio.downloads`: the run's report (JSON, Markdown) and unlearned model, written to the folder.
* :mod:`~dlfd_core.studio.runs`: :func:`run_forget`, forgetting with a registered method, judged against the gold
  model (:class:`ForgetJob` / :func:`execute_job` may run in another process).

The models' outputs on every photo are kept by :mod:`dlfd_core.evaluate.cache`.
"""

from __future__ import annotations

from ..env import warm_up
from .downloads import report_json, report_markdown, write_downloads
from .enrolment import (
    EXAMPLE_IDENTITY,
    MAX_UPLOAD_PHOTOS,
    MIN_ENROL_FACES,
    check_name,
    enrol,
    example_photos,
    write_example_photos,
)
from .presentation import MIN_ATTACK_PHOTOS, SCALE_NOTE, cards_html, display_name, faces_html, predictions_html, verdict
from .records import CARD_METRICS, Enrolment, Prediction, RunRecord
from .runs import KEEP_FULL_RUNS, ForgetJob, JobRunner, attack_scores, execute_job, judge, run_forget
from .session import SESSION_MARKER, Session, remove_stale_sessions
from .uploads import UploadOwners, delete_upload
from .workspace import GOLD_CACHE_SIZE, GoldCache, Workspace, load_workspace

__all__ = [
    "CARD_METRICS",
    "EXAMPLE_IDENTITY",
    "GOLD_CACHE_SIZE",
    "KEEP_FULL_RUNS",
    "MAX_UPLOAD_PHOTOS",
    "MIN_ATTACK_PHOTOS",
    "MIN_ENROL_FACES",
    "SCALE_NOTE",
    "SESSION_MARKER",
    "Enrolment",
    "ForgetJob",
    "GoldCache",
    "JobRunner",
    "Prediction",
    "RunRecord",
    "Session",
    "UploadOwners",
    "Workspace",
    "attack_scores",
    "cards_html",
    "check_name",
    "delete_upload",
    "display_name",
    "enrol",
    "example_photos",
    "execute_job",
    "faces_html",
    "judge",
    "load_workspace",
    "predictions_html",
    "remove_stale_sessions",
    "report_json",
    "report_markdown",
    "run_forget",
    "verdict",
    "warm_up",
    "write_downloads",
    "write_example_photos",
]
