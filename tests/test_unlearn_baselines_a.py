"""Retrain, NegGrad, NegGrad+, CF-k, EU-k and ℓ1-sparse: checks specific to each method, on a tiny seeded model."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlfd_core.models import FaceClassifier, create_model
from dlfd_core.models import registry as backbone_registry
from dlfd_core.progress import no_progress
from dlfd_core.train import default_config, imprint_head, train_classifier
from dlfd_core.unlearn import RunContext, UnlearnData, create_method
from dlfd_core.unlearn.k_layers import layer_groups

NUM_CLASSES = 4
TINY = "tiny_baselines_a"


class _Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class TinyBackbone(nn.Module):
    """stem (conv + BatchNorm) -> two residual blocks -> pooled linear projection; 16x16 inputs, 8-d embedding."""

    embedding_dim = 8
    input_size = 16

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.blocks = nn.Sequential(_Block(4), _Block(4))
        self.fc = nn.Linear(4, self.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def _tiny_factory(*, pretrained: bool = False) -> TinyBackbone:
    """A registrable tiny backbone whose 'pretrained' weights are a fixed seeded draw."""
    backbone = TinyBackbone()
    if pretrained:
        generator = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            for p in backbone.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return backbone


@pytest.fixture
def tiny_registered(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(backbone_registry.BACKBONES._entries, TINY, _tiny_factory)
    return TINY


def _data(mode: str = "identity", seed: int = 0) -> UnlearnData:
    g = torch.Generator().manual_seed(seed)
    retain_y = torch.tensor([0, 1, 2] * 8)
    if mode == "identity":
        forget_y = torch.full((6,), 3)
        forget_classes: tuple[int, ...] = (3,)
    else:
        retain_y = torch.cat([retain_y, torch.full((4,), 3)])
        forget_y = torch.tensor([0, 1, 2, 3, 0, 1])
        forget_classes = ()
    templates = torch.rand(NUM_CLASSES, 3, 16, 16, generator=g)  # one "face" per class, plus per-photo noise

    def photos(labels: torch.Tensor) -> torch.Tensor:
        return 0.6 * templates[labels] + 0.4 * torch.rand(len(labels), 3, 16, 16, generator=g)

    return UnlearnData(
        retain_inputs=photos(retain_y),
        retain_labels=retain_y,
        forget_inputs=photos(forget_y),
        forget_labels=forget_y,
        num_classes=NUM_CLASSES,
        forget_mode=mode,
        forget_classes=forget_classes,
    )


def _tiny_model(seed: int = 0) -> FaceClassifier:
    torch.manual_seed(seed)
    return FaceClassifier(TinyBackbone(), NUM_CLASSES)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: nn.Module, b: nn.Module) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


# -- layers --------------------------------------------------------------------------------------------------------
def test_layer_groups_of_the_tiny_model_end_with_the_head_and_cover_every_parameter():
    model = _tiny_model()
    groups = layer_groups(model)
    assert [name for name, _ in groups] == [
        "backbone.stem",
        "backbone.blocks.0",
        "backbone.blocks.1",
        "backbone.fc",
        "head",
    ]
    covered = {id(p) for _, m in groups for p in m.parameters()}
    assert covered == {id(p) for p in model.parameters()}


def test_layer_groups_of_the_shipped_backbones():
    resnet = create_model("resnet18", NUM_CLASSES, pretrained=False)
    names = [name for name, _ in layer_groups(resnet)]
    assert names[0] == "backbone.stem" and names[-3:] == ["backbone.layer4.0", "backbone.layer4.1", "head"]
    assert len(names) == 10
    dlib = create_model("dlib_resnet", NUM_CLASSES, pretrained=False)
    groups = layer_groups(dlib)
    assert [name for name, _ in groups[-3:]] == ["backbone.blocks.conv256_down_out", "backbone.fc", "head"]
    assert len(groups) == 17
    # the default k = 3 is exactly the set that the dlib recipe fine-tunes
    last3 = {id(p) for _, m in groups[-3:] for p in m.parameters()}
    recipe = {id(p) for p in dlib.backbone.last_stage_parameters()} | {id(p) for p in dlib.head.parameters()}
    assert last3 == recipe


# -- retrain -------------------------------------------------------------------------------------------------------
def test_retrain_is_the_recipe_from_a_fresh_seeded_model(tiny_registered):
    data = _data()
    torch.manual_seed(5)
    model = create_model(tiny_registered, NUM_CLASSES, pretrained=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)  # the original model's weights must play no part
    result = create_method("retrain").run(model, data, seed=3)
    torch.manual_seed(3)
    expected = create_model(tiny_registered, NUM_CLASSES, pretrained=True)
    train_classifier(expected, data.retain_inputs, data.retain_labels, config=default_config(tiny_registered), seed=3)
    assert _same(result.model, expected)
    assert len(result.history) == default_config(tiny_registered).epochs


def test_retrain_reports_progress_through_the_run(tiny_registered):
    data = _data()
    model = create_model(tiny_registered, NUM_CLASSES, pretrained=True)
    seen: list[float] = []
    create_method("retrain").run(model, data, seed=0, progress=lambda f, m="": seen.append(f))
    assert seen[-1] == 1.0 and max(seen[:-1]) < 1.0 and len(seen) > 2
    assert seen == sorted(seen)


def test_retrain_rebuilds_an_unregistered_backbone_from_a_seeded_random_init():
    data = _data()
    model = _tiny_model()
    method = create_method("retrain")
    first = method.run(model, data, seed=2).model
    assert _same(first, method.run(model, data, seed=2).model)
    torch.manual_seed(2)
    expected = copy.deepcopy(model)
    for module in reversed(list(expected.modules())):
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    train_classifier(expected, data.retain_inputs, data.retain_labels, config=default_config("custom"), seed=2)
    assert _same(first, expected)


@pytest.mark.slow
def test_retrain_equals_the_gold_model_of_train_on_split(orl_aligned):
    """Retraining follows the recipe saved with the original model (here shortened to one epoch, so that the two
    trainings take seconds, not minutes) and gives the gold model of that recipe, parameter for parameter."""
    import dataclasses

    from dlfd_core.cli import DEFAULT_MODEL, DEFAULT_SPLIT, _repo_path
    from dlfd_core.data import load_split, with_forget_identities
    from dlfd_core.models import load_model
    from dlfd_core.train import recipe_of, train_on_split

    split = with_forget_identities(load_split(_repo_path(DEFAULT_SPLIT)), ["s7"])
    original = load_model(_repo_path(DEFAULT_MODEL))
    short = dataclasses.replace(recipe_of(original), epochs=1)
    original.metadata = {**original.metadata, "train_config": short.to_dict()}
    assert recipe_of(original) == short
    data = UnlearnData.from_split(orl_aligned, split, input_size=original.input_size)
    result = create_method("retrain").run(original, data, seed=0)
    gold = train_on_split(orl_aligned, split, which="gold", seed=0, config=short).model
    assert _same(result.model, gold)


# -- NegGrad -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["identity", "instance"])
def test_neggrad_raises_the_forget_loss_and_ignores_the_retain_set(mode):
    data = _data(mode)
    model = _tiny_model()
    method = create_method("neggrad", epochs=3, lr=0.05, head_lr=0.05, trainable="all")
    result = method.run(model, data, seed=0)

    def forget_loss(m: nn.Module) -> float:
        m.eval()
        with torch.no_grad():
            return float(F.cross_entropy(m(data.forget_inputs), data.forget_labels))

    assert forget_loss(result.model) > forget_loss(model)
    # the forget loss logged at each step rises: every step ascends it
    logged = [h["forget_loss"] for h in result.history]
    assert len(logged) == 3 and logged == sorted(logged)
    other_retain = UnlearnData(
        retain_inputs=torch.zeros_like(data.retain_inputs),
        retain_labels=data.retain_labels,
        forget_inputs=data.forget_inputs,
        forget_labels=data.forget_labels,
        num_classes=NUM_CLASSES,
        forget_mode=mode,
    )
    assert _same(method.run(model, other_retain, seed=0).model, result.model)


def test_neggrad_plus_with_alpha_one_is_retain_fine_tuning_on_the_same_batches():
    data = _data()
    model = _tiny_model()
    method = create_method("neggrad_plus", alpha=1.0, epochs=2, batch_size=8, lr=0.01, head_lr=0.05)
    result = method.run(model, data, seed=7)

    # the reference: the same seeded batch pairs, the cross-entropy of the retain batch only
    expected = copy.deepcopy(model)
    ctx = RunContext(method, device=torch.device("cpu"), seed=7, progress=no_progress, should_stop=None)
    optimizer = ctx.sgd(expected)
    expected.train()
    for _ in range(2):
        pairs = zip(
            ctx.batches(data.retain_inputs, data.retain_labels, 8),
            ctx.cycle(data.forget_inputs, data.forget_labels, 8),
            strict=False,
        )
        for (x_r, y_r), _forget in pairs:
            ctx.update(optimizer, F.cross_entropy(expected(x_r), y_r))
    assert _same(result.model, expected)

    # with alpha < 1 the forget term acts and raises the forget loss relative to alpha = 1
    mixed = create_method("neggrad_plus", alpha=0.5, epochs=2, batch_size=8, lr=0.01, head_lr=0.05).run(
        model, data, seed=7
    )
    with torch.no_grad():
        loss_mixed = F.cross_entropy(mixed.model(data.forget_inputs), data.forget_labels)
        loss_plain = F.cross_entropy(result.model(data.forget_inputs), data.forget_labels)
    assert loss_mixed > loss_plain


# -- CF-k / EU-k ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 4])
def test_cf_k_leaves_the_frozen_layers_bit_identical(k):
    data = _data()
    model = _tiny_model()
    result = create_method("cf_k", k=k, epochs=2, lr=0.01, head_lr=0.05).run(model, data, seed=0)
    before = dict(layer_groups(model))
    after = layer_groups(result.model)
    for index, (name, module) in enumerate(after):
        frozen = index < len(after) - k
        assert _same(module, before[name]) == frozen, name  # frozen: same weights and BatchNorm statistics


def test_eu_k_with_no_epochs_returns_the_restored_state(tiny_registered):
    data = _data()
    torch.manual_seed(0)
    pretrained = create_model(tiny_registered, NUM_CLASSES, pretrained=True)
    original = copy.deepcopy(pretrained)
    with torch.no_grad():  # "training": every weight moves away from the pretrained state
        for p in original.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    result = create_method("eu_k", k=2, epochs=0).run(original, data, seed=0).model

    for name in ("stem", "blocks"):  # frozen: as trained
        assert _same(getattr(result.backbone, name), getattr(original.backbone, name))
    assert _same(result.backbone.fc, pretrained.backbone.fc)  # restored: the pretrained weights
    expected = copy.deepcopy(original)
    expected.backbone.fc.load_state_dict(pretrained.backbone.fc.state_dict())
    imprint_head(
        expected, data.retain_inputs, data.retain_labels, logit_scale=default_config(TINY).prototype_logit_scale
    )
    kept = torch.tensor([0, 1, 2])
    assert torch.equal(result.head.weight[kept], expected.head.weight[kept])  # imprinted from the retain photos
    assert torch.equal(result.head.bias[kept], expected.head.bias[kept])
    assert not torch.equal(result.head.weight[3], original.head.weight[3])  # the forgotten class: a fresh random row


def test_eu_k_from_scratch_reinitialises_the_last_layers_with_the_run_seed():
    data = _data()
    model = _tiny_model()
    method = create_method("eu_k", k=3, epochs=0)
    first = method.run(model, data, seed=1).model
    assert _same(first, method.run(model, data, seed=1).model)
    assert not _same(first.backbone.blocks[1], method.run(model, data, seed=2).model.backbone.blocks[1])
    assert _same(first.backbone.stem, model.backbone.stem) and _same(first.backbone.blocks[0], model.backbone.blocks[0])
    pairs = [(first.backbone.blocks[1], model.backbone.blocks[1]), (first.backbone.fc, model.backbone.fc)]
    for restored, trained in [*pairs, (first.head, model.head)]:
        assert not _same(restored, trained)


def test_eu_k_trains_only_the_restored_layers():
    data = _data()
    model = _tiny_model()
    reset = create_method("eu_k", k=2, epochs=0).run(model, data, seed=0).model
    trained = create_method("eu_k", k=2, epochs=2, lr=0.01, head_lr=0.05).run(model, data, seed=0).model
    assert _same(trained.backbone.stem, model.backbone.stem) and _same(trained.backbone.blocks, model.backbone.blocks)
    assert not _same(trained.backbone.fc, reset.backbone.fc) and not _same(trained.head, reset.head)


# -- ℓ1-sparse -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["identity", "instance"])
def test_l1_sparse_with_gamma_zero_is_fine_tuning(mode):
    data = _data(mode)
    model = _tiny_model()
    shared = dict(epochs=2, batch_size=8, lr=0.01, head_lr=0.05, trainable="all")
    l1 = create_method("l1_sparse", gamma=0.0, **shared).run(model, data, seed=4)
    ft = create_method("finetune", **shared).run(model, data, seed=4)
    assert _same(l1.model, ft.model)


def test_l1_sparse_penalty_shrinks_the_trained_weights_and_decays_linearly():
    data = _data()
    model = _tiny_model()
    shared = dict(epochs=2, batch_size=8, lr=0.01, head_lr=0.05, trainable="all")
    l1 = create_method("l1_sparse", gamma=0.05, **shared).run(model, data, seed=4)
    ft = create_method("finetune", **shared).run(model, data, seed=4)

    def norm(m: nn.Module) -> float:
        return float(sum(p.detach().abs().sum() for p in m.parameters()))

    assert norm(l1.model) < norm(ft.model) - 0.01
    gammas = [h["gamma"] for h in l1.history]
    steps = len(gammas)
    assert steps == 6 and gammas == pytest.approx([0.05 * (1 - t / steps) for t in range(steps)])
