"""A forgetting run: a :class:`ForgetJob` (plain data that may run in another process), its execution, and
:func:`run_forget`, which judges it against the gold model, keeps it in the session and writes its downloads."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import AlignedFaces, Split, with_forget_identities
from ..env import environment, resolve_device
from ..errors import CancelledError, DataError, DLFDError
from ..evaluate.attacks import PhotoScores, photo_scores
from ..evaluate.cache import KeyedOutputs
from ..evaluate.evaluate import with_attack
from ..evaluate.outputs import SplitOutputs
from ..evaluate.verdict import Judgement, ReferenceStatistics, judge_against_gold
from ..experiment import ForgetOutcome, forget
from ..progress import ProgressFn, no_progress
from .downloads import write_downloads
from .presentation import verdict
from .records import Prediction, RunRecord, top_predictions
from .session import Session, one_job_at_a_time

#: Runs of a session whose unlearned model and raw outputs stay in memory (older runs keep reports and files only).
KEEP_FULL_RUNS = 1


def judge(
    outcome: ForgetOutcome,
    split: Split,
    seed: int = 0,
    *,
    references: ReferenceStatistics | None = None,
    keys: Mapping[str, Sequence[str]] | None = None,
) -> Judgement | None:
    """The run against its gold model (:func:`~dlfd_core.evaluate.verdict.judge_against_gold`; offline LiRA when
    ``references`` cover the photos of ``keys``, the split's parts); ``None`` without a gold model."""
    if "gold" not in outcome.outputs or "after" not in outcome.outputs:
        return None
    after, gold = outcome.outputs["after"], outcome.outputs["gold"]
    return judge_against_gold(after, gold, split, seed=seed, references=references, keys=keys)


def attack_scores(
    outcome: ForgetOutcome,
    split: Split,
    *,
    references: ReferenceStatistics | None = None,
    keys: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, PhotoScores]:
    """Each model's per-photo scores under the verdict's attack (``before`` / ``after`` / ``gold``): what the attack
    figure draws; a model whose outputs cannot be scored (a diverged model) is left out."""
    scores = {}
    for name, outputs in outcome.outputs.items():
        try:
            scores[name] = photo_scores(outputs, split.forget_mode, references=references, keys=keys)
        except DLFDError:
            continue
    return scores


def _with_verdict_attack(
    outcome: ForgetOutcome,
    split: Split,
    seed: int,
    references: ReferenceStatistics | None,
    keys: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """The outcome's reports with ``attack_auc`` from the verdict's attack (:func:`with_attack`), and the targets
    taken again from the gold report, so that the cards, the runs table and the downloads show the verdict's scale."""
    reports = {
        name: with_attack(report, outcome.outputs[name], split, references=references, keys=keys, seed=seed)
        if name in outcome.outputs
        else report
        for name, report in outcome.reports.items()
    }
    gold = reports.get("gold")
    if gold is not None:
        reports = {name: r.with_targets_from(gold) if "targets" in r.meta else r for name, r in reports.items()}
    return reports


def _predictions(outcome: ForgetOutcome, session: Session, split: Split, per_side: int = 6) -> list[Prediction]:
    before, after, gold = outcome.outputs["before"], outcome.outputs["after"], outcome.outputs.get("gold")
    keys = split.part_keys(session.aligned)
    chosen: list[tuple[str, str, int]] = []  # (part, role, row)
    forget_rows = [("forget_train", "forgotten", i) for i in range(len(keys.get("forget_train", ())))]
    forget_rows += [("forget_test", "forgotten, held out", i) for i in range(len(keys.get("forget_test", ())))]
    chosen += forget_rows[:per_side]
    retain = keys.get("retain_test", ())
    rng = np.random.default_rng(0)
    for i in sorted(rng.choice(len(retain), size=min(per_side, len(retain)), replace=False).tolist()):
        chosen.append(("retain_test", "kept", i))
    names = split.known
    out = []
    for part, role, row in chosen:
        key = keys[part][row]
        top = {
            name: top_predictions(outputs[part].logits[row : row + 1], names)[0]
            for name, outputs in (
                ("before", before),
                ("after", after),
                *((("gold", gold),) if gold is not None else ()),
            )
        }
        out.append(
            Prediction(
                crop=session.aligned.crops[session.aligned.index_of(key)],
                identity=before[part].identities[row],
                role=role,
                before=top["before"],
                after=top["after"],
                gold=top.get("gold"),
            )
        )
    return out


@dataclass(frozen=True, eq=False)
class ForgetJob:
    """One run's inputs, independent of the session and the process: plain data, models and a configured method.

    It pickles, so a runner may execute it in another process (a ZeroGPU Space's ``spaces.GPU`` worker does: the
    GPU exists only there, and arguments and results cross by pickling). :func:`execute_job` runs it.

    Attributes:
        aligned, split: the faces and the split with its forget request.
        model: the model to unlearn from (not modified).
        outputs: ``model``'s outputs on every photo (with the frozen-prefix cache).
        method: the configured method.
        seed: the run's seed.
        device: where to run; ``None``: the best device where the job runs.
        gold_outputs: an already-trained gold model's outputs on this split (all a run needs of it), or ``None``.
        train_gold: train the gold model (when ``gold_outputs`` is ``None``).
    """

    aligned: AlignedFaces
    split: Split
    model: nn.Module
    outputs: KeyedOutputs
    method: Any
    seed: int = 0
    device: str | None = None
    gold_outputs: dict[str, SplitOutputs] | None = None
    train_gold: bool = False


def execute_job(
    job: ForgetJob, progress: ProgressFn = no_progress, should_stop: Callable[[], bool] | None = None
) -> ForgetOutcome:
    """Run a :class:`ForgetJob`: unlearn, evaluate before / after / gold. Models come back on the CPU, and
    ``outcome.environment`` says where the job ran (on ZeroGPU, the GPU worker, not the server process)."""
    device = resolve_device(job.device)
    aligned, split, outputs = job.aligned, job.split, job.outputs
    outcome = forget(  # the model (shared, on the CPU) is not moved: the method unlearns a copy on the device
        aligned,
        split,
        job.model,
        job.method,
        seed=job.seed,
        device=device,
        gold_outputs=job.gold_outputs,
        train_gold=job.train_gold and job.gold_outputs is None,
        before=outputs.parts(aligned, split),
        outputs=outputs,
        progress=progress,
        should_stop=should_stop,
    )
    # models rest on the CPU between calls (on ZeroGPU the device exists only during a call)
    outcome.result.model.cpu()
    if outcome.gold_model is not None:
        outcome.gold_model.cpu()
    outcome.environment = environment()
    return outcome


JobRunner = Callable[[ForgetJob], ForgetOutcome]
"""Runs a :class:`ForgetJob` somewhere else (e.g. ``spaces.GPU(execute_job)``); no progress or cancellation."""


@one_job_at_a_time("a run")
def run_forget(
    session: Session,
    identities: Sequence[str],
    method: Any,
    *,
    seed: int = 0,
    with_gold: bool = True,
    device: str | torch.device | None = None,
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
    runner: JobRunner | None = None,
) -> RunRecord:
    """Forget ``identities`` from the session's model with a configured method; evaluate; write the downloads.

    The gold model (the original recipe retrained without them, same seed) is cached per session for the same
    people and seed, so comparing methods does not retrain it each time.

    ``runner``: execute the job through it (e.g. in a ZeroGPU worker process) instead of here; it gets no progress
    callback and cannot be cancelled midway.

    Raises:
        DataError: no identity chosen, or all of them (nothing would be left to keep).
        BusyError: another job of the session is booked or running.
        CancelledError: ``should_stop`` returned True; the session is unchanged.
    """
    start = time.perf_counter()
    session.check_open()
    identities = tuple(dict.fromkeys(identities or ()))
    if not identities:
        raise DataError("Choose at least one person to forget.")
    if len(identities) >= len(session.split.known):
        raise DataError("Forgetting everyone leaves nothing to keep: leave at least one person.")
    split = with_forget_identities(session.split, identities)
    key = (identities, seed, session.model.backbone_name)
    # bundled people's gold models are shared between sessions; after an enrolment the model (and so the gold model)
    # has seen the upload, so it stays in the session
    cache = session.workspace.gold_cache if session.uses_bundled_model else session.gold_cache
    cached = cache.get(key) if with_gold else None
    session.workspace.wait_ready(progress)
    job = ForgetJob(
        aligned=session.aligned,
        split=split,
        model=session.model,
        outputs=session.outputs,
        method=method,
        seed=seed,
        device=str(device) if device is not None else None,
        gold_outputs=cached[1] if cached is not None else None,
        train_gold=with_gold,
    )
    if runner is None:
        outcome = execute_job(job, progress=progress, should_stop=should_stop)
    else:  # in another process: no progress or Cancel inside, so check Cancel once before it starts
        if should_stop is not None and should_stop():
            raise CancelledError("the run was cancelled before it started")
        progress(0.0, "running")
        outcome = runner(job)
    session.check_open()  # closed while running: keep nothing
    if cached is not None:
        outcome.gold_model = cached[0]
    elif with_gold and outcome.gold_model is not None:
        cache.put(key, outcome.gold_model, outcome.outputs["gold"])
    if runner is not None and should_stop is not None and should_stop():  # Cancel pressed while it ran elsewhere
        raise CancelledError("the run was cancelled")
    number = len(session.runs) + 1
    keys = split.part_keys(session.aligned)
    judgement = judge(outcome, split, seed=seed, references=session.references, keys=keys)
    if session.references is not None:
        outcome.reports = _with_verdict_attack(outcome, split, seed, session.references, keys)
    record = RunRecord(
        number=number,
        identities=identities,
        outcome=outcome,
        verdict=verdict(outcome, identities, judgement),
        judgement=judgement,
        predictions=_predictions(outcome, session, split),
        files={},
        seconds=time.perf_counter() - start,
        attack=attack_scores(outcome, split, references=session.references, keys=keys),
    )
    record.files = write_downloads(record, session, split)
    session.runs.append(record)
    for older in session.runs[:-KEEP_FULL_RUNS]:  # memory stays bounded however many runs a session makes
        if not older.compacted:
            older.compact()
    return record
