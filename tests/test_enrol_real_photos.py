"""Enrol a person from real colour photos that were never cropped for this project (LFW), then forget them.

Whatever enrolment accepts must be forgettable: with 5 to 8 photos the person trains on 3 to 5 of them, too few for
the membership attack, and the run must end with an "inconclusive, not enough photos" verdict instead of crashing;
with 40 photos every metric is defined.
"""

from __future__ import annotations

import math

import pytest

from dlfd_core import studio
from dlfd_core.unlearn import create_method

pytestmark = pytest.mark.slow

PERSON = "Gerhard_Schroeder"  # 109 photos in LFW; never in the ORL workspace


@pytest.fixture(scope="module")
def workspace(orl_aligned):
    return studio.load_workspace("orl", device="cpu")


@pytest.fixture(scope="module")
def photos(lfw_root):
    files = sorted((lfw_root / PERSON).glob("*.jpg"))
    assert len(files) >= 40
    return [str(f) for f in files]


@pytest.mark.parametrize("count", [5, 6, 7, 8, 40])
def test_a_person_enrolled_from_real_photos_can_be_forgotten(workspace, photos, tmp_path, count):
    session = studio.Session.start(workspace, tmp_path / "sessions")
    try:
        enrolment = studio.enrol(session, "Gerhard Schröder", photos[:count])
        assert len(enrolment.crops) + len(enrolment.failures) + len(enrolment.notes) >= count - 1
        assert enrolment.train + enrolment.holdout + enrolment.test == len(enrolment.crops)
        assert session.split.known[-1] == "Gerhard Schröder"
        with_gold = count in (5, 40)  # the smallest set (too few photos to judge) and the largest, with gold
        record = studio.run_forget(
            session, ["Gerhard Schröder"], create_method("dlfd"), with_gold=with_gold, seed=count
        )
        after = record.outcome.reports["after"]
        assert record.outcome.reports["after"].metrics["forget_train_acc"] <= 0.5
        attack = after.metrics["label_free_mia_acc"]
        if enrolment.train < studio.MIN_ATTACK_PHOTOS:
            assert math.isnan(attack)
            assert "inconclusive, not enough photos to judge" in record.verdict
            assert f"there are {enrolment.train}" in record.verdict
            assert "label_free_mia_acc" in after.meta["undefined"]
            assert "n/a" in studio.cards_html(record)
        else:
            assert 0.0 <= attack <= 1.0
            if with_gold:  # a judgement with its evidence, and the verdict says what it found
                assert record.judgement is not None and len(record.judgement.comparisons) == 2
                words = {
                    "forgotten": "looks forgotten",
                    "detectable": "is not forgotten",
                    "inconclusive": "inconclusive",
                }
                for outcome, text in words.items():
                    assert (text in record.verdict) == (outcome == record.judgement.outcome), record.verdict
            else:
                assert "not judged" in record.verdict and record.judgement is None
        assert record.files["report_json"].is_file() and record.files["model"].is_file()
        print(
            f"\n{count} photos: {len(enrolment.crops)} faces ({enrolment.train} train / {enrolment.holdout} holdout / "
            f"{enrolment.test} test), held-out recognised {enrolment.recognised:.0%}, "
            f"enrolment {enrolment.seconds:.1f} s; forget {record.seconds:.1f} s, "
            f"forget acc {after.metrics['forget_train_acc']:.2f}, attack {attack:.3f}; "
            f"verdict: {record.verdict.split('**')[1]}"
        )
        assert ("gold" in record.outcome.reports) == with_gold
    finally:
        session.close()
