"""A face classifier (registered backbone + classification head) and its safetensors file format.

A saved model is one ``.safetensors`` file: the tensors of ``state_dict()`` plus, in the file's string metadata,
the JSON config that rebuilds the architecture (:func:`model_config`), the caller's JSON metadata, and a SHA-256
of the tensor contents so that a damaged file is refused instead of silently loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DLFDError, WeightsError
from ..paths import atomic_write
from .registry import create_backbone

__all__ = [
    "FORMAT_NAME",
    "FaceClassifier",
    "ModelConfigError",
    "build_from_config",
    "create_model",
    "load_model",
    "model_config",
    "read_model_metadata",
    "save_model",
]

FORMAT_NAME = "dlfd_core.FaceClassifier"
FORMAT_VERSION = 1

# Backbone kwargs that only say where pretrained weights come from; they are not part of the architecture
# and are left out of the saved config (a saved file carries its own weights).
_LOAD_ONLY_KWARGS = frozenset({"weights"})


class ModelConfigError(DLFDError, ValueError):
    """A model was asked for with invalid settings (class count, head sizes, input size, ...)."""


def _check_head(num_classes: int, head_hidden: Sequence[int], head_dropout: float) -> tuple[int, ...]:
    """Validate head settings; return ``head_hidden`` as a tuple of ints."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ModelConfigError(f"num_classes must be an integer of at least 2, got {num_classes!r}")
    hidden = tuple(head_hidden)
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise ModelConfigError(f"head_hidden must be positive integers, got {head_hidden!r}")
    if not 0.0 <= float(head_dropout) < 1.0:
        raise ModelConfigError(f"head_dropout must be in [0, 1), got {head_dropout!r}")
    return hidden


class FaceClassifier(nn.Module):
    """Backbone embedding followed by a classification head over the known identities.

    Args:
        backbone: module mapping ``[B, 3, S, S]`` in ``[0, 1]`` to ``[B, D]``, with ``embedding_dim`` and
            ``input_size`` attributes.
        num_classes: number of identities C (at least 2).
        head_hidden: hidden widths of an MLP head, e.g. ``(256, 128)`` for the DLFD paper's 512→256→128→C;
            empty (the default) gives a single ``nn.Linear(D, C)``.
        head_dropout: dropout after each hidden ReLU of the MLP head (unused without hidden layers).
        backbone_name: registry name of the backbone (recorded in the saved config).
        backbone_kwargs: the architecture kwargs the backbone was created with (JSON-able; recorded likewise).
        pretrained: whether the backbone started from pretrained weights (informational).

    Attributes:
        backbone, head: the two parts. ``head`` is an ``nn.Linear`` or an ``nn.Sequential`` ending in one.
        num_classes, embedding_dim, input_size, backbone_name, backbone_kwargs, head_hidden, head_dropout.
        metadata: caller metadata read back by :func:`load_model` (empty for a fresh model).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        head_hidden: Sequence[int] = (),
        head_dropout: float = 0.5,
        backbone_name: str = "custom",
        backbone_kwargs: Mapping[str, Any] | None = None,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        hidden = _check_head(num_classes, head_hidden, head_dropout)
        embedding_dim = getattr(backbone, "embedding_dim", None)
        input_size = getattr(backbone, "input_size", None)
        if not isinstance(embedding_dim, int) or not isinstance(input_size, int):
            raise ModelConfigError("the backbone must have integer attributes embedding_dim and input_size")
        self.backbone = backbone
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.input_size = input_size
        self.backbone_name = backbone_name
        self.backbone_kwargs: dict[str, Any] = dict(backbone_kwargs or {})
        self.head_hidden = hidden
        self.head_dropout = float(head_dropout)
        self.pretrained = bool(pretrained)
        self.metadata: dict[str, Any] = {}
        if not hidden:
            self.head: nn.Module = nn.Linear(embedding_dim, num_classes)
        else:
            layers: list[nn.Module] = []
            width = embedding_dim
            for size in hidden:
                layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(self.head_dropout)]
                width = size
            layers.append(nn.Linear(width, num_classes))
            self.head = nn.Sequential(*layers)

    @property
    def output_layer(self) -> nn.Linear:
        """The final ``nn.Linear(…, C)`` of the head."""
        if isinstance(self.head, nn.Linear):
            return self.head
        last = self.head[-1]
        assert isinstance(last, nn.Linear)
        return last

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone embedding: ``[B, 3, S, S]`` in ``[0, 1]`` -> ``[B, D]``."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits: ``[B, 3, S, S]`` in ``[0, 1]`` -> ``[B, C]``."""
        return self.head(self.features(x))  # [B, C]


def create_model(
    backbone: str = "dlib_resnet",
    num_classes: int | None = None,
    *,
    pretrained: bool = True,
    head_hidden: Sequence[int] = (),
    head_dropout: float = 0.5,
    **backbone_kwargs: Any,
) -> FaceClassifier:
    """Create a :class:`FaceClassifier` on a registered backbone.

    Args:
        backbone: registry name (see :func:`~dlfd_core.models.registry.backbone_names`).
        num_classes: number of identities (required, at least 2).
        pretrained: start the backbone from its pretrained weights (some backbones have none and refuse).
        head_hidden: hidden widths of an MLP head; empty for a linear head.
        head_dropout: dropout in the MLP head.
        **backbone_kwargs: passed to the backbone factory (e.g. ``input_size=64`` for resnet18,
            ``weights=path`` for inception_resnet_v1).

    Raises:
        ModelConfigError: missing or invalid ``num_classes`` / head settings.
        UnknownNameError: unknown backbone.
        WeightsError: pretrained weights unavailable.
    """
    if num_classes is None:
        raise ModelConfigError("num_classes is required (the number of identities, at least 2)")
    _check_head(num_classes, head_hidden, head_dropout)
    module = create_backbone(backbone, pretrained=pretrained, **backbone_kwargs)
    arch_kwargs = {k: v for k, v in backbone_kwargs.items() if k not in _LOAD_ONLY_KWARGS}
    return FaceClassifier(
        module,
        num_classes,
        head_hidden=head_hidden,
        head_dropout=head_dropout,
        backbone_name=backbone,
        backbone_kwargs=arch_kwargs,
        pretrained=pretrained,
    )


def model_config(model: FaceClassifier) -> dict[str, Any]:
    """The JSON-able description that :func:`build_from_config` turns back into the same architecture.

    Raises:
        ModelConfigError: the backbone kwargs are not JSON-serialisable.
    """
    config: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "backbone": model.backbone_name,
        "backbone_kwargs": dict(model.backbone_kwargs),
        "num_classes": model.num_classes,
        "head": {"hidden": list(model.head_hidden), "dropout": model.head_dropout},
        "embedding_dim": model.embedding_dim,
        "input_size": model.input_size,
        "pretrained": model.pretrained,
    }
    try:
        json.dumps(config)
    except (TypeError, ValueError) as exc:
        raise ModelConfigError(f"model config is not JSON-serialisable: {exc}") from exc
    return config


def build_from_config(config: Mapping[str, Any]) -> FaceClassifier:
    """Build a freshly initialised :class:`FaceClassifier` from :func:`model_config` output.

    The backbone is always created with ``pretrained=False``: the weights come from wherever the config came from.

    Raises:
        ModelConfigError: the config is malformed.
        UnknownNameError: the backbone is not registered.
    """
    if not isinstance(config, Mapping) or config.get("format") != FORMAT_NAME:
        raise ModelConfigError(f"not a {FORMAT_NAME} config")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelConfigError(f"unsupported config version {config.get('format_version')!r}")
    try:
        name = config["backbone"]
        kwargs = dict(config.get("backbone_kwargs", {}))
        num_classes = config["num_classes"]
        head = config.get("head", {})
        hidden = tuple(head.get("hidden", ()))
        dropout = float(head.get("dropout", 0.5))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelConfigError(f"malformed model config: {exc!r}") from exc
    if not isinstance(name, str):
        raise ModelConfigError(f"malformed model config: backbone name {name!r}")
    backbone = create_backbone(name, pretrained=False, **kwargs)
    model = FaceClassifier(
        backbone,
        num_classes,
        head_hidden=hidden,
        head_dropout=dropout,
        backbone_name=name,
        backbone_kwargs=kwargs,
        pretrained=bool(config.get("pretrained", False)),
    )
    expected = (config.get("embedding_dim", model.embedding_dim), config.get("input_size", model.input_size))
    if expected != (model.embedding_dim, model.input_size):
        raise ModelConfigError(
            f"backbone {name!r} now gives embedding_dim/input_size {(model.embedding_dim, model.input_size)}, "
            f"the config says {expected}"
        )
    return model


def _tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors`` in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _pretrained_backbone_state(model: FaceClassifier) -> dict[str, torch.Tensor]:
    """The state dict (with ``backbone.`` prefixes) of the model's backbone as freshly loaded pretrained."""
    base = create_backbone(model.backbone_name, pretrained=True, **model.backbone_kwargs)
    return {f"backbone.{k}": v for k, v in base.state_dict().items()}


def save_model(
    model: FaceClassifier,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any],
    delta: bool = False,
) -> Path:
    """Save ``model`` (weights, config, ``metadata``) to one ``.safetensors`` file, atomically.

    The file is written to a temporary name in the same folder, synced, then renamed over ``path``; a failure
    leaves any earlier file at ``path`` untouched and no partial file behind.

    Args:
        model: the classifier.
        path: destination file (its folder is created if needed).
        metadata: JSON-serialisable caller data (method, seeds, metrics, ...), returned by :func:`load_model`
            as ``model.metadata``.
        delta: store only the tensors that differ from the pretrained backbone (plus the head); loading rebuilds
            the rest from the bundled pretrained weights. Keeps fine-tuned models small. Needs a pretrained model.

    Returns:
        The path written.

    Raises:
        ModelConfigError: ``metadata`` or the config is not JSON-serialisable.
    """
    from safetensors.torch import save

    target = Path(path)
    config = model_config(model)
    try:
        metadata_json = json.dumps(dict(metadata))
    except (TypeError, ValueError) as exc:
        raise ModelConfigError(f"metadata is not JSON-serialisable: {exc}") from exc
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if delta:
        if not model.pretrained:
            raise ModelConfigError("delta=True needs a model on a pretrained backbone")
        base = _pretrained_backbone_state(model)
        tensors = {k: v for k, v in tensors.items() if k not in base or not torch.equal(base[k], v)}
    header = {
        "delta": "pretrained" if delta else "none",
        "format": FORMAT_NAME,
        "config": json.dumps(config),
        "metadata": metadata_json,
        "sha256": _tensor_digest(tensors),
    }
    payload = save(tensors, metadata=header)
    with atomic_write(target) as handle:
        handle.write(payload)
    return target


def _read_file(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Header metadata and tensors of a safetensors file; WeightsError on any read problem."""
    from safetensors import safe_open

    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # truncated file, bad header, not safetensors at all, ...
        raise WeightsError(f"cannot read model file {path} (corrupted or not a safetensors file): {exc}") from exc
    if header.get("format") != FORMAT_NAME:
        raise WeightsError(f"{path} is not a dlfd_core model file (no {FORMAT_NAME} header)")
    return header, tensors


def read_model_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The caller metadata stored by :func:`save_model`, without building the model.

    Raises:
        WeightsError: unreadable or foreign file.
    """
    from safetensors import safe_open

    file = Path(path)
    if not file.is_file():
        raise WeightsError(f"model file not found: {file}")
    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            header = dict(handle.metadata() or {})
        if header.get("format") != FORMAT_NAME:
            raise WeightsError(f"{file} is not a dlfd_core model file (no {FORMAT_NAME} header)")
        return dict(json.loads(header["metadata"]))
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"cannot read model metadata from {file}: {exc}") from exc


def load_model(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> FaceClassifier:
    """Load a file written by :func:`save_model`.

    Args:
        path: the ``.safetensors`` file.
        device: where to put the model.

    Returns:
        The classifier in eval mode, with ``model.metadata`` set to the saved metadata.

    Raises:
        WeightsError: the file is missing, corrupted (checksum, header or tensors), or does not fit its config.
    """
    file = Path(path)
    header, tensors = _read_file(file)
    if header.get("sha256") != _tensor_digest(tensors):
        raise WeightsError(f"{file} is corrupted: its tensor checksum does not match")
    try:
        config = json.loads(header["config"])
        metadata = json.loads(header.get("metadata", "{}"))
        model = build_from_config(config)
    except (KeyError, ValueError, DLFDError) as exc:
        raise WeightsError(f"{file} has an unusable model config: {exc}") from exc
    try:
        if header.get("delta") == "pretrained":
            base = _pretrained_backbone_state(model)
            unknown = sorted(set(tensors) - set(model.state_dict()))
            if unknown:
                raise RuntimeError(f"unexpected tensors {unknown[:5]}")
            model.load_state_dict({**base, **tensors}, strict=True)
        else:
            model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{file} does not fit its own config ({config.get('backbone')!r}): {exc}") from exc
    model.metadata = dict(metadata) if isinstance(metadata, dict) else {}
    return model.to(device).eval()
