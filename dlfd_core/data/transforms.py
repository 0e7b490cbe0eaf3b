"""Tensor conversions between aligned uint8 crops and model input.

Crops are stored as ``uint8 [N, S, S, 3]`` RGB arrays (S = 150 by default). Models take
``float32 [N, 3, s, s]`` in ``[0, 1]``; each backbone normalises further itself.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def crops_to_tensor(crops: np.ndarray | torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Convert ``uint8 [N, H, W, 3]`` crops to ``float32 [N, 3, size, size]`` in ``[0, 1]``.

    Args:
        crops: aligned face crops, RGB, channels last.
        size: output side in pixels; ``None`` keeps the crop size. Resizing is bilinear with antialiasing.
    """
    if isinstance(crops, np.ndarray) and not crops.flags.writeable:
        crops = np.array(crops)  # torch refuses to wrap read-only arrays without a warning
    tensor = torch.as_tensor(crops)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"expected crops of shape [N, H, W, 3], got {tuple(tensor.shape)}")
    tensor = tensor.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)  # [N, 3, H, W]
    if size is not None and (tensor.shape[-2], tensor.shape[-1]) != (size, size):
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return tensor.contiguous()
