"""Is a person forgotten? The unlearned model against the gold model, with intervals, as a three-way judgement.

Unlearning is judged *relative to the gold model* (retrained without the person), not against zero: a model that
never saw someone still recognises some of their photos by chance and still treats them a little differently from
strangers. Two paired comparisons are made on the same photos:

* **forget accuracy**: the share of the forgotten training photos each model classifies as their person;
* **the membership attack**: the AUC with which each model's per-photo membership score tells the forgotten
  training photos from non-members' photos (50 % is chance, 100 % every forgotten photo stands out). The score is
  LiRA's logit-scaled confidence of the top class (label-free; :func:`~dlfd_core.evaluate.attacks.membership_scores`);
  with reference statistics for the photos (:class:`ReferenceStatistics`, e.g. the bundled datasets' shipped
  :class:`~dlfd_core.references.PersonReferences`) it is offline LiRA's z-value instead, each photo's statistic
  measured against what models that never saw its person give it ("LiRA attack AUC"): a gold model then sits near
  50 %, where the reference-free score leaves it well above (photos of a known-looking face are confident anyway).

For each, the 95 % interval of *model − gold* comes from a paired percentile bootstrap: the same resampled photos
are scored under both models, so what the two have in common (which photos are hard) cancels out. The judgement:

* ``"forgotten"``: both intervals lie within ``± margin`` (an equivalence test: the photos rule out a difference that
  matters, not merely fail to show one). This is decided first: a difference that the paired bootstrap resolves but
  that lies wholly inside the margin (a retrained model that differs from the gold model only by float rounding, or
  by its seed) is no difference that matters;
* ``"detectable"``: otherwise, an interval excludes 0, i.e. the model differs from the gold model beyond what the
  photos' sampling explains (in either direction: a model that forgets *more* than the gold model is detectable too);
* ``"inconclusive"``: neither; too few photos to rule out a difference of ``margin``, or too few for the attack.

The margin (default 0.10: ten points of accuracy or of AUC) is a choice stated in ``docs/evaluation.md``, not a
number fitted to results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..data.splits import Split
from .attacks import ATTACK, LIRA_ATTACK, ReferenceStatistics, photo_scores
from .attacks import _pair_auc as _auc
from .outputs import SplitOutputs, nonmember_outputs

__all__ = [
    "ATTACK",
    "DEFAULT_MARGIN",
    "LIRA_ATTACK",
    "MIN_PHOTOS",
    "GoldComparison",
    "Judgement",
    "ReferenceStatistics",
    "judge_against_gold",
    "paired_bootstrap_interval",
]

DEFAULT_MARGIN = 0.10
"""Equivalence margin: a difference from the gold model smaller than this (in accuracy or AUC) does not matter."""

MIN_PHOTOS = 6
"""Fewest forgotten training photos, and fewest non-member photos, a judgement is attempted with."""


@dataclass(frozen=True)
class GoldComparison:
    """One statistic of the unlearned model beside the gold model's, with the 95 % interval of their difference."""

    name: str
    value: float
    gold: float
    interval: tuple[float, float]

    @property
    def difference(self) -> float:
        return self.value - self.gold

    @property
    def differs(self) -> bool:
        """The interval of ``value − gold`` excludes 0."""
        low, high = self.interval
        return low > 0 or high < 0

    def within(self, margin: float) -> bool:
        """The interval of ``value − gold`` lies inside ``[−margin, margin]``."""
        low, high = self.interval
        return -margin <= low and high <= margin


@dataclass(frozen=True)
class Judgement:
    """The outcome (``forgotten``, ``detectable`` or ``inconclusive``), the comparisons behind it, and why."""

    outcome: str
    comparisons: tuple[GoldComparison, ...]
    reason: str
    members: int
    nonmembers: int
    margin: float


def paired_bootstrap_interval(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    sizes: tuple[int, int],
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(member_rows, nonmember_rows)`` over ``resamples`` seeded draws, each side
    resampled with replacement at its own size (``sizes``; a side of size 0 gets empty rows). ``statistic`` computes
    the paired difference for the drawn rows, so both models see the same photos in every draw."""
    rng = np.random.default_rng(seed)
    draws = np.array(
        [statistic(rng.integers(0, sizes[0], sizes[0]), rng.integers(0, sizes[1], sizes[1])) for _ in range(resamples)]
    )
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return float(low), float(high)


def judge_against_gold(
    model: Mapping[str, SplitOutputs],
    gold: Mapping[str, SplitOutputs],
    split: Split,
    *,
    margin: float = DEFAULT_MARGIN,
    resamples: int = 2000,
    seed: int = 0,
    references: ReferenceStatistics | None = None,
    keys: Mapping[str, Sequence[str]] | None = None,
) -> Judgement:
    """Judge whether the forgotten photos look to ``model`` as they look to the ``gold`` model (see the module).

    Args:
        model, gold: per-part outputs of the unlearned and the gold model on the same split (``forget_train`` and
            the non-member parts are used).
        split: the split (its ``forget_mode`` chooses the non-members).
        margin: the equivalence margin, in accuracy and AUC units.
        resamples, seed: the bootstrap's draws and seed.
        references, keys: reference statistics and the image keys of each part's photos (in the outputs' order,
            :meth:`~dlfd_core.data.Split.part_keys`): the attack is then offline LiRA, when a whole person is
            forgotten and the statistics cover every photo it scores; otherwise the reference-free score.
    """
    forget, forget_gold = model.get("forget_train"), gold.get("forget_train")
    others, others_gold = nonmember_outputs(model, split.forget_mode), nonmember_outputs(gold, split.forget_mode)
    members = 0 if forget is None else len(forget)
    nonmembers = 0 if others is None else len(others)

    def judgement(outcome: str, comparisons: tuple[GoldComparison, ...], reason: str) -> Judgement:
        return Judgement(outcome, comparisons, reason, members, nonmembers, margin)

    if members < MIN_PHOTOS or nonmembers < MIN_PHOTOS:
        return judgement(
            "inconclusive",
            (),
            f"the comparison needs at least {MIN_PHOTOS} forgotten training photos and {MIN_PHOTOS} photos of "
            f"non-members; there are {members} and {nonmembers}",
        )
    assert forget is not None and forget_gold is not None and others is not None and others_gold is not None
    if len(forget_gold) != members or len(others_gold) != nonmembers:
        raise ValueError("the model's and the gold model's outputs must cover the same photos")
    labels = forget.labels
    correct = (forget.logits.argmax(1) == labels).astype(np.float64)
    correct_gold = (forget_gold.logits.argmax(1) == labels).astype(np.float64)
    mine = photo_scores(model, split.forget_mode, references=references, keys=keys)
    theirs = photo_scores(gold, split.forget_mode, references=references, keys=keys)
    score_m, score_g, other_m, other_g = mine.forget, theirs.forget, mine.nonmember, theirs.nonmember
    attack = mine.attack

    def accuracy_difference(rows: np.ndarray, _: np.ndarray) -> float:
        return float(correct[rows].mean() - correct_gold[rows].mean())

    def auc_difference(rows: np.ndarray, other_rows: np.ndarray) -> float:
        return _auc(score_m[rows], other_m[other_rows]) - _auc(score_g[rows], other_g[other_rows])

    sizes = (members, nonmembers)
    comparisons = (
        GoldComparison(
            "forget accuracy",
            float(correct.mean()),
            float(correct_gold.mean()),
            paired_bootstrap_interval(accuracy_difference, sizes, resamples=resamples, seed=seed),
        ),
        GoldComparison(
            attack,
            _auc(score_m, other_m),
            _auc(score_g, other_g),
            paired_bootstrap_interval(auc_difference, sizes, resamples=resamples, seed=seed + 1),
        ),
    )
    if all(c.within(margin) for c in comparisons):
        # equivalence first: a difference the paired bootstrap resolves but that lies wholly inside the margin (a
        # retrained model that differs from the gold model by float rounding; another seed) is not one that matters
        resolved = [
            f"{c.name} {c.difference:+.4f} (95% interval {c.interval[0]:+.4f} to {c.interval[1]:+.4f})"
            for c in comparisons
            if c.differs
        ]
        reason = f"both differences from the gold model lie within ±{margin:.2f} (95% intervals)"
        if resolved:
            reason += f"; the photos resolve a difference smaller than that: {'; '.join(resolved)}"
        return judgement("forgotten", comparisons, reason)
    differing = [c for c in comparisons if c.differs]
    if differing:
        parts = [
            f"{c.name} {'above' if c.difference > 0 else 'below'} the gold model's "
            f"(difference {c.difference:+.2f}, 95% interval {c.interval[0]:+.2f} to {c.interval[1]:+.2f})"
            for c in differing
        ]
        return judgement("detectable", comparisons, "; ".join(parts))
    unresolved = [c for c in comparisons if not c.within(margin)]  # not empty: the all-within case returned above
    parts = [
        f"{c.name}: the difference from the gold model could be anywhere from {c.interval[0]:+.2f} to "
        f"{c.interval[1]:+.2f}"
        for c in unresolved
    ]
    return judgement(
        "inconclusive",
        comparisons,
        f"no difference from the gold model shows, but {members} photos cannot rule out one of {margin:.2f} "
        f"or more ({'; '.join(parts)})",
    )
