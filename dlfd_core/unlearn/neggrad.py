"""NegGrad (gradient ascent on the forget set) and NegGrad+ (ascent on the forget set balanced by descent on the
retain set).

**NegGrad** (Golatkar et al. 2020, arXiv 1911.04933, as a baseline; Thudi et al. 2022, arXiv 2109.13398, as the
"unlearning by gradient ascent" they analyse) takes SGD steps that *increase* the cross-entropy of the forget photos
under their own labels, for a few passes over the forget set, and never looks at the retain set. Nothing bounds the
ascent, so it forgets quickly and can damage what the model should keep; it has no repair phase.
The authors' settings: Golatkar et al. give none beyond "fine-tuning with the negative gradient"; Jia et al. 2023's
reference code for the same baseline ("GA") runs 5 epochs at lr 1e-4 on a CIFAR ResNet-18 trained at lr 0.1. Here
the default is also 5 passes over the forget set, with the backbone at Jia et al.'s 1e-4 and the head at ten times
that (1e-3, the recipe's head-to-backbone ratio): a fifth of this project's recipe rates (backbone 5e-4, head 5e-3,
themselves 20x below the papers' 0.01). A forget set of one person has a single batch, so 5 passes are 5 optimiser
steps in all (Jia et al.'s runs took about 90: 4500 photos in batches of 256).

**NegGrad+** (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning", NeurIPS, arXiv 2302.09880) minimises
``α · CE(retain batch) − (1 − α) · CE(forget batch)`` over paired batches: each epoch is one pass over the retain set,
each retain batch paired with the next batch of the forget set, cycled (reshuffled at each pass), exactly as the
authors' ``train_negrad`` loop (``zip(retain_loader, cycle(forget_loader))``) does. The authors' code sets
α = 0.95 in its small-scale experiments (CIFAR-5 / Lacuna-5, a few hundred training images, like ORL) and
α = 0.9999 in its large-scale ones (CIFAR-10/100, tens of thousands); the value usually quoted for the paper is
α = 0.999. The default is the small-scale 0.95, the authors' setting for a dataset of this size. Epochs: the authors
give NegGrad+ the same number of epochs as their fine-tuning baseline (10 each, at lr 0.01); here it gets
fine-tune's 2, at the recipe rates. Retain and forget batches have the same size, as in their code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from .base import Method, RunContext, UnlearnData, register_method, setting


@register_method
@dataclass(frozen=True, kw_only=True)
class NegGrad(Method):
    """Gradient ascent on the forget set (Golatkar et al. 2020, https://arxiv.org/abs/1911.04933).

    Also the unlearning-by-ascent analysed by Thudi et al. 2022 (https://arxiv.org/abs/2109.13398).
    """

    prefix_safe = True
    name = "neggrad"
    title = "NegGrad (gradient ascent)"
    paper = "Golatkar et al. 2020; Thudi et al. 2022"

    epochs: int = setting(5, "passes over the forget set (each step ascends the forget photos' loss)", min=1, max=100)
    lr: float = setting(1e-4, "backbone learning rate (Jia et al.'s gradient-ascent code: 1e-4)", min=0.0, max=1.0)
    head_lr: float = setting(1e-3, "head learning rate (10x the backbone's, as in the recipe)", min=0.0, max=10.0)

    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: RunContext) -> None:
        ctx.plan(self.epochs * math.ceil(len(data.forget_inputs) / self.batch_size))
        optimizer = ctx.sgd(model)
        model.train()
        for epoch in range(self.epochs):
            for x, y in ctx.batches(data.forget_inputs, data.forget_labels, self.batch_size):
                with ctx.autocast():
                    forget_loss = F.cross_entropy(model(x), y)
                ctx.update(optimizer, -forget_loss)
                ctx.step(f"gradient ascent epoch {epoch + 1}/{self.epochs}", forget_loss=float(forget_loss.detach()))


@register_method
@dataclass(frozen=True, kw_only=True)
class NegGradPlus(Method):
    """NegGrad+ (Kurmanji et al. 2023, https://arxiv.org/abs/2302.09880): α·CE(retain) − (1 − α)·CE(forget).

    From "Towards Unbounded Machine Unlearning" (NeurIPS 2023), over paired retain / forget batches.
    """

    prefix_safe = True
    name = "neggrad_plus"
    title = "NegGrad+"
    paper = "Kurmanji et al. 2023 (NeurIPS)"

    epochs: int = setting(
        2, "passes over the retain set (each retain batch paired with a forget batch)", min=1, max=100
    )
    alpha: float = setting(
        0.95,
        "weight of the retain loss; the forget loss is ascended with weight 1 - alpha (authors: 0.95 small-scale, "
        "0.999 in the paper, 0.9999 large-scale)",
        min=0.0,
        max=1.0,
    )

    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: RunContext) -> None:
        ctx.plan(self.epochs * math.ceil(len(data.retain_inputs) / self.batch_size))
        optimizer = ctx.sgd(model)
        model.train()
        for epoch in range(self.epochs):
            retain = ctx.batches(data.retain_inputs, data.retain_labels, self.batch_size)
            forget = ctx.cycle(data.forget_inputs, data.forget_labels, self.batch_size)
            for (x_r, y_r), (x_f, y_f) in zip(retain, forget, strict=False):
                with ctx.autocast():
                    retain_loss = F.cross_entropy(model(x_r), y_r)
                    values = {"retain_loss": float(retain_loss.detach())}
                    loss = self.alpha * retain_loss
                    if self.alpha < 1.0:  # at alpha = 1 the forget photos are not even seen (BatchNorm statistics)
                        forget_loss = F.cross_entropy(model(x_f), y_f)
                        values["forget_loss"] = float(forget_loss.detach())
                        loss = loss - (1.0 - self.alpha) * forget_loss
                value = ctx.update(optimizer, loss)
                ctx.step(f"NegGrad+ epoch {epoch + 1}/{self.epochs}", loss=value, **values)
