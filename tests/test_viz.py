"""Figures of :mod:`dlfd_core.viz` on synthetic outputs: the numbers against hand values and sklearn, the layout."""

from __future__ import annotations

import json
import math

import numpy as np
import plotly.graph_objects as go
import pytest
from sklearn.metrics import roc_auc_score

from dlfd_core.errors import DataError, DLFDError
from dlfd_core.evaluate import SplitOutputs
from dlfd_core.evaluate.attacks import LIRA_ATTACK, PhotoScores, membership_auc, membership_scores
from dlfd_core.evaluate.report import METRICS, percent
from dlfd_core.evaluate.shift import feature_shift
from dlfd_core.evaluate.verdict import MIN_PHOTOS
from dlfd_core.viz import FigureInputError, attack_figure, embedding_figure, runs_figure


def attack_scores(parts):
    """The figure's attack scores (the verdict's), for a whole person forgotten."""
    return membership_scores(parts, "identity")


def attack_auc(parts):
    return membership_auc(parts, "identity")


D = 8


def _outputs(features: np.ndarray, identities: list[str], logits: np.ndarray | None = None) -> SplitOutputs:
    features = np.asarray(features, dtype=np.float32)
    n = features.shape[0]
    if logits is None:
        logits = np.zeros((n, 3), dtype=np.float32)
    return SplitOutputs(
        logits=logits,
        labels=np.full(n, -1),
        losses=np.full(n, np.nan),
        features=features,
        identities=identities,
    )


def _basis(i: int, scale: float = 1.0) -> np.ndarray:
    v = np.zeros(D)
    v[i] = scale
    return v


def _confidence_logits(confidence: np.ndarray, classes: int = 4) -> np.ndarray:
    """Logits whose softmax has top probability ``confidence`` (the rest shared equally)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    rest = (1.0 - confidence) / (classes - 1)
    logits = np.tile(np.log(rest)[:, None], (1, classes))
    logits[:, 0] = np.log(confidence)
    return logits.astype(np.float32)


def _random_parts(rng: np.random.Generator, *, retain: int = 40, forget: int = 6, unseen: int = 20) -> dict:
    """Random outputs with every part, identities p0..p3 retained, f0 forgotten, u0..u1 unseen."""

    def part(n: int, ids: list[str]) -> SplitOutputs:
        return _outputs(rng.normal(size=(n, D)), [ids[i % len(ids)] for i in range(n)], rng.normal(size=(n, 4)))

    return {
        "retain_train": part(retain, ["p0", "p1", "p2", "p3"]),
        "retain_test": part(retain // 4, ["p0", "p1", "p2", "p3"]),
        "forget_train": part(forget, ["f0"]),
        "forget_test": part(3, ["f0"]),
        "unseen": part(unseen, ["u0", "u1"]),
    }


def _axis_count(fig: go.Figure, prefix: str = "xaxis") -> int:
    return sum(1 for key in fig.layout.to_plotly_json() if key.startswith(prefix))


# ---------------------------------------------------------------------------------------------------------------------
# feature shift


def _shift_parts(forget_features: list[np.ndarray]) -> dict[str, SplitOutputs]:
    retain = [_basis(0, 2.0), _basis(0, 0.5), _basis(1), _basis(1, 3.0), _basis(2)]
    return {
        "retain_train": _outputs(np.stack(retain), ["a", "a", "b", "b", "c"]),
        "forget_train": _outputs(np.stack(forget_features), ["f"] * len(forget_features)),
    }


def test_feature_shift_matches_hand_values() -> None:
    before = _shift_parts([_basis(0, 3.0), _basis(1, 0.2)])  # on the centroids of a and b
    diagonal = (_basis(0) + _basis(5)) * 2.0  # 45 degrees from a's centroid
    after = _shift_parts([_basis(5), diagonal])
    shift = feature_shift(before, after)
    half = 1.0 - 1.0 / math.sqrt(2.0)
    assert shift["before"] == pytest.approx(0.0, abs=1e-7)
    assert shift["after"] == pytest.approx((1.0 + half) / 2.0, abs=1e-6)
    assert shift["change"] == pytest.approx(shift["after"] - shift["before"], abs=1e-12)
    assert shift["change"] > 0.5
    # photo 1 went from e0 to e5 (orthogonal), photo 2 from e1 to (e0 + e5) / sqrt 2 (orthogonal too)
    assert shift["moved"] == pytest.approx(1.0, abs=1e-6)
    assert set(shift) == {"before", "after", "change", "moved"}


def test_feature_shift_unchanged_model_moves_nothing() -> None:
    rng = np.random.default_rng(0)
    parts = _random_parts(rng)
    shift = feature_shift(parts, parts)
    assert shift["change"] == pytest.approx(0.0, abs=1e-12)
    assert shift["moved"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < shift["before"] < 2.0


def test_feature_shift_is_nan_without_forget_train() -> None:
    rng = np.random.default_rng(1)
    parts = _random_parts(rng)
    without = {k: v for k, v in parts.items() if k != "forget_train"}
    empty = dict(parts, forget_train=parts["forget_train"].subset(np.zeros(0, dtype=np.int64)))
    for after in (without, empty):
        assert all(math.isnan(v) for v in feature_shift(parts, after).values())


def test_feature_shift_rejects_bad_inputs() -> None:
    rng = np.random.default_rng(2)
    parts = _random_parts(rng)
    no_retain = {k: v for k, v in parts.items() if k != "retain_train"}
    with pytest.raises(DataError, match="retain_train"):
        feature_shift(no_retain, parts)
    fewer = dict(parts, forget_train=parts["forget_train"].subset([0, 1]))
    with pytest.raises(DataError, match="same photos"):
        feature_shift(parts, fewer)
    with pytest.raises(DataError, match="unknown part"):
        feature_shift(dict(parts, forget=parts["forget_train"]), parts)
    with pytest.raises(DataError, match="empty"):
        feature_shift({}, parts)
    with pytest.raises(FigureInputError, match="empty"):  # a figure says the same as its own error type
        embedding_figure({}, parts)
    assert issubclass(FigureInputError, DLFDError)


# ---------------------------------------------------------------------------------------------------------------------
# attack


def test_attack_scores_are_logit_scaled_top_confidence_and_pick_nonmembers_by_mode() -> None:
    rng = np.random.default_rng(3)
    parts = _random_parts(rng)
    scores = attack_scores(parts)
    logits = np.asarray(parts["forget_train"].logits, dtype=np.float64)
    top = np.exp(logits).max(axis=1) / np.exp(logits).sum(axis=1)
    np.testing.assert_allclose(scores["forget"], np.log(top / (1.0 - top)), rtol=1e-6)
    assert scores["nonmember"].size == len(parts["unseen"])
    assert scores["retain"].size == len(parts["retain_train"])
    held_out = len(parts["retain_test"]) + len(parts["forget_test"])
    no_unseen = {k: v for k, v in parts.items() if k != "unseen"}
    assert attack_scores(no_unseen)["nonmember"].size == held_out
    # forgetting photos (instance mode), the non-members are the held-out photos even when unseen people exist
    assert membership_scores(parts, "instance")["nonmember"].size == held_out


def test_attack_auc_separated_chance_and_sklearn() -> None:
    rng = np.random.default_rng(4)
    n = 2000
    member = rng.uniform(0.8, 0.99, size=n)
    nonmember = rng.uniform(0.3, 0.79, size=n)

    def parts(m: np.ndarray, nm: np.ndarray) -> dict[str, SplitOutputs]:
        return {
            "forget_train": _outputs(np.ones((m.size, D)), ["f"] * m.size, _confidence_logits(m)),
            "unseen": _outputs(np.ones((nm.size, D)), ["u"] * nm.size, _confidence_logits(nm)),
        }

    assert attack_auc(parts(member, nonmember)) == pytest.approx(1.0)
    same = rng.uniform(0.3, 0.99, size=(2, n))
    chance = attack_auc(parts(same[0], same[1]))
    assert abs(chance - 0.5) < 0.04
    mixed = rng.uniform(0.3, 0.99, size=50), rng.uniform(0.25, 0.9, size=70)
    truth = np.r_[np.ones(50), np.zeros(70)]
    assert attack_auc(parts(*mixed)) == pytest.approx(roc_auc_score(truth, np.r_[mixed[0], mixed[1]]), abs=1e-6)


def test_attack_auc_is_nan_when_a_side_is_empty() -> None:
    rng = np.random.default_rng(5)
    parts = _random_parts(rng)
    assert math.isnan(attack_auc({k: v for k, v in parts.items() if k != "forget_train"}))
    assert math.isnan(attack_auc({"forget_train": parts["forget_train"], "retain_train": parts["retain_train"]}))


def test_attack_figure_layout_and_auc_in_legend() -> None:
    rng = np.random.default_rng(6)
    before, after, gold = (_random_parts(rng) for _ in range(3))
    fig = attack_figure(before, after, forget_mode="identity", gold=gold)
    assert fig.layout.template.layout.font is not None  # a template is set
    assert _axis_count(fig) == 6  # 2 rows x 3 models
    histograms = [t for t in fig.data if isinstance(t, go.Histogram)]
    assert len(histograms) == 9
    rocs = [t for t in fig.data if isinstance(t, go.Scatter) and "AUC" in t.name and "Chance" not in t.name]
    assert [t.name for t in rocs] == [
        f"{label}: AUC {percent(attack_auc(parts))}"
        for label, parts in (("Original", before), ("Unlearned", after), ("Gold", gold))
    ]
    assert sum(t.showlegend is not False for t in fig.data if t.name.startswith("Chance")) == 1
    assert 420 <= fig.layout.height <= 520
    json.loads(fig.to_json())  # serialisable as the app sends it


def test_attack_figure_draws_the_verdicts_scores_when_given() -> None:
    """With the verdict's per-photo scores (e.g. LiRA's), the ROC row and its AUC are theirs, not the confidence's."""
    rng = np.random.default_rng(9)
    before, after, gold = (_random_parts(rng) for _ in range(3))
    # scores that rank every forgotten photo above every non-member: AUC 100%, whatever the confidences say
    lira = PhotoScores(LIRA_ATTACK, np.full(MIN_PHOTOS, 5.0), np.zeros(MIN_PHOTOS + 1))
    fig = attack_figure(before, after, forget_mode="identity", gold=gold, attack={"after": lira})
    rocs = {t.name.split(":")[0]: t for t in fig.data if isinstance(t, go.Scatter) and "AUC" in t.name}
    assert rocs["Unlearned"].name == "Unlearned: AUC 100% (LiRA)"
    assert rocs["Original"].name == f"Original: AUC {percent(attack_auc(before))}"
    assert "LiRA" in fig.layout.title.subtitle.text


def test_attack_figure_draws_no_roc_from_fewer_photos_than_the_verdict_judges() -> None:
    """The card and the verdict give no attack figure below MIN_PHOTOS photos on a side; neither does the plot."""
    rng = np.random.default_rng(9)
    before, after = _random_parts(rng), _random_parts(rng)
    few = PhotoScores(LIRA_ATTACK, np.full(MIN_PHOTOS - 1, 5.0), np.zeros(50))
    fig = attack_figure(before, after, forget_mode="identity", attack={"after": few})
    names = [t.name for t in fig.data if isinstance(t, go.Scatter) and "AUC" in t.name]
    assert not any(n.startswith("Unlearned") for n in names) and any(n.startswith("Original") for n in names)
    assert any(f"fewer than {MIN_PHOTOS} photos" in a.text for a in fig.layout.annotations)


def test_attack_figure_without_forget_photos_draws_no_roc() -> None:
    rng = np.random.default_rng(7)
    parts = {k: v for k, v in _random_parts(rng).items() if k != "forget_train"}
    fig = attack_figure(parts, parts, forget_mode="identity")
    assert _axis_count(fig) == 4
    assert not [t for t in fig.data if "AUC" in t.name and "Chance" not in t.name]
    assert any("not enough for an attack" in a.text for a in fig.layout.annotations)


# ---------------------------------------------------------------------------------------------------------------------
# embedding


def _panel_points(fig: go.Figure, axis: str) -> dict[str, int]:
    return {t.name: len(t.x) for t in fig.data if t.xaxis == axis}


def test_embedding_figure_panels_traces_and_shift_text() -> None:
    rng = np.random.default_rng(8)
    before, after, gold = (_random_parts(rng) for _ in range(3))
    fig = embedding_figure(before, after, gold=gold)
    assert [a.text for a in fig.layout.annotations] == ["Original", "Unlearned", "Gold"]
    assert _axis_count(fig) == 3
    assert len(fig.data) == 9
    for axis in ("x", "x2", "x3"):
        assert _panel_points(fig, axis) == {"Retained people": 50, "Unseen people": 20, "Forgotten photos": 9}
    shift = feature_shift(before, after)
    subtitle = fig.layout.title.subtitle.text
    assert f"{shift['before']:.3f} before" in subtitle and f"{shift['after']:.3f} after" in subtitle
    assert f"{shift['change']:+.3f}" in subtitle and "gold" in subtitle
    forgotten = next(t for t in fig.data if t.name == "Forgotten photos")
    assert all(text.startswith("f0<br>") for text in forgotten.text)
    json.loads(fig.to_json())


def test_embedding_figure_shares_one_projection() -> None:
    rng = np.random.default_rng(9)
    parts = _random_parts(rng)
    fig = embedding_figure(parts, parts)
    first, second = ([t for t in fig.data if t.xaxis == axis] for axis in ("x", "x2"))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    assert fig.layout.xaxis2.matches == "x" and fig.layout.yaxis2.matches == "y"


def test_embedding_subsampling_keeps_forget_points_and_is_seeded() -> None:
    rng = np.random.default_rng(10)
    before, after = _random_parts(rng, retain=400, unseen=200), _random_parts(rng, retain=400, unseen=200)
    fig = embedding_figure(before, after, max_points=60, seed=3)
    for axis in ("x", "x2"):
        counts = _panel_points(fig, axis)
        assert sum(counts.values()) == 60
        assert counts["Forgotten photos"] == 9
    again = embedding_figure(before, after, max_points=60, seed=3)
    other = embedding_figure(before, after, max_points=60, seed=4)
    assert [list(t.x) for t in fig.data] == [list(t.x) for t in again.data]
    assert [list(t.text) for t in fig.data] == [list(t.text) for t in again.data]
    assert [list(t.x) for t in fig.data] != [list(t.x) for t in other.data]
    tiny = embedding_figure(before, after, max_points=4)
    assert _panel_points(tiny, "x") == {"Forgotten photos": 9}


def test_embedding_figure_rejects_bad_inputs() -> None:
    rng = np.random.default_rng(11)
    parts = _random_parts(rng)
    with pytest.raises(ValueError, match="max_points"):
        embedding_figure(parts, parts, max_points=0)
    wide = {"retain_train": _outputs(rng.normal(size=(5, D + 2)), ["a"] * 5)}
    with pytest.raises(ValueError, match="differ in size"):
        embedding_figure(parts, parts, gold=wide)
    broken = dict(parts, unseen=_outputs(np.full((2, D), np.nan), ["u", "u"]))
    with pytest.raises(ValueError, match="diverged"):
        embedding_figure(parts, broken)
    with pytest.raises(ValueError, match="mapping"):
        embedding_figure([parts], parts)  # type: ignore[arg-type]


def test_embedding_figure_without_forget_part_says_so() -> None:
    rng = np.random.default_rng(12)
    parts = {k: v for k, v in _random_parts(rng).items() if not k.startswith("forget")}
    fig = embedding_figure(parts, parts)
    assert "No photos to forget" in fig.layout.title.subtitle.text
    assert "Forgotten photos" not in {t.name for t in fig.data}


# ---------------------------------------------------------------------------------------------------------------------
# runs


def test_runs_figure_groups_bars_and_separates_seconds() -> None:
    rows = [
        {
            "run": "finetune",
            "retain_test_acc": 0.9,
            "forget_train_acc": 0.2,
            "nomus_label_free": 0.7,
            "unlearn_seconds": 12.0,
        },
        {"run": "dlfd", "retain_test_acc": 0.95, "forget_train_acc": float("nan"), "unlearn_seconds": 30.5},
    ]
    fig = runs_figure(rows, metrics=("retain_test_acc", "forget_train_acc", "nomus_label_free", "unlearn_seconds"))
    assert _axis_count(fig) == 2
    assert len(fig.data) == 4  # one bar trace per run and panel
    scores = [t for t in fig.data if t.xaxis == "x"]
    times = [t for t in fig.data if t.xaxis == "x2"]
    assert [t.name for t in scores] == ["finetune", "dlfd"]
    assert list(scores[0].y) == [0.9, 0.2, 0.7]
    assert list(scores[1].y) == [0.95]  # NaN and missing bars left out
    assert [list(t.y) for t in times] == [[12.0], [30.5]]
    assert all("seconds" in x for t in times for x in t.x)
    assert all(not any("seconds" in x for x in t.x) for t in scores)
    assert list(scores[0].x) == ["Accuracy on everyone else ↑", "Recognises the forgotten photos →gold", "NoMUS ↑"]
    json.loads(fig.to_json())


def test_runs_figure_shows_the_cards_metrics_by_default() -> None:
    cards = [name for name, spec in METRICS.items() if spec.reading]
    row = {"run": "dlfd", **dict.fromkeys(cards, 0.5), "nomus_label_free": 0.7, "unlearn_seconds": 3.0}
    fig = runs_figure([row])
    scores = next(t for t in fig.data if t.xaxis == "x")
    assert list(scores.x) == [f"{METRICS[name].title} {METRICS[name].arrow}" for name in cards]
    assert "attack_auc" in cards and "nomus_label_free" not in cards


def test_runs_figure_empty_and_degenerate_inputs() -> None:
    empty = runs_figure([])
    assert len(empty.data) == 0
    assert "No runs yet" in empty.layout.annotations[0].text
    nothing = runs_figure([{"run": "a", "retain_test_acc": None, "forget_train_acc": "n/a"}])
    assert len(nothing.data) == 0 and "No values" in nothing.layout.annotations[0].text
    only_scores = runs_figure([{"retain_test_acc": np.float32(0.5)}], metrics=["retain_test_acc"])
    assert _axis_count(only_scores) == 1
    assert only_scores.data[0].name == "run 1" and list(only_scores.data[0].y) == [0.5]
    with pytest.raises(ValueError, match="metrics"):
        runs_figure([], metrics="retain_test_acc")
    with pytest.raises(ValueError, match="metrics"):
        runs_figure([], metrics=[])
    with pytest.raises(ValueError, match="mapping"):
        runs_figure([{"run": "a"}, 3])  # type: ignore[list-item]


def test_embedding_figure_without_spread_draws_at_origin() -> None:
    same = {"retain_train": _outputs(np.ones((3, D)), ["a"] * 3), "forget_train": _outputs(np.ones((1, D)), ["f"])}
    fig = embedding_figure(same, same)
    assert "nan" not in fig.layout.xaxis.title.text
    assert all(np.allclose(t.x, 0.0) and np.allclose(t.y, 0.0) for t in fig.data)
    shift = feature_shift(same, same)
    assert shift["before"] == pytest.approx(0.0, abs=1e-7) and shift["moved"] == pytest.approx(0.0, abs=1e-7)
