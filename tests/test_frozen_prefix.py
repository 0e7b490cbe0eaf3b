"""The frozen-prefix fast paths compute what the full passes compute.

With the dlib ResNet's recipe only the last stage trains, so the layers before it give the same output for a photo
at every step. Training (without augmentation), the prefix-safe unlearning methods and DLFD's clean steps use that
output once instead of recomputing it; each is checked here against the full forward passes on real ORL faces.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dlfd_core.data import make_split, with_forget_identities
from dlfd_core.data.splits import aligned_for
from dlfd_core.evaluate.metrics import rank_auc
from dlfd_core.models import create_model
from dlfd_core.train import TrainConfig, recipe_of, train_classifier, uses_frozen_prefix
from dlfd_core.unlearn import UnlearnData, create_method
from dlfd_core.unlearn.base import SuffixView, frozen_prefix


@pytest.fixture(scope="module")
def small(orl_dataset, orl_aligned):
    """Eight ORL people, 4 train photos each, and two unseen people; one of the eight to forget."""
    people = set(orl_dataset.identities[:10])
    subset = type(orl_dataset)(
        name="orl", root=orl_dataset.root, records=tuple(r for r in orl_dataset.records if r.identity in people)
    )
    split = make_split(orl_aligned.usable_dataset(subset), seed=0, num_unseen=2, test_per_identity=5)
    return orl_aligned, with_forget_identities(split, [split.known[0]])


def _model(num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("dlib_resnet", num_classes, pretrained=True)


def _close(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)


def test_training_from_prefix_outputs_equals_full_passes(small, monkeypatch: pytest.MonkeyPatch) -> None:
    aligned, split = small
    crops, labels = aligned_for(aligned, split, split.train_keys)
    config = TrainConfig(epochs=2, augment=None)
    fast = _model(split.num_classes)
    assert uses_frozen_prefix(fast, config)
    assert not uses_frozen_prefix(fast, TrainConfig())  # augmented photos change the prefix's input
    train_classifier(fast, crops, labels, config=config)
    assert recipe_of(fast) == config  # a trained model knows its recipe: its gold model (and an enrolment's) follows it
    monkeypatch.setattr("dlfd_core.train.uses_frozen_prefix", lambda model, config: False)
    slow = _model(split.num_classes)
    train_classifier(slow, crops, labels, config=config)
    _close(fast, slow)
    untrained = _model(split.num_classes).parameters()
    assert not all(torch.equal(p, q) for p, q in zip(fast.parameters(), untrained, strict=True))


@pytest.mark.parametrize("method", ["finetune", "neggrad_plus", "dlfd"])
def test_unlearning_from_prefix_outputs_equals_full_passes(small, method, monkeypatch: pytest.MonkeyPatch) -> None:
    aligned, split = small
    model = _model(split.num_classes)
    data = UnlearnData.from_split(aligned, split, input_size=model.input_size)
    cached = data.with_prefix(model)  # what the app hands over from its cache
    settings = {"steps": 2} if method == "dlfd" else {}
    fast = create_method(method, **settings).run(model, cached, seed=3).model
    monkeypatch.setattr("dlfd_core.unlearn.base.frozen_prefix", lambda model, trainable: False)
    monkeypatch.setattr("dlfd_core.unlearn.dlfd.frozen_prefix", lambda model, trainable: False)
    slow = create_method(method, **settings).run(model, data, seed=3).model
    _close(fast, slow)
    assert not torch.equal(fast.head.weight, model.head.weight)  # it did unlearn something


def test_suffix_view_shares_the_models_parameters(small) -> None:
    aligned, split = small
    model = _model(split.num_classes)
    assert frozen_prefix(model, "last") and not frozen_prefix(model, "all")
    view = SuffixView(model)
    x = torch.rand(2, 3, 150, 150)
    with torch.no_grad():
        torch.testing.assert_close(view(model.backbone.prefix(x)), model(x))
    with torch.no_grad():
        view.backbone.last_stage_parameters()[0].add_(1.0)
    assert {id(p) for p in view.parameters()} == {id(p) for p in model.parameters()}


def test_rank_auc_is_sklearns_auc() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 7, 1000):
        scores = np.round(rng.normal(size=n), 1)  # many ties
        positive = rng.random(n) < 0.3
        positive[:2] = [True, False]
        assert rank_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)


def test_from_split_keeps_cached_prefix_outputs_only_when_complete(small) -> None:
    aligned, split = small
    model = _model(split.num_classes)
    full = UnlearnData.from_split(aligned, split, input_size=150).with_prefix(model)
    table = dict(zip(split.retain_train_keys, full.prefix["retain"], strict=True))
    table.update(zip(split.forget_train_keys, full.prefix["forget"], strict=True))

    def lookup(keys):
        return torch.stack([table[k] for k in keys]) if all(k in table for k in keys) else None

    partial = UnlearnData.from_split(aligned, split, input_size=150, prefix=lookup)
    assert partial.prefix is None  # the validation people's outputs are missing: nothing is half-cached
    table.update(zip(split.validation_keys(aligned)["nonmembers"], full.prefix["nonmember"], strict=True))
    complete = UnlearnData.from_split(aligned, split, input_size=150, prefix=lookup)
    assert complete.prefix is not None
    for part in ("retain", "forget", "nonmember"):
        torch.testing.assert_close(complete.prefix[part], full.prefix[part])
    on = complete.on_prefix()
    assert on.retain_inputs.shape[1:] == full.prefix["retain"].shape[1:] and on.prefix is None
    assert dataclasses.replace(on, prefix=None).forget_labels.tolist() == complete.forget_labels.tolist()


def test_dlfd_can_synthesise_on_the_frozen_layers_outputs(small) -> None:
    """``synthesis='prefix'``: δ is added to the frozen layers' outputs, in steps scaled by their spread, and the
    frozen layers stay untouched; it changes the result (the synthesis is live) and is refused without a prefix."""
    from dlfd_core.errors import DLFDError
    from tests.tiny import tiny_data, tiny_model

    aligned, split = small
    model = _model(split.num_classes)
    data = UnlearnData.from_split(aligned, split, input_size=model.input_size).with_prefix(model)
    settings = {"steps": 3, "stop_threshold": 0.0, "step_size": 0.01}
    run = create_method("dlfd", synthesis="prefix", **settings).run(model, data, seed=3)
    scale = float(data.prefix["retain"].std()) / float(data.retain_inputs.std())
    moved = [h["delta_linf"] for h in run.history if h["perturbed"]]
    assert len(moved) == len(run.history) and all(0 < d <= 3 * 0.01 * scale * (1 + 1e-5) for d in moved)
    prefix_names = {name for name, _ in model.backbone.named_parameters()} - {
        name
        for name, p in model.backbone.named_parameters()
        if any(p is q for q in model.backbone.last_stage_parameters())
    }
    assert prefix_names
    after = dict(run.model.backbone.named_parameters())
    for name, parameter in model.backbone.named_parameters():
        if name in prefix_names:
            assert torch.equal(after[name], parameter), name
    clean = create_method("dlfd", synthesis="prefix", **{**settings, "steps": 0}).run(model, data, seed=3).model
    assert not torch.equal(clean.head.weight, run.model.head.weight)
    with pytest.raises(DLFDError, match="synthesis='prefix' needs frozen layers"):
        create_method("dlfd", synthesis="prefix").run(tiny_model(), tiny_data("identity"), seed=0)
