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

Embedding leakage: can the forgotten people still be matched by the model's features?
``forget_verification_auc`` scores pairs involving a forgotten person among forget, held-out and unseen photos;
``forget_nn_identification`` identifies forgotten photos by 1-NN: held-out photos of forgotten people against all
training photos (identity mode), or the forgotten photos against the retained training photos (instance mode).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.aligned import AlignedFaces
from ..data.splits import Split, aligned_for
from ..data.transforms import crops_to_tensor
from ..errors import DataError
from .metrics import (
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
from .outputs import SplitOutputs, collect_outputs
from .report import Report

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


def part_keys(aligned: AlignedFaces, split: Split) -> dict[str, tuple[str, ...]]:
    """The image keys of each non-empty part of ``split`` (unseen: every aligned photo of an unseen person)."""
    unseen = set(split.unseen)
    keys = {
        "retain_train": split.retain_train_keys,
        "retain_test": split.retain_test_keys,
        "forget_train": split.forget_train_keys,
        "forget_test": split.forget_test_keys,
        "unseen": tuple(k for k, identity in zip(aligned.keys, aligned.identities, strict=True) if identity in unseen),
    }
    return {name: part for name, part in keys.items() if part}


def split_parts(aligned: AlignedFaces, split: Split) -> dict[str, PartData]:
    """The non-empty parts of ``split`` (see the module docstring), from the aligned faces."""
    key_identity = dict(zip(aligned.keys, aligned.identities, strict=True))
    parts = {}
    for name, keys in part_keys(aligned, split).items():
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


def _safe(name: str, fn: Callable[[], float], metrics: dict[str, float]) -> None:
    """Store ``fn()`` as ``metrics[name]``, or NaN (with a log line) when the data cannot define it."""
    try:
        metrics[name] = float(fn())
    except DataError as exc:
        log.info("metric %s undefined here: %s", name, exc)
        metrics[name] = math.nan


def compute_metrics(
    outputs: Mapping[str, SplitOutputs],
    split: Split,
    *,
    gold: Mapping[str, SplitOutputs] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Every metric of a model from its per-part outputs (and the gold model's, for the alignment metrics)."""
    m: dict[str, float] = {}
    out = dict(outputs)
    for name in ("retain_train", "retain_test", "forget_train", "forget_test"):
        if name in out:
            m[f"{name}_acc"] = accuracy(out[name].logits, out[name].labels)
    forget = out.get("forget_train")
    test_parts = [out[p] for p in ("retain_test", "forget_test") if p in out]
    if forget is not None and test_parts:
        test_losses = np.concatenate([p.losses for p in test_parts])
        test_logits = np.concatenate([p.logits for p in test_parts])
        for balanced, suffix in ((False, ""), (True, "_balanced")):
            try:
                attack = mia_logistic(forget.losses, test_losses, balanced=balanced, seed=seed)
            except DataError as exc:
                log.info("loss attack undefined: %s", exc)
                m[f"mia{suffix}_acc"] = m[f"mia{suffix}_auc"] = math.nan
                continue
            m[f"mia{suffix}_acc"], m[f"mia{suffix}_auc"] = attack.accuracy, attack.auc
        test_acc = m.get("retain_test_acc", math.nan)
        for mia_key, suffix in (("mia_balanced_acc", ""), ("mia_acc", "_unbalanced")):
            m[f"forgetting_score{suffix}"] = forgetting_score(m[mia_key])
            m[f"nomus{suffix}"] = nomus(test_acc, m[mia_key])
        nonmember_logits = out["unseen"].logits if split.forget_mode == "identity" and "unseen" in out else test_logits
        try:
            attack = mia_label_free(forget.logits, nonmember_logits, balanced=True, seed=seed)
            m["label_free_mia_acc"], m["label_free_mia_auc"] = attack.accuracy, attack.auc
            m["forgetting_score_label_free"] = forgetting_score(attack.accuracy)
            m["nomus_label_free"] = nomus(test_acc, attack.accuracy)
        except DataError as exc:
            log.info("label-free attack undefined: %s", exc)
            for key in ("label_free_mia_acc", "label_free_mia_auc", "forgetting_score_label_free", "nomus_label_free"):
                m[key] = math.nan
    _embedding_metrics(out, split, m, seed)
    if gold is not None:
        _gold_metrics(out, gold, m)
    return m


def _stack(parts: list[SplitOutputs]) -> tuple[np.ndarray, list[str], np.ndarray]:
    return (
        np.concatenate([p.features for p in parts]),
        [i for p in parts for i in p.identities],
        np.concatenate([p.labels for p in parts]),
    )


def _embedding_metrics(out: dict[str, SplitOutputs], split: Split, m: dict[str, float], seed: int) -> None:
    held_out = [out[p] for p in ("retain_test", "forget_test", "unseen") if p in out]
    if held_out:
        feats, ids, _ = _stack(held_out)
        _safe("verification_auc", lambda: verification_auc(feats, ids), m)
    if "unseen" in out:
        _safe("unseen_verification_auc", lambda: verification_auc(out["unseen"].features, out["unseen"].identities), m)
        _safe(
            "unseen_nn_identification",
            lambda: loo_nn_identification(out["unseen"].features, out["unseen"].identities),
            m,
        )
    if "retain_train" in out and "retain_test" in out:
        tr, te = out["retain_train"], out["retain_test"]
        _safe(
            "retain_nn_identification",
            lambda: nn_identification(tr.features, tr.identities, te.features, te.identities),
            m,
        )
        _safe(
            "retain_linear_probe_acc",
            lambda: linear_probe_accuracy(tr.features, tr.labels, te.features, te.labels, seed=seed),
            m,
        )
    if "forget_train" not in out:
        return
    forget = out["forget_train"]
    targets = set(forget.identities)
    pool = [out[p] for p in ("forget_train", "forget_test", "retain_test", "unseen") if p in out]
    feats, ids, _ = _stack(pool)
    _safe("forget_verification_auc", lambda: verification_auc_for(feats, ids, targets), m)
    if split.forget_mode == "identity" and "forget_test" in out:
        gallery = [out[p] for p in ("retain_train", "forget_train") if p in out]
        g_feats, g_ids, g_labels = _stack(gallery)
        probe = out["forget_test"]
    else:
        g_feats, g_ids, g_labels = _stack([out["retain_train"]]) if "retain_train" in out else (None, [], None)
        probe = forget
    if g_feats is not None:
        _safe(
            "forget_nn_identification", lambda: nn_identification(g_feats, g_ids, probe.features, probe.identities), m
        )
        _safe(
            "linear_probe_acc",
            lambda: linear_probe_accuracy(g_feats, g_labels, probe.features, probe.labels, seed=seed),
            m,
        )


def _gold_metrics(out: dict[str, SplitOutputs], gold: Mapping[str, SplitOutputs], m: dict[str, float]) -> None:
    if "forget_train" in out and "forget_train" in gold:
        mine, theirs = out["forget_train"], gold["forget_train"]
        m["forget_acc_gap_to_gold"] = accuracy_gap(
            accuracy(mine.logits, mine.labels), accuracy(theirs.logits, theirs.labels)
        )
        m["js_to_gold"] = js_divergence(mine.logits, theirs.logits)
        m["activation_distance_to_gold"] = activation_distance(mine.logits, theirs.logits)
    if "retain_test" in out and "retain_test" in gold:
        m["retain_test_acc_gap_to_gold"] = accuracy_gap(
            accuracy(out["retain_test"].logits, out["retain_test"].labels),
            accuracy(gold["retain_test"].logits, gold["retain_test"].labels),
        )


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
    """The :class:`Report` of a model from its per-part outputs (see :func:`compute_metrics`)."""
    metrics = compute_metrics(outputs, split, gold=gold, seed=seed)
    info = {"forget_mode": split.forget_mode, "seed": seed, "parts": {k: len(v) for k, v in outputs.items()}}
    info.update(meta or {})
    return Report(metrics=metrics, meta=info)
