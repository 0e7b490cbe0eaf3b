"""Per-photo membership attacks calibrated by reference models: offline LiRA and RMIA.

A population attack (one threshold for every photo, :func:`~dlfd_core.evaluate.metrics.mia_logistic`) misses a
photo that is unusually easy or hard for every model. These attacks compare the target model's confidence on *each*
photo with what models that never trained on it give the same photo:

* **Offline LiRA** (Carlini et al., IEEE S&P 2022, arXiv 2112.03570): the statistic is the logit-scaled confidence
  ``φ = log(p / (1 − p))`` of the photo's class (:func:`logit_confidence`). For each photo a Gaussian is fitted to
  ``φ`` under the reference models that were OUT for it; the score is the one-sided z-value of the target's ``φ``
  under that Gaussian (:func:`lira_offline`; its normal tail is the test's p-value). With few reference models, one
  standard deviation pooled over all photos is steadier than each photo's own (``global_variance``).
* **RMIA** (Zarifzadeh et al., ICML 2024, arXiv 2312.03262): the likelihood ratio ``Pr(x | θ) / Pr(x)`` of the photo,
  ``Pr(x)`` the reference models' mean probability (offline: scaled by ``a``, below), compared against the same
  ratio of population photos ``z`` that no model trained on: the score is the fraction of ``z`` whose ratio the
  photo's exceeds by at least ``γ`` (:func:`rmia`). Strong with one or two reference models.

The question both answer for unlearning: *can this model be told apart from models that never saw the photo?* —
the gold model's situation. Members are the forgotten photos, non-members photos the target never trained on; an
AUC near 0.5 and a true-positive rate near the false-positive rate at low FPRs (:func:`attack_summary`) mean the
forgotten photos look unseen.

Every function here is pure NumPy on per-photo arrays; training the reference models is
:func:`dlfd_core.evaluate.references.train_references`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.metrics import roc_curve

from ..errors import DataError
from .metrics import rank_auc
from .outputs import SplitOutputs, check_parts, nonmember_outputs, nonmember_part_names

__all__ = [
    "ATTACK",
    "LIRA_ATTACK",
    "AttackSummary",
    "PhotoScores",
    "ReferenceStatistics",
    "photo_scores",
    "membership_auc",
    "membership_scores",
    "attack_summary",
    "bootstrap_auc_interval",
    "label_probability",
    "lira_offline",
    "logit_confidence",
    "rmia",
    "tpr_at_fpr",
]

#: The false-positive rates the field reports true-positive rates at (LiRA's 1 % and 0.1 %).
LOW_FPRS: tuple[float, ...] = (0.01, 0.001)


def _labels_or_top(logits: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """Each photo's class, or its top class where the label is missing (``None`` or negative: never-trained people)."""
    top = np.argmax(logits, axis=1)
    if labels is None:
        return top
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(logits),):
        raise DataError(f"expected one label per photo ({len(logits)}), got shape {labels.shape}")
    return np.where(labels >= 0, labels, top)


def logit_confidence(logits: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """LiRA's statistic ``φ = log(p_y / (1 − p_y))`` per photo, computed stably from the logits.

    ``p_y`` is the softmax probability of the photo's class ``y`` (its top class where ``labels`` is ``None`` or
    ``-1``: a person the model has no class for). ``log p_y − log(1 − p_y) = z_y − logsumexp_{j≠y} z_j``, which
    stays finite where ``p_y`` rounds to 1.

    Args:
        logits: ``[N, C]``, ``C ≥ 2``.
        labels: ``[N]`` class indices, or ``None``.

    Returns:
        ``float64 [N]``.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise DataError(f"logits must be [N, C] with at least 2 classes, got shape {z.shape}")
    y = _labels_or_top(z, labels)
    rows = np.arange(len(z))
    others = z.copy()
    others[rows, y] = -np.inf
    return z[rows, y] - logsumexp(others, axis=1)


def label_probability(logits: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """The softmax probability of each photo's class (its top class where unlabelled): RMIA's ``Pr(x | θ)``."""
    z = np.asarray(logits, dtype=np.float64)
    y = _labels_or_top(z, labels)
    return np.exp(z[np.arange(len(z)), y] - logsumexp(z, axis=1))


def lira_offline(
    target: np.ndarray, references: np.ndarray, *, global_variance: bool = False, min_std: float = 1e-3
) -> np.ndarray:
    """Offline LiRA: the z-value of each photo's target statistic under its OUT reference models' Gaussian.

    Args:
        target: ``[N]`` the target model's statistic per photo (e.g. :func:`logit_confidence`).
        references: ``[R, N]`` the same statistic under ``R`` reference models; NaN where a reference model was IN
            for that photo (trained on it), so that only OUT models enter each photo's Gaussian.
        global_variance: use one standard deviation pooled over all photos (the mean of the per-photo variances)
            instead of each photo's own; LiRA's choice with few reference models.
        min_std: a floor on the standard deviation (identical reference values would otherwise give ±inf).

    Returns:
        ``float64 [N]``: ``(φ − μ_out) / σ_out``; larger is more member-like. ``norm.sf`` of it is the one-sided
        p-value of "this model never trained on the photo".

    Raises:
        DataError: shapes do not fit, or a photo has fewer than 2 OUT reference values (1 with ``global_variance``).
    """
    phi = np.asarray(target, dtype=np.float64)
    refs = np.asarray(references, dtype=np.float64)
    if refs.ndim != 2 or refs.shape[1] != len(phi):
        raise DataError(f"references must be [R, {len(phi)}], got shape {refs.shape}")
    counts = np.sum(~np.isnan(refs), axis=0)
    need = 1 if global_variance else 2
    if len(phi) and counts.min() < need:
        raise DataError(
            f"offline LiRA needs at least {need} reference model(s) that never trained on each photo; "
            f"{int(np.sum(counts < need))} photo(s) have fewer"
        )
    mean = np.nanmean(refs, axis=0)
    if global_variance:
        spread = refs - mean
        per_photo = np.nansum(spread**2, axis=0) / np.maximum(counts - 1, 1)
        usable = counts >= 2
        pooled = float(np.mean(per_photo[usable])) if np.any(usable) else 0.0
        std = np.full(len(phi), np.sqrt(pooled))
    else:
        std = np.nanstd(refs, axis=0, ddof=1)
    return (phi - mean) / np.maximum(std, min_std)


def rmia(
    target: np.ndarray,
    references: np.ndarray,
    population_target: np.ndarray,
    population_references: np.ndarray,
    *,
    gamma: float = 1.0,
    offline_a: float | None = 0.3,
) -> np.ndarray:
    """RMIA's score: the fraction of population photos ``z`` with ``LR(x) / LR(z) ≥ γ``, ``LR(·) = Pr(·|θ) / Pr(·)``.

    Args:
        target: ``[N]`` the target model's ``Pr(x | θ)`` per photo (:func:`label_probability`).
        references: ``[R, N]`` the reference models' ``Pr(x | θ_r)``; NaN entries are left out of each photo's mean
            (with ``offline_a`` set, every value must come from a model that never trained on the photo).
        population_target, population_references: the same for population photos ``z`` (``[M]``, ``[R, M]``),
            which neither the target nor the reference models trained on.
        gamma: the ratio threshold (the paper's γ; 1 by default).
        offline_a: with OUT reference models only, ``Pr(x)`` is estimated as ``((1 + a) · mean_out + (1 − a)) / 2``
            (the paper's offline approximation of the IN/OUT mean; ``a`` ≈ 0.3 for small models); ``None``: the
            plain mean over the given reference values.

    Returns:
        ``float64 [N]`` in ``[0, 1]``; larger is more member-like.

    Raises:
        DataError: shapes do not fit, or no population photo.
    """
    x = np.asarray(target, dtype=np.float64)
    z = np.asarray(population_target, dtype=np.float64)
    rx, rz = np.asarray(references, dtype=np.float64), np.asarray(population_references, dtype=np.float64)
    if rx.ndim != 2 or rx.shape[1] != len(x) or rz.ndim != 2 or rz.shape[1] != len(z):
        raise DataError(f"reference shapes {rx.shape} / {rz.shape} do not fit {len(x)} photos / {len(z)} population")
    if len(z) == 0:
        raise DataError("RMIA needs population photos that no model trained on")

    def marginal(values: np.ndarray) -> np.ndarray:
        mean = np.nanmean(values, axis=0)
        return mean if offline_a is None else ((1.0 + offline_a) * mean + (1.0 - offline_a)) / 2.0

    tiny = 1e-30
    ratio_x = x / np.maximum(marginal(rx), tiny)
    ratio_z = z / np.maximum(marginal(rz), tiny)
    # fraction of z with ratio_x / ratio_z >= gamma  <=>  ratio_z <= ratio_x / gamma: one sort, one search
    sorted_z = np.sort(ratio_z)
    return np.searchsorted(sorted_z, ratio_x / gamma, side="right") / len(sorted_z)


def tpr_at_fpr(members: np.ndarray, nonmembers: np.ndarray, fpr: float) -> float:
    """The highest true-positive rate of a threshold on the scores whose false-positive rate is at most ``fpr``.

    With ``n`` non-members the smallest non-zero FPR is ``1 / n``: below it only thresholds above every non-member
    count, so the value is the share of members scored above the highest non-member (LiRA's reading)."""
    truth = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    false_pos, true_pos, _ = roc_curve(truth, np.r_[members, nonmembers])
    return float(np.max(true_pos[false_pos <= fpr + 1e-12]))


@dataclass(frozen=True)
class AttackSummary:
    """How well per-photo scores separate members (forgotten photos) from non-members.

    Attributes:
        auc: ROC AUC (0.5: indistinguishable).
        auc_interval: its 95 % bootstrap interval over photos (:func:`bootstrap_auc_interval`).
        tpr: ``{fpr: true-positive rate at that false-positive rate}`` for :data:`LOW_FPRS`.
        members, nonmembers: how many photos each side had.
    """

    auc: float
    auc_interval: tuple[float, float]
    tpr: dict[float, float]
    members: int
    nonmembers: int


def _pair_auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    return rank_auc(np.r_[members, nonmembers], np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)])


#: Above this many member × non-member pairs the bootstrap ranks each draw instead of reusing one pair table.
_PAIR_TABLE_LIMIT = 4_000_000
#: Bootstrap draws resampled and scored together (bounds the count matrices at this many rows).
_DRAWS_PER_CHUNK = 100


def bootstrap_auc_interval(
    members: np.ndarray, nonmembers: np.ndarray, *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """The percentile bootstrap interval of the AUC: members and non-members are resampled with replacement, each
    side keeping its size (``resamples`` seeded draws).

    A draw's AUC is the mean of the pair table (1 where the member scores higher, ½ on a tie) weighted by how often
    each photo was drawn, so the table is built once and every draw costs a matrix product."""
    m, n = np.asarray(members, dtype=np.float64), np.asarray(nonmembers, dtype=np.float64)
    rng = np.random.default_rng(seed)
    use_table = len(m) * len(n) <= _PAIR_TABLE_LIMIT
    table = (m[:, None] > n[None, :]) + 0.5 * (m[:, None] == n[None, :]) if use_table else None
    draws = np.empty(resamples)
    for start in range(0, resamples, _DRAWS_PER_CHUNK):  # memory bounded by a chunk, not by resamples x photos
        picks = [
            (rng.integers(0, len(m), len(m)), rng.integers(0, len(n), len(n)))
            for _ in range(start, min(start + _DRAWS_PER_CHUNK, resamples))
        ]
        if table is not None:
            m_counts = np.stack([np.bincount(i, minlength=len(m)) for i, _ in picks]).astype(np.float64)
            n_counts = np.stack([np.bincount(j, minlength=len(n)) for _, j in picks]).astype(np.float64)
            chunk = ((m_counts @ table) * n_counts).sum(axis=1) / (len(m) * len(n))
        else:
            chunk = np.array([_pair_auc(m[i], n[j]) for i, j in picks])
        draws[start : start + len(picks)] = chunk
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return float(low), float(high)


def attack_summary(
    members: np.ndarray, nonmembers: np.ndarray, fprs: tuple[float, ...] = LOW_FPRS, *, seed: int = 0
) -> AttackSummary:
    """AUC (with its bootstrap interval) and the true-positive rates at low false-positive rates of member vs
    non-member scores.

    Raises:
        DataError: a side is empty or a score is not finite.
    """
    m, n = np.asarray(members, dtype=np.float64), np.asarray(nonmembers, dtype=np.float64)
    if len(m) == 0 or len(n) == 0:
        raise DataError(f"an attack needs members and non-members; got {len(m)} and {len(n)}")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(n))):
        raise DataError("attack scores must be finite")
    interval = bootstrap_auc_interval(m, n, seed=seed)
    return AttackSummary(_pair_auc(m, n), interval, {f: tpr_at_fpr(m, n, f) for f in fprs}, len(m), len(n))


def one_sided_p_value(z: np.ndarray) -> np.ndarray:
    """The p-value of LiRA's one-sided test for a z-value from :func:`lira_offline`."""
    return norm.sf(np.asarray(z, dtype=np.float64))


def membership_scores(outputs: Mapping[str, SplitOutputs], forget_mode: str) -> dict[str, np.ndarray]:
    """The label-free per-photo membership score of one model's photos: LiRA's logit-scaled confidence of the top
    class (:func:`logit_confidence` without labels; a monotone function of the top softmax probability, so its AUC is
    that of the confidence itself). Higher looks more like a training photo.

    This is the one attack scale of the app's verdict (:func:`~dlfd_core.evaluate.verdict.judge_against_gold`), its
    attack figure and the benchmark's ``attack_auc``.

    Args:
        outputs: one model's outputs, part name -> SplitOutputs.
        forget_mode: the split's forget mode, which decides the non-members
            (:func:`~dlfd_core.evaluate.outputs.nonmember_outputs`).

    Returns:
        ``{"forget", "nonmember", "retain"}`` float64 arrays: the forgotten training photos (``forget_train``), the
        non-members, and the retained training photos (``retain_train``); a side with no photos is empty.

    Raises:
        DataError: malformed outputs, or logits that are not ``[N, C ≥ 2]``.
    """
    outputs = check_parts(outputs, "model")

    def scores(part: SplitOutputs | None) -> np.ndarray:
        if part is None or not len(part.identities):
            return np.zeros(0)
        logits = np.asarray(part.logits, dtype=np.float64)
        if not np.isfinite(logits).all():
            raise DataError("logits contain NaN or infinite values; the model may have diverged")
        return logit_confidence(logits)

    return {
        "forget": scores(outputs.get("forget_train")),
        "nonmember": scores(nonmember_outputs(outputs, forget_mode)),
        "retain": scores(outputs.get("retain_train")),
    }


ATTACK = "membership attack AUC"
"""The reference-free attack's name: :func:`membership_scores`, the top class's logit-scaled confidence."""
LIRA_ATTACK = "LiRA attack AUC"
"""Offline LiRA's name: each photo's :func:`membership_scores` as a z-value against models that never saw its person."""


class ReferenceStatistics(Protocol):
    """Per-photo OUT statistics from reference models (:class:`~dlfd_core.references.PersonReferences`)."""

    @property
    def count(self) -> int: ...

    def covers(self, keys: Sequence[str]) -> bool:
        """Whether every photo of ``keys`` has OUT values."""
        ...

    def lira_scores(self, keys: Sequence[str], phi: np.ndarray) -> np.ndarray:
        """Offline LiRA's z-values of the statistic ``phi`` on the photos ``keys``."""
        ...


@dataclass(frozen=True)
class PhotoScores:
    """The per-photo membership scores of one model that the verdict, the cards and the attack figure judge by.

    Attributes:
        attack: :data:`ATTACK` or :data:`LIRA_ATTACK`.
        forget: the forgotten training photos' scores (members).
        nonmember: the non-members' scores (the split's ``forget_mode`` decides who they are).
    """

    attack: str
    forget: np.ndarray
    nonmember: np.ndarray

    def summary(self, *, seed: int = 0) -> AttackSummary:
        """AUC, its 95 % bootstrap interval and the low-FPR true-positive rates (:func:`attack_summary`)."""
        return attack_summary(self.forget, self.nonmember, seed=seed)


def photo_scores(
    outputs: Mapping[str, SplitOutputs],
    forget_mode: str,
    *,
    references: ReferenceStatistics | None = None,
    keys: Mapping[str, Sequence[str]] | None = None,
) -> PhotoScores:
    """The one per-photo membership attack of this project, for one model.

    Offline LiRA (:data:`LIRA_ATTACK`) when a whole person is forgotten and ``references`` cover every photo it
    scores (``keys``: each part's image keys, in the outputs' order, :meth:`~dlfd_core.data.Split.part_keys`);
    otherwise the reference-free :func:`membership_scores` (:data:`ATTACK`). The choice depends only on the photos,
    so a model and its gold model scored with the same arguments are scored by the same attack.

    Raises:
        DataError: malformed outputs or non-finite logits.
    """
    scores = membership_scores(outputs, forget_mode)
    member, other = scores["forget"], scores["nonmember"]
    if references is None or keys is None or forget_mode != "identity":
        return PhotoScores(ATTACK, member, other)
    member_keys = list(keys.get("forget_train", ()))
    other_keys = [k for name in nonmember_part_names(outputs, forget_mode) for k in keys.get(name, ())]
    if len(member_keys) != len(member) or len(other_keys) != len(other) or not member_keys or not other_keys:
        return PhotoScores(ATTACK, member, other)
    if not references.covers(member_keys + other_keys):
        return PhotoScores(ATTACK, member, other)
    return PhotoScores(
        LIRA_ATTACK, references.lira_scores(member_keys, member), references.lira_scores(other_keys, other)
    )


def membership_auc(outputs: Mapping[str, SplitOutputs], forget_mode: str) -> float:
    """ROC AUC of :func:`membership_scores`, forgotten training photos against every non-member (ties count half):
    0.5, the forgotten photos look like photos the model never trained on; 1.0, each is more confident than every
    non-member; below 0.5, they look *less* familiar than strangers' (itself a sign). NaN when a side is empty."""
    scores = membership_scores(outputs, forget_mode)
    if scores["forget"].size == 0 or scores["nonmember"].size == 0:
        return math.nan
    return _pair_auc(scores["forget"], scores["nonmember"])
