"""CF-k and EU-k: catastrophic forgetting and exact unlearning of the last k layers (Goel et al. 2022).

Goel et al. ("Towards Adversarial Evaluations for Inexact Machine Unlearning", arXiv 2201.06640) propose two cheap
baselines that act on the last k layers only, everything before them frozen:

* **CF-k** keeps training the original model's last k layers on the retain set (catastrophic forgetting).
* **EU-k** first puts the last k layers back to the state they had before training on this data, then trains them
  on the retain set. When the frozen layers never depended on the forget data, this *is* exact unlearning.

What a "layer" is here (:func:`layer_groups`): the classification head is the last layer; before it come the
backbone's top-level blocks with parameters, in forward order, where a plain container of blocks (``nn.Sequential``,
``nn.ModuleList``, ``nn.ModuleDict`` of composite modules) is split into its blocks. That gives, from the end:

* ``dlib_resnet`` (17 layers): head, ``fc`` (the 256→128 projection), ``conv256_down_out``, ``conv256_2``, ...,
  ``conv32_1``, ``conv32_down``;
* ``resnet18`` (10): head, ``layer4.1``, ``layer4.0``, ``layer3.1``, ..., ``layer1.0``, ``stem``;
* ``inception_resnet_v1`` (32): head, ``last_bn``, ``last_linear``, ``block8``, ``repeat_3.4``, ...

Goel et al.'s code counts single convolutions and linear layers (k = 1 to 3); Kurmanji et al.'s re-implementation
for ResNets (in the SCRUB repository) trains the whole last stage, ``layer4``. Whole residual blocks are used here
because a block is the unit that can be frozen or restored without cutting a residual branch in half. The default
k = 3 is the last stage of ResNet-18 (``layer4``, two blocks) plus the head, and for dlib's network exactly the
set that its training recipe fine-tunes (``conv256_down_out``, ``fc``, head).

Training: both methods train the last k layers with the backbone's training recipe (:func:`~dlfd_core.train.
default_config`: cosine learning-rate decay, the recipe's augmentation and label smoothing), restricted to those
layers, at the method's own ``lr`` (backbone layers) and ``head_lr`` (head). Goel et al.'s code trains both with the
training run's own loop, scheduler and regularisation, for the same number of epochs (62 each by default); the
default here is the recipe's 8 epochs for both, enough for EU-k to relearn its layers. Frozen layers are kept in
eval mode, so their BatchNorm statistics stay frozen too (Goel et al.'s code only turns gradients off, so the
running statistics of frozen layers drift; freezing them keeps the frozen part bit-identical to the original).

EU-k's restored state: for a pretrained backbone, the pretrained weights (a fresh pretrained backbone is created
and its layers copied; Goel et al.'s code likewise copies the layers from a pretrained checkpoint when there is
one); for a backbone trained from scratch, a fresh random initialisation seeded by the run (see
:func:`~dlfd_core.unlearn.retrain.initial_model`). The head is re-initialised as the recipe does: a fresh random
layer, then, when the recipe imprints prototypes (``head_init="prototypes"``), imprinted from the retain photos
through the restored backbone, so that forgotten classes keep random rows as in the gold model. With k covering
every layer that the recipe trains (the default on ``dlib_resnet``), EU-k retrains exactly what the gold model
trained, from the same state, and differs from it only in data order and augmentation draws.

The shared ``trainable`` setting is not used: k chooses the trainable layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..train import lr_factor
from .base import Method, RunContext, UnlearnData, register_method, setting
from .retrain import initial_model

__all__ = ["CFk", "EUk", "layer_groups"]

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _is_block(module: nn.Module) -> bool:
    """A module made of sub-modules that hold parameters (a residual block), not a single layer."""
    return any(_has_parameters(child) for child in module.children())


def layer_groups(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers in forward order, as ``(qualified name, module)``; the last one is the head.

    The backbone's top-level children with parameters are its layers, except that a plain container whose
    parametrised children are all blocks is split into those blocks (``blocks.conv64_1``, ``layer4.0``, ...).
    A backbone with parameters of its own (outside any child) is one layer as a whole.
    """
    backbone = model.backbone
    if any(True for _ in backbone.parameters(recurse=False)):
        return [("backbone", backbone), ("head", model.head)]
    groups: list[tuple[str, nn.Module]] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            if not _has_parameters(child):
                continue
            full = f"{prefix}.{name}"
            with_params = [c for c in child.children() if _has_parameters(c)]
            if isinstance(child, _CONTAINERS) and with_params and all(_is_block(c) for c in with_params):
                visit(full, child)
            else:
                groups.append((full, child))

    visit("backbone", backbone)
    groups.append(("head", model.head))
    return groups


@dataclass(frozen=True, kw_only=True)
class _LastLayers(Method):
    """Shared by CF-k and EU-k: train the last ``k`` layers with the recipe's loop, the rest frozen."""

    k: int = setting(3, "number of layers at the end of the network to train (the head counts as one)", min=1, max=100)
    epochs: int = setting(8, "passes over the retain set (the training recipe's 8 by default)", min=1, max=100)
    trainable: str = setting("last", "not used: k chooses the layers that train", choices=("last", "all", "none"))

    def _split(self, model: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[tuple[str, nn.Module]]]:
        groups = layer_groups(model)
        k = min(self.k, len(groups))
        return groups[: len(groups) - k], groups[len(groups) - k :]

    def _train_last(self, model: nn.Module, data: UnlearnData, ctx: RunContext, stage: str) -> None:
        """The recipe's training loop (cosine decay, augmentation) on the last k layers; the others frozen."""
        from ..augment import augment_batch
        from ..train import recipe_of

        config = recipe_of(model)
        frozen, trained = self._split(model)
        for p in model.parameters():
            p.requires_grad_(False)
        head_params = [p for _, m in trained if m is model.head for p in m.parameters()]
        body_params = [p for _, m in trained if m is not model.head for p in m.parameters()]
        for p in head_params + body_params:
            p.requires_grad_(True)
        groups = [{"params": head_params, "lr": self.head_lr * ctx.rate_scale[1]}]
        if body_params:
            groups.append({"params": body_params, "lr": self.lr * ctx.rate_scale[0]})
        optimizer = torch.optim.SGD(groups, momentum=self.momentum, weight_decay=self.weight_decay)
        base_lrs = [g["lr"] for g in optimizer.param_groups]
        total = self.epochs * math.ceil(len(data.retain_inputs) / self.batch_size)
        ctx.plan(total)
        model.train()
        for _, module in frozen:
            module.eval()
        step = 0
        for epoch in range(self.epochs):
            for x, y in ctx.batches(data.retain_inputs, data.retain_labels, self.batch_size):
                if config.augment is not None:
                    x = augment_batch(x, config.augment, ctx.generator)
                scale = lr_factor(step, total)
                for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = base * scale
                with ctx.autocast():
                    loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
                ctx.step(f"{stage} epoch {epoch + 1}/{self.epochs}", loss=ctx.update(optimizer, loss))
                step += 1


@register_method
@dataclass(frozen=True, kw_only=True)
class CFk(_LastLayers):
    """CF-k (Goel et al. 2022, https://arxiv.org/abs/2201.06640): fine-tune the last k layers, the rest frozen.

    From "Towards Adversarial Evaluations for Inexact Machine Unlearning"; trained on the retain set.
    """

    name = "cf_k"
    title = "CF-k (fine-tune last k layers)"
    paper = "Goel et al. 2022"

    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: RunContext) -> None:
        self._train_last(model, data, ctx, f"CF-{self.k}")


@register_method
@dataclass(frozen=True, kw_only=True)
class EUk(_LastLayers):
    """EU-k (Goel et al. 2022, https://arxiv.org/abs/2201.06640): reset the last k layers, retrain them.

    From "Towards Adversarial Evaluations for Inexact Machine Unlearning": the last k layers go back to their state
    before training on this data and are trained again on the retain set, the rest frozen.
    """

    name = "eu_k"
    title = "EU-k (retrain last k layers)"
    paper = "Goel et al. 2022"

    epochs: int = setting(
        8, "passes over the retain set after the reset (the recipe's 8; 0 = reset only)", min=0, max=100
    )

    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: RunContext) -> None:
        from ..train import imprint_head, recipe_of

        config = recipe_of(model)
        reference = _initial_model(model, ctx)
        _, trained = self._split(model)
        with torch.no_grad():
            for name, module in trained:
                module.load_state_dict(reference.get_submodule(name).state_dict())
        if config.head_init == "prototypes":
            imprint_head(model, data.retain_inputs, data.retain_labels, logit_scale=config.prototype_logit_scale)
        if self.epochs > 0:
            self._train_last(model, data, ctx, f"EU-{self.k}")


def _initial_model(model: nn.Module, ctx: RunContext) -> nn.Module:
    """:func:`~dlfd_core.unlearn.retrain.initial_model`, drawn with a seed taken from the run's generator."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return initial_model(model)
