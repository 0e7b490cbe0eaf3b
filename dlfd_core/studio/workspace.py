"""The bundled default, loaded once per process and shared read-only by every session."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..bundled import DEFAULT_BUNDLE, Bundle
from ..bundled import bundle as get_bundle
from ..data import AlignedFaces, FaceDataset, Split, load_split
from ..env import resolve_device
from ..errors import DataError
from ..evaluate.cache import KeyedOutputs, collect_all
from ..evaluate.outputs import SplitOutputs
from ..models import load_model
from ..progress import ProgressFn, no_progress, scaled
from .uploads import UploadOwners

if TYPE_CHECKING:
    from ..references import PersonReferences

log = logging.getLogger(__name__)

GOLD_CACHE_SIZE = 4


class GoldCache:
    """A small thread-safe LRU of gold models and their outputs, keyed by (people forgotten, seed, backbone)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], tuple[nn.Module, dict[str, SplitOutputs]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> tuple[nn.Module, dict[str, SplitOutputs]] | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: tuple[Any, ...], model: nn.Module, outputs: Mapping[str, SplitOutputs]) -> None:
        with self._lock:
            self._items[key] = (model, dict(outputs))
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True, eq=False)
class Workspace:
    """The bundled default, shared read-only by every session.

    Attributes:
        dataset: the face dataset (the bundle's).
        aligned: its aligned crops.
        split: the default split (no forget request).
        model: the shipped original model, in eval mode; never trained in place.
        model_path: where it was loaded from.
        device: where runs go (CUDA when present).
        outputs_future: the original model's outputs on every photo, computed once (in the background when
            :func:`load_workspace` was asked to: see :attr:`outputs` and :attr:`ready`).
        load_seconds: how long loading took.
        bundle: which bundled dataset this is (its title, credit, example person).
        gold_cache: gold models (and their outputs) for forgetting bundled people, shared by the sessions that have
            not enrolled anyone: they are trained on the bundled faces only, so they hold nobody's upload.
        references: the bundle's shipped reference statistics for the verdict's LiRA attack, when its file is
            there and fits these photos (``None`` otherwise: the verdict then uses the reference-free attack).
    """

    dataset: FaceDataset
    aligned: AlignedFaces
    split: Split
    model: nn.Module
    model_path: Path
    device: torch.device
    outputs_future: concurrent.futures.Future[KeyedOutputs]
    load_seconds: float
    bundle: Bundle = field(default_factory=lambda: get_bundle("orl"))
    gold_cache: GoldCache = field(default_factory=lambda: GoldCache(GOLD_CACHE_SIZE * 2), compare=False)
    upload_owners: UploadOwners = field(default_factory=lambda: UploadOwners(), compare=False)
    references: PersonReferences | None = None

    @property
    def outputs(self) -> KeyedOutputs:
        """The original model's outputs on every photo (waits while they are still being computed)."""
        return self.outputs_future.result()

    @property
    def ready(self) -> bool:
        """Whether :attr:`outputs` is computed (a run started before waits for it)."""
        return self.outputs_future.done()

    def wait_ready(self, progress: ProgressFn = no_progress) -> None:
        """Wait for :attr:`outputs`, saying so through ``progress`` when there is a wait."""
        if not self.ready:
            progress(0.0, f"preparing the model's outputs on all {len(self.aligned)} photos (once, after a start)")
        self.outputs_future.result()

    @property
    def description(self) -> str:
        """One line on what the model is and where it runs."""
        return self.describe()

    def describe(self, where: str | None = None) -> str:
        """:attr:`description`, with ``where`` the runs go when not to this workspace's device."""
        if where is None:
            where = f"GPU ({torch.cuda.get_device_name(0)})" if self.device.type == "cuda" else "CPU"
        return (
            f"{self.bundle.about} The model: dlib's pretrained face embedding ({self.model.backbone_name}, last stage "
            f"fine-tuned) with a classifier over the {self.split.num_classes} people, trained on "
            f"{len(self.split.train_keys)} of their photos; {len(self.split.never_trained)} more people are never "
            f"trained on (the strangers). Runs on the {where}. Faces: {self.bundle.credit}."
        )

    def gallery(self) -> list[tuple[np.ndarray, str]]:
        """One (first crop, identity) per known identity, in class order."""
        first: dict[str, int] = {}
        for index, identity in enumerate(self.aligned.identities):
            first.setdefault(identity, index)
        return [(self.aligned.crops[first[identity]], identity) for identity in self.split.known]


def _shipped_references(
    chosen: Bundle, aligned: AlignedFaces, split: Split, split_path: Path, model_path: Path
) -> PersonReferences | None:
    """The bundle's reference statistics, for its own split file and shipped model (whose recipe they were trained
    with), when they name that split and cover only its photos; ``None`` otherwise."""
    from ..references import PersonReferences

    path = chosen.references_path
    if model_path != chosen.model_path or split_path != chosen.split_path or not path.is_file():
        return None
    try:
        references = PersonReferences.load(path)
    except DataError as error:
        log.warning("reference statistics not used: %s", error)
        return None
    meta = references.meta
    if (
        meta.get("dataset") != split.dataset
        or meta.get("split_seed") != split.seed
        or not set(references.keys) <= set(aligned.keys)
    ):
        log.warning("reference statistics %s belong to another split or other photos; not used", path)
        return None
    return references


def load_workspace(
    bundle: str = DEFAULT_BUNDLE,
    *,
    split_path: str | Path | None = None,
    model_path: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: ProgressFn = no_progress,
    background: bool = False,
) -> Workspace:
    """Load a bundled dataset (:mod:`dlfd_core.bundled`: ``lfw`` or ``orl``) with its default split and shipped model,
    and the model's outputs on every photo. Offline.

    Args:
        bundle: the bundled dataset's name.
        split_path, model_path: another split / model on the same faces (default: the bundle's own).
        device: where runs go (CUDA when present, by default).
        progress: receives the fraction done.
        background: return as soon as the faces and the model are loaded and compute the model's outputs on every
            photo in a background thread (:attr:`Workspace.ready`); a web page is then usable at once, and only a
            run started before they are ready waits (on LFW, about 30 s on 2 CPU cores at a very first start, 0.2 s
            from the disk cache after).

    Raises:
        UnknownNameError: no such bundle.
        DataError: the bundled files are missing or damaged.
    """
    start = time.perf_counter()
    chosen = get_bundle(bundle)
    device = resolve_device(device)
    progress(0.0, "loading the faces")
    dataset, aligned = chosen.load(progress=scaled(progress, 0.0, 0.3))
    split_path = Path(split_path) if split_path is not None else chosen.split_path
    model_path = Path(model_path) if model_path is not None else chosen.model_path
    split = load_split(split_path)
    progress(0.3, "loading the model")
    model = load_model(model_path, device=device).eval()
    progress(0.35, "computing the original model's outputs")

    digest = chosen.content_digest()

    def compute() -> KeyedOutputs:
        return collect_all(model, aligned, split, device=device, cache=True, source_digest=digest)

    outputs: concurrent.futures.Future[KeyedOutputs]
    if background:
        outputs = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"{chosen.name}-outputs").submit(compute)
    else:
        outputs = concurrent.futures.Future()
        outputs.set_result(compute())
    progress(1.0, "ready")
    return Workspace(
        references=_shipped_references(chosen, aligned, split, split_path, model_path),
        dataset=dataset,
        aligned=aligned,
        split=split,
        model=model,
        model_path=model_path,
        device=device,
        outputs_future=outputs,
        load_seconds=time.perf_counter() - start,
        bundle=chosen,
    )
