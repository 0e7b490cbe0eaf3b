"""Metric functions compared with reference implementations (torch, sklearn, scipy) and hand values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from dlfd_core.errors import DataError, UnknownNameError
from dlfd_core.evaluate import (
    METRICS,
    MIAResult,
    Report,
    SplitOutputs,
    accuracy,
    accuracy_gap,
    activation_distance,
    collect_outputs,
    forgetting_score,
    format_table,
    js_divergence,
    linear_probe_accuracy,
    loo_nn_identification,
    mia_label_free,
    mia_logistic,
    nn_identification,
    nomus,
    per_sample_cross_entropy,
    verification_auc,
    verification_auc_for,
)

# ---------------------------------------------------------------------------------------------------------------------
# accuracy and cross-entropy


def test_accuracy_and_cross_entropy_match_torch() -> None:
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(50, 7)) * 4).astype(np.float32)
    labels = rng.integers(0, 7, size=50)
    expected_ce = F.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(labels), reduction="none")
    np.testing.assert_allclose(per_sample_cross_entropy(logits, labels), expected_ce.numpy(), rtol=1e-12, atol=1e-12)
    assert accuracy(logits, labels) == pytest.approx(float((logits.argmax(1) == labels).mean()), abs=0)


def test_cross_entropy_is_stable_and_nan_for_unlabelled() -> None:
    logits = np.array([[1000.0, 0.0], [0.0, 1000.0], [3.0, 1.0]])
    losses = per_sample_cross_entropy(logits, np.array([0, 0, -1]))
    assert losses[0] == pytest.approx(0.0, abs=1e-12)
    assert losses[1] == pytest.approx(1000.0)
    assert math.isnan(losses[2])
    # unlabelled samples are left out of accuracy
    assert accuracy(logits, np.array([0, 0, -1])) == 0.5
    with pytest.raises(ValueError):
        accuracy(logits, np.array([-1, -1, -1]))
    with pytest.raises(ValueError):
        per_sample_cross_entropy(logits, np.array([0, 2, 1]))


# ---------------------------------------------------------------------------------------------------------------------
# membership inference


def _sklearn_mia(member: np.ndarray, nonmember: np.ndarray) -> float:
    """The DLFD code's attack, written out with sklearn: non-members (0) first, then members (1)."""
    x = np.concatenate([nonmember, member]).reshape(-1, 1)
    y = [0] * len(nonmember) + [1] * len(member)
    cv = StratifiedShuffleSplit(n_splits=10, random_state=0)
    return float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())


@pytest.mark.parametrize("seed", [0, 3])
def test_mia_equals_cross_val_score(seed: int) -> None:
    rng = np.random.default_rng(seed)
    member = rng.exponential(0.4, 70)
    nonmember = rng.exponential(1.0, 30)
    result = mia_logistic(member, nonmember, balanced=False)
    assert result.accuracy == _sklearn_mia(member, nonmember)
    assert (result.n_member, result.n_nonmember) == (70, 30)


def test_mia_auc_is_fold_mean_of_roc_auc() -> None:
    rng = np.random.default_rng(5)
    member = rng.exponential(0.5, 50)
    nonmember = rng.exponential(1.0, 50)
    x = np.concatenate([nonmember, member]).reshape(-1, 1)
    y = np.array([0] * 50 + [1] * 50)
    aucs = []
    for train, test in StratifiedShuffleSplit(n_splits=10, random_state=0).split(x, y):
        clf = LogisticRegression().fit(x[train], y[train])
        aucs.append(roc_auc_score(y[test], clf.predict_proba(x[test])[:, 1]))
    assert mia_logistic(member, nonmember, balanced=False).auc == pytest.approx(np.mean(aucs), abs=1e-15)


def test_mia_fixed_value() -> None:
    # Computed once with this implementation (sklearn 1.9.1, numpy 2.4.6) on these inputs and hard-coded; it
    # equals cross_val_score(LogisticRegression(), X, y, cv=StratifiedShuffleSplit(10, random_state=0)).mean()
    # with X = [nonmember; member], y = [0]*40 + [1]*60. Balanced: members subsampled to 40 with default_rng(0).
    rng = np.random.default_rng(0)
    member = rng.exponential(0.5, 60)
    nonmember = rng.exponential(1.0, 40)
    unbalanced = mia_logistic(member, nonmember, balanced=False)
    assert unbalanced == MIAResult(accuracy=0.71, auc=pytest.approx(0.7333333333333333), n_member=60, n_nonmember=40)
    balanced = mia_logistic(member, nonmember, balanced=True, seed=0)
    assert balanced == MIAResult(accuracy=0.575, auc=pytest.approx(0.6125), n_member=40, n_nonmember=40)


def test_balanced_mia_subsamples_deterministically() -> None:
    rng = np.random.default_rng(2)
    member = rng.exponential(0.5, 25)
    nonmember = rng.exponential(1.0, 80)
    a = mia_logistic(member, nonmember, balanced=True, seed=7)
    b = mia_logistic(member, nonmember, balanced=True, seed=7)
    assert a == b
    assert (a.n_member, a.n_nonmember) == (25, 25)
    # the larger side is a default_rng(seed) subsample without replacement, kept in order
    keep = np.sort(np.random.default_rng(7).choice(80, size=25, replace=False))
    assert a.accuracy == _sklearn_mia(member, nonmember[keep])


def test_mia_rejects_too_few_or_bad_samples() -> None:
    with pytest.raises(DataError, match="member"):
        mia_logistic(np.array([]), np.ones(20), balanced=False)
    with pytest.raises(DataError, match="at least 2"):
        mia_logistic(np.ones(1), np.ones(20), balanced=False)
    with pytest.raises(DataError, match="at least 2"):
        mia_logistic(np.ones(3), np.ones(3), balanced=False)
    with pytest.raises(DataError, match="after balancing"):
        mia_logistic(np.ones(5), np.ones(100), balanced=True)
    with pytest.raises(DataError, match="NaN"):
        mia_logistic(np.array([np.nan] + [1.0] * 20), np.ones(20), balanced=False)


def test_forgetting_score_and_nomus_by_hand() -> None:
    assert forgetting_score(0.71) == pytest.approx(0.21)
    assert forgetting_score(0.3) == pytest.approx(0.2)
    assert forgetting_score(MIAResult(0.5, 0.5, 10, 10)) == 0.0
    # (0.8 + 1 - 2 * 0.21) / 2 = 0.69
    assert nomus(0.8, 0.71) == pytest.approx(0.69)
    assert nomus(1.0, 0.5) == 1.0
    assert nomus(0.0, 1.0) == 0.0
    with pytest.raises(ValueError):
        nomus(1.2, 0.5)


def test_label_free_mia_separates_confident_members() -> None:
    rng = np.random.default_rng(4)
    n_classes = 10
    member = rng.normal(size=(60, n_classes))
    member[np.arange(60), rng.integers(0, n_classes, 60)] += 12.0  # very confident
    nonmember = rng.normal(size=(60, n_classes))  # diffuse
    result = mia_label_free(member, nonmember, balanced=True)
    assert result.accuracy > 0.95
    assert result.auc > 0.95


def test_label_free_mia_at_chance_on_identical_distributions() -> None:
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(400, 10)) * 2
    result = mia_label_free(logits[:200], logits[200:], balanced=False)
    assert abs(result.accuracy - 0.5) < 0.1
    assert abs(result.auc - 0.5) < 0.1


# ---------------------------------------------------------------------------------------------------------------------
# alignment with the gold model


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_js_divergence_matches_scipy() -> None:
    rng = np.random.default_rng(8)
    a = rng.normal(size=(30, 6)) * 3
    b = rng.normal(size=(30, 6)) * 3
    p, q = _softmax(a), _softmax(b)
    expected = np.mean([jensenshannon(p[i], q[i]) ** 2 for i in range(30)])  # natural log by default
    assert js_divergence(a, b) == pytest.approx(expected, rel=1e-10)
    assert js_divergence(a, a) == pytest.approx(0.0, abs=1e-15)
    # disjoint one-hot outputs reach the maximum ln 2
    assert js_divergence(np.array([[1000.0, 0.0]]), np.array([[0.0, 1000.0]])) == pytest.approx(math.log(2))


def test_activation_distance_and_accuracy_gap_by_hand() -> None:
    # softmax([0, 0]) = [0.5, 0.5]; softmax([ln 3, 0]) = [0.75, 0.25]; distance = sqrt(2) * 0.25
    a = np.array([[0.0, 0.0], [1.0, 1.0]])
    b = np.array([[math.log(3.0), 0.0], [1.0, 1.0]])
    assert activation_distance(a, b) == pytest.approx((math.sqrt(2) * 0.25 + 0.0) / 2)
    assert accuracy_gap(0.2, 0.65) == pytest.approx(0.45)
    with pytest.raises(ValueError):
        activation_distance(a, b[:1])


# ---------------------------------------------------------------------------------------------------------------------
# identity leakage


def _clustered(n_people: int, per_person: int, spread: float, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, 16))
    feats = np.repeat(centres, per_person, axis=0) + spread * rng.normal(size=(n_people * per_person, 16))
    ids = [f"p{i}" for i in range(n_people) for _ in range(per_person)]
    return feats, ids


def test_verification_auc_matches_enumerated_pairs() -> None:
    feats, ids = _clustered(5, 4, spread=1.0, seed=9)
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    scores, same = [], []
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            scores.append(float(unit[i] @ unit[j]))
            same.append(int(ids[i] == ids[j]))
    assert verification_auc(feats, ids) == pytest.approx(roc_auc_score(same, scores), abs=1e-12)

    targets = {"p1", "p3"}
    t_scores, t_same = [], []
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            if ids[i] in targets or ids[j] in targets:
                t_scores.append(float(unit[i] @ unit[j]))
                t_same.append(int(ids[i] == ids[j]))
    assert verification_auc_for(feats, ids, targets) == pytest.approx(roc_auc_score(t_same, t_scores), abs=1e-12)


def test_verification_auc_perfect_clusters_and_sampled_pairs() -> None:
    feats, ids = _clustered(6, 5, spread=0.01, seed=10)
    assert verification_auc(feats, ids) == 1.0
    assert verification_auc_for(feats, ids, ["p0"]) == 1.0
    assert verification_auc(feats, ids, pairs=200, seed=1) == 1.0
    noisy, noisy_ids = _clustered(6, 5, spread=1.0, seed=11)
    assert verification_auc(noisy, noisy_ids, pairs=10_000) == verification_auc(noisy, noisy_ids)
    with pytest.raises(DataError):
        verification_auc(feats[::5], ids[::5])  # one photo per person: no same-person pair
    with pytest.raises(DataError):
        verification_auc_for(feats, ids, ["nobody"])


def test_loo_nn_identification_by_hand_and_vs_sklearn() -> None:
    # a and b point the same way, c and d the same way; e is alone (a singleton).
    feats = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.5], [-1.0, 0.0]])
    ids = ["A", "A", "C", "C", "E"]
    # nearest by cosine: 0->1 (A ok), 1->0 (A ok), 2->3 (C ok), 3->1 (A, wrong), 4->2 or 3 (singleton)
    assert loo_nn_identification(feats, ids) == pytest.approx(3 / 4)
    assert loo_nn_identification(feats, ids, exclude_singletons=False) == pytest.approx(3 / 5)

    big, big_ids = _clustered(8, 5, spread=1.2, seed=12)
    hits = []
    for i in range(len(big_ids)):
        rest = np.delete(np.arange(len(big_ids)), i)
        knn = KNeighborsClassifier(1, metric="cosine").fit(big[rest], np.asarray(big_ids)[rest])
        hits.append(knn.predict(big[i : i + 1])[0] == big_ids[i])
    assert loo_nn_identification(big, big_ids) == pytest.approx(np.mean(hits))


def test_nn_identification_vs_sklearn() -> None:
    feats, ids = _clustered(6, 6, spread=1.5, seed=13)
    ids_arr = np.asarray(ids)
    gallery = np.arange(len(ids)) % 3 == 0
    knn = KNeighborsClassifier(1, metric="cosine").fit(feats[gallery], ids_arr[gallery])
    expected = np.mean(knn.predict(feats[~gallery]) == ids_arr[~gallery])
    got = nn_identification(feats[gallery], ids_arr[gallery].tolist(), feats[~gallery], ids_arr[~gallery].tolist())
    assert got == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------------------------------
# correlation collapse


def test_linear_probe_matches_direct_sklearn() -> None:
    feats, ids = _clustered(4, 20, spread=1.5, seed=14)
    labels = np.array([int(i[1:]) for i in ids])
    train = np.arange(len(labels)) % 2 == 0
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=0))
    expected = probe.fit(feats[train], labels[train]).score(feats[~train], labels[~train])
    assert linear_probe_accuracy(feats[train], labels[train], feats[~train], labels[~train]) == pytest.approx(expected)
    with pytest.raises(DataError):
        linear_probe_accuracy(feats[:5], np.zeros(5, dtype=int), feats, labels)


# ---------------------------------------------------------------------------------------------------------------------
# collect_outputs


class _TinyClassifier(nn.Module):
    """Same interface as FaceClassifier: features(x), head, forward = head(features(x)); has dropout and BN."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.body(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_collect_outputs_matches_forward_and_restores_mode() -> None:
    torch.manual_seed(0)
    model = _TinyClassifier().train()
    x = torch.rand(10, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, -1, -1])
    ids = [f"p{i % 4}" for i in range(10)]
    out = collect_outputs(model, x, labels, ids, batch_size=3)
    assert model.training and model.body[1].training
    model.eval()
    with torch.no_grad():
        ref_feats = model.features(x)
        ref_logits = model(x)
    np.testing.assert_allclose(out.logits, ref_logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.features, ref_feats.numpy(), rtol=1e-5, atol=1e-6)
    assert out.logits.dtype == np.float32 and out.labels.dtype == np.int64
    np.testing.assert_allclose(out.losses[:8], per_sample_cross_entropy(out.logits[:8], out.labels[:8]))
    assert np.isnan(out.losses[8:]).all()
    assert out.identities == tuple(ids) and len(out) == 10
    assert not out.logits.flags.writeable
    sub = out.subset(out.labelled)
    assert isinstance(sub, SplitOutputs) and len(sub) == 8
    # eval mode is kept as well
    collect_outputs(model, x, labels, ids)
    assert not model.training


def test_collect_outputs_restores_mode_on_error() -> None:
    model = _TinyClassifier().train()
    with pytest.raises(RuntimeError):
        collect_outputs(model, torch.rand(2, 5, 8, 8), [0, 1], ["a", "b"])  # wrong channel count
    assert model.training


# ---------------------------------------------------------------------------------------------------------------------
# report


def _report(offset: float) -> Report:
    return Report(
        metrics={name: 0.1 + offset + 0.01 * i for i, name in enumerate(METRICS)},
        meta={"method": "dlfd", "seed": 0, "settings": {"lr": 1e-3, "epochs": (1, 2)}},
    )


def test_report_json_round_trip() -> None:
    report = Report(metrics={"mia_acc": 0.61, "nomus": float("nan"), "retain_test_acc": 0.9}, meta={"seed": 3})
    data = json.loads(json.dumps(report.to_json()))
    assert data["metrics"] == {"retain_test_acc": 0.9, "mia_acc": 0.61, "nomus": None}
    back = Report.from_json(data)
    assert back.metrics["mia_acc"] == 0.61 and math.isnan(back.metrics["nomus"])
    assert dict(back.meta) == {"seed": 3}
    full = _report(0.0)
    assert Report.from_json(json.loads(json.dumps(full.to_json()))).to_json() == full.to_json()
    with pytest.raises(UnknownNameError):
        Report(metrics={"mia_accuracy": 0.5}, meta={})


def test_report_pickles() -> None:
    import pickle

    report = Report(metrics={"mia_acc": 0.61, "retain_test_acc": 0.9}, meta={"seed": 3, "targets": {"mia_acc": 0.5}})
    back = pickle.loads(pickle.dumps(report))
    assert dict(back.metrics) == dict(report.metrics) and dict(back.meta) == dict(report.meta)
    assert back.targets == {"mia_acc": 0.5}


def test_report_directions_and_better() -> None:
    report = Report(metrics={"forget_train_acc": 0.4}, meta={})
    assert Report.direction("retain_test_acc") == "higher"
    assert Report.direction("forgetting_score") == "lower"
    assert Report.direction("mia_acc") == "target"
    assert report.better("retain_test_acc", 0.9, 0.8)
    assert report.better("forgetting_score", 0.05, 0.2)
    assert report.better("mia_acc", 0.45, 0.6)  # closer to 0.5
    assert not report.better("mia_acc", 0.7, 0.4)
    with pytest.raises(ValueError, match="gold"):
        report.better("forget_train_acc", 0.3, 0.5)
    assert report.better("forget_train_acc", 0.3, 0.5, target=0.2)
    gold = Report(metrics={"forget_train_acc": 0.35, "mia_acc": 0.5}, meta={})
    judged = report.with_targets_from(gold)
    assert judged.target("forget_train_acc") == 0.35 and judged.target("mia_acc") == 0.5
    assert judged.better("forget_train_acc", 0.36, 0.2)
    for spec in METRICS.values():
        assert spec.name == spec.name.lower() and " " not in spec.name
        if spec.name.startswith(("mia_", "label_free_mia_")):
            assert spec.target == 0.5


def test_format_table_contains_every_metric() -> None:
    reports = {"before": _report(0.0), "after": _report(0.3), "gold": Report(metrics={"mia_acc": 0.5})}
    table = format_table(reports)
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "dir", "before", "after", "gold"]
    for name in METRICS:
        assert any(line.split()[0] == name for line in lines[2:]), name
    assert len(lines) == 2 + len(METRICS)
    row = {line.split()[0]: line.split() for line in lines[2:]}
    assert row["retain_test_acc"][1] == "↑" and row["forgetting_score"][1] == "↓"
    assert row["mia_acc"][1] == "→0.5" and row["forget_train_acc"][1] == "→gold"
    assert row["mia_acc"][-1] == "0.5000" and row["nomus"][-1] == "—"
    assert len({len(line) for line in lines[:2]}) <= 2  # header and rule aligned
