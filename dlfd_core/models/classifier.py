"""A face classifier (registered backbone + classification head) and its safetensors file format.

A saved model is one ``.safetensors`` file: the tensors of ``state_dict()`` plus, in the file's string metadata,
the JSON config that rebuilds the architecture (:func:`model_config`), the caller's JSON metadata, and a SHA-256
of the tensor contents so that a damaged file is refused instead of silently loaded.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DLFDError, WeightsError
from ..paths import atomic_write
from .registry import backbone_factory, create_backbone

__all__ = [
    "FORMAT_NAME",
    "FaceClassifier",
    "ModelConfigError",
    "build_from_config",
    "create_model",
    "load_model",
    "model_config",
    "read_model_config",
    "read_model_metadata",
    "save_model",
    "validate_config",
]

FORMAT_NAME = "dlfd_core.FaceClassifier"
FORMAT_VERSION = 1

# Backbone kwargs that only say where pretrained weights come from; they are not part of the architecture
# and are left out of the saved config (a saved file carries its own weights).
_LOAD_ONLY_KWARGS = frozenset({"weights"})

# Limits a model config must respect before anything is built from it (a file's header is not trusted).
MAX_NUM_CLASSES = 100_000
MAX_HEAD_LAYERS = 8
MAX_HEAD_WIDTH = 65_536
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_INPUT_SIZE = 1024  # input side in pixels: faces are aligned to far smaller crops
MAX_EMBEDDING_DIM = 65_536
_MAX_KWARG_TEXT = 200
# Parts of a backbone argument's name that say it names a file, a folder or a download: never taken from a config.
_PATH_LIKE_NAMES = ("weights", "path", "file", "checkpoint", "dir", "url", "root")
# Bytes per element of each safetensors dtype.
_DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _backbone_arguments(name: str) -> tuple[set[str], set[str]]:
    """(architecture kwargs a config may give backbone ``name``, kwargs refused because they name files)."""
    try:
        parameters = inspect.signature(backbone_factory(name)).parameters.values()
    except (TypeError, ValueError):  # a factory without a signature: accept no kwargs
        return set(), set()
    names = {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.name != "pretrained"
    }
    files = {n for n in names if n in _LOAD_ONLY_KWARGS or any(part in n.lower() for part in _PATH_LIKE_NAMES)}
    return names - files, files


def validate_config(config: Any) -> dict[str, Any]:
    """Check a model config (e.g. read from a file's header) before anything is built from it.

    Accepted: a registered backbone; ``backbone_kwargs`` that the backbone's factory takes and that do not name a
    file (``weights`` and the like are refused: a model file carries its own weights and may never make the loader
    open another path), each a short JSON scalar; ``num_classes`` an integer in [2, :data:`MAX_NUM_CLASSES`]; at most
    :data:`MAX_HEAD_LAYERS` hidden head widths, each in [1, :data:`MAX_HEAD_WIDTH`]; a dropout in [0, 1); an input
    size up to :data:`MAX_INPUT_SIZE` and an embedding size up to :data:`MAX_EMBEDDING_DIM`.

    Returns:
        The config as a plain dict.

    Raises:
        ModelConfigError: naming the first bad field and value.
        UnknownNameError: the backbone is not registered.
    """
    if not isinstance(config, Mapping) or config.get("format") != FORMAT_NAME:
        raise ModelConfigError(f"not a {FORMAT_NAME} config")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelConfigError(
            f"unsupported config version {config.get('format_version')!r} (this dlfd_core reads {FORMAT_VERSION})"
        )
    name = config.get("backbone")
    if not isinstance(name, str):
        raise ModelConfigError(f"malformed model config: backbone name {name!r} is not text")
    allowed, files = _backbone_arguments(name)  # UnknownNameError for an unregistered backbone
    kwargs = config.get("backbone_kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise ModelConfigError(f"backbone_kwargs must be an object, got {kwargs!r:.80}")
    for key, value in kwargs.items():
        if key in files:
            raise ModelConfigError(
                f"backbone_kwargs {key!r} names a file to load; a model file carries its own weights and may not make "
                "the loader open another path"
            )
        if key not in allowed:
            takes = ", ".join(sorted(allowed)) if allowed else "none"
            raise ModelConfigError(f"backbone {name!r} has no argument {key!r:.80} (backbone_kwargs it takes: {takes})")
        if isinstance(value, float) and not math.isfinite(value):
            raise ModelConfigError(f"backbone_kwargs {key!r} must be finite, got {value!r}")
        if key == "input_size" and not (_is_int(value) and 1 <= value <= MAX_INPUT_SIZE):
            raise ModelConfigError(
                f"backbone_kwargs input_size must be an integer from 1 to {MAX_INPUT_SIZE}, got {value!r:.40}"
            )
        if _is_int(value) and abs(value) > 2**31:
            raise ModelConfigError(f"backbone_kwargs {key!r} is out of range: {value}")
        if isinstance(value, str) and len(value) > _MAX_KWARG_TEXT:
            raise ModelConfigError(f"backbone_kwargs {key!r} is longer than {_MAX_KWARG_TEXT} characters")
        if not isinstance(value, (bool, int, float, str)):
            raise ModelConfigError(f"backbone_kwargs {key!r} must be a number, text or true/false, got {value!r:.80}")
    num_classes = config.get("num_classes")
    if not _is_int(num_classes) or not 2 <= num_classes <= MAX_NUM_CLASSES:
        raise ModelConfigError(
            f"num_classes must be an integer from 2 to {MAX_NUM_CLASSES} (the most classes a model file may have), "
            f"got {num_classes!r:.80}"
        )
    head = config.get("head", {})
    if not isinstance(head, Mapping):
        raise ModelConfigError(f"head must be an object, got {head!r:.80}")
    hidden = head.get("hidden", [])
    if (
        not isinstance(hidden, (list, tuple))
        or len(hidden) > MAX_HEAD_LAYERS
        or not all(_is_int(h) and 1 <= h <= MAX_HEAD_WIDTH for h in hidden)
    ):
        raise ModelConfigError(
            f"head hidden widths must be at most {MAX_HEAD_LAYERS} integers from 1 to {MAX_HEAD_WIDTH}, "
            f"got {hidden!r:.80}"
        )
    dropout = head.get("dropout", 0.5)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ModelConfigError(f"head dropout must be a number in [0, 1), got {dropout!r:.80}")
    for key, limit in (("embedding_dim", MAX_EMBEDDING_DIM), ("input_size", MAX_INPUT_SIZE)):
        if key in config and not (_is_int(config[key]) and 1 <= config[key] <= limit):
            raise ModelConfigError(f"{key} must be an integer from 1 to {limit}, got {config[key]!r:.80}")
    if not isinstance(config.get("pretrained", False), bool):
        raise ModelConfigError(f"pretrained must be true or false, got {config.get('pretrained')!r:.80}")
    return dict(config)


def build_from_config(config: Mapping[str, Any]) -> FaceClassifier:
    """Build a freshly initialised :class:`FaceClassifier` from :func:`model_config` output.

    The backbone is always created with ``pretrained=False``: the weights come from wherever the config came from.
    The config is checked with :func:`validate_config` first.

    Raises:
        ModelConfigError: the config is malformed.
        UnknownNameError: the backbone is not registered.
    """
    validate_config(config)
    backbone = create_backbone(config["backbone"], pretrained=False, **dict(config.get("backbone_kwargs", {})))
    return _assemble(config, backbone)


def _assemble(config: Mapping[str, Any], backbone: nn.Module) -> FaceClassifier:
    """A classifier on ``backbone`` with the head of a config checked by :func:`validate_config`."""
    name = config["backbone"]
    head = config.get("head", {})
    model = FaceClassifier(
        backbone,
        config["num_classes"],
        head_hidden=tuple(head.get("hidden", ())),
        head_dropout=float(head.get("dropout", 0.5)),
        backbone_name=name,
        backbone_kwargs=dict(config.get("backbone_kwargs", {})),
        pretrained=bool(config.get("pretrained", False)),
    )
    expected = (config.get("embedding_dim", model.embedding_dim), config.get("input_size", model.input_size))
    if expected != (model.embedding_dim, model.input_size):
        raise ModelConfigError(
            f"backbone {name!r} now gives embedding_dim/input_size {(model.embedding_dim, model.input_size)}, "
            f"the config says {expected}"
        )
    return model


def _head_shapes(config: Mapping[str, Any], embedding_dim: int) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of the head a checked config describes (computed: nothing is allocated)."""
    hidden = list(config.get("head", {}).get("hidden", ()))
    widths = [embedding_dim, *hidden, config["num_classes"]]
    if not hidden:
        return {"head.weight": (widths[1], widths[0]), "head.bias": (widths[1],)}
    shapes: dict[str, tuple[int, ...]] = {}
    for layer, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        shapes[f"head.{3 * layer}.weight"] = (width_out, width_in)  # Linear, ReLU, Dropout per hidden layer
        shapes[f"head.{3 * layer}.bias"] = (width_out,)
    return shapes


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


def _parse_json(text: str | bytes, what: str, file: Path) -> Any:
    """``json.loads`` that turns every failure (bad JSON, nesting too deep) into a WeightsError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise WeightsError(f"{file}: its {what} is nested too deeply to be a dlfd_core model file") from None
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{file}: its {what} is not valid JSON ({exc})") from None


def _looks_like_pickle(prefix: bytes) -> bool:
    """A zip (torch.save's format) or a pickle stream (protocol 2 and later)."""
    return prefix.startswith(b"PK\x03\x04") or (len(prefix) >= 2 and prefix[0] == 0x80 and 2 <= prefix[1] <= 5)


def _read_header(file: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """Read and check a safetensors file's header without reading any tensor.

    Returns:
        The string metadata and, per tensor, its shape.

    Raises:
        WeightsError: missing file, a pickle or other foreign file, a header that is too large, not JSON, or
            malformed (unknown dtype, shapes or offsets that do not fit the file), or no dlfd_core model header.
    """
    if not file.exists():
        raise WeightsError(f"model file not found: {file}")
    if not file.is_file():
        raise WeightsError(f"{file} is not a file; give a .safetensors model file")
    try:
        size = file.stat().st_size
        with open(file, "rb") as handle:
            prefix = handle.read(8)
            length = int.from_bytes(prefix, "little")
            if _looks_like_pickle(prefix) and (len(prefix) < 8 or length > min(size - 8, MAX_HEADER_BYTES)):
                raise WeightsError(
                    f"{file} is a pickle / torch.save checkpoint, not a safetensors model file; dlfd_core never "
                    "unpickles files (they can run code): save models with dlfd_core's save_model"
                )
            if len(prefix) < 8:
                raise WeightsError(f"{file} is not a safetensors file: it has only {size} bytes")
            if length > min(size - 8, MAX_HEADER_BYTES):
                raise WeightsError(
                    f"{file} is not a safetensors file (or is truncated): its header claims {length} bytes, "
                    f"the file has {size - 8} after the length field (at most {MAX_HEADER_BYTES} allowed)"
                )
            raw = handle.read(length)
    except OSError as exc:
        raise WeightsError(f"cannot read model file {file}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WeightsError(f"{file} is not a safetensors file: its header is not UTF-8 JSON") from None
    header = _parse_json(text, "safetensors header", file)
    if not isinstance(header, dict):
        raise WeightsError(f"{file} is not a safetensors file: its header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise WeightsError(f"{file}: its safetensors __metadata__ must map names to text")
    if metadata.get("format") != FORMAT_NAME:
        raise WeightsError(f"{file} is not a dlfd_core model file (no {FORMAT_NAME} header)")
    data_size = size - 8 - length
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise WeightsError(f"{file}: header entry {name!r:.80} is not a tensor description")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _DTYPE_BYTES:
            raise WeightsError(f"{file}: tensor {name!r:.80} has unknown dtype {dtype!r:.40}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(_is_int(d) and d >= 0 for d in shape):
            raise WeightsError(f"{file}: tensor {name!r:.80} has a malformed shape {shape!r:.80}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size
            or offsets[1] - offsets[0] != math.prod(shape) * _DTYPE_BYTES[dtype]
        ):
            raise WeightsError(
                f"{file}: tensor {name!r:.80} (shape {shape}, {dtype}) does not fit its data offsets "
                f"{offsets!r:.80} in a file with {data_size} data bytes (truncated or corrupted)"
            )
        shapes[name] = tuple(shape)
    return dict(metadata), shapes


def _config_from_header(file: Path, header: Mapping[str, str]) -> dict[str, Any]:
    """The checked model config of a file's header (nothing is built)."""
    if "config" not in header:
        raise WeightsError(f"{file} has no model config in its header")
    config = _parse_json(header["config"], "model config", file)
    try:
        return validate_config(config)
    except DLFDError as exc:
        raise WeightsError(f"{file} has an unusable model config: {exc}") from exc


def _check_shapes(
    file: Path, config: Mapping[str, Any], backbone: nn.Module, shapes: Mapping[str, tuple[int, ...]], delta: bool
) -> None:
    """The file's tensors must be the state dict of ``config``'s architecture (in delta mode: all of the head and
    some of the backbone), with the same shapes; checked before any tensor is read or the head is allocated."""
    embedding_dim = getattr(backbone, "embedding_dim", None)
    if not _is_int(embedding_dim):
        raise WeightsError(f"{file}: backbone {config['backbone']!r} has no integer embedding_dim")
    head = _head_shapes(config, embedding_dim)
    expected = {f"backbone.{k}": tuple(v.shape) for k, v in backbone.state_dict().items()} | head
    where = f"{file} does not fit its own config ({config['backbone']!r}, {config['num_classes']} classes)"
    unknown = sorted(set(shapes) - set(expected))
    if unknown:
        raise WeightsError(f"{where}: unexpected tensors {unknown[:5]}")
    missing = sorted((set(head) if delta else set(expected)) - set(shapes))
    if missing:
        raise WeightsError(f"{where}: missing tensors {missing[:5]}")
    for name, shape in shapes.items():
        if shape != expected[name]:
            raise WeightsError(
                f"{where}: tensor {name!r} has shape {list(shape)}, the architecture needs {list(expected[name])}"
            )


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # truncated file, bad header, not safetensors at all, ...
        raise WeightsError(f"cannot read model file {file} (corrupted or not a safetensors file): {exc}") from exc


def read_model_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The caller metadata stored by :func:`save_model`, without building the model or reading its tensors.

    Raises:
        WeightsError: unreadable or foreign file.
    """
    file = Path(path)
    header, _ = _read_header(file)
    metadata = _parse_json(header.get("metadata", "{}"), "metadata", file)
    if not isinstance(metadata, dict):
        raise WeightsError(f"cannot read model metadata from {file}: it is not a JSON object")
    return dict(metadata)


def read_model_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked architecture config of a model file (see :func:`validate_config`), from its header only:
    no tensor is read and nothing is built, so callers can check e.g. the class count before loading.

    Raises:
        WeightsError: unreadable or foreign file, or an unusable config.
    """
    file = Path(path)
    header, _ = _read_header(file)
    return _config_from_header(file, header)


def load_model(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> FaceClassifier:
    """Load a file written by :func:`save_model`.

    The header is checked before anything is allocated or any other file is opened: a safetensors header within
    :data:`MAX_HEADER_BYTES`, the dlfd_core format, a config that passes :func:`validate_config` (registered
    backbone, no file paths, bounded sizes), and tensor names and shapes that fit that config. Pickle files are
    refused, never unpickled.

    Args:
        path: the ``.safetensors`` file.
        device: where to put the model.

    Returns:
        The classifier in eval mode, with ``model.metadata`` set to the saved metadata.

    Raises:
        WeightsError: the file is missing, corrupted (checksum, header or tensors), or does not fit its config.
    """
    file = Path(path)
    header, shapes = _read_header(file)
    delta = header.get("delta", "none")
    if delta not in ("none", "pretrained"):
        raise WeightsError(f"{file}: unknown delta mode {delta!r:.40} in its header (expected none or pretrained)")
    config = _config_from_header(file, header)
    metadata = _parse_json(header.get("metadata", "{}"), "metadata", file)
    try:
        backbone = create_backbone(config["backbone"], pretrained=False, **dict(config.get("backbone_kwargs", {})))
    except DLFDError as exc:
        raise WeightsError(f"{file} has an unusable model config: {exc}") from exc
    _check_shapes(file, config, backbone, shapes, delta == "pretrained")
    tensors = _read_tensors(file)
    if header.get("sha256") != _tensor_digest(tensors):
        raise WeightsError(f"{file} is corrupted: its tensor checksum does not match")
    try:
        model = _assemble(config, backbone)
    except DLFDError as exc:
        raise WeightsError(f"{file} has an unusable model config: {exc}") from exc
    try:
        if delta == "pretrained":
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
