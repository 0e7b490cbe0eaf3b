"""Inception-ResNet-v1 face embedder (Szegedy et al. 2016) in the layout of David Sandberg's facenet.

The network here is written for this package, but its ``state_dict()`` keys and shapes follow the checkpoints
that facenet-pytorch publishes (``20180402-114759-vggface2.pt`` and ``20180408-102900-casia-webface.pt``,
GitHub release v2.2.9 of timesler/facenet-pytorch), so those files load with :func:`load_facenet_checkpoint`.
The checkpoints also carry a ``logits`` classifier over their training identities (8631 for VGGFace2, 10575
for CASIA-WebFace); the backbone does not use it and the loader skips it.

Input: float ``[B, 3, 160, 160]`` RGB in ``[0, 1]``; the module applies facenet's fixed standardisation
``(x * 255 - 127.5) / 128`` itself. Output: the 512-d embedding, L2-normalised by default (as facenet-pytorch
returns it when not classifying).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from .registry import register_backbone

__all__ = [
    "FACENET_WEIGHTS_HINT",
    "InceptionResnetV1",
    "load_facenet_checkpoint",
    "read_state_dict",
]

FACENET_WEIGHTS_HINT = (
    "download 20180402-114759-vggface2.pt (or 20180408-102900-casia-webface.pt) from "
    "https://github.com/timesler/facenet-pytorch/releases/tag/v2.2.9 and pass its path as weights=..."
)

# facenet's BatchNorm settings (taken over from the TensorFlow original).
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.1


class _ConvBNReLU(nn.Module):
    """Bias-free convolution, BatchNorm (eps 1e-3), ReLU; keys ``conv.*`` and ``bn.*``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply conv, BN and ReLU: ``[B, C_in, H, W] -> [B, C_out, H', W']``."""
        return F.relu(self.bn(self.conv(x)))


def _chain(*layers: nn.Module) -> nn.Module:
    """A single layer as itself, several as an ``nn.Sequential`` (keys ``0.*``, ``1.*``, ...)."""
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


class _ScaledResidual(nn.Module):
    """Inception-ResNet residual unit: parallel branches, concatenation, 1×1 projection, scaled sum.

    ``out = act(x + scale * conv2d(cat(branch0(x), branch1(x), ...)))``; the branches are stored as
    ``branch0``, ``branch1``, ... and the projection (with bias) as ``conv2d``.
    """

    def __init__(
        self, channels: int, branches: Sequence[nn.Module], concat_channels: int, scale: float, relu: bool = True
    ) -> None:
        super().__init__()
        self.scale = float(scale)
        self.relu = relu
        self.num_branches = len(branches)
        for index, branch in enumerate(branches):
            self.add_module(f"branch{index}", branch)
        self.conv2d = nn.Conv2d(concat_channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        mixed = torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.num_branches)], dim=1)  # [B, K, H, W]
        out = x + self.conv2d(mixed) * self.scale  # [B, C, H, W]
        return F.relu(out) if self.relu else out


def _block35(scale: float) -> _ScaledResidual:
    """Inception-ResNet-A unit on 256 channels at 17×17 (for a 160² input)."""
    return _ScaledResidual(
        256,
        [
            _ConvBNReLU(256, 32, 1),
            _chain(_ConvBNReLU(256, 32, 1), _ConvBNReLU(32, 32, 3, padding=1)),
            _chain(_ConvBNReLU(256, 32, 1), _ConvBNReLU(32, 32, 3, padding=1), _ConvBNReLU(32, 32, 3, padding=1)),
        ],
        concat_channels=96,
        scale=scale,
    )


def _block17(scale: float) -> _ScaledResidual:
    """Inception-ResNet-B unit on 896 channels at 8×8, with factorised 1×7 / 7×1 convolutions."""
    return _ScaledResidual(
        896,
        [
            _ConvBNReLU(896, 128, 1),
            _chain(
                _ConvBNReLU(896, 128, 1),
                _ConvBNReLU(128, 128, (1, 7), padding=(0, 3)),
                _ConvBNReLU(128, 128, (7, 1), padding=(3, 0)),
            ),
        ],
        concat_channels=256,
        scale=scale,
    )


def _block8(scale: float, relu: bool = True) -> _ScaledResidual:
    """Inception-ResNet-C unit on 1792 channels at 3×3, with factorised 1×3 / 3×1 convolutions."""
    return _ScaledResidual(
        1792,
        [
            _ConvBNReLU(1792, 192, 1),
            _chain(
                _ConvBNReLU(1792, 192, 1),
                _ConvBNReLU(192, 192, (1, 3), padding=(0, 1)),
                _ConvBNReLU(192, 192, (3, 1), padding=(1, 0)),
            ),
        ],
        concat_channels=384,
        scale=scale,
        relu=relu,
    )


class _Concat(nn.Module):
    """Parallel branches whose outputs are concatenated along channels (the grid-reduction blocks)."""

    def __init__(self, branches: Sequence[nn.Module]) -> None:
        super().__init__()
        self.num_branches = len(branches)
        for index, branch in enumerate(branches):
            self.add_module(f"branch{index}", branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, sum(C_i), H', W']``."""
        return torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.num_branches)], dim=1)


def _reduction_a() -> _Concat:
    """Reduction-A (``mixed_6a``): 256 → 896 channels, 17×17 → 8×8."""
    return _Concat(
        [
            _ConvBNReLU(256, 384, 3, stride=2),
            _chain(_ConvBNReLU(256, 192, 1), _ConvBNReLU(192, 192, 3, padding=1), _ConvBNReLU(192, 256, 3, stride=2)),
            nn.MaxPool2d(3, stride=2),
        ]
    )


def _reduction_b() -> _Concat:
    """Reduction-B (``mixed_7a``): 896 → 1792 channels, 8×8 → 3×3."""
    return _Concat(
        [
            _chain(_ConvBNReLU(896, 256, 1), _ConvBNReLU(256, 384, 3, stride=2)),
            _chain(_ConvBNReLU(896, 256, 1), _ConvBNReLU(256, 256, 3, stride=2)),
            _chain(_ConvBNReLU(896, 256, 1), _ConvBNReLU(256, 256, 3, padding=1), _ConvBNReLU(256, 256, 3, stride=2)),
            nn.MaxPool2d(3, stride=2),
        ]
    )


class InceptionResnetV1(nn.Module):
    """Inception-ResNet-v1 mapping ``[B, 3, 160, 160]`` RGB in ``[0, 1]`` to a 512-d face embedding.

    Args:
        dropout: dropout probability before the final linear layer (facenet trains with 0.6; inactive in eval).
        normalize: L2-normalise the embedding (facenet-pytorch's non-classify output). With ``False`` the
            module returns the BatchNorm-ed 512-d vector before normalisation.

    Attributes:
        embedding_dim: 512.
        input_size: 160, the side facenet was trained at.
    """

    embedding_dim: int = 512
    input_size: int = 160

    def __init__(self, dropout: float = 0.6, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = bool(normalize)
        # Stem: 160 -> 79 -> 77 -> 77 -> 38 -> 38 -> 36 -> 17.
        self.conv2d_1a = _ConvBNReLU(3, 32, 3, stride=2)
        self.conv2d_2a = _ConvBNReLU(32, 32, 3)
        self.conv2d_2b = _ConvBNReLU(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = _ConvBNReLU(64, 80, 1)
        self.conv2d_4a = _ConvBNReLU(80, 192, 3)
        self.conv2d_4b = _ConvBNReLU(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*[_block35(0.17) for _ in range(5)])
        self.mixed_6a = _reduction_a()
        self.repeat_2 = nn.Sequential(*[_block17(0.10) for _ in range(10)])
        self.mixed_7a = _reduction_b()
        self.repeat_3 = nn.Sequential(*[_block8(0.20) for _ in range(5)])
        self.block8 = _block8(1.0, relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1792, 512, bias=False)
        self.last_bn = nn.BatchNorm1d(512, eps=_BN_EPS, momentum=_BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of faces.

        Args:
            x: ``[B, 3, S, S]`` float RGB in ``[0, 1]`` (S = 160 for the published weights).

        Returns:
            ``[B, 512]`` embedding (unit length when ``normalize``).
        """
        x = (x * 255.0 - 127.5) / 128.0  # [B, 3, 160, 160], facenet's fixed standardisation
        x = self.conv2d_1a(x)  # [B, 32, 79, 79]
        x = self.conv2d_2a(x)  # [B, 32, 77, 77]
        x = self.conv2d_2b(x)  # [B, 64, 77, 77]
        x = self.maxpool_3a(x)  # [B, 64, 38, 38]
        x = self.conv2d_3b(x)  # [B, 80, 38, 38]
        x = self.conv2d_4a(x)  # [B, 192, 36, 36]
        x = self.conv2d_4b(x)  # [B, 256, 17, 17]
        x = self.repeat_1(x)  # [B, 256, 17, 17]
        x = self.mixed_6a(x)  # [B, 896, 8, 8]
        x = self.repeat_2(x)  # [B, 896, 8, 8]
        x = self.mixed_7a(x)  # [B, 1792, 3, 3]
        x = self.repeat_3(x)  # [B, 1792, 3, 3]
        x = self.block8(x)  # [B, 1792, 3, 3]
        x = self.avgpool_1a(x).flatten(1)  # [B, 1792]
        x = self.last_bn(self.last_linear(self.dropout(x)))  # [B, 512]
        return F.normalize(x, p=2.0, dim=1) if self.normalize else x


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a plain state dict from a ``.safetensors`` file or a ``.pt``/``.pth`` file (``weights_only`` load).

    Args:
        path: the weights file.

    Returns:
        Name → tensor mapping, on the CPU.

    Raises:
        WeightsError: the file is missing, unreadable, or not a flat mapping of names to tensors.
    """
    file = Path(path)
    if not file.is_file():
        raise WeightsError(f"weights file not found: {file}")
    try:
        if file.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(str(file), device="cpu")
        else:
            loaded = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt archive, unsafe pickle content, bad header, ...
        raise WeightsError(f"cannot read weights from {file}: {exc}") from exc
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise WeightsError(f"{file} does not hold a state dict (a mapping of parameter names to tensors)")
    return dict(loaded)


def _summarise(names: Sequence[str], limit: int = 8) -> str:
    """Comma-separated first ``limit`` names, with a count of the rest."""
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def load_facenet_checkpoint(module: nn.Module, path: str | os.PathLike[str]) -> list[str]:
    """Load a facenet-pytorch InceptionResnetV1 checkpoint into ``module``, skipping its ``logits.*`` classifier.

    Also strips a ``module.`` prefix (checkpoints saved from ``nn.DataParallel``). Missing
    ``*.num_batches_tracked`` counters are tolerated (they do not affect inference).

    Args:
        module: an :class:`InceptionResnetV1` (or any module with the same keys).
        path: ``.pt``/``.pth`` (loaded with ``weights_only=True``) or ``.safetensors`` file.

    Returns:
        The sorted names of the ignored checkpoint keys (the ``logits.*`` entries; empty if none).

    Raises:
        WeightsError: unreadable file, or keys / shapes that do not match the module apart from ``logits.*``.
    """
    state = read_state_dict(path)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    ignored = sorted(k for k in state if k.startswith("logits."))
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}

    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in expected)
    wrong_shape = sorted(
        f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_summarise(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_summarise(unexpected)}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatch(es): {_summarise(wrong_shape)}")
    if problems:
        raise WeightsError(
            f"{path} is not an InceptionResnetV1 (facenet) checkpoint: "
            + "; ".join(problems)
            + f". Expected e.g. 20180402-114759-vggface2.pt; {FACENET_WEIGHTS_HINT}"
        )
    module.load_state_dict(state, strict=False)
    return ignored


@register_backbone("inception_resnet_v1")
def _create_inception_resnet_v1(
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    dropout: float = 0.6,
    normalize: bool = True,
) -> InceptionResnetV1:
    """Registry factory for ``"inception_resnet_v1"``.

    Args:
        pretrained: load facenet weights from ``weights``; ``False`` gives PyTorch's default random init.
        weights: path of a facenet-pytorch checkpoint (required when ``pretrained``; never downloaded).
        dropout: dropout before the final linear layer.
        normalize: L2-normalise the embedding.

    Raises:
        WeightsError: ``pretrained`` without a usable ``weights`` file.
    """
    model = InceptionResnetV1(dropout=dropout, normalize=normalize)
    if pretrained:
        if weights is None:
            raise WeightsError(f"inception_resnet_v1 has no bundled weights: {FACENET_WEIGHTS_HINT}")
        if not Path(weights).is_file():
            raise WeightsError(f"facenet weights not found at {weights}: {FACENET_WEIGHTS_HINT}")
        load_facenet_checkpoint(model, weights)
    return model
