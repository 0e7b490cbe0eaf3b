"""A backbone's two stages run on their own: the frozen prefix and the trainable suffix (see
:attr:`~dlfd_core.models.FaceClassifier.backbone`'s ``prefix`` / ``suffix``), in batches and in eval mode."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["in_batches", "run_prefix", "run_suffix"]


@torch.no_grad()
def in_batches(
    model: nn.Module,
    part: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    device: str | torch.device,
    batch: int,
) -> torch.Tensor:
    """``part`` of ``model`` over ``x`` in batches on ``device``, in eval mode (the mode is restored after)."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([part(x[i : i + batch].to(device)) for i in range(0, len(x), batch)])
    finally:
        model.train(was_training)


def run_prefix(model: nn.Module, inputs: torch.Tensor, device: str | torch.device, batch: int = 64) -> torch.Tensor:
    """The backbone prefix's outputs for model inputs, computed on ``device`` in eval mode, returned there."""
    return in_batches(model, model.backbone.prefix, inputs, device, batch)


def run_suffix(
    model: nn.Module, activations: torch.Tensor, device: str | torch.device, batch: int = 256
) -> torch.Tensor:
    """The backbone's embeddings from its prefix's outputs (eval mode)."""
    return in_batches(model, model.backbone.suffix, activations, device, batch)
