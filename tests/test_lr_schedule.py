"""The training recipe's learning-rate schedule: linear warm-up, then cosine decay."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import dlfd_core.train as train_module
from dlfd_core.bench import _same_recipe
from dlfd_core.errors import DLFDError
from dlfd_core.models import create_model
from dlfd_core.train import TrainConfig, config_from_dict, default_config, lr_factor, train_classifier


def test_without_warmup_the_schedule_is_the_plain_cosine():
    total = 37
    for step in range(total):
        assert lr_factor(step, total) == pytest.approx(0.5 * (1.0 + math.cos(math.pi * step / total)), abs=1e-15)


def test_warmup_rises_linearly_then_decays_from_the_full_rate():
    total, warmup = 20, 4
    factors = [lr_factor(step, total, warmup) for step in range(total)]
    assert factors[:warmup] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[warmup] == pytest.approx(1.0)  # the cosine starts at the top
    decay = factors[warmup:]
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))
    assert 0.0 < decay[-1] < 0.02


def test_training_applies_the_warmup_to_every_parameter_group(monkeypatch):
    seen: list[list[float]] = []
    real_step = train_module.optimiser_step

    def spy(optimizer, loss, before_step=None):
        seen.append([group["lr"] for group in optimizer.param_groups])
        return real_step(optimizer, loss, before_step)

    monkeypatch.setattr(train_module, "optimiser_step", spy)
    torch.manual_seed(0)
    model = create_model("resnet18", 2, pretrained=False)
    crops = torch.rand(4, 3, model.input_size, model.input_size)
    config = dataclasses.replace(default_config("resnet18"), epochs=2, batch_size=2, warmup_epochs=1, augment=None)
    train_classifier(model, crops, torch.tensor([0, 1, 0, 1]), config=config, seed=0)
    expected = [config.lr * lr_factor(step, 4, 2) for step in range(4)]  # 2 steps an epoch, 1 epoch of warm-up
    assert [lrs[0] for lrs in seen] == pytest.approx(expected)
    assert all(len(set(lrs)) == 1 for lrs in seen)  # head and backbone share the recipe's rate here
    assert expected[0] == pytest.approx(0.5 * config.lr) and expected[1] == pytest.approx(config.lr)


@pytest.mark.parametrize("warmup", [-1.0, 3.0, math.nan])
def test_a_warmup_outside_the_epochs_is_refused(warmup):
    model = create_model("resnet18", 2, pretrained=False)
    crops = torch.rand(2, 3, model.input_size, model.input_size)
    with pytest.raises(DLFDError, match="warmup_epochs"):
        train_classifier(model, crops, torch.tensor([0, 1]), config=TrainConfig(epochs=2, warmup_epochs=warmup))


def test_a_recipe_saved_before_the_warmup_field_reads_as_no_warmup():
    saved = TrainConfig().to_dict()
    del saved["warmup_epochs"]  # what models and reference statistics saved before the field hold
    assert config_from_dict(saved).warmup_epochs == 0.0
    assert _same_recipe(saved, TrainConfig().to_dict())  # the bench still uses such reference statistics
    assert not _same_recipe(saved, dataclasses.replace(TrainConfig(), warmup_epochs=1.0).to_dict())
    assert not _same_recipe(None, TrainConfig().to_dict())
