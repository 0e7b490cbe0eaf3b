"""Retrain: exact unlearning by training the same architecture again on the retain set only (the gold model).

Every unlearning method is measured against this model. The run starts from the point the original model started
from (the pretrained backbone, or a seeded random one for a backbone trained from scratch, plus a new head over all
known classes) and trains it with the backbone's own recipe (:func:`~dlfd_core.train.default_config` and
:func:`~dlfd_core.train.train_classifier`) on the retain photos. Seeding follows
:func:`~dlfd_core.train.train_on_split`, so for the same seed the result equals ``train_on_split(..., which="gold")``
tensor for tensor. The forgotten classes keep their output rows at the head's random initialisation, as in the gold
model.

Adaptations: none to the recipe. The shared optimisation settings (epochs, learning rates, trainable set, ...) are
not used: the recipe of the model's backbone decides them, so that this method *is* the gold model; to retrain with
another recipe, train a model with ``dlfd train --gold`` instead. A model on an unregistered backbone trained from
scratch (e.g. a test's tiny network) is rebuilt by re-initialising a copy with its modules' ``reset_parameters``;
a backbone whose pretrained weights cannot be rebuilt (an unregistered one, or ``inception_resnet_v1``, whose
weights are not bundled) raises :class:`~dlfd_core.errors.DLFDError`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import DLFDError
from .base import Method, RunContext, UnlearnData, register_method, setting

__all__ = ["Retrain", "initial_model"]

_UNUSED = "not used: retraining follows the training recipe of the model's backbone"


def initial_model(model: nn.Module) -> nn.Module:
    """A new model of ``model``'s architecture in the state its training started from (on the CPU).

    That is the pretrained backbone (or a random one for a backbone trained from scratch) with a random head, drawn
    from the global random generator, which the caller seeds. Registered backbones are created again with
    :func:`~dlfd_core.models.create_model`; an unregistered backbone trained from scratch is copied and
    re-initialised with its modules' ``reset_parameters``.

    Raises:
        DLFDError: the pretrained weights cannot be rebuilt.
    """
    from ..models import create_model
    from ..models.registry import backbone_names

    if model.backbone_name in backbone_names():
        return create_model(
            model.backbone_name,
            model.num_classes,
            pretrained=model.pretrained,
            head_hidden=model.head_hidden,
            head_dropout=model.head_dropout,
            **model.backbone_kwargs,
        )
    if model.pretrained:
        raise DLFDError(f"cannot rebuild the pretrained weights of the unregistered backbone {model.backbone_name!r}")
    fresh = copy.deepcopy(model).cpu()
    for module in reversed(list(fresh.modules())):  # children first, so that a parent's own scheme has the last word
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return fresh


@register_method
@dataclass(frozen=True, kw_only=True)
class Retrain(Method):
    """Retrain from the original starting point on the retain set only (exact unlearning; the gold model)."""

    name = "retrain"
    title = "Retrain (gold)"
    paper = "exact unlearning by retraining (the reference every method is compared with)"

    epochs: int = setting(1, _UNUSED, min=1, max=100)
    batch_size: int = setting(32, _UNUSED, min=1, max=1024)
    lr: float = setting(5e-4, _UNUSED, min=0.0, max=1.0)
    head_lr: float = setting(5e-3, _UNUSED, min=0.0, max=10.0)
    momentum: float = setting(0.9, _UNUSED, min=0.0, max=0.999)
    weight_decay: float = setting(5e-4, _UNUSED, min=0.0, max=1.0)
    trainable: str = setting("last", _UNUSED, choices=("last", "all", "none"))
    amp: bool = setting(True, _UNUSED)

    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: RunContext) -> None:
        from ..train import recipe_of, train_classifier

        torch.manual_seed(ctx.seed)  # as train_on_split does before creating the model
        fresh = initial_model(model)
        result = train_classifier(
            fresh,
            data.retain_inputs,
            data.retain_labels,
            config=recipe_of(model),
            seed=ctx.seed,
            device=ctx.device,
            progress=ctx.progress_fn(),
            should_stop=ctx.should_stop_fn(),
        )
        for record in result.history:
            ctx.history.append(
                {"step": float(record["epoch"]), "loss": record["loss"], "train_acc": record["train_acc"]}
            )
        model.load_state_dict(fresh.state_dict())
