"""TMU (Twin Machine Unlearning): its features, its scaling, its easy/hard relabelling and its noise, on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlfd_core.models.classifier import FaceClassifier
from dlfd_core.progress import no_progress
from dlfd_core.unlearn import RunContext, UnlearnData, create_method
from dlfd_core.unlearn.tmu import MAX_DISTANCE, FeatureScaler, distance_feature
from tests.tiny import TINY, TinyBackbone

NUM_CLASSES = 5


def tiny_model(seed: int = 0, *, backbone_name: str = TINY, pretrained: bool = False) -> FaceClassifier:
    torch.manual_seed(seed)
    return FaceClassifier(TinyBackbone(), NUM_CLASSES, backbone_name=backbone_name, pretrained=pretrained)


def tiny_data(mode: str, *, holdout_labels: torch.Tensor | None = None, seed: int = 0) -> UnlearnData:
    """5 classes x 6 photos; identity mode forgets classes 3 and 4, instance mode one photo of each class 0-3."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(30, 3, 16, 16, generator=g)
    y = torch.arange(NUM_CLASSES).repeat_interleave(6)
    forget = y >= 3 if mode == "identity" else torch.arange(30) % 6 == 0
    if mode == "instance":
        forget &= y <= 3
    holdout_x = torch.rand(10, 3, 16, 16, generator=g)
    if holdout_labels is None:
        holdout_labels = torch.arange(10) % 3
    return UnlearnData(
        retain_inputs=x[~forget],
        retain_labels=y[~forget],
        forget_inputs=x[forget],
        forget_labels=y[forget],
        num_classes=NUM_CLASSES,
        forget_mode=mode,
        forget_classes=(3, 4) if mode == "identity" else (),
        holdout_inputs=holdout_x,
        holdout_labels=holdout_labels,
    )


def predictions(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(inputs).argmax(1)


def record(history: tuple[dict[str, float], ...], key: str) -> dict[str, float]:
    rows = [row for row in history if key in row]
    assert len(rows) == 1, f"expected one history record with {key}"
    return rows[0]


def test_distance_feature_matches_hand_computation() -> None:
    refs = torch.tensor([[3.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.1]])
    ref_labels = torch.tensor([0, 0, 0, 1])
    feats = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, -5.0]])
    labels = torch.tensor([0, 0, 2])  # class 2 has no reference photo
    k2 = distance_feature(feats, labels, refs, ref_labels, k=2)
    # normalised: the sample is (1, 0); its class's references (1, 0), (0, 1), (-1, 0) lie at 0, sqrt(2), 2.
    assert k2[0].item() == pytest.approx(math.sqrt(2) / 2, abs=1e-6)
    k5 = distance_feature(feats, labels, refs, ref_labels, k=5)  # fewer than 5 in the class: all three
    assert k5[0].item() == pytest.approx((math.sqrt(2) + 2) / 3, abs=1e-6)
    assert k2[2].item() == MAX_DISTANCE and k5[2].item() == MAX_DISTANCE


def test_iqr_clip_and_min_max_scaling_match_hand_computation() -> None:
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 100.0])
    scaler = FeatureScaler.fit(values)  # Q1 2, Q3 4, IQR 2: fences [-1, 7]; clipped max 7, min 1
    assert (scaler.lower, scaler.upper, scaler.low, scaler.high) == pytest.approx((-1.0, 7.0, 1.0, 7.0))
    assert scaler(values).tolist() == pytest.approx([0.0, 1 / 6, 2 / 6, 3 / 6, 1.0])
    # another set on the same scale: clipped to the fences, scaled, clamped to [0, 1]
    assert scaler(torch.tensor([0.0, 5.0, 200.0])).tolist() == pytest.approx([0.0, 4 / 6, 1.0])
    assert FeatureScaler.fit(torch.full((4,), 3.0))(torch.tensor([3.0, 9.0])).tolist() == [0.5, 0.5]


def test_all_easy_with_noise_off_is_plain_finetuning_on_retain_and_forget() -> None:
    model = tiny_model()
    data = tiny_data("instance")
    # the original classifies every holdout photo "correctly" by construction: a one-class (all easy) twin problem
    data = tiny_data("instance", holdout_labels=predictions(model, data.holdout_inputs))
    settings = dict(epochs=2, batch_size=8)
    result = create_method("tmu", noise_std=0.0, lr=0.02, head_lr=0.1, unlearn_lr_scale=0.5, **settings).run(
        model, data, seed=3
    )
    stats = record(result.history, "forget_predicted_easy")
    assert stats["forget_predicted_easy"] == len(data.forget_labels) and stats["forget_predicted_hard"] == 0
    assert stats["twin_hard"] == 0 and stats["predictor_train_acc"] == 1.0
    merged = UnlearnData(
        retain_inputs=torch.cat([data.retain_inputs, data.forget_inputs]),
        retain_labels=torch.cat([data.retain_labels, data.forget_labels]),
        forget_inputs=data.forget_inputs,
        forget_labels=data.forget_labels,
        num_classes=NUM_CLASSES,
        forget_mode="instance",
    )
    reference = create_method("finetune", lr=0.01, head_lr=0.05, **settings).run(model, merged, seed=3)
    for (name, a), (_, b) in zip(result.model.state_dict().items(), reference.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    moved = any(not torch.equal(a, b) for a, b in zip(result.model.parameters(), model.parameters(), strict=True))
    assert moved


def test_all_easy_keeps_every_forget_label() -> None:
    data = tiny_data("instance")
    method = create_method("tmu")
    ctx = RunContext(method, device=torch.device("cpu"), seed=0, progress=no_progress, should_stop=None)
    inputs, labels, noisy = method.unlearning_set(data, torch.ones(len(data.forget_labels), dtype=torch.bool), ctx)
    assert torch.equal(labels, torch.cat([data.retain_labels, data.forget_labels]))
    assert noisy.tolist() == [False] * len(data.retain_labels) + [True] * len(data.forget_labels)
    assert torch.equal(inputs, torch.cat([data.retain_inputs, data.forget_inputs]))


@pytest.mark.parametrize("seed", range(5))
def test_identity_all_hard_relabels_away_from_own_and_forgotten_classes(seed: int) -> None:
    data = tiny_data("identity")
    method = create_method("tmu")
    ctx = RunContext(method, device=torch.device("cpu"), seed=seed, progress=no_progress, should_stop=None)
    hard = torch.zeros(len(data.forget_labels), dtype=torch.bool)
    _, labels, _ = method.unlearning_set(data, hard, ctx)
    assert torch.equal(labels[: len(data.retain_labels)], data.retain_labels)
    new = labels[len(data.retain_labels) :]
    assert bool((new != data.forget_labels).all())
    assert not any(c in data.forget_classes for c in new.tolist())


def test_identity_mode_forgotten_people_are_hard_even_when_the_twin_says_easy() -> None:
    model = tiny_model()
    data = tiny_data("identity")
    data = tiny_data("identity", holdout_labels=predictions(model, data.holdout_inputs))  # all easy twin problem
    settings = dict(epochs=1, batch_size=8, noise_std=0.0)
    stats = record(create_method("tmu", **settings).run(model, data, seed=0).history, "forget_predicted_hard")
    assert stats["forget_predicted_hard"] == len(data.forget_labels)
    off = create_method("tmu", forgotten_people_hard=False, **settings).run(model, data, seed=0)
    assert record(off.history, "forget_predicted_easy")["forget_predicted_easy"] == len(data.forget_labels)


@pytest.mark.parametrize(
    ("backbone_name", "pretrained"),
    [(TINY, False), (TINY, True), ("unregistered", True)],  # curriculum: from scratch, pristine backbone, fallback
)
def test_two_class_twin_problem_trains_the_predictor_and_keeps_to_its_plan(
    backbone_name: str, pretrained: bool
) -> None:
    model = tiny_model(backbone_name=backbone_name, pretrained=pretrained)
    data = tiny_data("instance")
    pred = predictions(model, data.holdout_inputs)
    wrong = (pred + 1) % NUM_CLASSES
    holdout_labels = torch.where(torch.arange(10) % 2 == 0, pred, wrong)  # half easy, half hard
    data = tiny_data("instance", holdout_labels=holdout_labels)
    calls: list[float] = []
    method = create_method(
        "tmu", epochs=1, batch_size=8, twin_epochs=1, curriculum_epochs=1, predictor_epochs=20, lr=0.01, head_lr=0.05
    )
    result = method.run(model, data, seed=0, progress=lambda fraction, message: calls.append(fraction))
    stats = record(result.history, "predictor_train_acc")
    assert stats["twin_easy"] == 5 and stats["twin_hard"] == 5
    assert 0.0 <= stats["predictor_train_acc"] <= 1.0
    assert stats["forget_predicted_easy"] + stats["forget_predicted_hard"] == len(data.forget_labels)
    keys = {k for row in result.history for k in row}
    assert {"twin_loss", "curriculum_loss", "predictor_loss", "loss"} <= keys
    steps = calls[:-1]  # the last call is the final "done"
    assert len(steps) == round(1 / steps[0])  # as many steps as planned
    again = method.run(model, data, seed=0)
    for a, b in zip(result.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_noise_perturbs_the_forget_photos_only() -> None:
    model = tiny_model()
    data = tiny_data("instance")
    data = tiny_data("instance", holdout_labels=predictions(model, data.holdout_inputs))  # all easy: labels kept
    method = create_method("tmu", epochs=1, batch_size=64, noise_std=0.1)  # one batch holds every photo
    seen: list[torch.Tensor] = []

    class Recording(TinyBackbone):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:  # the list is a closure, so the run's deep copy records here too
                seen.append(x.detach().clone())
            return super().forward(x)

    recorder = FaceClassifier(Recording(), NUM_CLASSES)
    recorder.load_state_dict(model.state_dict())
    method.run(recorder, data, seed=0)
    (batch,) = seen
    retain = {tuple(x.flatten()[:6].tolist()) for x in data.retain_inputs}
    forget = {tuple(x.flatten()[:6].tolist()) for x in data.forget_inputs}
    rows = [tuple(x.flatten()[:6].tolist()) for x in batch]
    assert sum(r in retain for r in rows) == len(retain)  # every retain photo seen unchanged
    assert not any(r in forget for r in rows)  # no forget photo seen unchanged
    assert float(batch.min()) >= 0.0 and float(batch.max()) <= 1.0
