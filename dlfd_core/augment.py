"""Light, face-appropriate augmentation on float image batches, written with torch alone.

Faces are aligned, so augmentation stays small: horizontal flip (faces are nearly symmetric), a shift of a few
pixels with a slight zoom (alignment jitter), and brightness/contrast changes (lighting). No rotation beyond
what the zoom implies, no colour hue changes (ORL is grey; colour carries identity cues for uploads).
All randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Augmentation strengths.

    Attributes:
        flip: probability of a horizontal flip.
        max_shift: largest translation, as a fraction of the image side.
        max_zoom: largest relative change of scale (0.05 = zoom between 0.95 and 1.05).
        brightness: largest additive brightness change, in [0, 1] pixel units.
        contrast: largest relative contrast change.
    """

    flip: float = 0.5
    max_shift: float = 0.04
    max_zoom: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.15


def augment_batch(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch ``[B, 3, H, W]`` with values in ``[0, 1]``; returns a new tensor in ``[0, 1]``."""
    batch = images.shape[0]
    device = images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(batch, generator=generator).mul_(high - low).add_(low).to(device)

    flip = torch.rand(batch, generator=generator).lt(config.flip).to(device)
    zoom = uniform(1.0 - config.max_zoom, 1.0 + config.max_zoom)
    shift_x = uniform(-config.max_shift, config.max_shift) * 2.0  # grid coordinates span [-1, 1]
    shift_y = uniform(-config.max_shift, config.max_shift) * 2.0
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = sign / zoom
    theta[:, 1, 1] = 1.0 / zoom
    theta[:, 0, 2] = shift_x
    theta[:, 1, 2] = shift_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # [B, H, W, 2]
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = uniform(1.0 - config.contrast, 1.0 + config.contrast).view(-1, 1, 1, 1)
    brightness = uniform(-config.brightness, config.brightness).view(-1, 1, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + brightness
    return out.clamp_(0.0, 1.0)
