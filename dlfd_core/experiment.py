"""One forgetting experiment end to end: evaluate the original, unlearn, evaluate the result (and the gold model).

This is what the ``forget`` and ``bench`` commands and the web app run; it holds no logic of its own beyond
ordering the calls and timing them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .evaluate.cache import ForwardOutputs, OutputSource
from .evaluate.evaluate import report_from_outputs
from .evaluate.outputs import SplitOutputs
from .evaluate.report import Report
from .progress import ProgressFn, no_progress, scaled
from .unlearn import Method, UnlearnData, UnlearnResult

__all__ = ["ForgetOutcome", "forget"]


@dataclass
class ForgetOutcome:
    """Reports (``before``, ``after`` and, when computed, ``gold``), their raw outputs, the run and its timings."""

    reports: dict[str, Report]
    outputs: dict[str, dict[str, SplitOutputs]]
    result: UnlearnResult
    timings: dict[str, float] = field(default_factory=dict)
    gold_model: nn.Module | None = None
    environment: dict[str, Any] | None = None  # where it ran, when the caller records it

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.result.method,
            "settings": self.result.settings,
            "rate_scale": list(self.result.rate_scale),
            "seed": self.result.seed,
            "device": self.result.device,
            "timings": self.timings,
            "history": list(self.result.history),
            **{name: report.to_json() for name, report in self.reports.items()},
        }


def forget(
    aligned: Any,
    split: Any,
    model: nn.Module,
    method: Method,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    gold_model: nn.Module | None = None,
    train_gold: bool = False,
    before: Mapping[str, SplitOutputs] | None = None,
    gold_outputs: Mapping[str, SplitOutputs] | None = None,
    outputs: OutputSource | None = None,
    report_reference: bool = True,
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
) -> ForgetOutcome:
    """Unlearn ``split``'s forget set from ``model`` with ``method`` and evaluate before / after / gold.

    Args:
        aligned, split: the faces and the split with its forget request.
        model: the original model (not modified).
        method: a configured :class:`~dlfd_core.unlearn.Method`.
        seed: the run's seed (also the attacks' subsampling seed and the gold model's training seed).
        gold_model: an already-trained gold model; or ``train_gold=True`` to train it with the original recipe.
        before: the original model's outputs on this split, when the caller already has them.
        gold_outputs: ``gold_model``'s outputs on this split, when the caller already has them.
        outputs: where models' outputs on this split come from (:class:`~dlfd_core.evaluate.cache.OutputSource`);
            by default a forward pass over every part. The app and the benchmark pass their
            :class:`~dlfd_core.evaluate.cache.KeyedOutputs`, which also give the frozen prefix's cached outputs to the
            unlearning run (:attr:`~dlfd_core.unlearn.Method.prefix_safe`) and to the gold model's training.
        report_reference: also compute the original's and the gold model's reports (a benchmark that already has
            them passes False; then ``reports`` holds ``after`` only).
        progress, should_stop: progress callback and cancellation poll.
    """
    from .train import recipe_of, train_on_split

    source = outputs if outputs is not None else ForwardOutputs()

    def collect(m: nn.Module) -> Mapping[str, SplitOutputs]:
        return source.collect(m, aligned, split, device=device)

    def prefix(m: nn.Module, keys: Sequence[str]) -> torch.Tensor | None:
        return source.prefix_outputs(m, keys, aligned)

    timings: dict[str, float] = {}
    per_model: dict[str, dict[str, SplitOutputs]] = {}
    if before is None:
        progress(0.0, "evaluating the original model")
        t0 = time.perf_counter()
        before = collect(model)
        timings["eval_before_seconds"] = time.perf_counter() - t0
    per_model["before"] = dict(before)
    has_gold = gold_model is not None or gold_outputs is not None or train_gold
    run_end = 0.6 if train_gold else 0.9
    progress(0.05, f"unlearning with {method.title or method.name}")
    data = UnlearnData.from_split(aligned, split, input_size=model.input_size, prefix=lambda keys: prefix(model, keys))
    result = method.run(
        model, data, device=device, seed=seed, progress=scaled(progress, 0.05, run_end), should_stop=should_stop
    )
    timings["unlearn_seconds"] = result.seconds
    progress(run_end, "evaluating the unlearned model")
    t0 = time.perf_counter()
    per_model["after"] = dict(collect(result.model))
    timings["eval_after_seconds"] = time.perf_counter() - t0
    if train_gold:
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):  # train_on_split seeds the global generators
            trained = train_on_split(
                aligned,
                split,
                which="gold",
                backbone=model.backbone_name,
                config=recipe_of(model),
                seed=seed,
                device=device,
                progress=scaled(progress, run_end, 0.95),
                should_stop=should_stop,
                embed=source.embeddings,
                prefix=prefix,
            )
        gold_model = trained.model
        timings["gold_train_seconds"] = trained.seconds
    if gold_outputs is not None:
        per_model["gold"] = dict(gold_outputs)
    elif gold_model is not None:
        progress(0.95, "evaluating the gold model")
        per_model["gold"] = dict(collect(gold_model))
    gold = per_model.get("gold")
    wanted = {"after": method.name}
    if report_reference:
        wanted = {"before": "original", **wanted}
        if has_gold and gold is not None:
            wanted["gold"] = "gold"
    progress(0.97, "measuring: accuracy, membership attacks, embeddings")
    t0 = time.perf_counter()
    reports = {
        name: report_from_outputs(per_model[name], split, gold=gold, seed=seed, meta={"model": label})
        for name, label in wanted.items()
    }
    timings["report_seconds"] = time.perf_counter() - t0
    progress(1.0, "done")
    return ForgetOutcome(reports=reports, outputs=per_model, result=result, timings=timings, gold_model=gold_model)
