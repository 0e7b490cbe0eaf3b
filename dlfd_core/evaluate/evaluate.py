"""Evaluate one model on a split: run it once per part, then compute every metric from the outputs.

Parts of a split (each a list of aligned-face keys):

* ``retain_train`` / ``retain_test``: training and held-out photos of the people the model keeps.
* ``forget_train``: the photos to forget. ``forget_test``: held-out photos of forgotten people (identity mode).
* ``unseen``: photos of people never trained on (no class of their own): the non-member population.

Membership attacks (members are always ``forget_train``):

* ``mia_*`` is the DLFD paper's loss-based attack. Its non-members are the held-out test photos of all known people
  (the paper's "test set"). ``mia_acc`` is the paper's unbalanced form; ``forgetting_score`` and ``nomus`` use the
  balanced form (the larger side subsampled with the seed), because with a few forget photos against many test photos
  the unbalanced attack scores the majority rate by always answering "non-member"; the unbalanced versions are kept as
  ``forgetting_score_unbalanced`` / ``nomus_unbalanced``.
* ``label_free_mia_*`` attacks on confidence and entropy, so it needs no label. For whole-identity forgetting its
  non-members are the unseen people's photos (what a forgotten person should look like to the model); for instance
  forgetting, the held-out test photos.

* ``attack_auc`` is the project's per-photo attack (:func:`~dlfd_core.evaluate.attacks.photo_scores`, the one the
  verdict, the result cards and the attack figure use): the ROC AUC of the top class's logit-scaled confidence,
  forgotten training photos against the same non-members as ``label_free_mia_*``. Here it is reference-free; with
  reference statistics the app and the benchmark replace it by offline LiRA's (:func:`with_attack`).

Intervals: the headline numbers carry a 95 % interval over photos in a report's ``meta["intervals"]``
(:meth:`~dlfd_core.evaluate.report.Report.interval`): the Wilson score interval for each accuracy, the percentile
bootstrap for ``attack_auc``.

Embedding leakage: can the forgotten people still be matched by the model's features?
``forget_verification_auc`` scores pairs involving a forgotten person among forget, held-out and unseen photos;
``forget_nn_identification`` identifies forgotten photos by 1-NN: held-out photos of forgotten people against all
training photos (identity mode), or the forgotten photos against the retained training photos (instance mode).

Too few photos: every part may be tiny (a person enrolled with 5 photos trains on 3 of them). A metric the photos at
hand cannot define is NaN, never an exception, and NaN propagates (``forgetting_score`` and ``nomus`` of a NaN attack
are NaN). Why each NaN is NaN, in a short sentence, comes from :func:`undefined_reasons` or the ``reasons=`` dict of
:func:`compute_metrics`, and is kept in a report's ``meta["undefined"]`` (see :func:`report_from_outputs`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import binomtest

from ..data.aligned import AlignedFaces
from ..data.splits import Split, aligned_for
from ..data.transforms import crops_to_tensor
from ..errors import DataError
from .attacks import ATTACK, PhotoScores, ReferenceStatistics, photo_scores
from .metrics import (
    MIAResult,
    accuracy,
    accuracy_gap,
    activation_distance,
    forgetting_score,
    js_divergence,
    linear_probe_accuracy,
    loo_nn_identification,
    mia_label_free,
    mia_logistic,
    nn_identification,
    nomus,
    verification_auc,
    verification_auc_for,
)
from .outputs import SplitOutputs, collect_outputs, nonmember_outputs
from .report import Report
from .verdict import MIN_PHOTOS

log = logging.getLogger(__name__)

PARTS = ("retain_train", "retain_test", "forget_train", "forget_test", "unseen")


@dataclass(frozen=True)
class PartData:
    """The crops, class labels (``-1`` for unseen people) and identities of one part of a split."""

    crops: np.ndarray
    labels: np.ndarray
    identities: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.identities)


def split_parts(aligned: AlignedFaces, split: Split) -> dict[str, PartData]:
    """The non-empty parts of ``split`` (see the module docstring), from the aligned faces."""
    key_identity = dict(zip(aligned.keys, aligned.identities, strict=True))
    parts = {}
    for name, keys in split.part_keys(aligned).items():
        crops, labels = aligned_for(aligned, split, keys, allow_unseen=name == "unseen")
        parts[name] = PartData(crops, labels, tuple(key_identity[k] for k in keys))
    return parts


def collect_parts(
    model: torch.nn.Module,
    parts: Mapping[str, PartData],
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 100,
) -> dict[str, SplitOutputs]:
    """Run ``model`` once over every part."""
    return {
        name: collect_outputs(
            model,
            crops_to_tensor(part.crops, model.input_size),
            part.labels,
            part.identities,
            batch_size=batch_size,
            device=device,
        )
        for name, part in parts.items()
    }


def _safe(name: str, fn: Callable[[], float], metrics: dict[str, float], reasons: dict[str, str]) -> None:
    """Store ``fn()`` as ``metrics[name]``, or NaN and the reason (with a log line) when the data cannot define it."""
    try:
        metrics[name] = float(fn())
    except DataError as exc:
        log.info("metric %s undefined here: %s", name, exc)
        metrics[name] = math.nan
        reasons[name] = str(exc)


def _accuracy_of(part: SplitOutputs, name: str) -> float:
    """Accuracy on one part; :class:`DataError` when the part has no photo with a class."""
    if not bool(np.any(part.labelled)):
        raise DataError(f"no photos with a class in {name}" if len(part) else f"no photos in {name}")
    return accuracy(part.logits, part.labels)


def _accuracy_interval(part: SplitOutputs) -> tuple[float, float]:
    """The 95 % Wilson score interval of the accuracy on one part's labelled photos."""
    labelled = np.asarray(part.labelled)
    right = int((np.asarray(part.logits).argmax(1) == np.asarray(part.labels))[labelled].sum())
    interval = binomtest(right, int(labelled.sum())).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def _check_attack_photos(scores: PhotoScores) -> None:
    if len(scores.forget) < MIN_PHOTOS or len(scores.nonmember) < MIN_PHOTOS:
        raise DataError(
            f"the per-photo attack needs at least {MIN_PHOTOS} forgotten training photos and {MIN_PHOTOS} photos of "
            f"non-members; got {len(scores.forget)} and {len(scores.nonmember)}"
        )


def _attack_auc(out: Mapping[str, SplitOutputs], split: Split, seed: int, ci: dict[str, tuple[float, float]]) -> float:
    """``attack_auc`` from the reference-free per-photo attack; its bootstrap interval goes into ``ci``.

    Raises:
        DataError: fewer photos on a side than the verdict judges with (:data:`~dlfd_core.evaluate.verdict.MIN_PHOTOS`).
    """
    scores = photo_scores(out, split.forget_mode)
    _check_attack_photos(scores)
    summary = scores.summary(seed=seed)
    ci["attack_auc"] = summary.auc_interval
    return summary.auc


def _derived(name: str, value: float, sources: tuple[str, ...], m: dict[str, float], reasons: dict[str, str]) -> None:
    """Store a metric computed from others (NaN in, NaN out); a NaN takes the reason of the first NaN source."""
    m[name] = value
    if math.isnan(value):
        why = next((reasons[s] for s in sources if s in reasons), "one of the values it is computed from is missing")
        reasons[name] = why


def _attack(prefix: str, run: Callable[[], MIAResult], m: dict[str, float], reasons: dict[str, str]) -> float:
    """Run one membership attack into ``{prefix}_acc`` / ``{prefix}_auc``; the accuracy, NaN when undefined."""
    try:
        result = run()
    except DataError as exc:
        log.info("%s undefined here: %s", prefix, exc)
        m[f"{prefix}_acc"] = m[f"{prefix}_auc"] = math.nan
        reasons[f"{prefix}_acc"] = reasons[f"{prefix}_auc"] = str(exc)
        return math.nan
    m[f"{prefix}_acc"], m[f"{prefix}_auc"] = result.accuracy, result.auc
    if math.isnan(result.auc):
        reasons[f"{prefix}_auc"] = "no round of the attack held out both kinds of photos (too few on one side)"
    return result.accuracy


def compute_metrics(
    outputs: Mapping[str, SplitOutputs],
    split: Split,
    *,
    gold: Mapping[str, SplitOutputs] | None = None,
    seed: int = 0,
    reasons: dict[str, str] | None = None,
    intervals: dict[str, tuple[float, float]] | None = None,
) -> dict[str, float]:
    """Every metric of a model from its per-part outputs (and the gold model's, for the alignment metrics).

    Any part may be tiny or empty: a metric that its photos cannot define (e.g. a membership attack on 3 forget
    photos; the balanced attacks need 6) is NaN, and metrics computed from a NaN are NaN. Metrics of a part that is
    absent are left out.

    Args:
        outputs: the model's outputs per part (see :data:`PARTS`).
        split: the split (its ``forget_mode`` chooses the non-members and the identification probe).
        gold: the gold model's outputs per part, for the alignment metrics.
        seed: seed of the balanced attacks' subsample and of the linear probes.
        reasons: when given, cleared and filled with one short sentence per NaN metric, saying why it is NaN
            (``{"forgetting_score": "the loss-based membership attack needs at least 6 training photos being
            forgotten and 6 photos never trained on; got 3 and 40 (3 of each after balancing)"}``).
        intervals: when given, cleared and filled with the 95 % interval over photos of each accuracy and of
            ``attack_auc`` that is defined (see the module).

    Returns:
        ``{metric name: value}``, NaN where undefined.
    """
    why: dict[str, str] = {}
    m: dict[str, float] = {}
    ci: dict[str, tuple[float, float]] = {}
    out = dict(outputs)
    for name in ("retain_train", "retain_test", "forget_train", "forget_test"):
        if name in out:
            part = out[name]
            _safe(f"{name}_acc", lambda part=part, name=name: _accuracy_of(part, name), m, why)
            if not math.isnan(m[f"{name}_acc"]):
                ci[f"{name}_acc"] = _accuracy_interval(part)
    forget = out.get("forget_train")
    test_parts = [out[p] for p in ("retain_test", "forget_test") if p in out]
    if forget is not None and test_parts:
        test_losses = np.concatenate([p.losses for p in test_parts])
        test_logits = np.concatenate([p.logits for p in test_parts])
        for balanced, suffix in ((False, ""), (True, "_balanced")):
            _attack(
                f"mia{suffix}",
                lambda b=balanced: mia_logistic(forget.losses, test_losses, balanced=b, seed=seed),
                m,
                why,
            )
        test_acc = m.get("retain_test_acc", math.nan)
        if "retain_test" not in out:
            why.setdefault("retain_test_acc", "no held-out photos of the people the model keeps")
        for mia_key, suffix in (("mia_balanced_acc", ""), ("mia_acc", "_unbalanced")):
            _derived(f"forgetting_score{suffix}", forgetting_score(m[mia_key]), (mia_key,), m, why)
            _derived(f"nomus{suffix}", nomus(test_acc, m[mia_key]), (mia_key, "retain_test_acc"), m, why)
        nonmembers = nonmember_outputs(out, split.forget_mode)
        nonmember_logits = test_logits if nonmembers is None else nonmembers.logits
        label_free = _attack(
            "label_free_mia",
            lambda: mia_label_free(forget.logits, nonmember_logits, balanced=True, seed=seed),
            m,
            why,
        )
        _derived("forgetting_score_label_free", forgetting_score(label_free), ("label_free_mia_acc",), m, why)
        _derived("nomus_label_free", nomus(test_acc, label_free), ("label_free_mia_acc", "retain_test_acc"), m, why)
    if forget is not None:
        _safe("attack_auc", lambda: _attack_auc(out, split, seed, ci), m, why)
    _embedding_metrics(out, split, m, seed, why)
    if gold is not None:
        _gold_metrics(out, gold, m, why)
    if reasons is not None:
        reasons.clear()
        reasons.update({k: v for k, v in why.items() if k in m and math.isnan(m[k])})
    if intervals is not None:
        intervals.clear()
        intervals.update({k: v for k, v in ci.items() if not math.isnan(m.get(k, math.nan))})
    return m


def undefined_reasons(
    outputs: Mapping[str, SplitOutputs],
    split: Split,
    *,
    gold: Mapping[str, SplitOutputs] | None = None,
    seed: int = 0,
) -> dict[str, str]:
    """Why each NaN metric of :func:`compute_metrics` is NaN: ``{metric name: short sentence}``.

    This computes the metrics again; a caller that computes them anyway passes ``reasons={}`` to
    :func:`compute_metrics` instead (or reads a report's ``meta["undefined"]``).
    """
    reasons: dict[str, str] = {}
    compute_metrics(outputs, split, gold=gold, seed=seed, reasons=reasons)
    return reasons


def _stack(parts: list[SplitOutputs]) -> tuple[np.ndarray, list[str], np.ndarray]:
    return (
        np.concatenate([p.features for p in parts]),
        [i for p in parts for i in p.identities],
        np.concatenate([p.labels for p in parts]),
    )


def _embedding_metrics(
    out: dict[str, SplitOutputs], split: Split, m: dict[str, float], seed: int, why: dict[str, str]
) -> None:
    held_out = [out[p] for p in ("retain_test", "forget_test", "unseen") if p in out]
    if held_out:
        feats, ids, _ = _stack(held_out)
        _safe("verification_auc", lambda: verification_auc(feats, ids), m, why)
    if "unseen" in out:
        unseen = out["unseen"]
        _safe("unseen_verification_auc", lambda: verification_auc(unseen.features, unseen.identities), m, why)
        _safe("unseen_nn_identification", lambda: loo_nn_identification(unseen.features, unseen.identities), m, why)
    if "retain_train" in out and "retain_test" in out:
        tr, te = out["retain_train"], out["retain_test"]
        _safe(
            "retain_nn_identification",
            lambda: nn_identification(tr.features, tr.identities, te.features, te.identities),
            m,
            why,
        )
        _safe(
            "retain_linear_probe_acc",
            lambda: linear_probe_accuracy(tr.features, tr.labels, te.features, te.labels, seed=seed),
            m,
            why,
        )
    if "forget_train" not in out:
        return
    forget = out["forget_train"]
    targets = set(forget.identities)
    pool = [out[p] for p in ("forget_train", "forget_test", "retain_test", "unseen") if p in out]
    feats, ids, _ = _stack(pool)
    _safe("forget_verification_auc", lambda: verification_auc_for(feats, ids, targets), m, why)
    if split.forget_mode == "identity" and len(out.get("forget_test", ())):
        gallery = [out[p] for p in ("retain_train", "forget_train") if p in out]
        g_feats, g_ids, g_labels = _stack(gallery)
        probe = out["forget_test"]
    elif split.forget_mode == "identity":
        # matching the forget photos against a gallery without their person can never succeed: undefined, not 0
        reason = "no held-out photos of the forgotten people to identify"
        for name in ("forget_nn_identification", "linear_probe_acc"):
            m[name], why[name] = math.nan, reason
        return
    else:
        g_feats, g_ids, g_labels = _stack([out["retain_train"]]) if "retain_train" in out else (None, [], None)
        probe = forget
    if g_feats is not None:
        _safe(
            "forget_nn_identification",
            lambda: nn_identification(g_feats, g_ids, probe.features, probe.identities),
            m,
            why,
        )
        _safe(
            "linear_probe_acc",
            lambda: linear_probe_accuracy(g_feats, g_labels, probe.features, probe.labels, seed=seed),
            m,
            why,
        )


def _gold_metrics(
    out: dict[str, SplitOutputs], gold: Mapping[str, SplitOutputs], m: dict[str, float], why: dict[str, str]
) -> None:
    def gap(name: str) -> float:
        return accuracy_gap(_accuracy_of(out[name], name), _accuracy_of(gold[name], f"the gold model's {name}"))

    def paired(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[], float]:
        mine, theirs = out["forget_train"], gold["forget_train"]
        if len(mine) == 0 or len(theirs) == 0:
            return lambda: _raise(DataError("no photos in forget_train"))
        return lambda: fn(mine.logits, theirs.logits)

    if "forget_train" in out and "forget_train" in gold:
        _safe("forget_acc_gap_to_gold", lambda: gap("forget_train"), m, why)
        _safe("js_to_gold", paired(js_divergence), m, why)
        _safe("activation_distance_to_gold", paired(activation_distance), m, why)
    if "retain_test" in out and "retain_test" in gold:
        _safe("retain_test_acc_gap_to_gold", lambda: gap("retain_test"), m, why)


def _raise(error: Exception) -> float:
    raise error


def evaluate_model(
    model: torch.nn.Module,
    aligned: AlignedFaces,
    split: Split,
    *,
    gold: Mapping[str, SplitOutputs] | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    meta: Mapping[str, Any] | None = None,
) -> tuple[Report, dict[str, SplitOutputs]]:
    """Run ``model`` once per part of ``split`` and compute its :class:`Report`.

    Returns:
        The report and the per-part outputs (pass them as ``gold=`` when this is the gold model).
    """
    outputs = collect_parts(model, split_parts(aligned, split), device=device)
    return report_from_outputs(outputs, split, gold=gold, seed=seed, meta=meta), outputs


def report_from_outputs(
    outputs: Mapping[str, SplitOutputs],
    split: Split,
    *,
    gold: Mapping[str, SplitOutputs] | None = None,
    seed: int = 0,
    meta: Mapping[str, Any] | None = None,
) -> Report:
    """The :class:`Report` of a model from its per-part outputs (see :func:`compute_metrics`).

    ``meta["undefined"]`` (present when some metric is NaN) maps each NaN metric to why it is NaN.
    """
    reasons: dict[str, str] = {}
    intervals: dict[str, tuple[float, float]] = {}
    metrics = compute_metrics(outputs, split, gold=gold, seed=seed, reasons=reasons, intervals=intervals)
    info: dict[str, Any] = {
        "forget_mode": split.forget_mode,
        "seed": seed,
        "parts": {k: len(v) for k, v in outputs.items()},
        "intervals": {k: list(v) for k, v in intervals.items()},
    }
    if "attack_auc" in metrics:
        info["attack"] = ATTACK
    if reasons:
        info["undefined"] = reasons
    info.update(meta or {})
    return Report(metrics=metrics, meta=info)


def with_attack(
    report: Report,
    outputs: Mapping[str, SplitOutputs],
    split: Split,
    *,
    references: ReferenceStatistics | None,
    keys: Mapping[str, Sequence[str]] | None,
    seed: int = 0,
) -> Report:
    """``report`` with ``attack_auc`` (and its interval) from the verdict's attack on ``outputs``: offline LiRA when
    ``references`` cover the photos (:func:`~dlfd_core.evaluate.attacks.photo_scores`), else unchanged.
    ``meta["attack"]`` names the attack the value comes from."""
    try:
        scores = photo_scores(outputs, split.forget_mode, references=references, keys=keys)
        _check_attack_photos(scores)
    except DataError:
        return report
    if scores.attack == ATTACK:
        return report
    summary = scores.summary(seed=seed)
    intervals = {**dict(report.meta.get("intervals", {})), "attack_auc": list(summary.auc_interval)}
    meta = {**report.meta, "attack": scores.attack, "intervals": intervals}
    return Report(metrics={**report.metrics, "attack_auc": summary.auc}, meta=meta)
