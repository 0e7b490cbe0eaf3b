"""Random labels, SalUn, SCRUB, Bad Teacher and UNSIR on a tiny seeded model: checks specific to each method."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlfd_core.errors import DLFDError
from dlfd_core.models.classifier import FaceClassifier, create_model
from dlfd_core.train import TrainConfig, train_classifier
from dlfd_core.unlearn import RunContext, UnlearnData, create_method
from dlfd_core.unlearn.bad_teacher import bad_teacher_loss, untrained_twin
from dlfd_core.unlearn.random_label import relabel_forget
from dlfd_core.unlearn.salun import saliency_mask
from dlfd_core.unlearn.scrub import distill_kl
from dlfd_core.unlearn.unsir import learn_noise, stratified_subset

NUM_CLASSES = 5
SIZE = 16


class TinyBackbone(nn.Module):
    """Two convolutions and a linear embedding; the second convolution and the embedding are the "last stage"."""

    embedding_dim = 12
    input_size = SIZE

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, self.embedding_dim)

    def last_stage_parameters(self) -> list[nn.Parameter]:
        return [*self.conv2.parameters(), *self.fc.parameters()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # [B, 8, 4, 4]
        return self.fc(x.flatten(1))


def _images(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Class-dependent colour blobs plus noise, in [0, 1]."""
    base = torch.rand(NUM_CLASSES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(123))
    noise = 0.15 * torch.randn(len(labels), 3, SIZE, SIZE, generator=generator)
    return (base[labels] + noise).clamp(0.0, 1.0)


@pytest.fixture(scope="module")
def trained() -> FaceClassifier:
    """A tiny classifier trained on all five classes (about a second)."""
    torch.manual_seed(0)
    model = FaceClassifier(TinyBackbone(), NUM_CLASSES)
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(8)
    config = TrainConfig(
        epochs=10, lr=0.1, head_lr=0.1, batch_size=8, trainable="all", augment=None, head_init="random"
    )
    return train_classifier(model, _images(labels, g), labels, config=config, seed=0).model


def _data(mode: str) -> UnlearnData:
    g = torch.Generator().manual_seed(2)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(8)
    inputs = _images(labels, g)
    if mode == "identity":  # forget classes 3 and 4 entirely
        forget = labels >= 3
    else:  # forget two photos of each class
        forget = (torch.arange(len(labels)) % 8) < 2
    retained = set(labels[~forget].tolist())
    return UnlearnData(
        retain_inputs=inputs[~forget],
        retain_labels=labels[~forget],
        forget_inputs=inputs[forget],
        forget_labels=labels[forget],
        num_classes=NUM_CLASSES,
        forget_mode=mode,
        forget_classes=tuple(sorted({c for c in labels[forget].tolist() if c not in retained})),
    )


def _ctx(name: str = "random_label", seed: int = 0, **settings: object) -> RunContext:
    method = create_method(name, **settings)
    return RunContext(method, device=torch.device("cpu"), seed=seed, progress=lambda f, m: None, should_stop=None)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _forget_loss(model: nn.Module, data: UnlearnData) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(data.forget_inputs), data.forget_labels))


# -- random labels -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["identity", "instance"])
def test_random_labels_are_never_the_true_class_nor_a_forgotten_class(mode: str) -> None:
    data = _data(mode)
    ctx = _ctx()
    for _ in range(200):
        labels = relabel_forget(data, ctx)
        assert not bool((labels == data.forget_labels).any())
        assert not any(c in data.forget_classes for c in labels.tolist())
    if mode == "identity":
        assert data.forget_classes == (3, 4)


def test_random_label_run_lowers_forget_accuracy(trained: FaceClassifier) -> None:
    data = _data("identity")
    result = create_method("random_label", epochs=3, lr=0.05, head_lr=0.05, trainable="all").run(trained, data, seed=0)
    assert _forget_loss(result.model, data) > _forget_loss(trained, data) + 0.5


# -- SalUn ---------------------------------------------------------------------------------------------------------
def test_saliency_mask_keeps_the_largest_gradients_over_all_weights_jointly(trained: FaceClassifier) -> None:
    data = _data("identity")
    model = copy.deepcopy(trained)
    ctx = _ctx("salun")
    params = [p for g in ctx.sgd(model).param_groups for p in g["params"]]
    masks = saliency_mask(model, params, data.forget_inputs, data.forget_labels, ctx, fraction=0.3, batch_size=4)
    total = sum(p.numel() for p in params)
    assert sum(int(m.sum()) for m in masks) == round(0.3 * total)
    # the reference gradient: sum over batches of 4 of the mean loss
    grads = [torch.zeros_like(p) for p in params]
    for first in range(0, len(data.forget_inputs), 4):
        loss = F.cross_entropy(model(data.forget_inputs[first : first + 4]), data.forget_labels[first : first + 4])
        for total_g, g in zip(grads, torch.autograd.grad(loss, params), strict=True):
            total_g += g
    kept = torch.cat([g.abs()[m] for g, m in zip(grads, masks, strict=True)])
    dropped = torch.cat([g.abs()[~m] for g, m in zip(grads, masks, strict=True)])
    assert float(kept.min()) >= float(dropped.max())
    assert all(bool(m.any()) or m.numel() < 20 for m in masks)  # a joint threshold, not a per-layer one


def test_salun_never_moves_masked_out_weights_even_with_decay_and_momentum(trained: FaceClassifier) -> None:
    data = _data("identity")
    settings = {"epochs": 2, "lr": 0.05, "head_lr": 0.05, "momentum": 0.9, "weight_decay": 0.01, "trainable": "last"}
    result = create_method("salun", mask_fraction=0.5, **settings).run(trained, data, seed=0)
    model = copy.deepcopy(trained)
    ctx = _ctx("salun", **settings)
    params = [p for g in ctx.sgd(model).param_groups for p in g["params"]]
    masks = saliency_mask(model, params, data.forget_inputs, data.forget_labels, ctx, fraction=0.5, batch_size=32)
    after = dict(result.model.named_parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    moved = 0
    for p, m in zip(params, masks, strict=True):
        new = after[names[id(p)]].detach()
        assert torch.equal(new[~m], p.detach()[~m]), names[id(p)]  # bit-identical
        moved += int((new[m] != p.detach()[m]).sum())
    assert moved > 0.9 * sum(int(m.sum()) for m in masks)
    for name, p in trained.backbone.conv1.named_parameters():  # outside the trainable set
        assert torch.equal(p, result.model.backbone.conv1.get_parameter(name))


def test_salun_with_the_full_mask_is_random_labels_and_with_an_empty_mask_changes_nothing(
    trained: FaceClassifier,
) -> None:
    data = _data("instance")
    settings = {"epochs": 2, "lr": 0.02, "head_lr": 0.02, "weight_decay": 0.01}
    full = create_method("salun", mask_fraction=1.0, **settings).run(trained, data, seed=3).model
    plain = create_method("random_label", **settings).run(trained, data, seed=3).model
    for (name, a), b in zip(full.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # the decay added before masking is exactly SGD's own
    empty = create_method("salun", mask_fraction=0.0, **settings).run(trained, data, seed=3).model
    for (name, a), b in zip(empty.state_dict().items(), trained.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# -- SCRUB ---------------------------------------------------------------------------------------------------------
def test_distill_kl_matches_the_hand_formula() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    T = 4.0
    p, q = F.softmax(t / T, 1), F.softmax(s / T, 1)
    expected = (p * (p.log() - q.log())).sum(1).mean() * T**2
    torch.testing.assert_close(distill_kl(s, t, T), expected)
    assert float(distill_kl(t, t, T)) == pytest.approx(0.0, abs=1e-6)


def test_scrub_without_max_steps_and_kl_is_cross_entropy_fine_tuning(trained: FaceClassifier) -> None:
    data = _data("instance")
    common = {"epochs": 2, "lr": 0.01, "head_lr": 0.02}
    scrub = create_method("scrub", msteps=0, alpha=0.0, gamma=1.0, **common).run(trained, data, seed=5).model
    tuned = create_method("finetune", **common).run(trained, data, seed=5).model
    for (name, a), b in zip(scrub.state_dict().items(), tuned.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_scrub_max_steps_push_the_student_away_from_the_teacher_on_the_forget_set(trained: FaceClassifier) -> None:
    data = _data("identity")
    plain = {"epochs": 2, "lr": 0.01, "head_lr": 0.01, "batch_size": 8, "momentum": 0.0, "weight_decay": 0.0}
    # min-steps weighted 0: nothing moves, since the student starts as the teacher, where the KL's gradient is 0
    still = create_method("scrub", msteps=2, alpha=0.0, gamma=0.0, **plain).run(trained, data, seed=0).model
    for (name, a), b in zip(still.state_dict().items(), trained.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    # after a min-step pass the student differs from the teacher, and each max-step raises the forget-set KL
    result = create_method("scrub", msteps=2, alpha=0.0, gamma=1.0, **plain).run(trained, data, seed=0)
    kls = [h["forget_kl"] for h in result.history if "forget_kl" in h]  # the KL before each of the 4 max-steps
    assert len(kls) == 4 and max(kls[:2]) < 1e-5
    assert 1e-3 < kls[2] < kls[3]


# -- Bad Teacher ---------------------------------------------------------------------------------------------------
def test_bad_teacher_loss_uses_the_incompetent_teacher_only_on_forget_photos() -> None:
    g = torch.Generator().manual_seed(0)
    student, good, bad = (torch.randn(6, 5, generator=g) for _ in range(3))
    flags = torch.tensor([0, 1, 0, 0, 1, 0]).bool()

    def kl(target_logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        p = F.softmax(target_logits[rows], 1)
        return (p * (p.log() - F.log_softmax(student[rows], 1))).sum()

    everything = torch.ones(6).bool()
    expected = (kl(good, ~flags) + kl(bad, flags)) / 6
    torch.testing.assert_close(bad_teacher_loss(student, good, bad, flags, 1.0), expected)
    # changing the incompetent teacher on retain rows, or the competent one on forget rows, changes nothing
    bad2, good2 = bad.clone(), good.clone()
    bad2[~flags] += 10 * torch.randn(4, 5, generator=g)
    good2[flags] += 10 * torch.randn(2, 5, generator=g)
    torch.testing.assert_close(bad_teacher_loss(student, good2, bad2, flags, 1.0), expected)
    none = torch.zeros(6).bool()
    torch.testing.assert_close(bad_teacher_loss(student, good, bad, none, 1.0), kl(good, everything) / 6)


def test_untrained_twin_is_a_seeded_random_model_of_the_same_architecture(trained: FaceClassifier) -> None:
    a = untrained_twin(trained, torch.Generator().manual_seed(0))
    b = untrained_twin(trained, torch.Generator().manual_seed(0))
    c = untrained_twin(trained, torch.Generator().manual_seed(1))
    for (name, wa), wb, wc, w0 in zip(
        a.state_dict().items(),
        b.state_dict().values(),
        c.state_dict().values(),
        trained.state_dict().values(),
        strict=True,
    ):
        assert wa.shape == w0.shape and torch.equal(wa, wb), name
        if wa.numel() > 1:
            assert not torch.equal(wa, w0) and not torch.equal(wa, wc), name
    assert not any(p.requires_grad for p in a.parameters())
    registered = create_model("resnet18", NUM_CLASSES, pretrained=False, input_size=32)
    twin = untrained_twin(registered, torch.Generator().manual_seed(0))
    assert type(twin.backbone) is type(registered.backbone) and twin.backbone_name == "resnet18"
    assert not torch.equal(twin.output_layer.weight, registered.output_layer.weight)


def test_bad_teacher_moves_forget_outputs_towards_the_incompetent_teacher(trained: FaceClassifier) -> None:
    data = _data("identity")
    method = create_method("bad_teacher", lr=1e-2, head_lr=1e-2, epochs=5, trainable="all", retain_fraction=1.0)
    student = method.run(trained, data, seed=0).model
    bad = untrained_twin(trained, torch.Generator().manual_seed(0))  # the run's first draw from its generator

    def kl_to(teacher: nn.Module, model: nn.Module, x: torch.Tensor) -> float:
        with torch.no_grad():
            return float(distill_kl(model(x), teacher(x), 1.0))

    assert kl_to(bad, student, data.forget_inputs) < 0.5 * kl_to(bad, trained, data.forget_inputs)
    assert kl_to(trained, student, data.retain_inputs) < kl_to(bad, student, data.retain_inputs)


# -- UNSIR ---------------------------------------------------------------------------------------------------------
def test_unsir_noise_raises_the_models_loss_on_the_forget_class(trained: FaceClassifier) -> None:
    trained = copy.deepcopy(trained)
    stats = {"mean": torch.full((3,), 0.5), "std": torch.full((3,), 0.25)}
    kwargs = {"per_class": 8, "input_size": SIZE, "lr": 0.1, "weight": 0.1, **stats}
    start, labels = learn_noise(trained, [3, 4], _ctx("unsir"), steps=0, **kwargs)
    noise, labels2 = learn_noise(trained, [3, 4], _ctx("unsir"), steps=30, **kwargs)
    assert torch.equal(labels, labels2) and labels.tolist() == [3] * 8 + [4] * 8
    assert float(noise.min()) >= 0.0 and float(noise.max()) <= 1.0
    with torch.no_grad():
        before = float(F.cross_entropy(trained(start), labels))
        after = float(F.cross_entropy(trained(noise), labels))
    assert after > before + 1.0
    assert not any(p.grad is not None for p in trained.parameters())


def test_unsir_forgets_the_class_and_refuses_instance_forgetting(trained: FaceClassifier) -> None:
    data = _data("identity")
    method = create_method("unsir", lr=0.01, head_lr=0.01, trainable="all", batch_size=8, noise_steps=20)
    result = method.run(trained, data, seed=0)
    assert _forget_loss(result.model, data) > _forget_loss(trained, data) + 0.5
    with pytest.raises(DLFDError, match="identity"):
        method.run(trained, _data("instance"), seed=0)


def test_stratified_subset_takes_up_to_a_count_of_every_class() -> None:
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    index = stratified_subset(labels, 3, torch.Generator().manual_seed(0))
    assert sorted(labels[index].tolist()) == [0, 0, 0, 1, 1, 1, 2]
    assert len(set(index.tolist())) == len(index)
