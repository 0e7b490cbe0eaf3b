"""Hostile inputs to the public API: nonsense method settings and seeds are refused with the package's own errors,
and the metrics never crash on too few photos (NaN, with the reason kept).

Everything here is fast: no real faces, no training beyond the tiny test model's few steps.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from dlfd_core.data.splits import Split
from dlfd_core.errors import DataError, DLFDError
from dlfd_core.evaluate import (
    MIAResult,
    SplitOutputs,
    forgetting_score,
    metric_names,
    mia_label_free,
    mia_logistic,
    nomus,
)
from dlfd_core.evaluate.evaluate import compute_metrics, report_from_outputs, undefined_reasons
from dlfd_core.evaluate.metrics import per_sample_cross_entropy
from dlfd_core.unlearn import check_seed, coerce_settings, create_method, method_class, method_names
from tests.tiny import tiny_data, tiny_model

NAN, INF = float("nan"), float("inf")

# ---------------------------------------------------------------------------------------------------------------------
# method settings


@pytest.mark.parametrize(
    ("method", "key", "value"),
    [
        ("dlfd", "lr", NAN),
        ("dlfd", "lr", INF),
        ("dlfd", "head_lr", -INF),
        ("dlfd", "lr", 10**400),  # an int beyond float's range
        ("tmu", "noise_std", NAN),
        ("scrub", "temperature", INF),
        ("dlfd", "sinkhorn_epsilon", 1e9),
        ("dlfd", "sinkhorn_epsilon", INF),
        ("dlfd", "sinkhorn_epsilon", 0.0),
        ("dlfd", "stop_threshold", 1.01),
        ("dlfd", "stop_threshold", -0.01),
        ("dlfd", "stop_threshold", NAN),
        ("dlfd_released", "stop_threshold", 1e30),
        ("l1_sparse", "gamma", -1e-9),
        ("dlfd", "steps", 2.5),
        ("dlfd", "steps", NAN),
        ("dlfd", "epochs", True),
        pytest.param("dlfd", "epochs", 10**5000, id="dlfd-epochs-no-repr"),  # no repr in 3.11+: message still built
        ("finetune", "batch_size", 10**6),
        ("unsir", "noise_steps", 10**9),
        ("tmu", "predictor_epochs", 0),
        ("dlfd", "amp", "false"),  # text goes through coerce_settings, never bool("false")
        ("dlfd", "amp", 1),
        ("tmu", "forgotten_people_hard", "true"),
        ("dlfd", "lr", "0.1"),
        ("dlfd", "ot_cost", 3),
        ("dlfd", "momentum", 1.0),
    ],
)
def test_bad_setting_is_refused_by_name(method: str, key: str, value: object) -> None:
    with pytest.raises(DLFDError, match=key) as caught:
        create_method(method, **{key: value})
    assert len(str(caught.value)) < 200


def _number_fields(name: str) -> list[dataclasses.Field]:
    return [
        f
        for f in dataclasses.fields(method_class(name))
        if isinstance(f.default, (int, float)) and not isinstance(f.default, bool)
    ]


@pytest.mark.parametrize("name", method_names())
def test_every_number_setting_is_bounded_and_refuses_non_finite(name: str) -> None:
    for f in _number_fields(name):
        low, high = f.metadata.get("min"), f.metadata.get("max")
        assert low is not None and high is not None, f"{name}.{f.name} needs a min and a max"
        assert math.isfinite(low) and math.isfinite(high) and low <= f.default <= high, f"{name}.{f.name}"
        for bad in (NAN, INF, -INF) if isinstance(f.default, float) else (high + 1, low - 1, float(low) + 0.5):
            with pytest.raises(DLFDError, match=f.name):
                create_method(name, **{f.name: bad})


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"amp": "TRUE"}, {"amp": True}),
        ({"amp": " false "}, {"amp": False}),
        ({"amp": "yes", "reset_forget_classes": "off"}, {"amp": True, "reset_forget_classes": False}),
        ({"amp": "1", "reset_forget_classes": "0"}, {"amp": True, "reset_forget_classes": False}),
        ({"amp": False}, {"amp": False}),
        ({"steps": "3", "epochs": 2.0}, {"steps": 3, "epochs": 2}),
        ({"lr": "1e-3", "head_lr": 1}, {"lr": 0.001, "head_lr": 1.0}),
        ({"ot_cost": "sqeuclidean"}, {"ot_cost": "sqeuclidean"}),
    ],
)
def test_typed_text_is_read_as_its_setting_type(settings: dict, expected: dict) -> None:
    typed = coerce_settings("dlfd", settings)
    assert typed == expected and all(type(typed[k]) is type(v) for k, v in expected.items())
    method = create_method("dlfd", **typed)
    assert all(getattr(method, k) == v for k, v in expected.items())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("amp", "maybe"),
        ("amp", ""),
        ("amp", 0),
        ("steps", "2.5"),
        ("steps", 2.5),
        ("steps", True),
        ("steps", INF),
        ("lr", "nan"),
        ("lr", "-inf"),
        ("lr", "fast"),
        ("lr", 10**400),
        ("ot_cost", 1),
    ],
)
def test_typed_text_that_does_not_read_is_refused_by_name(key: str, value: object) -> None:
    with pytest.raises(DLFDError, match=key):
        coerce_settings("dlfd", {key: value})


def test_integral_numbers_of_other_types_are_normalised() -> None:
    method = create_method("dlfd", steps=np.int64(3), lr=1)
    assert type(method.steps) is int and type(method.lr) is float
    assert method.settings()["steps"] == 3


def test_fields_info_shows_defaults_readably() -> None:
    info = {f["name"]: f for f in method_class("dlfd").fields_info()}
    assert info["step_size"]["display"] == "1/255 ≈ 0.00392"
    assert info["step_size"]["default"] == pytest.approx(1 / 255)
    assert info["lr"]["display"] == "0.0001" and info["amp"]["display"] == "true"
    for name in method_names():
        for field in method_class(name).fields_info():
            assert len(field["display"]) <= 20, (name, field)


# ---------------------------------------------------------------------------------------------------------------------
# seeds


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("seed", [1e30, 2**64, 2**32, NAN, INF, "0", 2.5, 3.0, True, -1, None])
def test_bad_seed_is_refused(model, seed: object) -> None:
    with pytest.raises(DLFDError, match="seed"):
        create_method("class_reset").run(model, tiny_data("identity"), seed=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 2**32 - 1, np.int64(7)])
def test_good_seed_runs(model, seed: int) -> None:
    result = create_method("class_reset").run(model, tiny_data("identity"), seed=seed)
    assert result.seed == int(seed) and type(result.seed) is int
    assert check_seed(seed) == int(seed)


# ---------------------------------------------------------------------------------------------------------------------
# metrics on NaN


@pytest.mark.parametrize("mia", [NAN, MIAResult(NAN, NAN, 3, 3)])
def test_forgetting_score_of_nan_is_nan(mia: object) -> None:
    assert math.isnan(forgetting_score(mia))  # type: ignore[arg-type]


@pytest.mark.parametrize(("test_acc", "mia"), [(0.8, NAN), (NAN, 0.6), (NAN, NAN), (1.0, MIAResult(NAN, NAN, 2, 2))])
def test_nomus_of_nan_is_nan(test_acc: float, mia: object) -> None:
    assert math.isnan(nomus(test_acc, mia))  # type: ignore[arg-type]


@pytest.mark.parametrize(("test_acc", "mia"), [(0.8, 1.2), (0.8, -0.1), (1.5, 0.5), (-INF, 0.5), (0.5, INF)])
def test_out_of_range_values_still_raise(test_acc: float, mia: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nomus(test_acc, mia)


@pytest.mark.parametrize(
    ("attack", "members", "balanced", "needed"),
    [
        (mia_logistic, 3, True, "at least 6 training photos being forgotten and 6 photos never trained on; got 3"),
        (mia_logistic, 1, False, "at least 2 training photos being forgotten"),
        (mia_label_free, 5, True, "at least 6 training photos being forgotten"),
    ],
)
def test_attack_errors_say_how_many_photos_are_needed(attack, members: int, balanced: bool, needed: str) -> None:
    rng = np.random.default_rng(0)
    shape = (lambda n: (n,)) if attack is mia_logistic else (lambda n: (n, 4))
    with pytest.raises(DataError, match=needed):
        attack(rng.random(shape(members)), rng.random(shape(40)), balanced=balanced)


# ---------------------------------------------------------------------------------------------------------------------
# compute_metrics on tiny parts

RETAINED = ("p0", "p1", "p2", "p3")
FORGOTTEN = "f0"


def _part(rng: np.random.Generator, identities: list[str], known: tuple[str, ...]) -> SplitOutputs:
    labels = np.array([known.index(i) if i in known else -1 for i in identities], dtype=np.int64)
    logits = rng.normal(size=(len(identities), len(known))).astype(np.float32)
    logits[labels >= 0, labels[labels >= 0]] += 3.0
    return SplitOutputs(
        logits=logits,
        labels=labels,
        losses=per_sample_cross_entropy(logits, labels),
        features=rng.normal(size=(len(identities), 8)).astype(np.float32),
        identities=identities,
    )


def _tiny(
    mode: str = "identity", *, forget: int = 3, forget_test: int | None = 0, unseen: int = 2, retain_test: int = 2
) -> tuple[dict[str, SplitOutputs], Split]:
    """Per-part outputs of 4 retained people (5 training photos each) and a forgotten one; ``None``: part absent."""
    rng = np.random.default_rng(forget * 100 + (forget_test or 0) * 10 + unseen)
    known = (*RETAINED, FORGOTTEN) if mode == "identity" else RETAINED
    forgotten_id = FORGOTTEN if mode == "identity" else "p0"
    parts = {
        "retain_train": _part(rng, [p for p in RETAINED for _ in range(5)], known),
        "retain_test": _part(rng, [p for p in RETAINED for _ in range(retain_test)], known),
        "forget_train": _part(rng, [forgotten_id] * forget, known),
        "unseen": _part(rng, [f"u{i % 2}" for i in range(unseen)], known),
    }
    if forget_test is not None:
        parts["forget_test"] = _part(rng, [forgotten_id] * forget_test, known)
    split = Split(
        dataset="toy",
        seed=0,
        known=known,
        unseen=("u0", "u1"),
        train={},
        test={},
        forget_mode=mode,
        forget_identities=(FORGOTTEN,) if mode == "identity" else (),
    )
    return parts, split


ATTACK_METRICS = (
    "mia_balanced_acc",
    "forgetting_score",
    "nomus",
    "label_free_mia_acc",
    "forgetting_score_label_free",
    "nomus_label_free",
)


@pytest.mark.parametrize(
    "sizes",
    [
        {"forget": 3},
        {"forget": 1},
        {"forget": 1, "forget_test": None, "unseen": 1},
        {"forget": 3, "forget_test": 1, "unseen": 3},
        {"forget": 5, "unseen": 0},
        {"forget": 2, "retain_test": 0},
        {"forget": 8, "forget_test": 2, "unseen": 20},
        {"mode": "instance", "forget": 1, "forget_test": None},
        {"mode": "instance", "forget": 3, "forget_test": None, "retain_test": 1},
    ],
)
def test_tiny_parts_give_nan_with_reasons_never_an_error(sizes: dict) -> None:
    outputs, split = _tiny(**sizes)
    reasons: dict[str, str] = {"stale": "cleared"}
    metrics = compute_metrics(outputs, split, gold=outputs, reasons=reasons)
    assert metrics and all(isinstance(v, float) for v in metrics.values())
    assert set(metrics) <= set(metric_names())
    nan = {k for k, v in metrics.items() if math.isnan(v)}
    assert set(reasons) == nan, "exactly the NaN metrics have a reason"
    assert all(reasons[k] and len(reasons[k]) < 250 for k in nan)
    if sizes.get("forget", 3) < 6:
        assert set(ATTACK_METRICS) <= nan


def test_three_forget_photos_say_why_the_attacks_are_undefined() -> None:
    outputs, split = _tiny(forget=3, forget_test=0, unseen=12)
    metrics = compute_metrics(outputs, split)
    for key in ATTACK_METRICS:
        assert math.isnan(metrics[key]), key
    assert metrics["retain_test_acc"] >= 0.0 and not math.isnan(metrics["retain_test_acc"])
    reasons = undefined_reasons(outputs, split)
    assert "at least 6 training photos being forgotten" in reasons["forgetting_score"]
    assert "got 3" in reasons["forgetting_score"] and reasons["nomus"] == reasons["mia_balanced_acc"]
    assert "got 3" in reasons["nomus_label_free"]
    assert reasons["forget_test_acc"] == "no photos in forget_test"
    assert "held-out photos of the forgotten people" in reasons["forget_nn_identification"]


def test_enough_photos_give_no_reasons_for_the_attacks() -> None:
    outputs, split = _tiny(forget=8, forget_test=3, unseen=20, retain_test=3)
    reasons = undefined_reasons(outputs, split)
    assert not set(ATTACK_METRICS) & set(reasons)


def test_report_keeps_the_reasons() -> None:
    outputs, split = _tiny(forget=3)
    report = report_from_outputs(outputs, split)
    assert dict(report.meta["undefined"]) == undefined_reasons(outputs, split)
    assert math.isnan(report.metrics["forgetting_score"])
