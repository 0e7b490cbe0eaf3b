"""Train the original and gold (retrained) face-recognition models with one seeded recipe.

The **original** model is trained on every known identity's training photos; the **gold** model on the retain
set only (the same recipe, starting from the same point): it is what perfect unlearning should match.

With a pretrained backbone (the default dlib ResNet), the recipe fine-tunes the backbone's last stages and trains
a new classification head. The early stages (generic edge and texture filters) stay frozen: training them on a
few hundred photos adds nothing but time and over-fitting, and unlearning methods act on the same trainable set.
With ResNet-18 from scratch (the DLFD paper's setting), everything is trained.

Runs are deterministic on the CPU for a given seed and thread count: data order and augmentation draw from
explicit generators, and deterministic algorithms are requested.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import AugmentConfig, augment_batch
from .data.transforms import crops_to_tensor
from .errors import CancelledError, DLFDError
from .progress import ProgressFn, no_progress

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The training recipe.

    Attributes:
        epochs: passes over the training images.
        batch_size: images per step.
        lr: learning rate of the trainable backbone layers (SGD with momentum, cosine decay to 0).
        head_lr: learning rate of the classification head.
        momentum: SGD momentum.
        weight_decay: L2 weight decay on all trained parameters.
        trainable: which backbone parameters train: ``"all"``, ``"none"`` (head only), or ``"last"`` (the
            backbone's own ``last_stage_parameters()``, falling back to all when it declares none).
        augment: the augmentation, or ``None`` for none.
        label_smoothing: cross-entropy label smoothing.
    """

    epochs: int = 12
    batch_size: int = 32
    lr: float = 0.01
    head_lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    trainable: str = "last"
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    label_smoothing: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_classifier` returns.

    Attributes:
        model: the trained model (in eval mode).
        config: the recipe.
        history: one dict per epoch: ``epoch``, ``loss``, ``train_acc``, ``seconds``.
        seconds: wall time of the whole run.
    """

    model: nn.Module
    config: TrainConfig
    history: tuple[dict[str, float], ...]
    seconds: float


def set_trainable(model: nn.Module, trainable: str) -> list[nn.Parameter]:
    """Freeze the backbone parameters that the recipe does not train; return the trainable backbone ones."""
    backbone = model.backbone
    if trainable not in {"all", "none", "last"}:
        raise DLFDError(f"trainable must be 'all', 'none' or 'last', got {trainable!r}")
    for p in backbone.parameters():
        p.requires_grad_(trainable == "all")
    if trainable == "last":
        last = list(getattr(backbone, "last_stage_parameters", lambda: [])())
        if not last:
            last = list(backbone.parameters())
        for p in last:
            p.requires_grad_(True)
    for p in model.head.parameters():
        p.requires_grad_(True)
    return [p for p in backbone.parameters() if p.requires_grad]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD over the trainable backbone parameters (``lr``) and the head (``head_lr``)."""
    backbone_params = set_trainable(model, config.trainable)
    groups = [{"params": list(model.head.parameters()), "lr": config.head_lr}]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": config.lr})
    return torch.optim.SGD(groups, momentum=config.momentum, weight_decay=config.weight_decay)


def seeded_generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def train_classifier(
    model: nn.Module,
    crops: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    config: TrainConfig | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``model`` in place on aligned crops with cross-entropy.

    Args:
        model: a :class:`~dlfd_core.models.FaceClassifier`.
        crops: ``uint8 [N, S, S, 3]`` aligned faces.
        labels: class index per crop.
        config: the recipe (defaults to :class:`TrainConfig`).
        seed: seeds data order, augmentation and dropout.
        device: where to train.
        progress: called with the fraction done and a message.
        should_stop: polled between steps; when it returns True, :class:`CancelledError` is raised.

    Returns:
        The trained model and the per-epoch history.
    """
    config = config or TrainConfig()
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(crops) == 0 or len(crops) != len(labels_t):
        raise DLFDError(f"need as many labels as crops and at least one of each, got {len(crops)} / {len(labels_t)}")
    if int(labels_t.max()) >= model.num_classes or int(labels_t.min()) < 0:
        raise DLFDError(f"labels must lie in 0..{model.num_classes - 1}")
    torch.manual_seed(seed)
    generator = seeded_generator(seed)
    device = torch.device(device)
    model.to(device)
    inputs = crops_to_tensor(crops, model.input_size)  # [N, 3, s, s] float in [0, 1], kept on the CPU
    optimizer = make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(inputs) / config.batch_size)
    total_steps = max(1, config.epochs * steps_per_epoch)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    step = 0
    model.train()
    for epoch in range(config.epochs):
        epoch_start = time.perf_counter()
        order = torch.randperm(len(inputs), generator=generator)
        loss_sum, correct = 0.0, 0
        for first in range(0, len(order), config.batch_size):
            if should_stop is not None and should_stop():
                raise CancelledError("training was cancelled")
            index = order[first : first + config.batch_size]
            x = inputs[index]
            if config.augment is not None:
                x = augment_batch(x, config.augment, generator)
            x, y = x.to(device, non_blocking=True), labels_t[index].to(device)
            scale = 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * scale
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
            correct += int((logits.detach().argmax(1) == y).sum())
            step += 1
            progress(step / total_steps, f"epoch {epoch + 1}/{config.epochs}")
        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / len(inputs),
            "train_acc": correct / len(inputs),
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(record)
        log.info("epoch %d/%d loss %.4f train acc %.3f", epoch + 1, config.epochs, record["loss"], record["train_acc"])
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return TrainResult(model=model, config=config, history=tuple(history), seconds=time.perf_counter() - start)
