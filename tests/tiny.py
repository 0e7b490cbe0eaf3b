"""A tiny registered backbone and seeded toy unlearning data, for fast tests of every unlearning method."""

from __future__ import annotations

import torch
from torch import nn

from dlfd_core.models import FaceClassifier
from dlfd_core.models.registry import backbone_names, register_backbone
from dlfd_core.unlearn import UnlearnData

TINY = "tiny_test"
SIZE = 16


class TinyBackbone(nn.Module):
    """conv -> BatchNorm -> ReLU -> pool -> linear: 16x16 RGB in [0, 1] to an 8-d embedding."""

    embedding_dim = 8
    input_size = SIZE

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, self.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))  # [B, 6, 16, 16]
        h = nn.functional.adaptive_avg_pool2d(h, 4).flatten(1)  # [B, 96]
        return self.fc(h)  # [B, 8]

    def last_stage_parameters(self) -> list[nn.Parameter]:
        return list(self.fc.parameters())


if TINY not in backbone_names():

    @register_backbone(TINY)
    def _tiny(*, pretrained: bool = False) -> nn.Module:
        return TinyBackbone()


def tiny_model(num_classes: int = 4, seed: int = 0) -> FaceClassifier:
    """A seeded tiny classifier, briefly trained so that it fits its toy data."""
    torch.manual_seed(seed)
    model = FaceClassifier(TinyBackbone(), num_classes, backbone_name=TINY, pretrained=False)
    data = tiny_data("identity", num_classes=num_classes, seed=seed)
    x = torch.cat([data.retain_inputs, data.forget_inputs])
    y = torch.cat([data.retain_labels, data.forget_labels])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _images(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each class a different mean colour plus noise, so the toy task is learnable."""
    base = torch.linspace(0.2, 0.8, int(labels.max()) + 1)
    x = torch.rand(len(labels), 3, SIZE, SIZE, generator=generator) * 0.3
    x[:, 0] += base[labels].view(-1, 1, 1) * 0.7
    x[:, 1] += base.flip(0)[labels].view(-1, 1, 1) * 0.7
    return x.clamp(0, 1)


def tiny_data(mode: str = "identity", *, num_classes: int = 4, per_class: int = 6, seed: int = 0) -> UnlearnData:
    """Toy data: class 0 forgotten entirely (identity) or 2 photos of each of classes 0 and 1 (instance)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    x = _images(labels, g)
    if mode == "identity":
        forget = labels == 0
    else:
        forget = torch.zeros(len(labels), dtype=torch.bool)
        forget[[0, 1, per_class, per_class + 1]] = True
    holdout_labels = torch.arange(num_classes).repeat_interleave(2)
    if mode == "identity":
        holdout_labels = holdout_labels[holdout_labels != 0]
    holdout = _images(holdout_labels, g)
    nonmember = torch.rand(8, 3, SIZE, SIZE, generator=g)
    return UnlearnData(
        retain_inputs=x[~forget],
        retain_labels=labels[~forget],
        forget_inputs=x[forget],
        forget_labels=labels[forget],
        num_classes=num_classes,
        forget_mode=mode,
        forget_classes=(0,) if mode == "identity" else (),
        holdout_inputs=holdout,
        holdout_labels=holdout_labels,
        nonmember_inputs=holdout if mode == "instance" else nonmember,
    )
