"""One browser session's private state (its model, faces, runs and folder) and the one-job-at-a-time rule."""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..data import AlignedFaces, Split
from ..errors import BusyError, DataError
from ..evaluate.cache import KeyedOutputs
from .records import Enrolment, RunRecord

if TYPE_CHECKING:
    from ..references import PersonReferences
from .uploads import delete_upload
from .workspace import GOLD_CACHE_SIZE, GoldCache, Workspace


@dataclass(eq=False)
class Session:
    """One browser session's state. Nothing here is shared with another session.

    Attributes:
        workspace: the shared bundled default (read-only).
        folder: this session's private folder (downloads); deleted by :meth:`close`.
        aligned, split, model: what this session forgets from: the workspace's, or its own after :func:`enrol`.
        own_outputs: ``model``'s outputs on every photo once this session has its own model (an enrolment);
            ``None`` while it uses the workspace's (see :attr:`outputs`).
        enrolment: the enrolled face set, if any.
        runs: every run, oldest first.
        uploads: files this session received outside its folder (a web framework's upload copies): deleted by
            :meth:`close` too, also the ones never enrolled.
    """

    workspace: Workspace
    folder: Path
    aligned: AlignedFaces
    split: Split
    model: nn.Module
    own_outputs: KeyedOutputs | None = None
    enrolment: Enrolment | None = None
    runs: list[RunRecord] = field(default_factory=list)
    gold_cache: GoldCache = field(default_factory=lambda: GoldCache(GOLD_CACHE_SIZE))
    cancel: threading.Event = field(default_factory=threading.Event)
    uploads: set[Path] = field(default_factory=set)
    job: str | None = None
    last_error: str | None = None
    _uploads_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _running: bool = field(default=False, repr=False)

    @classmethod
    def start(cls, workspace: Workspace, root: str | Path | None = None) -> Session:
        """A new session on ``workspace``, with a fresh private folder under ``root`` (the system temp dir)."""
        base = Path(root) if root is not None else Path(tempfile.gettempdir()) / "dlfd-studio-sessions"
        base.mkdir(parents=True, exist_ok=True)
        folder = base / uuid.uuid4().hex
        folder.mkdir(mode=0o700)
        (folder / SESSION_MARKER).touch()  # what start-up clean-up (remove_stale_sessions) recognises as ours
        return cls(
            workspace=workspace,
            folder=folder,
            aligned=workspace.aligned,
            split=workspace.split,
            model=workspace.model,
        )

    @property
    def outputs(self) -> KeyedOutputs:
        """``model``'s outputs on every photo: this session's own after an enrolment, else the workspace's."""
        return self.own_outputs if self.own_outputs is not None else self.workspace.outputs

    @outputs.setter
    def outputs(self, value: KeyedOutputs | None) -> None:
        self.own_outputs = value

    @property
    def device(self) -> torch.device:
        """Where this session's runs and enrolment compute (the workspace's device)."""
        return self.workspace.device

    @property
    def references(self) -> PersonReferences | None:
        """The shipped reference statistics for the verdict's LiRA attack while the session forgets from the bundled
        model (an enrolment adds a person they say nothing of, so the verdict then uses the reference-free attack)."""
        return self.workspace.references if self.uses_bundled_model else None

    @property
    def identities(self) -> tuple[str, ...]:
        """Who can be forgotten: the model's known people."""
        return self.split.known

    closed: bool = False

    def reserve(self, what: str) -> None:
        """Book the session for one job (at the click, before it waits in a queue); Cancel now applies to it.

        Args:
            what: what the job is, for messages ("a run", "an enrolment").

        Raises:
            BusyError: a job is already booked or running (a double click, or Forget pressed during an enrolment).
        """
        with self._uploads_lock:
            self.check_open()
            if self.job is not None:
                raise BusyError(
                    f"{self.job[0].upper()}{self.job[1:]} is already waiting or running in this page; wait for it to "
                    "finish (or press Cancel), then try again."
                )
            self.job = what
            self.last_error = None
            self.cancel.clear()

    def release_booking(self, what: str) -> None:
        """End a booking for ``what`` whose job never started (refused, failed in the queue); a job that is running
        keeps its booking until it ends."""
        with self._uploads_lock:
            if self.job == what and not self._running:
                self.job = None
                self.cancel.clear()

    def release(self) -> None:
        """End the booked job (done, failed or refused); a Cancel pressed later has nothing to stop."""
        with self._uploads_lock:
            self.job = None
            self._running = False
            self.cancel.clear()

    def request_cancel(self) -> bool:
        """Ask the booked job to stop; False (and nothing armed) when no job is booked."""
        with self._uploads_lock:
            if self.job is None:
                return False
            self.cancel.set()
            return True

    @contextlib.contextmanager
    def running(self, what: str) -> Iterator[None]:
        """Run one job in this session: the one booked with :meth:`reserve`, or a new one (booked here).

        A session runs one job at a time; the booking ends with the job, however it ends.

        Raises:
            BusyError: another job is running or booked.
        """
        with self._uploads_lock:
            self.check_open()
            if self._running or (self.job is not None and self.job != what):
                raise BusyError(
                    f"{(self.job or 'another job').capitalize()} is already running in this page; wait for it to "
                    "finish, then try again."
                )
            if self.job is None:
                self.cancel.clear()
            self.job, self._running = what, True
        try:
            yield
        finally:
            self.release()

    def track_upload(self, path: str | Path, *, shared: bool = False) -> bool:
        """Take an uploaded file (outside the session folder) as this session's, so that :meth:`close` deletes it.

        Args:
            shared: the file came through this page's own upload flow, so it is this session's even when another
                session uploaded the same photo (Gradio gives both the same file); otherwise (a path a request only
                names) it is taken only when no other session holds it.

        Returns:
            False, and nothing is tracked, when another session holds that file and ``shared`` is False (it is then
            neither read nor deleted here).
        """
        path = Path(path)
        if not self.workspace.upload_owners.claim(path, self.folder.name, shared=shared):
            return False
        with self._uploads_lock:
            if not self.closed:
                self.uploads.add(path)
                return True
        if self.workspace.upload_owners.release(path, self.folder.name):  # the session ended meanwhile
            delete_upload(path)
        return True

    def owns_upload(self, path: str | Path) -> bool:
        """Whether this session received ``path`` (see :meth:`track_upload`)."""
        with self._uploads_lock:
            return Path(path) in self.uploads

    def release_upload(self, path: str | Path) -> None:
        """Let go of one of this session's uploads now (a later, identical upload is then not deleted at close); the
        file is deleted unless another session still holds it."""
        path = Path(path)
        with self._uploads_lock:
            mine = path in self.uploads
            self.uploads.discard(path)
        if mine and self.workspace.upload_owners.release(path, self.folder.name):
            delete_upload(path)

    def close(self) -> None:
        """End the session: stop its job, delete its folder and uploads, drop its models and uploads' faces.

        A closed session refuses new work (:meth:`check_open`); a job still running stops at its next step.
        """
        with self._uploads_lock:
            self.closed = True
            uploads, self.uploads = list(self.uploads), set()
        self.cancel.set()
        shutil.rmtree(self.folder, ignore_errors=True)
        for path in uploads:
            if self.workspace.upload_owners.release(path, self.folder.name):
                delete_upload(path)
        self.gold_cache.clear()
        self.runs.clear()
        self.enrolment = None
        self.aligned, self.split = self.workspace.aligned, self.workspace.split
        self.model, self.own_outputs = self.workspace.model, None

    def check_open(self) -> None:
        """Raise :class:`DataError` if the session has ended (its files are gone)."""
        if self.closed or not self.folder.is_dir():
            raise DataError("This session has ended (the page was closed or timed out); reload the page.")

    @property
    def uses_bundled_model(self) -> bool:
        """Whether this session forgets from the shared bundled model (nobody enrolled)."""
        return self.model is self.workspace.model and self.split is self.workspace.split

    def runs_table(self) -> list[dict[str, Any]]:
        return [run.row() for run in self.runs]


#: The file that marks a folder as a session folder made by :meth:`Session.start`.
SESSION_MARKER = ".dlfd-session"


def remove_stale_sessions(root: str | Path) -> list[Path]:
    """Delete the session folders an earlier run of the server left under ``root`` (after a crash, say).

    Only folders that :meth:`Session.start` made are deleted: a direct sub-folder with a 32-hex-digit name holding
    the :data:`SESSION_MARKER` file. Anything else under ``root`` is left as it is.

    Returns:
        The folders deleted.
    """
    removed = []
    base = Path(root)
    if not base.is_dir():
        return removed
    for folder in base.iterdir():
        if (
            re.fullmatch(r"[0-9a-f]{32}", folder.name)
            and folder.is_dir()
            and not folder.is_symlink()
            and (folder / SESSION_MARKER).is_file()
        ):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def one_job_at_a_time(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: run a job of a session inside :meth:`Session.running` (one job at a time, booking ended after)."""

    def decorate(job: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(job)
        def run(session: Session, *args: Any, **kwargs: Any) -> Any:
            with session.running(what):
                return job(session, *args, **kwargs)

        return run

    return decorate
