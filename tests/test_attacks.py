"""The per-photo attacks: LiRA's and RMIA's arithmetic by hand, and detection of planted memorisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from dlfd_core.errors import DataError
from dlfd_core.evaluate.attacks import (
    attack_summary,
    label_probability,
    lira_offline,
    logit_confidence,
    one_sided_p_value,
    rmia,
    tpr_at_fpr,
)


def test_logit_confidence_by_hand_and_where_p_rounds_to_one() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 50.0, 0.0]])
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    phi = logit_confidence(logits, np.array([0, 1]))
    assert phi[0] == pytest.approx(math.log(p[0] / (1 - p[0])))
    assert phi[1] == pytest.approx(50.0 - math.log(2.0))  # finite although p_y == 1.0 in float64
    # unlabelled photos (-1, a stranger) use the top class
    assert logit_confidence(logits, np.array([-1, -1]))[0] == pytest.approx(phi[0])
    assert label_probability(logits[:1], None)[0] == pytest.approx(p[0])


def test_offline_lira_is_the_z_value_under_the_out_gaussian() -> None:
    refs = np.array([[1.0, 0.0], [2.0, 4.0], [3.0, np.nan], [np.nan, 2.0]])  # NaN: that model trained on the photo
    target = np.array([4.0, 2.0])
    z = lira_offline(target, refs)
    # photo 0: OUT values 1, 2, 3 -> mean 2, sample std 1 -> z = 2; photo 1: 0, 4, 2 -> mean 2, std 2 -> z = 0
    np.testing.assert_allclose(z, [2.0, 0.0])
    np.testing.assert_allclose(one_sided_p_value(z), [norm.sf(2.0), 0.5])
    pooled = lira_offline(target, refs, global_variance=True)
    np.testing.assert_allclose(pooled, [2.0 / math.sqrt(2.5), 0.0])  # mean of the variances 1 and 4
    with pytest.raises(DataError, match="at least 2 reference"):
        lira_offline(target, refs[:2] * np.array([[1.0, np.nan], [1.0, 1.0]]))


def test_rmia_counts_population_ratios_by_hand() -> None:
    target = np.array([0.8, 0.1])
    refs = np.array([[0.4, 0.2]])
    pop_target = np.array([0.5, 0.2, 0.9])
    pop_refs = np.array([[0.5, 0.4, 0.3]])
    # plain mean (offline_a=None): LR(x) = 2.0, 0.5; LR(z) = 1.0, 0.5, 3.0
    np.testing.assert_allclose(rmia(target, refs, pop_target, pop_refs, offline_a=None), [2 / 3, 1 / 3])
    np.testing.assert_allclose(rmia(target, refs, pop_target, pop_refs, offline_a=None, gamma=2.0), [2 / 3, 0.0])
    # offline: Pr(x) = ((1 + a) mean + 1 - a) / 2 with a = 0.3
    marg = lambda m: (1.3 * m + 0.7) / 2  # noqa: E731
    lr_x = target / marg(refs[0])
    lr_z = pop_target / marg(pop_refs[0])
    expected = [(lr_z <= v).mean() for v in lr_x]
    np.testing.assert_allclose(rmia(target, refs, pop_target, pop_refs), expected)


def test_tpr_at_low_fpr() -> None:
    members = np.array([10.0, 9.0, 0.5, 0.2])
    nonmembers = np.arange(100, dtype=float) / 100  # 0.00 .. 0.99
    assert tpr_at_fpr(members, nonmembers, 0.0) == 0.5  # two members above every non-member
    assert tpr_at_fpr(members, nonmembers, 0.01) == 0.5
    assert tpr_at_fpr(members, nonmembers, 0.5) == 0.75  # threshold 0.5: 50 non-members and 3 members at or above
    assert tpr_at_fpr(members, nonmembers, 0.8) == 1.0
    summary = attack_summary(members, nonmembers)
    assert summary.tpr[0.001] == 0.5 and (summary.members, summary.nonmembers) == (4, 100)


def _population(rng: np.random.Generator, photos: int, models: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-photo difficulty plus model noise: each photo's statistic varies by photo far more than by model."""
    difficulty = rng.normal(0.0, 3.0, size=photos)
    return difficulty, difficulty + rng.normal(0.0, 0.5, size=(models, photos))


def test_lira_finds_planted_memorisation_that_a_population_threshold_misses() -> None:
    rng = np.random.default_rng(0)
    difficulty, refs = _population(rng, 400, 8)
    members = np.arange(200)  # the first 200 photos are "trained on" by the memorising model
    memorising = difficulty + rng.normal(0.0, 0.5, size=400)
    memorising[members] += 1.5  # a shift of 3 model-noise stds, small against the photo-to-photo spread
    never = difficulty + rng.normal(0.0, 0.5, size=400)  # a model that never saw any of them (the gold model)
    is_member = np.zeros(400, dtype=bool)
    is_member[members] = True

    # 8 reference models: the pooled variance, as per_photo_attacks uses below 16 (an ideal z-test would reach a
    # TPR of 0.75 at 1 % FPR on a 3-std shift)
    strong = attack_summary(*_split(lira_offline(memorising, refs, global_variance=True), is_member))
    population = attack_summary(*_split(memorising, is_member))  # one threshold on the raw statistic
    gold = attack_summary(*_split(lira_offline(never, refs, global_variance=True), is_member))
    assert strong.auc > 0.95 and strong.tpr[0.01] > 0.3
    assert population.auc < 0.75 and population.tpr[0.01] < 0.1
    assert abs(gold.auc - 0.5) < 0.1 and gold.tpr[0.01] < 0.1


def test_rmia_finds_planted_memorisation_with_one_reference_model() -> None:
    rng = np.random.default_rng(1)
    logit = rng.normal(0.0, 2.0, size=600)
    prob = lambda shift: 1 / (1 + np.exp(-(logit + shift + rng.normal(0, 0.3, 600))))  # noqa: E731
    refs = prob(0.0)[None, :]
    target = prob(0.0)
    target[:200] = 1 / (1 + np.exp(-(logit[:200] + 2.0)))  # memorised
    population = slice(400, 600)
    scores = rmia(target[:400], refs[:, :400], target[population], refs[:, population])
    summary = attack_summary(scores[:200], scores[200:400])
    assert summary.auc > 0.9


def _split(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return scores[is_member], scores[~is_member]


@pytest.mark.slow
def test_reference_models_on_orl_expose_the_original_more_than_the_gold_model(orl_aligned) -> None:
    """Two cheap reference models (one epoch, no augmentation) on ORL, forgetting s7: every attacked photo is one
    that no reference model trained on, the scores come per photo, and the original model (trained on s7) is more
    exposed than the gold model (never trained on s7)."""
    from dlfd_core.data import load_split, with_forget_identities
    from dlfd_core.models import load_model
    from dlfd_core.paths import ASSETS_DIR
    from dlfd_core.references import attack_models, attack_roles
    from dlfd_core.train import TrainConfig, train_on_split

    split = with_forget_identities(load_split(ASSETS_DIR / "splits" / "orl_seed0.json"), ["s7"])
    recipe = TrainConfig(epochs=1, augment=None)
    original = load_model(ASSETS_DIR / "models" / "orl_dlib_resnet_original.safetensors")
    gold = train_on_split(orl_aligned, split, which="gold", config=recipe, seed=0).model
    results, references = attack_models(
        orl_aligned, split, {"original": original, "gold": gold}, count=2, recipe=recipe, seed=0
    )
    roles = attack_roles(orl_aligned, split)
    assert references.count == 2 and set(references.logits) == {*roles.members, *roles.nonmembers, *roles.population}
    assert not set(references.logits) & set(split.retain_train_keys)
    for result in results.values():
        assert len(result["lira"]["member_scores"]) == len(roles.members) == len(split.train["s7"])
        assert len(result["rmia"]["nonmember_scores"]) == len(roles.nonmembers)
    assert results["original"]["lira"]["auc"] > results["gold"]["lira"]["auc"]
    assert results["original"]["lira"]["tpr_1pct"] > results["gold"]["lira"]["tpr_1pct"]


def test_rank_auc_matches_sklearn_and_the_bootstrap_interval_covers_it() -> None:
    from sklearn.metrics import roc_auc_score

    from dlfd_core.evaluate.attacks import _pair_auc as _rank_auc
    from dlfd_core.evaluate.attacks import bootstrap_auc_interval

    rng = np.random.default_rng(3)
    m, n = np.round(rng.normal(0.5, 1, 40), 1), np.round(rng.normal(0, 1, 60), 1)  # rounded: ties
    assert _rank_auc(m, n) == pytest.approx(roc_auc_score(np.r_[np.ones(40), np.zeros(60)], np.r_[m, n]))
    low, high = bootstrap_auc_interval(m, n, seed=0)
    assert low < _rank_auc(m, n) < high and high - low < 0.4
    assert bootstrap_auc_interval(m, n, seed=0) == (low, high)  # seeded
    wider = bootstrap_auc_interval(m[:8], n[:8], seed=0)
    assert wider[1] - wider[0] > high - low  # fewer photos, wider interval


def test_the_bootstrap_memory_does_not_grow_with_its_draws() -> None:
    import tracemalloc

    from dlfd_core.evaluate.attacks import bootstrap_auc_interval

    rng = np.random.default_rng(4)
    m, n = rng.normal(0.3, 1, 600), rng.normal(0, 1, 600)

    def peak(resamples: int) -> int:
        tracemalloc.start()
        bootstrap_auc_interval(m, n, resamples=resamples, seed=0)
        _, high = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return high

    # Keeping every draw's resampling counts would need resamples x photos x 8 bytes (here 10 x more for 10 x the
    # draws); only the draws' AUCs themselves may grow.
    assert peak(4000) < 1.5 * peak(400)
