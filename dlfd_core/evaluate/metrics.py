"""Evaluation metrics of unlearning, each a pure function of numpy arrays.

Groups:

* Classification: :func:`accuracy`, :func:`per_sample_cross_entropy`.
* Membership inference as in the DLFD paper: :func:`mia_logistic` (loss-based), :func:`forgetting_score`,
  :func:`nomus`; and :func:`mia_label_free` for people who have no class of their own.
* Alignment with the gold (retrained) model: :func:`accuracy_gap`, :func:`js_divergence`,
  :func:`activation_distance`.
* Identity leakage in the embedding: :func:`verification_auc`, :func:`verification_auc_for`,
  :func:`nn_identification`, :func:`loo_nn_identification`.
* Correlation collapse: :func:`linear_probe_accuracy`.

Everything is computed in float64. Functions that fit a model take an explicit ``seed``; the attack's
cross-validation uses the paper's fixed ``random_state=0``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import DataError

__all__ = [
    "MIA_N_SPLITS",
    "MIA_RANDOM_STATE",
    "MIA_TEST_SIZE",
    "MIAResult",
    "accuracy",
    "accuracy_gap",
    "activation_distance",
    "forgetting_score",
    "js_divergence",
    "linear_probe_accuracy",
    "log_softmax",
    "loo_nn_identification",
    "mia_label_free",
    "mia_logistic",
    "nn_identification",
    "nomus",
    "per_sample_cross_entropy",
    "softmax",
    "verification_auc",
    "verification_auc_for",
]

MIA_N_SPLITS = 10
"""Number of ``StratifiedShuffleSplit`` folds of the membership attack (as in the DLFD code)."""
MIA_RANDOM_STATE = 0
"""``random_state`` of the attack's splitter (as in the DLFD code)."""
MIA_TEST_SIZE = 0.1
"""Held-out fraction of each attack fold (sklearn's default)."""

PairMode = Literal["all"] | int


# --------------------------------------------------------------------------------------------------------------------
# classification


def _logits_2d(logits: np.ndarray, name: str = "logits") -> np.ndarray:
    array = np.asarray(logits, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{name} must be [N, C] with C >= 1, got shape {array.shape}")
    return array


def _labels_for(logits: np.ndarray, labels: np.ndarray | Sequence[int]) -> np.ndarray:
    array = np.asarray(labels)
    if array.shape != (logits.shape[0],):
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.size and (array.min() < -1 or array.max() >= logits.shape[1]):
        raise ValueError(f"labels must lie in [-1, {logits.shape[1]}), got [{array.min()}, {array.max()}]")
    return array


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``[N, C]`` logits, computed stably in float64."""
    z = _logits_2d(logits)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``[N, C]`` logits, in float64."""
    return np.exp(log_softmax(logits))


def accuracy(logits: np.ndarray, labels: np.ndarray | Sequence[int]) -> float:
    """Top-1 accuracy over the labelled samples.

    Args:
        logits: ``[N, C]`` class scores.
        labels: ``[N]`` class indices; samples labelled ``-1`` (no class) are left out.

    Returns:
        The fraction of labelled samples whose argmax equals the label.

    Raises:
        ValueError: shapes disagree, a label is out of range, or no sample is labelled.
    """
    z = _logits_2d(logits)
    y = _labels_for(z, labels)
    keep = y >= 0
    if not keep.any():
        raise ValueError("accuracy needs at least one labelled sample (label >= 0)")
    return float(np.mean(np.argmax(z[keep], axis=1) == y[keep]))


def per_sample_cross_entropy(logits: np.ndarray, labels: np.ndarray | Sequence[int]) -> np.ndarray:
    """Cross-entropy of each sample, ``-log softmax(logits)[label]``, via a stable log-softmax.

    Args:
        logits: ``[N, C]`` class scores.
        labels: ``[N]`` class indices, ``-1`` for samples without a class.

    Returns:
        ``[N]`` float64 losses; NaN where the label is ``-1``.
    """
    z = _logits_2d(logits)
    y = _labels_for(z, labels)
    out = np.full(y.shape, np.nan, dtype=np.float64)
    keep = y >= 0
    if keep.any():
        logp = log_softmax(z[keep])
        out[keep] = -logp[np.arange(logp.shape[0]), y[keep]]
    return out


# --------------------------------------------------------------------------------------------------------------------
# membership inference


@dataclass(frozen=True)
class MIAResult:
    """Outcome of a membership-inference attack.

    Attributes:
        accuracy: mean held-out accuracy over the folds (the paper's "MIA").
        auc: mean held-out ROC AUC over the folds whose held-out part holds both classes (NaN if none does).
        n_member: member (forget) samples actually used, after balancing.
        n_nonmember: non-member samples actually used, after balancing.
    """

    accuracy: float
    auc: float
    n_member: int
    n_nonmember: int


def _attack_features(values: np.ndarray, name: str, width: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if width == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{name} must have {width} feature(s) per sample, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise DataError(
            f"{name} contain NaN or infinite values; the model may have diverged, or samples without a class "
            "(label -1) were passed to a loss-based attack"
        )
    return array


def _fewest_per_side(balanced: bool) -> tuple[int, int]:
    """The fewest members (= non-members) and the fewest samples in all the attack's splitter accepts.

    ``StratifiedShuffleSplit`` needs >= 2 samples per class and >= 2 held-out samples (``ceil(0.1 * n) >= 2``);
    a balanced attack has equal sides, so each side needs 6 with the default 10% held out.
    """
    total = 2
    while math.ceil(MIA_TEST_SIZE * total) < 2:
        total += 1
    per_side = max(2, math.ceil(total / 2)) if balanced else 2
    return per_side, max(total, 2 * per_side)


def _run_attack(member: np.ndarray, nonmember: np.ndarray, *, balanced: bool, seed: int, what: str) -> MIAResult:
    """Logistic-regression attack with the DLFD protocol on ``[n, d]`` member / non-member features."""
    m_given, n_given = int(member.shape[0]), int(nonmember.shape[0])
    if m_given == 0 or n_given == 0:
        raise DataError(
            f"the {what} needs training photos being forgotten (members) and photos never trained on (non-members); "
            f"got {m_given} and {n_given}"
        )
    if balanced:
        rng = np.random.default_rng(seed)
        n_small = min(member.shape[0], nonmember.shape[0])
        if member.shape[0] > n_small:
            member = member[np.sort(rng.choice(member.shape[0], size=n_small, replace=False))]
        elif nonmember.shape[0] > n_small:
            nonmember = nonmember[np.sort(rng.choice(nonmember.shape[0], size=n_small, replace=False))]
    n_member, n_nonmember = int(member.shape[0]), int(nonmember.shape[0])
    n_total = n_member + n_nonmember
    per_side, in_all = _fewest_per_side(balanced)
    if min(n_member, n_nonmember) < per_side or n_total < in_all or math.ceil(MIA_TEST_SIZE * n_total) < 2:
        if balanced:
            raise DataError(
                f"the {what} needs at least {per_side} training photos being forgotten and {per_side} photos never "
                f"trained on; got {m_given} and {n_given} ({n_member} of each after balancing)"
            )
        raise DataError(
            f"the {what} needs at least {per_side} training photos being forgotten, at least {per_side} photos never "
            f"trained on and {in_all} in all; got {m_given} and {n_given}"
        )
    # Same layout as the DLFD / NeurIPS-2023 starting-kit code: non-members first, labelled 0; then members, 1.
    x = np.concatenate([nonmember, member], axis=0)
    y = np.concatenate([np.zeros(n_nonmember, dtype=np.int64), np.ones(n_member, dtype=np.int64)])
    cv = StratifiedShuffleSplit(n_splits=MIA_N_SPLITS, test_size=MIA_TEST_SIZE, random_state=MIA_RANDOM_STATE)
    accuracies: list[float] = []
    aucs: list[float] = []
    try:
        folds = list(cv.split(x, y))
    except ValueError as exc:  # pragma: no cover - guarded by the size check above
        raise DataError(f"the {what} cannot split {n_member} members and {n_nonmember} non-members: {exc}") from exc
    for train, test in folds:
        clf = LogisticRegression()
        clf.fit(x[train], y[train])
        accuracies.append(float(accuracy_score(y[test], clf.predict(x[test]))))
        if np.unique(y[test]).size == 2:
            aucs.append(float(roc_auc_score(y[test], clf.predict_proba(x[test])[:, 1])))
    return MIAResult(
        accuracy=float(np.asarray(accuracies).mean()),
        auc=float(np.mean(aucs)) if aucs else float("nan"),
        n_member=n_member,
        n_nonmember=n_nonmember,
    )


def mia_logistic(
    member_losses: np.ndarray, nonmember_losses: np.ndarray, *, balanced: bool, seed: int = 0
) -> MIAResult:
    """The DLFD paper's loss-based membership-inference attack.

    The attack feature is the per-sample cross-entropy (one number per sample). Non-member losses (label 0)
    followed by member/forget losses (label 1) are classified by sklearn ``LogisticRegression()`` with its
    defaults, evaluated on ``StratifiedShuffleSplit(n_splits=10, test_size=0.1, random_state=0)``. The accuracy
    equals ``cross_val_score(LogisticRegression(), X, y, cv=cv, scoring="accuracy").mean()`` on that layout.

    The AUC is the mean, over the same 10 folds, of ``roc_auc_score`` of the held-out fold's predicted member
    probabilities; folds whose held-out part has a single class (possible only with very unequal sides) are
    skipped, and the AUC is NaN if every fold is.

    Args:
        member_losses: ``[m]`` losses of the samples the model trained on and should forget.
        nonmember_losses: ``[n]`` losses of samples the model never trained on (e.g. the test set).
        balanced: ``False``: use every sample (the released DLFD code; a one-class attack can then score the
            majority rate). ``True``: subsample the larger side, without replacement, to the smaller side's size.
        seed: seed of ``np.random.default_rng`` for the balancing subsample.

    Returns:
        The attack's :class:`MIAResult`.

    Raises:
        DataError: a side is empty, there are too few samples for the splitter (balanced: at least 6 on each side;
            unbalanced: at least 2 on each side and 11 in all), or a loss is not finite.
    """
    member = _attack_features(member_losses, "member losses", 1)
    nonmember = _attack_features(nonmember_losses, "non-member losses", 1)
    return _run_attack(member, nonmember, balanced=balanced, seed=seed, what="loss-based membership attack")


def _confidence_entropy(logits: np.ndarray, name: str) -> np.ndarray:
    z = _logits_2d(logits, name)
    logp = log_softmax(z)
    p = np.exp(logp)
    entropy = -np.sum(np.where(p > 0, p * logp, 0.0), axis=1)
    return np.stack([p.max(axis=1), entropy], axis=1)


def mia_label_free(
    member_logits: np.ndarray, nonmember_logits: np.ndarray, *, balanced: bool, seed: int = 0
) -> MIAResult:
    """Membership attack that needs no labels, for forgetting whole identities.

    A person who is not one of the model's classes has no loss, so the attack features are the maximum
    softmax confidence and the prediction entropy (natural log) of each sample. Everything else follows
    :func:`mia_logistic`: logistic regression, 10 stratified shuffle splits with ``random_state=0``, mean
    held-out accuracy and AUC, the same optional balancing.

    Args:
        member_logits: ``[m, C]`` logits of samples the model trained on and should forget.
        nonmember_logits: ``[n, C]`` logits of samples it never trained on.
        balanced: subsample the larger side to the smaller side's size.
        seed: seed of the balancing subsample.

    Returns:
        The attack's :class:`MIAResult`.

    Raises:
        DataError: a side is empty, there are too few samples, or a logit is not finite.
    """
    member = _attack_features(_confidence_entropy(member_logits, "member logits"), "member logits", 2)
    nonmember = _attack_features(_confidence_entropy(nonmember_logits, "non-member logits"), "non-member logits", 2)
    return _run_attack(member, nonmember, balanced=balanced, seed=seed, what="label-free membership attack")


def _mia_value(mia: float | MIAResult) -> float:
    value = mia.accuracy if isinstance(mia, MIAResult) else float(mia)
    if math.isnan(value):
        return value
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"an attack accuracy must lie in [0, 1], got {value}")
    return value


def forgetting_score(mia: float | MIAResult) -> float:
    """The DLFD forgetting score ``FS = |MIA - 0.5|`` (0 is best: the attack is at chance).

    Args:
        mia: attack accuracy in ``[0, 1]``, or an :class:`MIAResult`; NaN (too few photos to run the attack, see
            :func:`dlfd_core.evaluate.evaluate.compute_metrics`) gives NaN.

    Raises:
        ValueError: an accuracy outside ``[0, 1]`` that is not NaN.
    """
    return abs(_mia_value(mia) - 0.5)


def nomus(test_accuracy: float, mia: float | MIAResult) -> float:
    """Normalised machine-unlearning score ``(test_accuracy + 1 - 2 * FS) / 2`` of the DLFD paper.

    Args:
        test_accuracy: accuracy on the test set, in ``[0, 1]``, or NaN (no test photo).
        mia: attack accuracy in ``[0, 1]``, or an :class:`MIAResult`, or NaN (too few photos for the attack).

    Returns:
        A score in ``[0, 1]``, higher is better; NaN when either input is NaN (it cannot be judged).

    Raises:
        ValueError: an input outside ``[0, 1]`` that is not NaN.
    """
    test_accuracy = float(test_accuracy)
    if not math.isnan(test_accuracy) and not 0.0 <= test_accuracy <= 1.0:
        raise ValueError(f"test_accuracy must lie in [0, 1], got {test_accuracy}")
    return (test_accuracy + 1.0 - 2.0 * forgetting_score(mia)) / 2.0


# --------------------------------------------------------------------------------------------------------------------
# alignment with the gold model


def accuracy_gap(acc_a: float, acc_b: float) -> float:
    """Absolute difference of two accuracies (e.g. unlearned vs gold on the forget set; lower is better)."""
    return abs(float(acc_a) - float(acc_b))


def _paired_logits(logits_a: np.ndarray, logits_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = _logits_2d(logits_a, "logits_a")
    b = _logits_2d(logits_b, "logits_b")
    if a.shape != b.shape:
        raise ValueError(f"logits_a {a.shape} and logits_b {b.shape} must have the same shape")
    if a.shape[0] == 0:
        raise ValueError("need at least one sample")
    return a, b


def js_divergence(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """Mean over samples of the Jensen-Shannon divergence between two models' softmax outputs.

    ``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``, natural log, so each term lies in
    ``[0, ln 2]``. This is the square of ``scipy.spatial.distance.jensenshannon(p, q)``.

    Args:
        logits_a: ``[N, C]`` logits of one model (e.g. the unlearned one).
        logits_b: ``[N, C]`` logits of the other (e.g. the gold model) on the same samples.
    """
    a, b = _paired_logits(logits_a, logits_b)
    log_p, log_q = log_softmax(a), log_softmax(b)
    log_m = np.logaddexp(log_p, log_q) - math.log(2.0)
    p, q = np.exp(log_p), np.exp(log_q)
    kl_pm = np.sum(np.where(p > 0, p * (log_p - log_m), 0.0), axis=1)
    kl_qm = np.sum(np.where(q > 0, q * (log_q - log_m), 0.0), axis=1)
    per_sample = np.clip(0.5 * (kl_pm + kl_qm), 0.0, math.log(2.0))
    return float(per_sample.mean())


def activation_distance(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """Mean over samples of ``|| softmax(a) - softmax(b) ||_2`` (TMU's activation distance; lower is closer)."""
    a, b = _paired_logits(logits_a, logits_b)
    return float(np.linalg.norm(softmax(a) - softmax(b), axis=1).mean())


# --------------------------------------------------------------------------------------------------------------------
# identity leakage in the embedding


def unit_rows(features: np.ndarray, name: str = "features") -> np.ndarray:
    """L2-normalised rows in float64 (the embedding metrics' cosine geometry).

    Raises:
        ValueError: not ``[N, D]``.
        DataError: NaN or infinite values (a diverged model).
    """
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be [N, D], got shape {array.shape}")
    if not np.isfinite(array).all():
        raise DataError(f"{name} contain NaN or infinite values; the model may have diverged")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.maximum(norms, 1e-12)


def _identity_array(identities: Sequence[str], n: int, name: str = "identities") -> np.ndarray:
    array = np.asarray([str(i) for i in identities], dtype=object)
    if array.shape != (n,):
        raise ValueError(f"{name} must hold {n} entries, got {array.shape[0]}")
    return array


def _pair_scores(
    unit: np.ndarray, ids: np.ndarray, n_rows: int, pairs: PairMode, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores and same-person flags of pairs ``(r, c)``, ``r < n_rows``, ``r < c`` (rows pre-ordered)."""
    n = unit.shape[0]
    row_len = np.maximum(n - 1 - np.arange(n_rows), 0)
    offsets = np.concatenate([[0], np.cumsum(row_len)])
    total = int(offsets[-1])
    if pairs != "all":
        if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
            raise ValueError(f"pairs must be 'all' or a positive int, got {pairs!r}")
    if pairs == "all" or pairs >= total:
        scores: list[np.ndarray] = []
        same: list[np.ndarray] = []
        block = max(1, 4_000_000 // max(n, 1))
        for start in range(0, n_rows, block):
            stop = min(n_rows, start + block)
            sims = unit[start:stop] @ unit.T
            for k, r in enumerate(range(start, stop)):
                scores.append(sims[k, r + 1 :])
                same.append(ids[r + 1 :] == ids[r])
        if not scores:
            return np.zeros(0), np.zeros(0, dtype=bool)
        return np.concatenate(scores), np.concatenate(same).astype(bool)
    rng = np.random.default_rng(seed)
    linear = np.sort(rng.choice(total, size=pairs, replace=False))
    rows = np.searchsorted(offsets, linear, side="right") - 1
    cols = rows + 1 + (linear - offsets[rows])
    return np.einsum("ij,ij->i", unit[rows], unit[cols]), (ids[rows] == ids[cols]).astype(bool)


def _pair_auc(scores: np.ndarray, same: np.ndarray, what: str) -> float:
    n_pos = int(same.sum())
    if n_pos == 0 or n_pos == same.size:
        raise DataError(
            f"{what} needs both same-person and different-person pairs; got {n_pos} same-person pairs of "
            f"{same.size} (each person needs at least two photos, and there must be at least two people)"
        )
    return rank_auc(scores, same)


def rank_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: the share of (positive, negative) pairs in which the positive scores
    higher, ties counted half; the value ``roc_auc_score`` gives, from one sort of the negatives (on LFW's 400,000
    test pairs about ten times faster, which the app's per-run evaluation needs)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    negatives = np.sort(scores[~positive])
    hits = scores[positive]
    below = np.searchsorted(negatives, hits, side="left")
    up_to = np.searchsorted(negatives, hits, side="right")
    return float((below.sum() + 0.5 * (up_to - below).sum()) / (hits.size * negatives.size))


def verification_auc(
    features: np.ndarray, identities: Sequence[str], *, pairs: PairMode = "all", seed: int = 0
) -> float:
    """Face-verification ROC AUC of the embedding: cosine similarity of same-person vs different-person pairs.

    Rows are L2-normalised; every unordered pair of distinct samples is scored (``N (N - 1) / 2`` pairs).

    Args:
        features: ``[N, D]`` embeddings.
        identities: the person of each sample.
        pairs: ``"all"``, or a number of pairs drawn uniformly without replacement from all pairs (to bound
            time and memory on large sets; every pair is used if there are fewer).
        seed: seed of the pair draw when ``pairs`` is a number.

    Returns:
        The AUC; 1.0 when every same-person pair is more similar than every different-person pair.

    Raises:
        DataError: no same-person pair or no different-person pair.
    """
    unit = unit_rows(features)
    ids = _identity_array(identities, unit.shape[0])
    scores, same = _pair_scores(unit, ids, unit.shape[0], pairs, seed)
    return _pair_auc(scores, same, "verification AUC")


def verification_auc_for(
    features: np.ndarray,
    identities: Sequence[str],
    target_identities: Collection[str],
    *,
    pairs: PairMode = "all",
    seed: int = 0,
) -> float:
    """Verification AUC restricted to pairs in which at least one side is a target (e.g. forgotten) person.

    Positives are pairs of two photos of the same target person; negatives pair a target photo with a photo
    of anyone else. A high value means the embedding still singles the target people out.

    Args:
        features: ``[N, D]`` embeddings of target and other people.
        identities: the person of each sample.
        target_identities: the people of interest.
        pairs: ``"all"`` or a number of pairs to draw from the eligible ones (see :func:`verification_auc`).
        seed: seed of the pair draw.

    Raises:
        DataError: no sample belongs to a target person, or the pairs lack one of the two kinds.
    """
    unit = unit_rows(features)
    ids = _identity_array(identities, unit.shape[0])
    targets = {str(t) for t in target_identities}
    is_target = np.array([i in targets for i in ids], dtype=bool)
    if not is_target.any():
        raise DataError(f"none of the {len(targets)} target identities has a sample in this set")
    order = np.concatenate([np.flatnonzero(is_target), np.flatnonzero(~is_target)])
    scores, same = _pair_scores(unit[order], ids[order], int(is_target.sum()), pairs, seed)
    return _pair_auc(scores, same, "verification AUC of the target people")


def _nearest(probe: np.ndarray, gallery: np.ndarray, exclude_self: bool) -> np.ndarray:
    best = np.empty(probe.shape[0], dtype=np.int64)
    block = max(1, 4_000_000 // max(gallery.shape[0], 1))
    for start in range(0, probe.shape[0], block):
        sims = probe[start : start + block] @ gallery.T
        if exclude_self:
            idx = np.arange(start, start + sims.shape[0])
            sims[idx - start, idx] = -np.inf
        best[start : start + sims.shape[0]] = np.argmax(sims, axis=1)
    return best


def nn_identification(
    gallery_features: np.ndarray,
    gallery_identities: Sequence[str],
    probe_features: np.ndarray,
    probe_identities: Sequence[str],
) -> float:
    """Closed-set 1-nearest-neighbour identification rate by cosine similarity.

    Each probe takes the identity of its most similar gallery sample (first one on ties). Probes of a person
    absent from the gallery can never be right and count as misses.

    Args:
        gallery_features: ``[G, D]`` enrolled embeddings.
        gallery_identities: the person of each gallery sample.
        probe_features: ``[P, D]`` query embeddings (same ``D``).
        probe_identities: the person of each probe.

    Returns:
        The fraction of probes identified correctly.
    """
    gallery = unit_rows(gallery_features, "gallery_features")
    probe = unit_rows(probe_features, "probe_features")
    if gallery.shape[0] == 0 or probe.shape[0] == 0:
        raise DataError(
            f"identification needs gallery photos and photos to identify; got {gallery.shape[0]} and {probe.shape[0]}"
        )
    if gallery.shape[1] != probe.shape[1]:
        raise ValueError(f"gallery dim {gallery.shape[1]} != probe dim {probe.shape[1]}")
    g_ids = _identity_array(gallery_identities, gallery.shape[0], "gallery_identities")
    p_ids = _identity_array(probe_identities, probe.shape[0], "probe_identities")
    return float(np.mean(g_ids[_nearest(probe, gallery, exclude_self=False)] == p_ids))


def loo_nn_identification(features: np.ndarray, identities: Sequence[str], *, exclude_singletons: bool = True) -> float:
    """Leave-one-out 1-nearest-neighbour identification within one set, by cosine similarity.

    Each sample is matched against all the others and takes its nearest neighbour's identity.

    Args:
        features: ``[N, D]`` embeddings.
        identities: the person of each sample.
        exclude_singletons: leave out samples whose person has no other sample (they cannot be matched);
            with ``False`` they count as misses.

    Returns:
        The fraction of (kept) samples identified correctly.

    Raises:
        DataError: fewer than two samples, or no sample left to score.
    """
    unit = unit_rows(features)
    ids = _identity_array(identities, unit.shape[0])
    if unit.shape[0] < 2:
        raise DataError(f"leave-one-out identification needs at least 2 samples, got {unit.shape[0]}")
    keep = np.ones(unit.shape[0], dtype=bool)
    if exclude_singletons:
        _, inverse, counts = np.unique(ids.astype(str), return_inverse=True, return_counts=True)
        keep = counts[inverse] > 1
        if not keep.any():
            raise DataError("leave-one-out identification needs a person with at least two samples")
    nearest = _nearest(unit, unit, exclude_self=True)
    return float(np.mean((ids[nearest] == ids)[keep]))


# --------------------------------------------------------------------------------------------------------------------
# correlation collapse


def linear_probe_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray | Sequence[int] | Sequence[str],
    test_features: np.ndarray,
    test_labels: np.ndarray | Sequence[int] | Sequence[str],
    *,
    seed: int = 0,
    max_iter: int = 5000,
) -> float:
    """Test accuracy of a linear probe fitted on frozen features.

    A ``StandardScaler`` followed by sklearn ``LogisticRegression(max_iter=max_iter, random_state=seed)``
    is fitted on the training features; how well it predicts the test labels measures how much label
    information the embedding still carries (a collapse of the forget people's features drives it down).
    Test labels unseen in training count as misses.

    Args:
        train_features: ``[N, D]`` features to fit on.
        train_labels: ``[N]`` labels (class indices or identity names).
        test_features: ``[M, D]`` features to score.
        test_labels: ``[M]`` labels.
        seed: the probe's ``random_state``.
        max_iter: iteration limit of the solver.

    Raises:
        DataError: fewer than two distinct training labels, or no test sample.
    """
    x_train = np.asarray(train_features, dtype=np.float64)
    x_test = np.asarray(test_features, dtype=np.float64)
    y_train = np.asarray(train_labels)
    y_test = np.asarray(test_labels)
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"features must be [N, D] with equal D, got {x_train.shape} and {x_test.shape}")
    if y_train.shape != (x_train.shape[0],) or y_test.shape != (x_test.shape[0],):
        raise ValueError("each feature row needs exactly one label")
    if np.unique(y_train).size < 2:
        raise DataError("a linear probe needs training samples of at least two classes")
    if x_test.shape[0] == 0:
        raise DataError("a linear probe needs at least one test sample")
    if not (np.isfinite(x_train).all() and np.isfinite(x_test).all()):
        raise DataError("features contain NaN or infinite values; the model may have diverged")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    probe.fit(x_train, y_train)
    return float(np.mean(probe.predict(x_test) == y_test))
