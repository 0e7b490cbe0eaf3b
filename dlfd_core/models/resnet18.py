"""ResNet-18 (He et al. 2016) written from scratch, as a 512-d embedding backbone trained from random init.

This is the DLFD paper's setting (ResNet-18 from scratch, its ``fc`` removed, an MLP head on top); there are no
pretrained weights. Two stems: ``"standard"`` (7×7 stride-2 convolution + 3×3 stride-2 max-pool, fast at 64²)
and ``"cifar"`` (a single 3×3 stride-1 convolution, no pool: more accurate on tiny inputs, about 15× slower).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UnknownNameError, WeightsError
from .classifier import ModelConfigError
from .registry import register_backbone

__all__ = ["STEMS", "ResNet18"]

STEMS: tuple[str, ...] = ("standard", "cifar")


class _BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity (or 1×1 conv-BN projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, H, W] -> [B, C_out, H / stride, W / stride]``."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 trunk (BasicBlock ×[2, 2, 2, 2], widths 64–512) with global average pooling.

    Args:
        input_size: the square input side the model is meant for (recorded for callers; any side ≥ 16 runs).
        stem: ``"standard"`` or ``"cifar"`` (see the module docstring).

    Attributes:
        embedding_dim: 512.
        input_size: as given.
        stem: as given.
    """

    embedding_dim: int = 512

    def __init__(self, input_size: int = 64, stem: str = "standard") -> None:
        super().__init__()
        if stem not in STEMS:
            raise UnknownNameError(f"unknown ResNet-18 stem {stem!r}; choose one of {', '.join(STEMS)}")
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 16:
            raise ModelConfigError(f"input_size must be an integer of at least 16, got {input_size!r}")
        self.input_size = input_size
        self.stem_name = stem
        if stem == "standard":
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
            )
        widths = (64, 128, 256, 512)
        stages: list[nn.Module] = []
        in_channels = 64
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(_BasicBlock(in_channels, width, stride), _BasicBlock(width, width, 1)))
            in_channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self._init_weights()

    def _init_weights(self) -> None:
        """He (fan-out) init for convolutions, BatchNorm at weight 1 / bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch.

        Args:
            x: ``[B, 3, S, S]`` float RGB in ``[0, 1]``.

        Returns:
            ``[B, 512]`` pooled features (not normalised).
        """
        x = (x - 0.5) / 0.5  # [B, 3, S, S] in [-1, 1]
        x = self.stem(x)  # [B, 64, S/4, S/4] (standard) or [B, 64, S, S] (cifar)
        x = self.layer1(x)  # [B, 64, s, s]
        x = self.layer2(x)  # [B, 128, s/2, s/2]
        x = self.layer3(x)  # [B, 256, s/4, s/4]
        x = self.layer4(x)  # [B, 512, s/8, s/8]
        return self.pool(x).flatten(1)  # [B, 512]


@register_backbone("resnet18")
def _create_resnet18(*, pretrained: bool = False, input_size: int = 64, stem: str = "standard") -> ResNet18:
    """Registry factory for ``"resnet18"``; always trained from scratch.

    Raises:
        WeightsError: ``pretrained=True`` (there are no pretrained weights for this backbone).
    """
    if pretrained:
        raise WeightsError(
            "resnet18 has no pretrained weights: it is trained from scratch (the DLFD paper's setting); "
            "create it with pretrained=False"
        )
    return ResNet18(input_size=input_size, stem=stem)
