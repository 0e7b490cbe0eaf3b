"""dlib's ResNet face descriptor (128-d), reimplemented as face-api runs it, with its pretrained weights.

The network was trained by Davis King for dlib (model released CC0); the weights bundled in
``assets/weights/dlib_resnet.safetensors`` come from face-api's TF.js copy (npm ``@vladmandic/face-api@1.7.15``,
MIT) and are rebuilt byte for byte by ``scripts/convert_dlib_resnet.py``.

Layout (input 150×150 RGB; the spatial sizes below are for that input):

* ``conv32_down``: 7×7 conv stride 2 without padding + per-channel scale/bias + ReLU (72²), 3×3 max-pool stride 2
  without padding (35²).
* Residual blocks ``conv32_1..3`` (35²), ``conv64_down, conv64_1..3`` (17²), ``conv128_down, conv128_1..2`` (8²),
  ``conv256_down, conv256_1..2`` (4²), ``conv256_down_out`` (2²). A block is conv 3×3 + scale/bias + ReLU, conv 3×3
  + scale/bias, then ``ReLU(branch + shortcut)``. Plain blocks pad their convs by one (TF "same", stride 1) and
  use the identity shortcut. A ``down`` block's first conv has stride 2 and no padding; its shortcut is a 2×2
  average pool (stride 2, no padding) zero-padded in channels to the block's width, and the branch gets zero rows
  and columns at the bottom and right when it is smaller than the shortcut (8² → 3² vs 4², 4² → 1² vs 2²).
* Mean over space, then a 256→128 linear layer without bias. The output is not L2-normalised (face-api's
  descriptors are not either); dlib's verification threshold is a Euclidean distance of 0.6.

All weights are ordinary trainable parameters (convolutions with bias, then an affine per-channel scale and bias;
no batch statistics), so the network fine-tunes like any other module.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from ..paths import WEIGHTS_DIR, sha256_file
from .registry import register_backbone

__all__ = [
    "DEFAULT_WEIGHTS",
    "DEFAULT_WEIGHTS_SHA256",
    "REBUILD_COMMAND",
    "MEAN_RGB",
    "MIN_INPUT_SIZE",
    "DlibResNet",
    "dlib_resnet",
    "load_weights",
    "read_faceapi_weights",
]

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS: Path = WEIGHTS_DIR / "dlib_resnet.safetensors"
DEFAULT_WEIGHTS_SHA256 = "5fd927546d5fc11c5c339e5022931746d4201f3f07afcd99352f27b70bc08dc7"
REBUILD_COMMAND = "python scripts/convert_dlib_resnet.py"

#: face-api's mean RGB, subtracted from 0..255 pixel values before dividing by 255.
MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)

#: The smallest input side the layer stack accepts (the last down block needs a 3×3 input).
MIN_INPUT_SIZE = 103

#: (name, input channels, output channels, is a down block), in forward order.
_BLOCKS: tuple[tuple[str, int, int, bool], ...] = (
    ("conv32_1", 32, 32, False),
    ("conv32_2", 32, 32, False),
    ("conv32_3", 32, 32, False),
    ("conv64_down", 32, 64, True),
    ("conv64_1", 64, 64, False),
    ("conv64_2", 64, 64, False),
    ("conv64_3", 64, 64, False),
    ("conv128_down", 64, 128, True),
    ("conv128_1", 128, 128, False),
    ("conv128_2", 128, 128, False),
    ("conv256_down", 128, 256, True),
    ("conv256_1", 256, 256, False),
    ("conv256_2", 256, 256, False),
    ("conv256_down_out", 256, 256, True),
)


class _ScaleBias(nn.Module):
    """Per-channel affine map ``x * weight + bias`` on ``[B, C, H, W]`` (dlib's ``affine`` layer, trainable)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale and shift each channel."""
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


class _ConvLayer(nn.Module):
    """Convolution (with bias) followed by a per-channel scale and bias; face-api's ``convLayer`` without ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=True)
        self.scale = _ScaleBias(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, H, W] -> [B, C_out, H', W']``.

        The scale and bias are folded into the convolution (``conv(x, W * s) + b * s + t``), which equals
        ``scale(conv(x))`` up to float rounding, saves a pass over the activations, and keeps gradients for all four
        tensors.
        """
        gain = self.scale.weight
        weight = self.conv.weight * gain.view(-1, 1, 1, 1)
        bias = torch.addcmul(self.scale.bias, self.conv.bias, gain)
        return F.conv2d(x, weight, bias, stride=self.conv.stride, padding=self.conv.padding)


class _Residual(nn.Module):
    """A residual block; ``down=True`` halves the resolution (see the module docstring for the exact rules)."""

    def __init__(self, in_channels: int, out_channels: int, down: bool) -> None:
        super().__init__()
        if not down and in_channels != out_channels:
            raise ValueError("a plain residual block keeps its width")
        self.down = down
        self.extra_channels = out_channels - in_channels
        self.conv1 = _ConvLayer(in_channels, out_channels, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = _ConvLayer(out_channels, out_channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, H, W] -> [B, C_out, H', W']`` with ``H' = H // 2`` for a down block."""
        branch = self.conv2(torch.relu(self.conv1(x)))
        if not self.down:
            return torch.relu(branch + x)
        shortcut = F.avg_pool2d(x, kernel_size=2, stride=2)
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        pad_h = shortcut.shape[-2] - branch.shape[-2]
        pad_w = shortcut.shape[-1] - branch.shape[-1]
        if pad_h or pad_w:
            branch = F.pad(branch, (0, pad_w, 0, pad_h))
        return torch.relu(branch + shortcut)


_LAST_STAGE = "conv256_down_out"


class DlibResNet(nn.Module):
    """dlib's ResNet-29 face descriptor network (the module docstring has the layout).

    Input: float ``[B, 3, S, S]``, RGB in ``[0, 1]``; ``S = 150`` is what the weights were trained for (the network
    is fully convolutional and runs on any ``S >= 103``). The module scales to 0..255, subtracts face-api's mean RGB
    and divides by 255 itself.

    Output: the raw 128-d descriptor ``[B, 128]`` (not L2-normalised).

    Attributes:
        embedding_dim: 128.
        input_size: 150.
    """

    embedding_dim: int = 128
    input_size: int = 150

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.conv32_down = _ConvLayer(3, 32, 7, stride=2, padding=0)
        self.blocks = nn.ModuleDict({name: _Residual(cin, cout, down) for name, cin, cout, down in _BLOCKS})
        self.fc = nn.Linear(256, self.embedding_dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random initialisation suited to a network without normalisation layers.

        He-normal convolutions, zero conv biases, unit scales and zero shifts, except that the second scale of
        every residual branch starts at ``1 / sqrt(number of blocks)`` so that the activations do not grow with
        depth; the projection is normal with standard deviation ``1 / sqrt(256)``.
        """
        branch_gain = 1.0 / math.sqrt(len(_BLOCKS))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, _ScaleBias):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.blocks.values():
            assert isinstance(block, _Residual)
            nn.init.constant_(block.conv2.scale.weight, branch_gain)
        nn.init.normal_(self.fc.weight, std=1.0 / math.sqrt(self.fc.in_features))

    def last_stage_parameters(self) -> list[nn.Parameter]:
        """The parameters fine-tuned by the default recipe: the last residual block and the projection.

        They hold about a fifth of the weights; the earlier blocks' generic filters stay as dlib trained them.
        """
        return [*self.blocks[_LAST_STAGE].parameters(), *self.fc.parameters()]

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the fine-tuned last stage: ``[B, 3, S, S]`` in ``[0, 1]`` -> ``[B, 256, h, w]``.

        ``forward(x) == suffix(prefix(x))``. The recipe never trains these layers, so their output for a photo is the
        same for the original, unlearned and gold models, and can be computed once (see :meth:`prefix_state`).
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a float batch [B, 3, S, S], got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(
                f"input side must be at least {MIN_INPUT_SIZE} (150 is what the weights expect), got {tuple(x.shape)}"
            )
        # channels-last activations: the CPU convolutions run about a fifth faster on them (same values)
        x = ((x * 255.0 - self.mean_rgb) / 255.0).contiguous(memory_format=torch.channels_last)
        out = torch.relu(self.conv32_down(x))
        out = F.max_pool2d(out, kernel_size=3, stride=2)
        for name, block in self.blocks.items():
            if name != _LAST_STAGE:
                out = block(out)
        return out

    def prefix_state(self) -> dict[str, torch.Tensor]:
        """The tensors :meth:`prefix` depends on (two models with equal ones give equal prefix outputs)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith((f"blocks.{_LAST_STAGE}.", "fc."))}

    def suffix(self, prefix_out: torch.Tensor) -> torch.Tensor:
        """The last stage and the projection: :meth:`prefix`'s output -> raw descriptors ``[B, 128]``."""
        return self.fc(self.blocks[_LAST_STAGE](prefix_out).mean(dim=(2, 3)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The spatially averaged 256-d trunk output for an input in ``[0, 1]``: ``[B, 3, S, S] -> [B, 256]``."""
        return self.blocks[_LAST_STAGE](self.prefix(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` in ``[0, 1]`` -> raw descriptors ``[B, 128]``."""
        return self.fc(self.features(x))


def _module_key(faceapi_name: str) -> str:
    """face-api's tensor name -> this module's state-dict key (``conv64_1/conv1/conv/filters`` ->
    ``blocks.conv64_1.conv1.conv.weight``)."""
    if faceapi_name == "fc":
        return "fc.weight"
    parts = faceapi_name.split("/")
    renamed = {"filters": "weight", "bias": "bias", "weights": "weight", "biases": "bias"}
    if parts[-1] not in renamed:
        raise KeyError(faceapi_name)
    parts[-1] = renamed[parts[-1]]
    prefix = "" if parts[0] == "conv32_down" else "blocks."
    return prefix + ".".join(parts)


def _to_torch_layout(faceapi_name: str, values: np.ndarray) -> np.ndarray:
    """TF.js layouts to PyTorch ones: filters HWIO -> OIHW, fc ``[in, out]`` -> ``[out, in]``."""
    if faceapi_name.endswith("/filters"):
        return values.transpose(3, 2, 0, 1)
    if faceapi_name == "fc":
        return values.T
    return values


def read_faceapi_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a converted face-api weights file into a :class:`DlibResNet` state dict.

    Quantised tensors are decoded exactly as TF.js decodes them: ``float32(q * scale + min)`` with the product and
    sum in double precision.

    Args:
        path: a safetensors file written by ``scripts/convert_dlib_resnet.py``.

    Returns:
        ``{state-dict key: float32 tensor in PyTorch layout}``.

    Raises:
        WeightsError: the file is missing, is not a readable safetensors file, or does not hold the expected tensors.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    file = Path(path)
    if not file.is_file():
        raise WeightsError(f"dlib_resnet weights not found at {file}; rebuild them with `{REBUILD_COMMAND}`")
    try:
        stored = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(
            f"cannot read dlib_resnet weights {file} ({exc}); rebuild them with `{REBUILD_COMMAND}`"
        ) from exc
    state: dict[str, torch.Tensor] = {}
    try:
        for key in sorted(stored):
            if key.endswith((".scale", ".min")):
                continue
            if key.endswith(".q"):
                name = key[: -len(".q")]
                quantised = stored[key]
                scale = float(stored[f"{name}.scale"].reshape(-1)[0])
                minimum = float(stored[f"{name}.min"].reshape(-1)[0])
                if quantised.dtype != np.uint8:
                    raise ValueError(f"{key} has dtype {quantised.dtype}, expected uint8")
                values = (quantised.astype(np.float64) * scale + minimum).astype(np.float32)
            else:
                name = key
                values = stored[key]
                if values.dtype != np.float32:
                    raise ValueError(f"{key} has dtype {values.dtype}, expected float32")
            state[_module_key(name)] = torch.from_numpy(np.ascontiguousarray(_to_torch_layout(name, values)))
    except (KeyError, ValueError, IndexError) as exc:
        raise WeightsError(
            f"{file} is not a dlib_resnet weights file (bad entry {exc}); rebuild it with `{REBUILD_COMMAND}`"
        ) from exc
    return state


def load_weights(model: DlibResNet, path: str | os.PathLike[str], *, check_sha256: str | None = None) -> None:
    """Load converted face-api weights into ``model`` in place.

    Args:
        model: the network to fill.
        path: the safetensors file.
        check_sha256: when given, the file's sha256 must equal it (used for the bundled asset).

    Raises:
        WeightsError: missing, corrupt or mismatching file.
    """
    file = Path(path)
    if check_sha256 is not None and file.is_file():
        digest = sha256_file(file)
        if digest != check_sha256:
            raise WeightsError(
                f"{file} is corrupt or out of date (sha256 {digest}, expected {check_sha256}); "
                f"rebuild it with `{REBUILD_COMMAND}`"
            )
    state = read_faceapi_weights(file)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(key for key in set(state) & set(expected) if state[key].shape != expected[key].shape)
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{file} does not fit DlibResNet (missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"wrong shapes {wrong[:4]}); rebuild it with `{REBUILD_COMMAND}`"
        )
    model.load_state_dict(state, strict=True)
    logger.debug("loaded dlib_resnet weights from %s", file)


@register_backbone("dlib_resnet")
def dlib_resnet(*, pretrained: bool = True, weights: str | Path | None = None) -> DlibResNet:
    """dlib's ResNet face descriptor (128-d, input 150², RGB in ``[0, 1]``).

    Args:
        pretrained: load the bundled face-api/dlib weights (checked against their sha256). ``False`` gives a
            randomly initialised network, unless ``weights`` is given.
        weights: a converted weights file to load instead of the bundled one.

    Returns:
        The network, in training mode (it has no batch statistics, so modes only matter to callers' dropout).

    Raises:
        WeightsError: the weights file is missing, corrupt, or does not fit.
    """
    model = DlibResNet()
    if weights is not None:
        load_weights(model, weights)
    elif pretrained:
        load_weights(model, DEFAULT_WEIGHTS, check_sha256=DEFAULT_WEIGHTS_SHA256)
    return model
