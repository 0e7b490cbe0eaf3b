"""A model's outputs on one split, collected once and then reused by every metric.

Running the network is the expensive part of an evaluation; every metric in :mod:`dlfd_core.evaluate.metrics`
is a pure function of the arrays gathered here, so a split is passed through the model exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..data.splits import PARTS, nonmember_parts
from ..errors import DataError
from .metrics import per_sample_cross_entropy

__all__ = [
    "FeatureModel",
    "SplitOutputs",
    "check_parts",
    "collect_outputs",
    "concat_outputs",
    "nonmember_outputs",
    "nonmember_part_names",
]


class FeatureModel(Protocol):
    """What :func:`collect_outputs` needs from a model (``FaceClassifier`` satisfies it).

    ``forward(x)`` must equal ``head(features(x))``; the two stages are called separately so that the
    embedding and the logits come from one pass.
    """

    head: nn.Module
    training: bool

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``[B, D]`` of an image batch ``[B, 3, S, S]``."""
        ...

    def train(self, mode: bool = True) -> nn.Module:
        """Set training mode (``nn.Module.train``)."""
        ...


def _readonly(array: np.ndarray) -> np.ndarray:
    out = np.array(array, copy=True)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class SplitOutputs:
    """Everything the metrics need about one split, as read-only numpy arrays.

    Attributes:
        logits: ``[N, C]`` float32 class scores.
        labels: ``[N]`` int64 class index, or ``-1`` for a sample whose person has no class of their own
            (e.g. an unseen identity).
        losses: ``[N]`` float64 per-sample cross-entropy; NaN where the label is ``-1``.
        features: ``[N, D]`` float32 embeddings (the input of the classification head).
        identities: the person of each sample, ``N`` strings.
    """

    logits: np.ndarray
    labels: np.ndarray
    losses: np.ndarray
    features: np.ndarray
    identities: tuple[str, ...]

    def __post_init__(self) -> None:
        logits = np.asarray(self.logits, dtype=np.float32)
        labels = np.asarray(self.labels, dtype=np.int64)
        losses = np.asarray(self.losses, dtype=np.float64)
        features = np.asarray(self.features, dtype=np.float32)
        identities = tuple(str(i) for i in self.identities)
        if logits.ndim != 2:
            raise ValueError(f"logits must be [N, C], got shape {logits.shape}")
        n = logits.shape[0]
        if labels.shape != (n,) or losses.shape != (n,) or len(identities) != n:
            raise ValueError(
                f"labels {labels.shape}, losses {losses.shape} and {len(identities)} identities "
                f"must all have the {n} samples of logits"
            )
        if features.ndim != 2 or features.shape[0] != n:
            raise ValueError(f"features must be [{n}, D], got shape {features.shape}")
        if n and (labels.min() < -1 or labels.max() >= logits.shape[1]):
            raise ValueError(f"labels must lie in [-1, {logits.shape[1]}), got [{labels.min()}, {labels.max()}]")
        object.__setattr__(self, "logits", _readonly(logits))
        object.__setattr__(self, "labels", _readonly(labels))
        object.__setattr__(self, "losses", _readonly(losses))
        object.__setattr__(self, "features", _readonly(features))
        object.__setattr__(self, "identities", identities)

    def __len__(self) -> int:
        """Number of samples."""
        return int(self.logits.shape[0])

    @property
    def predictions(self) -> np.ndarray:
        """``[N]`` predicted class (argmax of the logits)."""
        return np.argmax(self.logits, axis=1) if len(self) else np.zeros(0, dtype=np.int64)

    @property
    def labelled(self) -> np.ndarray:
        """``[N]`` boolean mask of the samples that have a class (label ``>= 0``)."""
        return self.labels >= 0

    def subset(self, index: np.ndarray | Sequence[int]) -> SplitOutputs:
        """The outputs of a subset of the samples.

        Args:
            index: a boolean mask of length ``N`` or integer positions.

        Returns:
            A new :class:`SplitOutputs` with the selected samples, in the given order.
        """
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean mask must have shape ({len(self)},), got {idx.shape}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        return SplitOutputs(
            logits=self.logits[idx],
            labels=self.labels[idx],
            losses=self.losses[idx],
            features=self.features[idx],
            identities=tuple(self.identities[i] for i in idx),
        )


def concat_outputs(parts: Sequence[SplitOutputs]) -> SplitOutputs:
    """Several parts' outputs as one, in order (all from the same model)."""
    if not parts:
        raise ValueError("nothing to concatenate")
    if len(parts) == 1:
        return parts[0]
    return SplitOutputs(
        logits=np.concatenate([p.logits for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        losses=np.concatenate([p.losses for p in parts]),
        features=np.concatenate([p.features for p in parts]),
        identities=tuple(i for p in parts for i in p.identities),
    )


def check_parts(parts: Any, what: str) -> Mapping[str, SplitOutputs]:
    """``parts`` if it is a non-empty mapping of part names (:data:`~dlfd_core.data.splits.PARTS`) to outputs.

    Raises:
        DataError: not a mapping, empty, an unknown part name, or a value that is not outputs-like.
    """
    if not isinstance(parts, Mapping):
        raise DataError(f"{what} outputs must be a mapping part name -> SplitOutputs, got {type(parts).__name__}")
    if not parts:
        raise DataError(f"{what} outputs are empty: expected parts among {', '.join(PARTS)}")
    unknown = [name for name in parts if name not in PARTS]
    if unknown:
        raise DataError(f"{what} outputs have unknown part(s) {unknown}; known parts: {', '.join(PARTS)}")
    for name, out in parts.items():
        if not all(hasattr(out, attr) for attr in ("logits", "features", "identities")):
            raise DataError(f"{what} part {name!r} is not a SplitOutputs (got {type(out).__name__})")
    return parts


def nonmember_outputs(outputs: Mapping[str, SplitOutputs], forget_mode: str) -> SplitOutputs | None:
    """One model's outputs on the photos the attacks score as non-members (the parts
    :func:`~dlfd_core.data.splits.nonmember_parts` names for ``forget_mode``), or ``None`` when there are none.

    Outputs collected without an ``unseen`` part (a split with no unseen people) fall back to the held-out photos.
    """
    parts = [outputs[name] for name in nonmember_part_names(outputs, forget_mode)]
    return concat_outputs(parts) if parts else None


def nonmember_part_names(outputs: Mapping[str, SplitOutputs], forget_mode: str) -> list[str]:
    """The parts of ``outputs`` that :func:`nonmember_outputs` joins, in order (non-empty ones only)."""
    names = nonmember_parts(forget_mode)
    if not any(name in outputs for name in names):
        names = nonmember_parts("instance")
    return [name for name in names if name in outputs and len(outputs[name])]


def collect_outputs(
    model: FeatureModel,
    inputs: torch.Tensor,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    identities: Sequence[str],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> SplitOutputs:
    """Run ``model`` once over a split and gather logits, per-sample losses and embeddings.

    The model runs in eval mode under :func:`torch.inference_mode`, as ``head(features(x))``; its previous
    train/eval mode is restored afterwards, also when an error is raised. The model itself is not moved:
    it must already live on ``device``, where each input batch is sent.

    Args:
        model: a model with ``features(x)`` and ``head`` (e.g. ``FaceClassifier``).
        inputs: ``[N, 3, S, S]`` float image batch (or any ``[N, C, H, W]`` batch ``features`` takes), on any device.
        labels: ``[N]`` class indices, ``-1`` for samples without a class.
        identities: the person of each sample.
        batch_size: samples per forward pass.
        device: where the forward passes run.
        features: what maps an input batch to embeddings (default ``model.features``; e.g. a backbone's suffix when
            the inputs are the outputs of its frozen prefix).

    Returns:
        The split's :class:`SplitOutputs`; losses are computed in float64 from the float32 logits.
    """
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be [N, 3, S, S], got shape {tuple(inputs.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    label_array = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    n = int(inputs.shape[0])
    if n == 0:
        raise ValueError("collect_outputs needs at least one input")
    if label_array.shape != (n,) or len(identities) != n:
        raise ValueError(f"{n} inputs need {n} labels and identities, got {label_array.shape} and {len(identities)}")

    was_training = model.training
    logit_chunks: list[np.ndarray] = []
    feature_chunks: list[np.ndarray] = []
    model.train(False)
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                batch = inputs[start : start + batch_size].to(device=device, dtype=torch.float32)
                feats = (features or model.features)(batch)
                logits = model.head(feats)
                feature_chunks.append(feats.float().cpu().numpy())
                logit_chunks.append(logits.float().cpu().numpy())
    finally:
        model.train(was_training)

    logit_array = np.concatenate(logit_chunks).astype(np.float32, copy=False)
    feature_array = np.concatenate(feature_chunks).astype(np.float32, copy=False)
    return SplitOutputs(
        logits=logit_array,
        labels=label_array,
        losses=per_sample_cross_entropy(logit_array, label_array),
        features=feature_array,
        identities=tuple(identities),
    )
