"""SalUn: random-label unlearning restricted to the weights most salient for the forget set (Fan et al., ICLR 2024).

1. **Saliency mask.** With the original model in eval mode, accumulate the gradient of the forget set's
   cross-entropy over its batches (the sum of the per-batch mean losses' gradients, as the authors' code does), take
   its magnitude, and keep the weights whose magnitude is in the top ``mask_fraction`` of *all* trainable weights
   together (the paper's hard threshold ``m = 1(|∇ℓ_f| ≥ γ)`` with γ at the median: 50%, the paper's default).
   Exactly ``round(mask_fraction · N)`` weights are kept; ties are broken by position (a stable sort), so the mask is
   deterministic.
2. **Unlearning.** Random-label unlearning (:mod:`~dlfd_core.unlearn.random_label`: each epoch, fresh random wrong
   labels for the forget photos, one shuffled pass over retain ∪ relabelled forget) in which only masked weights
   move.

Masked-out weights stay *bit-identical*. The authors' code masked the gradient only, so SGD's weight decay and
momentum still moved masked-out weights (fixed in their repository in February 2026 by restoring those weights after
every step). Here the optimiser is built without weight decay; the decay ``wd · w`` is added to the gradient
*before* the mask is applied (what ``torch.optim.SGD`` would add itself, so masked-in weights get exactly the
standard update), and the masked gradient then feeds the momentum buffer. Masked-out entries therefore see a zero
gradient at every step, their momentum stays exactly zero, and SGD adds ``-lr · 0`` to them: they never change.
No restore step is needed, and the test suite checks the bit-identity.

Settings and where they come from: the paper's default mask ratio 0.5; 10 epochs at a constant SGD rate of 0.1
(momentum 0.9, weight decay 5e-4), the training rate of their CIFAR models trained from scratch, in the authors'
README. As for :class:`~dlfd_core.unlearn.random_label.RandomLabel` (see that module for the reasons), the defaults
are 3 epochs with the backbone at 1e-4 and the head at 5e-3: the recipe's backbone rate diverged under random labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, RunContext, UnlearnData, register_method, setting
from .random_label import random_label_epoch, random_label_steps

__all__ = ["SalUn", "saliency_mask"]


def saliency_mask(
    model: nn.Module,
    params: list[nn.Parameter],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    ctx: RunContext,
    *,
    fraction: float,
    batch_size: int,
) -> list[torch.Tensor]:
    """Boolean masks (one per parameter) of the ``fraction`` of weights with the largest forget-loss gradient.

    Args:
        model: the model (its mode is left in eval).
        params: the candidate weights; the threshold is taken over all of them jointly.
        inputs, labels: the forget set.
        ctx: the run's context (device, autocast).
        fraction: share of the weights to keep, in ``[0, 1]``.
        batch_size: photos per forward pass; the gradient is the sum of the per-batch mean losses' gradients.
    """
    model.eval()
    grads = [torch.zeros_like(p) for p in params]
    for x, y in ctx.batches(inputs, labels, batch_size, shuffle=False):
        with ctx.autocast():
            loss = F.cross_entropy(model(x), y)
        for total, g in zip(grads, torch.autograd.grad(loss, params, allow_unused=True), strict=True):
            if g is not None:
                total.add_(g)
    magnitude = torch.cat([g.abs().flatten() for g in grads])  # [N]
    keep = round(fraction * magnitude.numel())
    flat = torch.zeros(magnitude.numel(), dtype=torch.bool, device=magnitude.device)
    if keep > 0:
        order = torch.sort(magnitude, descending=True, stable=True).indices
        flat[order[:keep]] = True
    return [m.view_as(p) for m, p in zip(flat.split([p.numel() for p in params]), params, strict=True)]


@register_method
@dataclass(frozen=True, kw_only=True)
class SalUn(Method):
    """SalUn (Fan et al., ICLR 2024, https://arxiv.org/abs/2310.12508): random labels on the salient weights only.

    A gradient-saliency mask over the trainable weights selects the top ``mask_fraction`` for the forget loss; random
    -label unlearning then updates those weights alone (masked-out weights stay bit-identical).
    """

    prefix_safe = True
    name = "salun"
    title = "SalUn"
    paper = "Fan et al., ICLR 2024"

    epochs: int = setting(
        3, "passes over retain + relabelled forget photos (new random labels each pass)", min=1, max=100
    )
    lr: float = setting(1e-4, "learning rate of the trainable backbone layers", min=0.0, max=1.0)
    mask_fraction: float = setting(
        0.5,
        "share of the trainable weights that may change: those with the largest forget-loss gradient",
        min=0.0,
        max=1.0,
    )

    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: RunContext) -> None:
        ctx.plan(self.epochs * random_label_steps(data, self.batch_size))
        optimizer = ctx.sgd(model, weight_decay=0.0)  # the decay is added to the gradient before masking
        params = [p for group in optimizer.param_groups for p in group["params"]]
        masks = saliency_mask(
            model,
            params,
            data.forget_inputs,
            data.forget_labels,
            ctx,
            fraction=self.mask_fraction,
            batch_size=self.batch_size,
        )
        decay = self.weight_decay

        @torch.no_grad()
        def mask_gradients() -> None:
            for p, keep in zip(params, masks, strict=True):
                if p.grad is None:
                    continue
                if decay:
                    p.grad.add_(p, alpha=decay)
                p.grad.masked_fill_(~keep, 0.0)

        for epoch in range(self.epochs):
            stage = f"SalUn epoch {epoch + 1}/{self.epochs}"
            random_label_epoch(
                model, data, ctx, optimizer, batch_size=self.batch_size, stage=stage, before_step=mask_gradients
            )
        masked = sum(int(m.sum()) for m in masks)
        total = sum(m.numel() for m in masks)
        ctx.history.append({"step": float(ctx.steps_done), "mask_share": masked / max(1, total)})
