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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import AugmentConfig, augment_batch
from .data.transforms import crops_to_tensor
from .errors import CancelledError, DLFDError
from .models.stages import run_prefix, run_suffix
from .progress import ProgressFn, no_progress

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The training recipe.

    The defaults suit a pretrained backbone with a prototype-initialised head: the head starts as the
    nearest-class-mean classifier, whose logits are large next to the descriptors' small scale, so learning rates
    are small (at 4x and 10x these, SGD diverged within three epochs on ORL). ResNet-18 from scratch uses
    :func:`default_config`'s larger rates.

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
        head_init: ``"prototypes"`` sets a linear head's weights to each class's mean embedding direction
            (weight imprinting) before training, so a pretrained backbone classifies well from the first step and
            the fine-tuning needs few epochs; ``"random"`` keeps the default initialisation.
        prototype_logit_scale: with prototype initialisation, the logit of a sample exactly on its class mean.
        warmup_epochs: epochs over which the learning rates rise linearly to their value before the cosine decay
            starts (0: none; see :func:`lr_factor`).
    """

    epochs: int = 8
    batch_size: int = 32
    lr: float = 5e-4
    head_lr: float = 5e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    trainable: str = "last"
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    label_smoothing: float = 0.0
    head_init: str = "prototypes"
    prototype_logit_scale: float = 10.0
    warmup_epochs: float = 0.0

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


def parameter_groups(model: nn.Module, trainable: str, *, lr: float, head_lr: float) -> list[dict[str, Any]]:
    """Make ``trainable`` of ``model`` trainable (:func:`set_trainable`) and return its optimiser parameter groups:
    the head at ``head_lr``, then the trainable backbone parameters (if any) at ``lr``. Training and every
    unlearning method build their optimisers from these."""
    backbone = set_trainable(model, trainable)
    groups: list[dict[str, Any]] = [{"params": list(model.head.parameters()), "lr": head_lr}]
    if backbone:
        groups.append({"params": backbone, "lr": lr})
    return groups


def optimiser_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, before_step: Callable[[], None] | None = None
) -> float:
    """One optimiser step on ``loss`` (the one update of training and of every method) and the loss's value.

    ``before_step`` runs between ``backward()`` and ``step()`` (SalUn masks gradients there).

    Raises:
        DLFDError: the loss is not finite; nothing is updated.
    """
    value = float(loss.detach())
    if not math.isfinite(value):
        raise DLFDError("the loss became non-finite; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if before_step is not None:
        before_step()
    optimizer.step()
    return value


def lr_factor(step: int, total: int, warmup: int = 0) -> float:
    """The factor on the learning rates at ``step`` (0-based) of ``total``: a linear rise over the first ``warmup``
    steps (``1/warmup``, ``2/warmup``, ... ``1``), then a cosine decay from 1 towards 0 over the rest."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD over the trainable backbone parameters (``lr``) and the head (``head_lr``)."""
    groups = parameter_groups(model, config.trainable, lr=config.lr, head_lr=config.head_lr)
    return torch.optim.SGD(groups, momentum=config.momentum, weight_decay=config.weight_decay)


@torch.no_grad()
def imprint_head(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    logit_scale: float,
    features: torch.Tensor | None = None,
) -> None:
    """Set a linear head to the nearest-class-mean classifier of the current embedding (weight imprinting).

    With class means ``μ_c``, ``-‖f - μ_c‖² / T`` ranks classes like ``(2 μ_c·f - ‖μ_c‖²) / T`` (the ``‖f‖²`` term is
    the same for every class), a linear layer: ``W_c = 2 μ_c / T``, ``b_c = -‖μ_c‖² / T``. ``T`` is set so that
    the mean logit gap between a sample's own class and the others is ``logit_scale``. Face descriptors are compared
    by Euclidean distance and are not centred, so this works where cosine prototypes would not. Classes without
    samples keep their weights. Needs a linear head with a bias. ``features``: the model's embeddings of ``inputs``
    (``[N, D]``) when the caller already has them; otherwise they are computed here.
    """
    head = model.head
    if not isinstance(head, nn.Linear) or head.bias is None:
        return
    device = head.weight.device
    if features is not None:
        if features.shape != (len(inputs), head.in_features):
            expected = (len(inputs), head.in_features)
            raise DLFDError(f"expected embeddings of shape {expected}, got {tuple(features.shape)}")
        feats = features.to(device)
    else:
        was_training = model.training
        model.eval()
        feats = torch.cat([model.features(inputs[i : i + 100].to(device)) for i in range(0, len(inputs), 100)])
        model.train(was_training)  # feats: [N, D]
    labels = labels.to(device)
    classes = labels.unique()
    means = torch.stack([feats[labels == c].mean(0) for c in classes])  # [K, D]
    sq = torch.cdist(feats, means).pow(2)  # [N, K]
    own = (labels.unsqueeze(1) == classes.unsqueeze(0)).float()  # [N, K]
    d_own = (sq * own).sum() / own.sum()
    d_other = (sq * (1 - own)).sum() / (1 - own).sum().clamp_min(1.0)
    temperature = ((d_other - d_own) / logit_scale).clamp_min(1e-8)
    head.weight[classes] = 2.0 * means / temperature
    head.bias[classes] = -means.pow(2).sum(1) / temperature


Embedder = Callable[[nn.Module, Sequence[str]], "torch.Tensor | None"]
"""``embed(model, image_keys)``: the model's embeddings of those photos, or ``None`` when it cannot give them."""


def seeded_generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def train_classifier(
    model: nn.Module,
    crops: np.ndarray | torch.Tensor,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    config: TrainConfig | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
    initial_features: torch.Tensor | None = None,
    prefix_outputs: torch.Tensor | None = None,
) -> TrainResult:
    """Train ``model`` in place on aligned crops with cross-entropy.

    When nothing before the backbone's trainable last stage changes during training (``trainable="last"``, no
    augmentation, and a backbone with ``prefix`` / ``suffix`` such as the dlib ResNet), the frozen prefix is run once
    per photo and only the last stage and the head run at each step: the same updates as the full passes, about
    5-20x faster (see :func:`uses_frozen_prefix`).

    Args:
        model: a :class:`~dlfd_core.models.FaceClassifier`.
        crops: ``uint8 [N, S, S, 3]`` aligned faces, or model inputs ``float32 [N, 3, s, s]`` in ``[0, 1]``.
        labels: class index per crop.
        config: the recipe (defaults to :class:`TrainConfig`).
        seed: seeds data order, augmentation and dropout.
        device: where to train.
        progress: called with the fraction done and a message.
        should_stop: polled between steps; when it returns True, :class:`CancelledError` is raised.
        initial_features: ``model``'s embeddings of ``crops`` before training, when the caller already has them
            (they initialise the head; without them a forward pass over the crops computes them).
        prefix_outputs: the backbone prefix's outputs for ``crops`` when the caller already has them (used only
            when :func:`uses_frozen_prefix` holds).

    Returns:
        The trained model and the per-epoch history.
    """
    config = config or TrainConfig()
    labels_t = torch.as_tensor(
        np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels), dtype=torch.long
    )
    if len(crops) == 0 or len(crops) != len(labels_t):
        raise DLFDError(f"need as many labels as crops and at least one of each, got {len(crops)} / {len(labels_t)}")
    if int(labels_t.max()) >= model.num_classes or int(labels_t.min()) < 0:
        raise DLFDError(f"labels must lie in 0..{model.num_classes - 1}")
    if not 0.0 <= config.warmup_epochs <= config.epochs:  # NaN fails too
        raise DLFDError(f"warmup_epochs must lie in 0..{config.epochs} (the epochs), got {config.warmup_epochs}")
    torch.manual_seed(seed)
    generator = seeded_generator(seed)
    device = torch.device(device)
    model.to(device)
    if isinstance(crops, torch.Tensor) and crops.is_floating_point():
        inputs = crops  # already model input: [N, 3, s, s] float in [0, 1]
    else:
        inputs = crops_to_tensor(crops, model.input_size)  # [N, 3, s, s] float in [0, 1], kept on the CPU
    activations: torch.Tensor | None = None
    if uses_frozen_prefix(model, config):
        activations = prefix_outputs if prefix_outputs is not None else run_prefix(model, inputs, device)
        if len(activations) != len(inputs):
            raise DLFDError(f"got prefix outputs for {len(activations)} photos, expected {len(inputs)}")
        if initial_features is None:
            initial_features = run_suffix(model, activations, device)
    if config.head_init == "prototypes":
        imprint_head(model, inputs, labels_t, logit_scale=config.prototype_logit_scale, features=initial_features)
    elif config.head_init != "random":
        raise DLFDError(f"head_init must be 'prototypes' or 'random', got {config.head_init!r}")
    optimizer = make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(inputs) / config.batch_size)
    total_steps = max(1, config.epochs * steps_per_epoch)
    warmup_steps = min(total_steps, round(config.warmup_epochs * steps_per_epoch))
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
            y = labels_t[index].to(device)
            scale = lr_factor(step, total_steps, warmup_steps)
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * scale
            if activations is not None:
                logits = model.head(model.backbone.suffix(activations[index].to(device, non_blocking=True)))
            else:
                x = inputs[index]
                if config.augment is not None:
                    x = augment_batch(x, config.augment, generator)
                logits = model(x.to(device, non_blocking=True))
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            loss_sum += optimiser_step(optimizer, loss) * len(index)
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
    if isinstance(getattr(model, "metadata", None), dict):  # the model knows its recipe (see recipe_of)
        model.metadata["train_config"] = config.to_dict()
    return TrainResult(model=model, config=config, history=tuple(history), seconds=time.perf_counter() - start)


def uses_frozen_prefix(model: nn.Module, config: TrainConfig) -> bool:
    """Whether training ``model`` with ``config`` leaves the backbone's prefix and its input unchanged, so that the
    prefix's outputs can be computed once: only the last stage trains, nothing is augmented, and the backbone has
    ``prefix`` / ``suffix`` / ``last_stage_parameters``."""
    backbone = getattr(model, "backbone", None)
    return (
        config.trainable == "last"
        and config.augment is None
        and all(callable(getattr(backbone, name, None)) for name in ("prefix", "suffix", "last_stage_parameters"))
    )


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from :meth:`TrainConfig.to_dict`'s output (as saved in a model's metadata).

    Raises:
        DLFDError: unknown fields or a malformed augmentation.
    """
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise DLFDError(f"unknown training-recipe fields: {', '.join(unknown)}")
    data = dict(values)
    augment = data.get("augment")
    if isinstance(augment, Mapping):
        try:
            data["augment"] = AugmentConfig(**augment)
        except TypeError as error:
            raise DLFDError(f"malformed augmentation in the training recipe: {error}") from None
    try:
        return TrainConfig(**data)
    except TypeError as error:
        raise DLFDError(f"malformed training recipe: {error}") from None


def recipe_of(model: nn.Module) -> TrainConfig:
    """The recipe ``model`` was trained with (from a saved model's metadata), else its backbone's default; the gold
    model and the retraining baselines follow it, so that they differ from the original only in their data."""
    metadata = getattr(model, "metadata", None)
    saved = metadata.get("train_config") if isinstance(metadata, dict) else None
    if isinstance(saved, Mapping):
        try:
            return config_from_dict(saved)
        except DLFDError as error:
            log.warning("ignoring the model's saved training recipe (%s); using the default", error)
    return default_config(getattr(model, "backbone_name", "dlib_resnet"))


def rate_scale(model: nn.Module) -> tuple[float, float]:
    """How the SGD rates ``model`` was trained at compare with its backbone's default recipe: ``(backbone, head)``.

    Unlearning methods state their default SGD rates for the default recipe (:func:`default_config`); a model
    trained at other rates runs those defaults scaled by these ratios, so every method keeps the same multiple of the
    original's own training rates on every dataset (a rate the caller sets is used as set). The shipped LFW model
    trains at 1/5 of the default rates; at the unscaled rates one epoch of fine-tuning took it from 0.996 to 0.031
    retain-test accuracy. ``(1.0, 1.0)`` for a model trained with its backbone's default recipe, or with no recipe
    on record.
    """
    recipe = recipe_of(model)
    base = default_config(getattr(model, "backbone_name", "dlib_resnet"))
    return (
        recipe.lr / base.lr if base.lr > 0 else 1.0,
        recipe.head_lr / base.head_lr if base.head_lr > 0 else 1.0,
    )


def default_config(backbone: str) -> TrainConfig:
    """The recipe for a backbone: fine-tune the last stage of a pretrained one, train ResNet-18 fully from scratch."""
    if backbone == "resnet18":
        return TrainConfig(epochs=30, lr=0.02, head_lr=0.02, trainable="all", head_init="random")
    return TrainConfig()


def train_on_split(
    aligned: Any,
    split: Any,
    *,
    which: str = "original",
    backbone: str = "dlib_resnet",
    config: TrainConfig | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
    embed: Embedder | None = None,
    prefix: Embedder | None = None,
) -> TrainResult:
    """Train the original model (every known person's training photos) or the gold model (the retain set only).

    Both start from the same point: the pretrained backbone (or a seeded random ResNet-18) and a new head over all
    known identities, so the gold model keeps the forgotten people's classes but never sees their photos.

    Args:
        aligned: the dataset's :class:`~dlfd_core.data.AlignedFaces`.
        split: the :class:`~dlfd_core.data.Split`; ``which="gold"`` needs a forget set in it.
        which: ``"original"`` or ``"gold"``.
        backbone: a registered backbone name.
        config: the recipe; :func:`default_config` of the backbone when omitted.
        seed: seeds initialisation, data order and augmentation.
        device: where to train.
        progress: progress callback.
        should_stop: cancellation poll.
        embed: ``embed(model, keys)`` gives the untrained model's embeddings of those photos faster than a forward
            pass (the web app's cached frozen-layer outputs), or ``None`` when it cannot; used for the head's
            initialisation.
        prefix: ``prefix(model, keys)`` gives the backbone prefix's outputs for those photos (the web app's cache),
            or ``None``; used when the recipe keeps the prefix frozen (:func:`uses_frozen_prefix`).
    """
    from .data.splits import aligned_for
    from .models import create_model

    if which == "original":
        keys = split.train_keys
    elif which == "gold":
        if split.forget_mode == "none":
            raise DLFDError("the gold model needs a forget set: choose identities or instances to forget first")
        keys = split.retain_train_keys
    else:
        raise DLFDError(f"which must be 'original' or 'gold', got {which!r}")
    crops, labels = aligned_for(aligned, split, keys)
    torch.manual_seed(seed)
    pretrained = backbone != "resnet18"
    model = create_model(backbone, split.num_classes, pretrained=pretrained).to(device)
    config = config or default_config(backbone)
    initial_features = embed(model, keys) if embed is not None else None
    prefix_outputs = prefix(model, keys) if prefix is not None and uses_frozen_prefix(model, config) else None
    return train_classifier(
        model,
        crops,
        labels,
        config=config,
        seed=seed,
        device=device,
        progress=progress,
        should_stop=should_stop,
        initial_features=initial_features,
        prefix_outputs=prefix_outputs,
    )
