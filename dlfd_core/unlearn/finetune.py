"""Fine-tune: keep training the original model on the retain set (Warnecke et al. 2023; Golatkar et al. 2020).

Forgetting relies on catastrophic forgetting alone, so a few epochs at the recipe's rates mostly preserve the
forgotten data's traces; it is the weakest baseline and the unit of cost the benchmark compares against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from .base import Method, RunContext, UnlearnData, register_method, setting


@register_method
@dataclass(frozen=True, kw_only=True)
class FineTune(Method):
    """Fine-tuning on the retain set alone (Warnecke et al. 2023; Golatkar et al. 2020).

    A few epochs of SGD on the photos that are kept: the forgotten photos fade only as far as catastrophic forgetting
    carries them.
    """

    prefix_safe = True
    name = "finetune"
    title = "Fine-tune"
    paper = "Warnecke et al. 2023; Golatkar et al. 2020"

    epochs: int = setting(2, "passes over the retain set", min=1, max=100)

    def _unlearn(self, model: nn.Module, data: UnlearnData, ctx: RunContext) -> None:
        ctx.plan(self.epochs * math.ceil(len(data.retain_inputs) / self.batch_size))
        self.finetune_epochs(model, data.retain_inputs, data.retain_labels, ctx, self.epochs, "fine-tune")
