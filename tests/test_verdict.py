"""The verdict against the gold model: equivalence, detectable differences in either direction, too few photos."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from dlfd_core.evaluate.outputs import SplitOutputs, nonmember_outputs
from dlfd_core.evaluate.verdict import (
    MIN_PHOTOS,
    judge_against_gold,
    paired_bootstrap_interval,
)

CLASSES = 4


def _outputs(top: np.ndarray, *, label: int = 1, correct: np.ndarray | None = None, who: str = "p") -> SplitOutputs:
    """Photos whose top-class logit is ``top`` (the rest 0); the top class is ``label`` where ``correct``."""
    n = len(top)
    correct = np.ones(n, bool) if correct is None else correct
    logits = np.zeros((n, CLASSES), np.float32)
    predicted = np.where(correct, label, (label + 1) % CLASSES)
    logits[np.arange(n), predicted] = top
    return SplitOutputs(
        logits=logits,
        labels=np.full(n, label),
        losses=np.zeros(n),
        features=np.zeros((n, 2), np.float32),
        identities=(who,) * n,
    )


def _split(mode: str = "identity") -> Any:
    """What the judgement reads of a split: its forgetting mode."""
    return SimpleNamespace(forget_mode=mode)


def _parts(forget: SplitOutputs, unseen: SplitOutputs) -> dict[str, SplitOutputs]:
    return {"forget_train": forget, "unseen": unseen}


RNG = np.random.default_rng(0)
MEMBERS = RNG.normal(2.0, 1.0, 12)
STRANGERS = RNG.normal(2.0, 1.0, 40)


def test_a_model_identical_to_gold_is_forgotten() -> None:
    gold = _parts(_outputs(MEMBERS, correct=np.zeros(12, bool)), _outputs(STRANGERS, label=-1, who="u"))
    judgement = judge_against_gold(gold, gold, _split())
    assert judgement.outcome == "forgotten"
    assert [c.interval for c in judgement.comparisons] == [(0.0, 0.0), (0.0, 0.0)]
    assert (judgement.members, judgement.nonmembers) == (12, 40)


def test_a_model_that_still_recognises_the_person_is_detectable() -> None:
    others = _outputs(STRANGERS, label=-1, who="u")
    gold = _parts(_outputs(MEMBERS, correct=np.zeros(12, bool)), others)
    model = _parts(_outputs(MEMBERS), others)
    judgement = judge_against_gold(model, gold, _split())
    accuracy = judgement.comparisons[0]
    assert judgement.outcome == "detectable"
    assert (accuracy.value, accuracy.gold, accuracy.interval) == (1.0, 0.0, (1.0, 1.0))
    assert "forget accuracy above the gold model's" in judgement.reason


@pytest.mark.parametrize(("shift", "word"), [(+3.0, "above"), (-3.0, "below")])
def test_membership_that_stands_out_either_way_is_detectable(shift: float, word: str) -> None:
    """Planted memorisation (members far more confident than on gold) and the opposite, members made conspicuously
    unfamiliar: both differ from the gold model, so neither is called forgotten."""
    wrong = np.zeros(12, bool)
    gold = _parts(_outputs(MEMBERS, correct=wrong), _outputs(STRANGERS, label=-1, who="u"))
    model = _parts(_outputs(MEMBERS + shift, correct=wrong), _outputs(STRANGERS, label=-1, who="u"))
    judgement = judge_against_gold(model, gold, _split())
    attack = judgement.comparisons[1]
    assert judgement.outcome == "detectable"
    assert f"membership attack AUC {word} the gold model's" in judgement.reason
    assert attack.differs and (attack.interval[0] > 0.2 if shift > 0 else attack.interval[1] < -0.2)


def test_a_difference_resolved_but_inside_the_margin_is_still_forgotten() -> None:
    """A retrained model that differs from the gold model by float rounding (or another seed) shifts scores a little:
    the paired bootstrap resolves the shift, but it lies wholly inside the margin, so it does not matter."""
    wrong = np.zeros(12, bool)
    # each forgotten photo has a stranger's photo just above it under the gold model, and just below it under the model
    strangers = _outputs(np.r_[STRANGERS, MEMBERS + 1e-3], label=-1, who="u")
    gold = _parts(_outputs(MEMBERS, correct=wrong), strangers)
    model = _parts(_outputs(MEMBERS + 2e-3, correct=wrong), strangers)
    judgement = judge_against_gold(model, gold, _split())
    attack = judgement.comparisons[1]
    assert attack.differs and 0 < attack.interval[0] <= attack.interval[1] < judgement.margin
    assert judgement.outcome == "forgotten"
    assert "resolve a difference smaller than that" in judgement.reason


def test_unrelated_scores_on_few_photos_are_inconclusive_not_forgotten() -> None:
    """A model whose scores have nothing to do with the gold model's, on 6 photos: no difference can be shown, and
    none of 10 points can be ruled out either."""
    rng = np.random.default_rng(3)
    wrong = np.zeros(MIN_PHOTOS, bool)
    gold = _parts(_outputs(rng.normal(0, 1, MIN_PHOTOS), correct=wrong), _outputs(rng.normal(0, 1, 8), label=-1))
    model = _parts(_outputs(rng.normal(0, 1, MIN_PHOTOS), correct=wrong), _outputs(rng.normal(0, 1, 8), label=-1))
    judgement = judge_against_gold(model, gold, _split())
    assert judgement.outcome == "inconclusive"
    assert not any(c.differs for c in judgement.comparisons)
    assert not judgement.comparisons[1].within(judgement.margin)
    assert "cannot rule out" in judgement.reason


def test_too_few_photos_is_inconclusive_and_says_how_many() -> None:
    few = _parts(_outputs(MEMBERS[: MIN_PHOTOS - 1]), _outputs(STRANGERS, label=-1))
    judgement = judge_against_gold(few, few, _split())
    assert judgement.outcome == "inconclusive" and judgement.comparisons == ()
    assert f"there are {MIN_PHOTOS - 1} and 40" in judgement.reason


def test_non_members_follow_the_forgetting_mode() -> None:
    unseen, test = _outputs(STRANGERS, label=-1, who="u"), _outputs(MEMBERS, who="a")
    parts = {"forget_train": _outputs(MEMBERS), "unseen": unseen, "retain_test": test}
    assert nonmember_outputs(parts, "identity") is unseen
    assert nonmember_outputs(parts, "instance") is test
    assert nonmember_outputs({"forget_train": test}, "instance") is None


def test_paired_bootstrap_of_a_constant_and_of_a_mean() -> None:
    assert paired_bootstrap_interval(lambda a, b: 0.25, (5, 7)) == (0.25, 0.25)
    values = np.arange(10.0)
    low, high = paired_bootstrap_interval(lambda rows, _: float(values[rows].mean()), (10, 0), resamples=4000)
    # the mean of 10 draws from 0..9: standard error 2.87 / sqrt(10) = 0.91, so the 95% interval is about ±1.8
    assert low == pytest.approx(4.5 - 1.78, abs=0.3) and high == pytest.approx(4.5 + 1.78, abs=0.3)


def test_a_report_gives_each_accuracy_its_wilson_interval_over_photos() -> None:
    from scipy.stats import binomtest

    from dlfd_core.evaluate.evaluate import report_from_outputs

    correct = np.r_[np.ones(9, bool), np.zeros(3, bool)]
    parts = _parts(_outputs(MEMBERS, correct=correct), _outputs(STRANGERS, label=-1, who="u"))
    report = report_from_outputs(parts, _split())
    assert report.metrics["forget_train_acc"] == pytest.approx(0.75)
    wilson = binomtest(9, 12).proportion_ci(method="wilson")
    assert report.interval("forget_train_acc") == pytest.approx((wilson.low, wilson.high))
    assert report.interval("nomus") is None  # only the headline numbers carry one
