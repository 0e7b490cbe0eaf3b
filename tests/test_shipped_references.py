"""Shipped reference statistics and the verdict's offline LiRA: the arithmetic by hand, a planted memorisation that
only the calibrated attack sees, the fall-back to the reference-free attack, and the file format."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dlfd_core.errors import DataError
from dlfd_core.evaluate.outputs import SplitOutputs
from dlfd_core.evaluate.verdict import ATTACK, LIRA_ATTACK, judge_against_gold
from dlfd_core.references import PERSON_REFERENCES_FORMAT, PersonReferences

CLASSES = 3
RNG = np.random.default_rng(7)
MEMBERS, STRANGERS, COUNT, NOISE = 30, 60, 16, 0.5
#: Each photo's own difficulty: the statistic a model that never saw the person gives it. It varies widely by photo,
#: and the forgotten person's photos are easier than the strangers' (as a clear, frontal face is for any model).
MU = np.r_[RNG.uniform(3.0, 8.0, MEMBERS), RNG.uniform(0.5, 5.0, STRANGERS)]
KEYS = tuple(f"f/{i}" for i in range(MEMBERS)) + tuple(f"u/{i}" for i in range(STRANGERS))


def _references() -> PersonReferences:
    statistic = (MU + RNG.normal(0.0, NOISE, (COUNT, len(MU)))).astype(np.float32)
    statistic[: COUNT // 2, :MEMBERS] = np.nan  # the first half of the models trained on the forgotten person
    return PersonReferences(KEYS, statistic, {"format": PERSON_REFERENCES_FORMAT})


def _outputs(phi: np.ndarray, who: str) -> SplitOutputs:
    """Photos whose label-free statistic is ``phi`` (top logit phi + log 2 over two zeros)."""
    logits = np.zeros((len(phi), CLASSES), np.float32)
    logits[:, 0] = phi + np.log(CLASSES - 1)
    return SplitOutputs(logits, np.zeros(len(phi), int), np.zeros(len(phi)), np.zeros((len(phi), 2)), (who,) * len(phi))


def _model(shift: float, seed: int) -> dict[str, SplitOutputs]:
    phi = MU + np.random.default_rng(seed).normal(0.0, NOISE, len(MU))
    phi[:MEMBERS] += shift
    return {"forget_train": _outputs(phi[:MEMBERS], "f"), "unseen": _outputs(phi[MEMBERS:], "u")}


PARTS = {"forget_train": KEYS[:MEMBERS], "unseen": KEYS[MEMBERS:]}
SPLIT = SimpleNamespace(forget_mode="identity")


def test_lira_scores_are_the_z_values_against_each_photos_out_mean_and_the_pooled_std() -> None:
    references = _references()
    values = references.statistic.astype(np.float64)
    means = np.nanmean(values, axis=0)
    counts = np.sum(~np.isnan(values), axis=0)
    pooled = np.sqrt(np.nansum((values - means) ** 2) / np.sum(counts - 1))
    assert references.pooled_std() == pytest.approx(pooled, rel=1e-9)
    assert references.pooled_std() == pytest.approx(NOISE, rel=0.1)
    phi = np.arange(len(KEYS), dtype=np.float64)
    np.testing.assert_allclose(references.lira_scores(KEYS, phi), (phi - means) / pooled, rtol=1e-9)
    assert references.covers(KEYS) and not references.covers([*KEYS, "somebody/else"])


def test_with_references_the_gold_model_sits_at_chance_and_a_memorisation_is_detectable() -> None:
    """A model that never saw the person is at chance on LiRA's scale (50 %), where the reference-free AUC puts it far
    above, because the person's photos are easy for any model: only the calibrated number reads as "never seen".
    A model that still gives the forgotten photos a statistic 2 noise-sd above that is detectable."""
    references, gold = _references(), _model(0.0, seed=1)
    calibrated = judge_against_gold(_model(0.0, seed=2), gold, SPLIT, references=references, keys=PARTS)
    blind = judge_against_gold(_model(0.0, seed=2), gold, SPLIT)
    assert calibrated.comparisons[1].name == LIRA_ATTACK and blind.comparisons[1].name == ATTACK
    # within 3 standard errors of an AUC on 30 against 60 photos
    assert calibrated.comparisons[1].gold == pytest.approx(0.5, abs=0.2)
    assert blind.comparisons[1].gold > 0.8
    assert calibrated.outcome != "detectable"
    remembering = judge_against_gold(_model(2 * NOISE, seed=3), gold, SPLIT, references=references, keys=PARTS)
    assert remembering.outcome == "detectable" and remembering.comparisons[1].difference > 0.2


def test_without_coverage_or_in_instance_mode_the_attack_is_reference_free() -> None:
    references, gold = _references(), _model(0.0, seed=1)
    model = _model(0.0, seed=4)
    strangers_missing = {"forget_train": PARTS["forget_train"], "unseen": tuple(f"x/{i}" for i in range(STRANGERS))}
    for keys in (strangers_missing, None):
        judgement = judge_against_gold(model, gold, SPLIT, references=references, keys=keys)
        assert judgement.comparisons[1].name == ATTACK
    # forgetting single photos: the references' OUT models did not know the person, so they do not apply
    as_instances = {"forget_train": model["forget_train"], "retain_test": model["unseen"]}
    gold_instances = {"forget_train": gold["forget_train"], "retain_test": gold["unseen"]}
    keys = {"forget_train": PARTS["forget_train"], "retain_test": PARTS["unseen"]}
    instance = SimpleNamespace(forget_mode="instance")
    judgement = judge_against_gold(as_instances, gold_instances, instance, references=references, keys=keys)
    assert judgement.comparisons[1].name == ATTACK


def test_the_file_round_trips_and_a_foreign_file_is_refused(tmp_path) -> None:
    references = _references()
    path = tmp_path / "refs.npz"
    references.save(path)
    again = PersonReferences.load(path)
    assert again.keys == references.keys and again.meta == dict(references.meta)
    np.testing.assert_array_equal(again.statistic, references.statistic)
    np.savez(tmp_path / "other.npz", keys=np.asarray(["a"]), statistic=np.zeros((2, 1)), meta=np.asarray("{}"))
    with pytest.raises(DataError, match="not a reference-statistics file"):
        PersonReferences.load(tmp_path / "other.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        PersonReferences.load(tmp_path / "broken.npz")


@pytest.mark.parametrize("name", ["orl", "lfw"])
def test_each_bundle_ships_reference_statistics_for_its_split_and_recipe(name: str) -> None:
    """The shipped files load, belong to the bundle's split and its model's recipe, give every never-trained photo all
    their OUT values and every known person's photo some, and assets/README.md gives their current sha256."""
    from dlfd_core.bundled import bundle
    from dlfd_core.data import load_split
    from dlfd_core.models import read_model_metadata
    from dlfd_core.paths import REPO_ROOT, sha256_file

    chosen = bundle(name)
    references = PersonReferences.load(chosen.references_path)
    split = load_split(chosen.split_path)
    assert references.meta["dataset"] == split.dataset and references.meta["split_seed"] == split.seed
    assert references.meta["recipe"] == read_model_metadata(chosen.model_path)["train_config"]
    out = np.sum(~np.isnan(references.statistic), axis=0)
    never = {k for k in references.keys if k.split("/")[0] in set(split.never_trained)}
    position = {k: i for i, k in enumerate(references.keys)}
    assert never and all(out[position[k]] == references.count for k in never)
    assert all(0 < out[position[k]] < references.count for k in split.train_keys)
    readme = (REPO_ROOT / "assets" / "README.md").read_text(encoding="utf-8")
    assert sha256_file(chosen.references_path) in readme


def test_bad_reference_requests_are_refused_before_any_training() -> None:
    from dlfd_core.references import train_person_references

    split = SimpleNamespace(known=("a", "b"), never_trained=())
    for count, share in ((1, 0.5), (4, 0.0), (4, 1.0)):
        with pytest.raises(DataError):
            train_person_references(None, split, count=count, backbone="x", recipe=None, out_fraction=share)


def test_reports_carry_the_verdicts_attack_with_its_interval() -> None:
    """One scale: with references, a report's ``attack_auc`` is the AUC the verdict compared (LiRA), with a bootstrap
    interval around it; without them the report keeps the reference-free AUC, which is then the verdict's too."""
    from dlfd_core.evaluate.evaluate import report_from_outputs, with_attack

    references, gold, model = _references(), _model(0.0, seed=1), _model(2 * NOISE, seed=3)
    judgement = judge_against_gold(model, gold, SPLIT, references=references, keys=PARTS)
    plain = report_from_outputs(model, SPLIT)
    assert plain.meta["attack"] == ATTACK
    assert plain.metrics["attack_auc"] == pytest.approx(judge_against_gold(model, gold, SPLIT).comparisons[1].value)
    rescored = with_attack(plain, model, SPLIT, references=references, keys=PARTS)
    assert rescored.meta["attack"] == LIRA_ATTACK
    assert rescored.metrics["attack_auc"] == pytest.approx(judgement.comparisons[1].value)
    low, high = rescored.interval("attack_auc")
    assert low <= rescored.metrics["attack_auc"] <= high and high - low > 0
    assert rescored.metrics["forget_train_acc"] == plain.metrics["forget_train_acc"]
    # photos the references do not cover: the report is left as it was
    uncovered = {"forget_train": PARTS["forget_train"], "unseen": tuple(f"x/{i}" for i in range(STRANGERS))}
    assert with_attack(plain, model, SPLIT, references=references, keys=uncovered) is plain


def test_a_balanced_design_leaves_every_person_out_equally_often() -> None:
    from dlfd_core.references import out_design

    outs = out_design(62, 32, 0.125, design="balanced", seed=3)
    assert outs.shape == (32, 62)
    assert set(outs.sum(axis=0)) == {4}  # every person OUT in exactly round(32 / 8) models
    assert outs.sum(axis=1).max() - outs.sum(axis=1).min() <= 1  # and the models share them evenly
    np.testing.assert_array_equal(outs, out_design(62, 32, 0.125, design="balanced", seed=3))
    assert not np.array_equal(outs, out_design(62, 32, 0.125, design="balanced", seed=4))
    # random: each model's own draw, so some people get fewer OUT values than others
    random = out_design(30, 16, 0.5, seed=0)
    assert random.sum(axis=0).min() < random.sum(axis=0).max()
    first = np.random.default_rng([0, 5, 0]).random(30) < 0.5
    np.testing.assert_array_equal(random[0], first)
    with pytest.raises(DataError, match="leaves out nobody"):
        out_design(3, 16, 0.125, design="balanced")
    with pytest.raises(DataError, match="unknown reference design"):
        out_design(30, 16, 0.5, design="latin")
