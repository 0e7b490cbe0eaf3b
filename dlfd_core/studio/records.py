"""What a session keeps of its work, as plain data: a prediction on one photo, an enrolment, a forgetting run.

The bottom floor of :mod:`dlfd_core.studio`: it imports nothing else of it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluate.attacks import PhotoScores
from ..evaluate.metrics import softmax
from ..evaluate.report import METRICS
from ..evaluate.verdict import Judgement
from ..experiment import ForgetOutcome

#: The headline metrics of a run, in the order of its result cards and its row of the runs table; their labels and
#: how to read them are in :data:`~dlfd_core.evaluate.report.METRICS` (``title``, ``reading``).
CARD_METRICS: tuple[str, ...] = tuple(name for name, spec in METRICS.items() if spec.reading)


@dataclass(frozen=True)
class Prediction:
    """One photo's predicted identity before and after (and under the gold model)."""

    crop: np.ndarray
    identity: str
    role: str
    before: tuple[str, float]
    after: tuple[str, float] | None = None
    gold: tuple[str, float] | None = None

    @property
    def caption(self) -> str:
        text = f"{self.identity} ({self.role}) · before: {self.before[0]} {self.before[1]:.0%}"
        if self.after is not None:
            text += f" → after: {self.after[0]} {self.after[1]:.0%}"
        if self.gold is not None:
            text += f" · gold: {self.gold[0]} {self.gold[1]:.0%}"
        return text


def top_predictions(logits: np.ndarray, names: Sequence[str]) -> list[tuple[str, float]]:
    p = softmax(np.asarray(logits, dtype=np.float64))
    best = p.argmax(axis=1)
    return [(names[int(b)], float(p[i, b])) for i, b in enumerate(best)]


@dataclass
class Enrolment:
    """An uploaded face set, enrolled as a new identity.

    Attributes:
        name: the new identity's name.
        crops: the aligned faces used, in upload order (one of each group of copies).
        captions: one per crop: its number, the photo it came from, and what to check about it.
        failures: (file name, reason) for each photo without a usable face.
        notes: how repeats of one photo and near-identical photos were handled.
        warnings: what may be wrong with the set (faces of another person, photos with several faces).
        train, holdout, test: how many of the faces the model trains on / keeps aside / tests on.
        predictions: the model's answer on the held-out test photos.
        recognised: the fraction of held-out photos recognised as the person.
        retain_test_acc: accuracy on everyone else's test photos after enrolling.
        seconds: wall time (alignment and training).
    """

    name: str
    crops: list[np.ndarray]
    captions: list[str]
    failures: list[tuple[str, str]]
    notes: list[str]
    warnings: list[str]
    train: int
    holdout: int
    test: int
    predictions: list[Prediction]
    recognised: float
    retain_test_acc: float
    seconds: float

    @property
    def summary(self) -> str:
        faces = f"{len(self.crops)} {'face' if len(self.crops) == 1 else 'faces'}"
        text = (
            f"Enrolled **{self.name}**: {faces} used ({self.train} to train on, {self.holdout} kept "
            f"aside, {self.test} to test). The model now recognises **{round(self.recognised * self.test)} of "
            f"their {self.test} held-out {'photo' if self.test == 1 else 'photos'}**, and {self.retain_test_acc:.1%} "
            f"of everyone else's. Took {self.seconds:.1f} s. You can now choose them in the list of people to forget."
        )
        if self.notes:
            text += "\n\n" + "\n".join(f"- {note}." for note in self.notes)
        if self.warnings:
            text += "\n\n" + "\n".join(f"- ⚠ {w}." for w in self.warnings)
        return text


@dataclass
class RunRecord:
    """One forgetting run of a session.

    Attributes:
        number: the run's number in its session (1, 2, ...).
        identities: who was forgotten.
        outcome: the evaluated run (reports before / after / gold, outputs, the unlearned model).
        verdict: a few plain sentences on whether the person is forgotten and what it cost.
        predictions: example photos before / after / gold.
        files: downloadable files (``report_json``, ``report_md``, ``model``) in the session's folder.
        seconds: wall time of the whole run (unlearning, evaluations, gold model).
        judgement: the comparison with the gold model behind the verdict (``None`` without a gold model).
        attack: each model's per-photo scores under the verdict's attack (``before`` / ``after`` / ``gold``), for the
            attack figure.
    """

    number: int
    identities: tuple[str, ...]
    outcome: ForgetOutcome
    verdict: str
    predictions: list[Prediction]
    files: dict[str, Path]
    seconds: float
    judgement: Judgement | None = None
    attack: dict[str, PhotoScores] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"#{self.number} {self.outcome.result.method}"

    @property
    def compacted(self) -> bool:
        """Whether the in-memory models and raw outputs were dropped (see :meth:`compact`)."""
        return self.outcome.result.model is None

    def compact(self) -> None:
        """Drop the unlearned model and the raw per-photo outputs from memory.

        What the page still shows of an older run stays: its row of the runs table (from the reports), its verdict,
        and its downloads (the report and the model, on disk in the session's folder).
        """
        outcome = self.outcome
        self.outcome = dataclasses.replace(
            outcome, outputs={}, gold_model=None, result=dataclasses.replace(outcome.result, model=None)
        )

    def row(self) -> dict[str, Any]:
        """The run as one row of the session's table."""
        result = self.outcome.result
        after = self.outcome.reports["after"].metrics
        row: dict[str, Any] = {
            "run": self.label,
            "forgot": ", ".join(self.identities),
            "method": result.method,
            "settings": _changed_settings(result.method, result.settings),
            "seed": result.seed,
            "device": result.device,
        }
        for name in CARD_METRICS:
            row[name] = after.get(name, math.nan)
        row["attack"] = self.outcome.reports["after"].meta.get("attack")  # which attack attack_auc comes from
        row["unlearn_seconds"] = result.seconds
        row["total_seconds"] = self.seconds
        return row


def _changed_settings(method: str, settings: Mapping[str, Any]) -> str:
    """The settings that differ from the method's defaults, as ``k=v`` (or "defaults")."""
    from ..unlearn import create_method

    defaults = create_method(method).settings()
    changed = [f"{k}={v}" for k, v in settings.items() if defaults.get(k) != v]
    return ", ".join(changed) or "defaults"
