"""A model's outputs on every photo of a dataset, kept so that a split's parts are cut out rather than recomputed;
with a backbone that has a frozen prefix, the prefix's outputs are kept too (in memory, and on disk across starts),
so that models sharing the prefix are evaluated, trained and unlearned through their suffix only.

:class:`OutputSource` is what :func:`~dlfd_core.experiment.forget` asks of such a store. :class:`KeyedOutputs`
(from :func:`collect_all`) is the one the app and the benchmark use; :class:`ForwardOutputs` is the plain one (a
forward pass over each part, nothing kept)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..data import AlignedFaces, Split
from ..data.transforms import crops_to_tensor
from ..models.stages import run_prefix
from ..paths import atomic_write, cache_dir
from .evaluate import collect_parts, split_parts
from .outputs import SplitOutputs, collect_outputs

log = logging.getLogger(__name__)


class OutputSource(Protocol):
    """Where :func:`~dlfd_core.experiment.forget` gets models' outputs on a split, and the frozen prefix's outputs.

    ``prefix_outputs`` and ``embeddings`` may answer ``None`` (then the caller runs the model itself).
    """

    def collect(self, model: nn.Module, aligned: AlignedFaces, split: Split, *, device: Any) -> dict[str, SplitOutputs]:
        """``model``'s outputs on each part of ``split``."""
        ...

    def prefix_outputs(
        self, model: nn.Module, keys: Sequence[str], aligned: AlignedFaces | None = None
    ) -> torch.Tensor | None:
        """The frozen prefix's outputs of the photos ``keys`` (a :data:`~dlfd_core.train.Embedder`), or ``None``."""
        ...

    def embeddings(self, model: nn.Module, keys: Sequence[str]) -> torch.Tensor | None:
        """``model``'s embeddings of the photos ``keys`` (a :data:`~dlfd_core.train.Embedder`), or ``None``."""
        ...


class ForwardOutputs:
    """The plain :class:`OutputSource`: a forward pass over each part of the split, no shortcut, no outputs kept
    (only the last split's input tensors, so that evaluating several models of one run builds them once)."""

    def __init__(self) -> None:
        self._last: tuple[AlignedFaces, Split, dict[str, Any]] | None = None

    def collect(self, model: nn.Module, aligned: AlignedFaces, split: Split, *, device: Any) -> dict[str, SplitOutputs]:
        if self._last is None or self._last[0] is not aligned or self._last[1] is not split:
            self._last = (aligned, split, split_parts(aligned, split))
        return collect_parts(model, self._last[2], device=device)

    def prefix_outputs(
        self, model: nn.Module, keys: Sequence[str], aligned: AlignedFaces | None = None
    ) -> torch.Tensor | None:
        return None

    def embeddings(self, model: nn.Module, keys: Sequence[str]) -> torch.Tensor | None:
        return None


def collect_all(
    model: nn.Module,
    aligned: AlignedFaces,
    split: Split,
    *,
    device: str | torch.device,
    reuse: KeyedOutputs | None = None,
    cache: bool = False,
    source_digest: str | None = None,
) -> KeyedOutputs:
    """The model's outputs on every aligned crop of a known or never-trained person (labels from ``split``; -1 for
    the unseen and validation people).

    With a backbone that has a frozen prefix (``prefix`` / ``suffix`` / ``prefix_state``, e.g. the dlib ResNet), the
    prefix's output for every photo is kept too, so that models which share it are evaluated by their suffix only.
    ``reuse``: earlier outputs whose prefix outputs are taken for the photos they cover when the prefixes match (an
    enrolment then runs the prefix on the new photos only). ``cache``: keep the prefix outputs on disk
    (:func:`prefix_cache_path`) and reuse them at the next start (on LFW, 0.2 s instead of about 30 s on 2 CPU cores);
    ``source_digest`` names the crops for the cache's key (a packed bundle's index digest) so that they need not be
    hashed.
    """
    index = {identity: i for i, identity in enumerate(split.known)}
    unseen = set(split.never_trained)
    rows = [i for i, identity in enumerate(aligned.identities) if identity in index or identity in unseen]
    labels = np.asarray([index.get(aligned.identities[i], -1) for i in rows], dtype=np.int64)
    identities = [aligned.identities[i] for i in rows]
    keys = tuple(aligned.keys[i] for i in rows)

    def inputs(positions: list[int]) -> torch.Tensor:
        return crops_to_tensor(
            aligned.crops[np.asarray([rows[j] for j in positions], dtype=np.int64)], model.input_size
        )

    backbone = getattr(model, "backbone", None)
    if not all(hasattr(backbone, name) for name in ("prefix", "suffix", "prefix_state")):
        everything = inputs(list(range(len(rows))))
        return KeyedOutputs(collect_outputs(model, everything, labels, identities, device=device), keys)
    known = reuse.prefix if reuse is not None and reuse.prefix is not None and reuse.prefix.matches(model) else None
    at = {key: i for i, key in enumerate(reuse.keys)} if known is not None else {}
    stored = None
    if cache and known is None:
        path = prefix_cache_path(model, aligned, rows, source_digest)
        stored = _read_prefix_cache(path, len(rows))
        if stored is not None:
            known = PrefixCache({}, stored)
            at = {key: i for i, key in enumerate(keys)}
    missing = [j for j, key in enumerate(keys) if key not in at]
    computed = [run_prefix(model, inputs(missing), device).cpu()] if missing else []
    if known is None:
        activations = torch.cat(computed)
    else:
        activations = torch.empty((len(keys), *known.activations.shape[1:]), dtype=known.activations.dtype)
        hit = [j for j, key in enumerate(keys) if key in at]
        activations[hit] = known.activations[[at[keys[j]] for j in hit]]
        if missing:
            activations[missing] = torch.cat(computed)
    if cache and stored is None:
        _write_prefix_cache(prefix_cache_path(model, aligned, rows, source_digest), activations)
    prefix = PrefixCache({k: v.detach().cpu().clone() for k, v in backbone.prefix_state().items()}, activations)
    return KeyedOutputs(_suffix_outputs(model, activations, labels, identities, device), keys, prefix)


PREFIX_CACHE_FORMAT = 1


def prefix_cache_path(
    model: nn.Module, aligned: AlignedFaces, rows: Sequence[int], source_digest: str | None = None
) -> Path:
    """Where the prefix outputs of ``model`` on those crops are cached: named by a sha256 of the crops (or of
    ``source_digest``, a digest that fixes them, such as a packed bundle's), their keys, the prefix's weights and the
    torch version (a different build may round differently)."""
    digest = hashlib.sha256(f"{PREFIX_CACHE_FORMAT}|{torch.__version__}|".encode())
    for name, tensor in sorted(model.backbone.prefix_state().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    index = np.asarray(rows, dtype=np.int64)
    digest.update("\n".join(aligned.keys[i] for i in index).encode())
    if source_digest is not None:
        digest.update(f"|source {source_digest}".encode())
    else:
        whole = len(index) == len(aligned.crops) and bool(np.all(index == np.arange(len(index))))
        digest.update(memoryview(aligned.crops if whole else np.ascontiguousarray(aligned.crops[index])).cast("B"))
    return cache_dir() / "prefix" / f"{model.backbone_name}-{digest.hexdigest()[:32]}.npy"


def _read_prefix_cache(path: Path, rows: int) -> torch.Tensor | None:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("prefix-output cache %s is unreadable (%s); recomputing it", path, error)
        return None
    if array.dtype != np.float32 or array.ndim != 4 or array.shape[0] != rows:
        log.warning("prefix-output cache %s does not fit (%s %s); recomputing it", path, array.dtype, array.shape)
        return None
    log.info("prefix outputs read from %s", path)
    return torch.from_numpy(array)


def _write_prefix_cache(path: Path, activations: torch.Tensor) -> None:
    try:
        with atomic_write(path) as handle:
            np.save(handle, activations.contiguous().numpy(), allow_pickle=False)
    except OSError as error:
        log.warning("could not write the prefix-output cache %s: %s", path, error)


def _suffix_outputs(
    model: nn.Module, activations: torch.Tensor, labels: np.ndarray, identities: Sequence[str], device: Any
) -> SplitOutputs:
    """:class:`SplitOutputs` from the frozen prefix's outputs: the backbone's suffix, then the head."""
    return collect_outputs(
        model, activations, labels, identities, batch_size=100, device=device, features=model.backbone.suffix
    )


@dataclass(frozen=True, eq=False)
class PrefixCache:
    """A backbone's frozen-prefix output for many photos, and the prefix weights it was computed with."""

    reference: dict[str, torch.Tensor]
    activations: torch.Tensor

    def matches(self, model: nn.Module) -> bool:
        """Whether ``model``'s prefix has exactly the reference weights (so its prefix outputs are these)."""
        state = getattr(getattr(model, "backbone", None), "prefix_state", None)
        if state is None:
            return False
        current = state()
        return current.keys() == self.reference.keys() and all(
            torch.equal(current[k].detach().cpu(), v) for k, v in self.reference.items()
        )


@dataclass(frozen=True, eq=False)
class KeyedOutputs:
    """A model's outputs on many photos with each row's image key, so a split's parts are cut out, not recomputed."""

    outputs: SplitOutputs
    keys: tuple[str, ...]
    prefix: PrefixCache | None = None

    def _rows(self, aligned: AlignedFaces, split: Split) -> dict[str, np.ndarray]:
        rows = {key: i for i, key in enumerate(self.keys)}
        return {
            name: np.asarray([rows[k] for k in keys], dtype=np.int64) for name, keys in split.part_keys(aligned).items()
        }

    def parts(self, aligned: AlignedFaces, split: Split) -> dict[str, SplitOutputs]:
        """The per-part outputs of ``split`` (what :func:`~dlfd_core.evaluate.evaluate.collect_parts` would give)."""
        return {name: self.outputs.subset(rows) for name, rows in self._rows(aligned, split).items()}

    def collect(self, model: nn.Module, aligned: AlignedFaces, split: Split, *, device: Any) -> dict[str, SplitOutputs]:
        """Another model's per-part outputs on ``split``: from the cached prefix outputs when its prefix is the same
        (about 5x faster on the dlib ResNet), by a full forward pass otherwise."""
        if self.prefix is None or not self.prefix.matches(model):
            return collect_parts(model, split_parts(aligned, split), device=device)
        return {
            name: _suffix_outputs(
                model,
                self.prefix.activations[torch.as_tensor(rows)],
                self.outputs.labels[rows],
                [self.outputs.identities[i] for i in rows],
                device,
            )
            for name, rows in self._rows(aligned, split).items()
        }

    def prefix_outputs(
        self, model: nn.Module, keys: Sequence[str], aligned: AlignedFaces | None = None
    ) -> torch.Tensor | None:
        """The cached frozen-prefix outputs of the photos ``keys`` (on the CPU) when ``model``'s prefix is the one they
        were computed with, else ``None`` (a :data:`~dlfd_core.train.Embedder` for the gold model's training).
        Photos not in the cache are computed from ``aligned`` when it is given (an enrolment's new photos); without
        it, a key missing from the cache gives ``None``."""
        if self.prefix is None or not self.prefix.matches(model):
            return None
        at = {key: i for i, key in enumerate(self.keys)}
        missing = [j for j, key in enumerate(keys) if key not in at]
        if missing and aligned is None:
            return None
        cached = [j for j, key in enumerate(keys) if key in at]
        out = torch.empty((len(keys), *self.prefix.activations.shape[1:]), dtype=self.prefix.activations.dtype)
        out[cached] = self.prefix.activations[torch.as_tensor([at[keys[j]] for j in cached], dtype=torch.long)]
        if missing:
            fresh = crops_to_tensor(aligned.select([keys[j] for j in missing]), model.input_size)
            out[missing] = run_prefix(model, fresh, next(model.parameters()).device).cpu()
        return out

    def embeddings(self, model: nn.Module, keys: Sequence[str]) -> torch.Tensor | None:
        """``model``'s backbone embeddings of the photos ``keys`` from the cached prefix outputs (computed where the
        model is, returned on the CPU), or ``None`` when its prefix differs (a :data:`~dlfd_core.train.Embedder` for
        the gold model)."""
        if self.prefix is None or not self.prefix.matches(model):
            return None
        at = {key: i for i, key in enumerate(self.keys)}
        rows = [at[k] for k in keys]
        device = next(model.parameters()).device
        identities = [self.outputs.identities[i] for i in rows]
        activations = self.prefix.activations[torch.as_tensor(rows)]
        outputs = _suffix_outputs(model, activations, self.outputs.labels[rows], identities, device)
        return torch.tensor(outputs.features)  # a copy: the outputs are read-only
