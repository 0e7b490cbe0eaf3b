"""What the web app does, without the web: the bundled workspace, per-session state, enrolment, forgetting runs.

``app.py`` is a thin Gradio layer over this module (and :mod:`dlfd_core.viz` for the figures). Everything here is
plain Python and can be driven from a notebook or a test:

* :class:`Workspace`: the bundled default (ORL, aligned; the default split; the shipped original model), loaded once
  and shared read-only by every session.
* :class:`Session`: one person's copy of the working state: the model they forget from (the original, or one that
  also knows the face set they enrolled), their enrolled faces, a cache of gold models, every run they made, and a
  private folder for downloads; :meth:`Session.close` deletes the folder.
* :func:`enrol`: detect and align an uploaded face set, add the person as a new identity (the original recipe
  retrained with them included), and show the model recognising their held-out photos.
* :func:`run_forget`: forget identities with a registered method, evaluate before / after / gold, and write the
  report (JSON and Markdown) and the unlearned model (safetensors) into the session's folder.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import html
import io
import json
import logging
import math
import re
import shutil
import tempfile
import threading
import time
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .bundled import DEFAULT_BUNDLE, Bundle
from .bundled import bundle as get_bundle
from .data import AlignedFaces, FaceDataset, Split, load_split, with_forget_identities
from .data.transforms import crops_to_tensor
from .env import environment, warm_up
from .errors import BusyError, CancelledError, DataError, DLFDError, TooFewFacesError
from .evaluate.evaluate import collect_parts, part_keys, split_parts
from .evaluate.metrics import softmax
from .evaluate.outputs import SplitOutputs, collect_outputs
from .evaluate.report import METRICS, format_table
from .evaluate.verdict import MIN_PHOTOS, GoldComparison, Judgement, judge_against_gold
from .experiment import ForgetOutcome, forget
from .faces.faceset import FaceSetCheck, check_face_set, content_digest
from .models import load_model, save_model
from .paths import atomic_write, cache_dir, sha256_file
from .progress import ProgressFn, no_progress, scaled

__all__ = [
    "MAX_UPLOAD_PHOTOS",
    "MIN_ENROL_FACES",
    "CARD_METRICS",
    "Enrolment",
    "Prediction",
    "RunRecord",
    "ForgetJob",
    "Session",
    "execute_job",
    "delete_upload",
    "display_name",
    "Workspace",
    "enrol",
    "example_photos",
    "write_example_photos",
    "load_workspace",
    "run_forget",
    "warm_up",
]

log = logging.getLogger(__name__)

MIN_ENROL_FACES = 5
MAX_UPLOAD_PHOTOS = 40
GOLD_CACHE_SIZE = 4
#: The fewest training photos of the forgotten people with which the verdict and the (balanced, 10-fold) membership
#: attack are attempted.
MIN_ATTACK_PHOTOS = MIN_PHOTOS
#: Runs of a session whose unlearned model and raw outputs stay in memory (older runs keep reports and files only).
KEEP_FULL_RUNS = 1
#: The ORL person the ORL model never trained on, whose photos serve as an example "upload" (each bundle names its
#: own: :attr:`dlfd_core.bundled.Bundle.example_identity`).
EXAMPLE_IDENTITY = "s35"
#: A person's name: 1-40 letters (any script), digits, spaces, dots, apostrophes, dashes or underscores.
NAME_PATTERN = re.compile(r"^[^\W_][\w .'-]{0,39}$")

#: The metrics on the result cards: (metric, label, how to read it); the labels are the metric table's.
CARD_METRICS: tuple[tuple[str, str, str], ...] = tuple(
    (name, METRICS[name].title, reading)
    for name, reading in (
        ("retain_test_acc", "held-out photos of the people kept; higher is better"),
        ("forget_train_acc", "closer to the gold model is better"),
        ("label_free_mia_acc", "how often it tells forgotten photos from strangers'; 50% = chance"),
        ("forgetting_score_label_free", "the attack's distance from chance (0.5); 0 is best"),
        ("nomus_label_free", "utility and forgetting in one number; higher is better"),
        ("forget_verification_auc", "can the face still be matched by features; compare with gold"),
    )
)


def display_name(identity: str) -> str:
    """A person's name as a page shows it: LFW's folder names with spaces (``Colin_Powell`` -> ``Colin Powell``)."""
    return identity.replace("_", " ")


def default_device() -> torch.device:
    """CUDA when present, the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------------------------------- outputs
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
    from .train import run_prefix

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
            name: np.asarray([rows[k] for k in keys], dtype=np.int64)
            for name, keys in part_keys(aligned, split).items()
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
            from .train import run_prefix

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


# ------------------------------------------------------------------------------------------------- workspace
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
    device = torch.device(device) if device is not None else default_device()
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


# ------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Prediction:
    """One photo's predicted identity before and after (and under the gold model)."""

    crop: np.ndarray
    identity: str
    role: str
    before: tuple[str, float]
    after: tuple[str, float] | None = None
    gold: tuple[str, float] | None = None

    @property
    def caption(self) -> str:
        text = f"{self.identity} ({self.role}) · before: {self.before[0]} {self.before[1]:.0%}"
        if self.after is not None:
            text += f" → after: {self.after[0]} {self.after[1]:.0%}"
        if self.gold is not None:
            text += f" · gold: {self.gold[0]} {self.gold[1]:.0%}"
        return text


def _top(logits: np.ndarray, names: Sequence[str]) -> list[tuple[str, float]]:
    p = softmax(np.asarray(logits, dtype=np.float64))
    best = p.argmax(axis=1)
    return [(names[int(b)], float(p[i, b])) for i, b in enumerate(best)]


@dataclass
class Enrolment:
    """An uploaded face set, enrolled as a new identity.

    Attributes:
        name: the new identity's name.
        crops: the aligned faces used, in upload order (one of each group of copies).
        captions: one per crop: its number, the photo it came from, and what to check about it.
        failures: (file name, reason) for each photo without a usable face.
        notes: how repeats of one photo and near-identical photos were handled.
        warnings: what may be wrong with the set (faces of another person, photos with several faces).
        train, holdout, test: how many of the faces the model trains on / keeps aside / tests on.
        predictions: the model's answer on the held-out test photos.
        recognised: the fraction of held-out photos recognised as the person.
        retain_test_acc: accuracy on everyone else's test photos after enrolling.
        seconds: wall time (alignment and training).
    """

    name: str
    crops: list[np.ndarray]
    captions: list[str]
    failures: list[tuple[str, str]]
    notes: list[str]
    warnings: list[str]
    train: int
    holdout: int
    test: int
    predictions: list[Prediction]
    recognised: float
    retain_test_acc: float
    seconds: float

    @property
    def summary(self) -> str:
        faces = f"{len(self.crops)} {'face' if len(self.crops) == 1 else 'faces'}"
        text = (
            f"Enrolled **{self.name}**: {faces} used ({self.train} to train on, {self.holdout} kept "
            f"aside, {self.test} to test). The model now recognises **{round(self.recognised * self.test)} of "
            f"their {self.test} held-out {'photo' if self.test == 1 else 'photos'}**, and {self.retain_test_acc:.1%} "
            f"of everyone else's. Took {self.seconds:.1f} s. You can now choose them in the list of people to forget."
        )
        if self.notes:
            text += "\n\n" + "\n".join(f"- {note}." for note in self.notes)
        if self.warnings:
            text += "\n\n" + "\n".join(f"- ⚠ {w}." for w in self.warnings)
        return text


@dataclass
class RunRecord:
    """One forgetting run of a session.

    Attributes:
        number: the run's number in its session (1, 2, ...).
        identities: who was forgotten.
        outcome: the evaluated run (reports before / after / gold, outputs, the unlearned model).
        verdict: a few plain sentences on whether the person is forgotten and what it cost.
        predictions: example photos before / after / gold.
        files: downloadable files (``report_json``, ``report_md``, ``model``) in the session's folder.
        seconds: wall time of the whole run (unlearning, evaluations, gold model).
        judgement: the comparison with the gold model behind the verdict (``None`` without a gold model).
    """

    number: int
    identities: tuple[str, ...]
    outcome: ForgetOutcome
    verdict: str
    predictions: list[Prediction]
    files: dict[str, Path]
    seconds: float
    judgement: Judgement | None = None

    @property
    def label(self) -> str:
        return f"#{self.number} {self.outcome.result.method}"

    @property
    def compacted(self) -> bool:
        """Whether the in-memory models and raw outputs were dropped (see :meth:`compact`)."""
        return self.outcome.result.model is None

    def compact(self) -> None:
        """Drop the unlearned model and the raw per-photo outputs from memory.

        What the page still shows of an older run stays: its row of the runs table (from the reports), its verdict,
        and its downloads (the report and the model, on disk in the session's folder).
        """
        outcome = self.outcome
        self.outcome = dataclasses.replace(
            outcome, outputs={}, gold_model=None, result=dataclasses.replace(outcome.result, model=None)
        )

    def row(self) -> dict[str, Any]:
        """The run as one row of the session's table."""
        result = self.outcome.result
        after = self.outcome.reports["after"].metrics
        row: dict[str, Any] = {
            "run": self.label,
            "forgot": ", ".join(self.identities),
            "method": result.method,
            "settings": _changed_settings(result.method, result.settings),
            "seed": result.seed,
            "device": result.device,
        }
        for name, _, _ in CARD_METRICS:
            row[name] = after.get(name, math.nan)
        row["unlearn_seconds"] = result.seconds
        row["total_seconds"] = self.seconds
        return row


def _changed_settings(method: str, settings: Mapping[str, Any]) -> str:
    """The settings that differ from the method's defaults, as ``k=v`` (or "defaults")."""
    from .unlearn import create_method

    defaults = create_method(method).settings()
    changed = [f"{k}={v}" for k, v in settings.items() if defaults.get(k) != v]
    return ", ".join(changed) or "defaults"


# ------------------------------------------------------------------------------------------------- session
@dataclass(eq=False)
class Session:
    """One browser session's state. Nothing here is shared with another session.

    Attributes:
        workspace: the shared bundled default (read-only).
        folder: this session's private folder (downloads); deleted by :meth:`close`.
        aligned, split, model: what this session forgets from: the workspace's, or its own after :func:`enrol`.
        own_outputs: ``model``'s outputs on every photo once this session has its own model (an enrolment);
            ``None`` while it uses the workspace's (see :attr:`outputs`).
        enrolment: the enrolled face set, if any.
        runs: every run, oldest first.
        uploads: files this session received outside its folder (a web framework's upload copies): deleted by
            :meth:`close` too, also the ones never enrolled.
    """

    workspace: Workspace
    folder: Path
    aligned: AlignedFaces
    split: Split
    model: nn.Module
    own_outputs: KeyedOutputs | None = None
    enrolment: Enrolment | None = None
    runs: list[RunRecord] = field(default_factory=list)
    gold_cache: GoldCache = field(default_factory=lambda: GoldCache(GOLD_CACHE_SIZE))
    cancel: threading.Event = field(default_factory=threading.Event)
    uploads: set[Path] = field(default_factory=set)
    job: str | None = None
    last_error: str | None = None
    _uploads_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _running: bool = field(default=False, repr=False)

    @classmethod
    def start(cls, workspace: Workspace, root: str | Path | None = None) -> Session:
        """A new session on ``workspace``, with a fresh private folder under ``root`` (the system temp dir)."""
        base = Path(root) if root is not None else Path(tempfile.gettempdir()) / "dlfd-studio-sessions"
        base.mkdir(parents=True, exist_ok=True)
        folder = base / uuid.uuid4().hex
        folder.mkdir(mode=0o700)
        (folder / SESSION_MARKER).touch()  # what start-up clean-up (remove_stale_sessions) recognises as ours
        return cls(
            workspace=workspace,
            folder=folder,
            aligned=workspace.aligned,
            split=workspace.split,
            model=workspace.model,
        )

    @property
    def outputs(self) -> KeyedOutputs:
        """``model``'s outputs on every photo: this session's own after an enrolment, else the workspace's."""
        return self.own_outputs if self.own_outputs is not None else self.workspace.outputs

    @outputs.setter
    def outputs(self, value: KeyedOutputs | None) -> None:
        self.own_outputs = value

    @property
    def device(self) -> torch.device:
        return self.workspace.device

    @property
    def identities(self) -> tuple[str, ...]:
        """Who can be forgotten: the model's known people."""
        return self.split.known

    closed: bool = False

    def reserve(self, what: str) -> None:
        """Book the session for one job (at the click, before it waits in a queue); Cancel now applies to it.

        Args:
            what: what the job is, for messages ("a run", "an enrolment").

        Raises:
            BusyError: a job is already booked or running (a double click, or Forget pressed during an enrolment).
        """
        with self._uploads_lock:
            self.check_open()
            if self.job is not None:
                raise BusyError(
                    f"{self.job[0].upper()}{self.job[1:]} is already waiting or running in this page; wait for it to "
                    "finish (or press Cancel), then try again."
                )
            self.job = what
            self.last_error = None
            self.cancel.clear()

    def release_booking(self, what: str) -> None:
        """End a booking for ``what`` whose job never started (refused, failed in the queue); a job that is running
        keeps its booking until it ends."""
        with self._uploads_lock:
            if self.job == what and not self._running:
                self.job = None
                self.cancel.clear()

    def release(self) -> None:
        """End the booked job (done, failed or refused); a Cancel pressed later has nothing to stop."""
        with self._uploads_lock:
            self.job = None
            self._running = False
            self.cancel.clear()

    def request_cancel(self) -> bool:
        """Ask the booked job to stop; False (and nothing armed) when no job is booked."""
        with self._uploads_lock:
            if self.job is None:
                return False
            self.cancel.set()
            return True

    @contextlib.contextmanager
    def running(self, what: str) -> Iterator[None]:
        """Run one job in this session: the one booked with :meth:`reserve`, or a new one (booked here).

        A session runs one job at a time; the booking ends with the job, however it ends.

        Raises:
            BusyError: another job is running or booked.
        """
        with self._uploads_lock:
            self.check_open()
            if self._running or (self.job is not None and self.job != what):
                raise BusyError(
                    f"{(self.job or 'another job').capitalize()} is already running in this page; wait for it to "
                    "finish, then try again."
                )
            if self.job is None:
                self.cancel.clear()
            self.job, self._running = what, True
        try:
            yield
        finally:
            self.release()

    def track_upload(self, path: str | Path, *, shared: bool = False) -> bool:
        """Take an uploaded file (outside the session folder) as this session's, so that :meth:`close` deletes it.

        Args:
            shared: the file came through this page's own upload flow, so it is this session's even when another
                session uploaded the same photo (Gradio gives both the same file); otherwise (a path a request only
                names) it is taken only when no other session holds it.

        Returns:
            False, and nothing is tracked, when another session holds that file and ``shared`` is False (it is then
            neither read nor deleted here).
        """
        path = Path(path)
        if not self.workspace.upload_owners.claim(path, self.folder.name, shared=shared):
            return False
        with self._uploads_lock:
            if not self.closed:
                self.uploads.add(path)
                return True
        if self.workspace.upload_owners.release(path, self.folder.name):  # the session ended meanwhile
            delete_upload(path)
        return True

    def owns_upload(self, path: str | Path) -> bool:
        """Whether this session received ``path`` (see :meth:`track_upload`)."""
        with self._uploads_lock:
            return Path(path) in self.uploads

    def release_upload(self, path: str | Path) -> None:
        """Let go of one of this session's uploads now (a later, identical upload is then not deleted at close); the
        file is deleted unless another session still holds it."""
        path = Path(path)
        with self._uploads_lock:
            mine = path in self.uploads
            self.uploads.discard(path)
        if mine and self.workspace.upload_owners.release(path, self.folder.name):
            delete_upload(path)

    def close(self) -> None:
        """End the session: stop its job, delete its folder and uploads, drop its models and uploads' faces.

        A closed session refuses new work (:meth:`check_open`); a job still running stops at its next step.
        """
        with self._uploads_lock:
            self.closed = True
            uploads, self.uploads = list(self.uploads), set()
        self.cancel.set()
        shutil.rmtree(self.folder, ignore_errors=True)
        for path in uploads:
            if self.workspace.upload_owners.release(path, self.folder.name):
                delete_upload(path)
        self.gold_cache.clear()
        self.runs.clear()
        self.enrolment = None
        self.aligned, self.split = self.workspace.aligned, self.workspace.split
        self.model, self.own_outputs = self.workspace.model, None

    def check_open(self) -> None:
        """Raise :class:`DataError` if the session has ended (its files are gone)."""
        if self.closed or not self.folder.is_dir():
            raise DataError("This session has ended (the page was closed or timed out); reload the page.")

    @property
    def uses_bundled_model(self) -> bool:
        """Whether this session forgets from the shared bundled model (nobody enrolled)."""
        return self.model is self.workspace.model and self.split is self.workspace.split

    def runs_table(self) -> list[dict[str, Any]]:
        return [run.row() for run in self.runs]


#: The file that marks a folder as a session folder made by :meth:`Session.start`.
SESSION_MARKER = ".dlfd-session"


def remove_stale_sessions(root: str | Path) -> list[Path]:
    """Delete the session folders an earlier run of the server left under ``root`` (after a crash, say).

    Only folders that :meth:`Session.start` made are deleted: a direct sub-folder with a 32-hex-digit name holding
    the :data:`SESSION_MARKER` file. Anything else under ``root`` is left as it is.

    Returns:
        The folders deleted.
    """
    removed = []
    base = Path(root)
    if not base.is_dir():
        return removed
    for folder in base.iterdir():
        if (
            re.fullmatch(r"[0-9a-f]{32}", folder.name)
            and folder.is_dir()
            and not folder.is_symlink()
            and (folder / SESSION_MARKER).is_file()
        ):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class UploadOwners:
    """Which sessions received which uploaded file, so that a session reads or deletes only its own uploads.

    A web framework puts every upload in one shared folder, and Gradio names each upload by its content: two pages
    that upload the same photo get the same file. A file arriving through a page's own upload flow is shared by every
    page that uploads it (``shared=True``); a file that a request merely names is taken only when nobody holds it. A
    file is deleted when its last holder lets it go.
    """

    def __init__(self) -> None:
        self._owners: dict[Path, set[str]] = {}
        self._lock = threading.Lock()

    def claim(self, path: Path, owner: str, *, shared: bool = False) -> bool:
        """Hold ``path`` for ``owner``; False (nothing held) when others hold it and ``shared`` is False."""
        with self._lock:
            holders = self._owners.setdefault(path, set())
            if holders and owner not in holders and not shared:
                return False
            holders.add(owner)
            return True

    def release(self, path: Path, owner: str) -> bool:
        """Let go of ``owner``'s hold on ``path``; True when nobody holds it any more (it may then be deleted)."""
        with self._lock:
            holders = self._owners.get(path)
            if holders is None:
                return True
            holders.discard(owner)
            if holders:
                return False
            del self._owners[path]
            return True

    def __len__(self) -> int:
        return len(self._owners)


def _one_job_at_a_time(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: run a job of a session inside :meth:`Session.running` (one job at a time, booking ended after)."""

    def decorate(job: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(job)
        def run(session: Session, *args: Any, **kwargs: Any) -> Any:
            with session.running(what):
                return job(session, *args, **kwargs)

        return run

    return decorate


def delete_upload(path: Path) -> None:
    """Delete an uploaded file, and its folder when that is left empty (web frameworks keep one folder per upload)."""
    try:
        path.unlink(missing_ok=True)
        path.parent.rmdir()
    except OSError:
        pass


# ------------------------------------------------------------------------------------------------- enrolment
def check_name(name: str, split: Split) -> str:
    """A new person's name, normalised (NFC, trimmed).

    Raises:
        DataError: not 1-40 letters (any script), digits, spaces, dots, apostrophes, dashes or underscores starting
            with a letter or digit, or already a person of ``split``.
    """
    name = unicodedata.normalize("NFC", name if isinstance(name, str) else "").strip()
    if not NAME_PATTERN.fullmatch(name):
        raise DataError(
            "Give the person a name of 1–40 letters, digits, spaces, dots, apostrophes, dashes or underscores, "
            "starting with a letter or digit."
        )
    if name in split.known or name in split.never_trained:
        raise DataError(f"'{name}' is already a person in the dataset; choose another name.")
    return name


def _photo_name(photo: Any, index: int) -> str:
    if isinstance(photo, (str, Path)):
        return Path(photo).name
    return f"photo {index + 1}"


@functools.lru_cache(maxsize=1)
def _reference_embedder() -> nn.Module:
    """The pretrained dlib ResNet, whose descriptor distances :mod:`~dlfd_core.faces.faceset` is calibrated on."""
    from .models import create_backbone

    return create_backbone("dlib_resnet").eval()


def _digest(photo: Any) -> str | None:
    """The content digest of an uploaded photo (a file's bytes, an array's pixels), or None for anything else."""
    try:
        if isinstance(photo, (str, Path)):
            return content_digest(Path(photo).read_bytes())
        if isinstance(photo, np.ndarray):
            return content_digest(photo)
    except OSError:
        return None
    return None


def _descriptors(crops: Sequence[np.ndarray]) -> np.ndarray:
    """The pretrained dlib descriptors of aligned crops, L2-normalised: ``[N, 128]``."""
    model = _reference_embedder()
    stacked = np.stack(crops)
    with torch.inference_mode():
        out = torch.cat(
            [model(crops_to_tensor(stacked[i : i + 32], model.input_size)) for i in range(0, len(stacked), 32)]
        ).numpy()
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _choose_faces(found: Sequence[tuple[int, Any]]) -> list[int]:
    """For each aligned photo, which of its faces is the person's: 0 for the aligner's choice, ``k`` for its
    ``others[k - 1]``. In a photo with several large faces, the one whose descriptor is closest (median distance) to
    the set's one-face photos is taken; with fewer than two such photos the aligner's choice stands."""
    chosen = [0] * len(found)
    single = [face.crop for _, face in found if not getattr(face, "others", ())]
    if len(single) < 2 or len(single) == len(found):
        return chosen
    reference = _descriptors(single)
    for k, (_, face) in enumerate(found):
        if getattr(face, "others", ()):
            candidates = _descriptors([face.crop, *face.others])
            distances = np.linalg.norm(candidates[:, None, :] - reference[None, :, :], axis=2)  # [faces, single]
            chosen[k] = int(np.argmin(np.median(distances, axis=1)))
    return chosen


def _check_faces(photos: Sequence[Any], found: Sequence[tuple[int, Any]], crops: Sequence[np.ndarray]) -> FaceSetCheck:
    """Copies and faces of another person among the faces ``crops`` of the photos ``found`` ((photo index, aligned
    face) pairs)."""
    if not found:
        return FaceSetCheck(keep=())
    return check_face_set(_descriptors(crops), digests=[_digest(photos[i]) for i, _ in found])


def _too_few_message(check: FaceSetCheck, total: int, failures: Sequence[tuple[str, str]]) -> str:
    different = len(check.groups)
    text = (
        f"Only {different} usable, different {'face' if different == 1 else 'faces'} among {total} "
        f"{'photo' if total == 1 else 'photos'}; at least {MIN_ENROL_FACES} are needed."
    )
    repeats, near = len(check.repeats), sum(len(g) - 1 for g in check.near_copies)
    if repeats or near:
        parts = [
            *([f"{repeats} {'was a repeat' if repeats == 1 else 'were repeats'} of another photo"] if repeats else []),
            *([f"{near} {'was a near-identical copy' if near == 1 else 'were near-identical copies'}"] if near else []),
        ]
        text += f" Of the photos with a face, {' and '.join(parts)}: use photos taken at different times or angles."
    if failures:
        text += " Photos without a usable face: " + "; ".join(f"{n}: {why}" for n, why in failures)
    return text


def _split_groups(groups: Sequence[Sequence[int]]) -> tuple[list[int], list[int], list[int]]:
    """Train / holdout / test rows of an enrolled face set whose near-identical faces come in ``groups``.

    About a quarter of the faces (at least one) are tested on: whole groups, taken from the end of the upload order
    while they fit in that quarter (a large group of burst shots is not sent to testing whole when smaller groups can
    fill it); the smallest group left is kept aside. No tested face then has a near copy among the training faces, and
    training keeps as many photos as it can.
    """
    total = sum(len(g) for g in groups)
    wanted = max(1, round(0.25 * total))
    test_ids: list[int] = []
    count = 0
    for k in reversed(range(len(groups))):
        if count >= wanted or len(groups) - len(test_ids) <= 2:  # keep a group for holdout and one for training
            break
        if count + len(groups[k]) <= wanted:
            test_ids.append(k)
            count += len(groups[k])
    if not test_ids:  # every group is larger than a quarter: the smallest one (the latest of equals)
        test_ids = [min(range(len(groups)), key=lambda k: (len(groups[k]), -k))]
    rest = [k for k in range(len(groups)) if k not in test_ids]
    holdout_id = min(rest, key=lambda k: (len(groups[k]), -k)) if len(rest) > 1 else None
    test = sorted(i for k in test_ids for i in groups[k])
    holdout = sorted(groups[holdout_id]) if holdout_id is not None else []
    train = sorted(i for k in rest if k != holdout_id for i in groups[k])
    return train, holdout, test


@_one_job_at_a_time("an enrolment")
def enrol(
    session: Session,
    name: str,
    photos: Sequence[Any],
    *,
    seed: int = 0,
    aligner: Any = None,
    exclude_unseen: Sequence[str] = (),
    device: str | torch.device | None = None,
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
) -> Enrolment:
    """Add a person from their photos: align, split, retrain the original recipe with them, test on held-out photos.

    The new model is trained exactly like the shipped one (same recipe and seed) on the default training photos plus
    the person's, so "forgetting" them afterwards is compared with a gold model that is the same recipe without them.
    One enrolment per session: enrolling again replaces the earlier person.

    Args:
        session: the session to enrol into (its model, split and faces are replaced on success only).
        name: the person's name.
        photos: 5 to 40 photos (paths, arrays or PIL images).
        seed: the training seed.
        aligner: a :class:`~dlfd_core.faces.FaceAligner` (a default one when omitted).
        exclude_unseen: unseen people to drop from the non-member population because the photos are theirs
            (the example face set is an unseen ORL person; :func:`example_photos` photos are detected
            automatically).
        device: where to train (the session's device when omitted).

    Raises:
        DataError: bad name, too few or too many photos.
        TooFewFacesError: fewer than 5 usable, different faces (the message lists why each photo failed and how many
            were repeats or near-identical).
        BusyError: another job of the session is booked or running.
    """
    from .faces import FaceAligner
    from .train import recipe_of, train_on_split

    start = time.perf_counter()
    session.check_open()
    device = torch.device(device) if device is not None else session.device
    base_aligned, base_split = session.workspace.aligned, session.workspace.split
    name = check_name(name, base_split)
    example = session.folder / "example"
    if any(Path(str(p)).resolve().parent == example.resolve() for p in photos if isinstance(p, (str, Path))):
        exclude_unseen = (*exclude_unseen, session.workspace.bundle.example_identity)
    if not photos:
        raise DataError(f"Upload {MIN_ENROL_FACES} to {MAX_UPLOAD_PHOTOS} photos of one person.")
    if len(photos) > MAX_UPLOAD_PHOTOS:
        raise DataError(f"{len(photos)} photos uploaded; at most {MAX_UPLOAD_PHOTOS} are accepted.")
    aligner = aligner or FaceAligner()
    results = aligner.align_batch(list(photos), progress=scaled(progress, 0.0, 0.25))
    found, failures = [], []  # found: (photo index, aligned face)
    for index, (photo, result) in enumerate(zip(photos, results, strict=True)):
        if isinstance(result, DLFDError):
            # name the file as the person knows it, never by the server's path to it
            shown = _photo_name(photo, index)
            failures.append((shown, str(result).replace(str(photo), shown)))
        else:
            found.append((index, result))
    progress(0.25, "checking the faces for copies and other people")
    picks = _choose_faces(found)
    picked = [face.crop if pick == 0 else face.others[pick - 1] for pick, (_, face) in zip(picks, found, strict=True)]
    check = _check_faces(photos, found, picked)
    shown = {i: _photo_name(photos[found[i][0]], found[i][0]) for i in range(len(found))}  # face -> file name
    notes = [f"{shown[dropped]} is the same photo as {shown[kept]}: used once" for kept, dropped in check.repeats]
    if check.near_copies:
        listed = "; ".join(" ≈ ".join(shown[i] for i in group) for group in check.near_copies)
        notes.append(
            f"near-identical photos ({listed}) are kept on the same side of the train / test split, so that the "
            "model is never tested on a copy of a photo it trained on"
        )
    if len(check.groups) < MIN_ENROL_FACES:
        raise TooFewFacesError(_too_few_message(check, len(photos), failures))
    position = {index: k for k, index in enumerate(check.keep)}  # face -> row among the faces used
    usable = [found[i] for i in check.keep]
    warnings = [
        f"{shown[i]} shows {found[i][1].num_faces} faces: "
        + ("the one most like the rest of the set" if picks[i] else "the largest clear one")
        + " was used (check its crop below)"
        for i in check.keep
        if found[i][1].num_faces > 1
    ]
    others = [shown[i] for i, _ in check.other_person]
    flagged = {i for i, _ in check.other_person}
    if others:
        warnings.insert(
            0,
            f"{len(others)} of {len(usable)} faces look like a different person from the rest of the set "
            f"({', '.join(others)}): enrol photos of one person only, or the model learns a mixture",
        )
    crops = [picked[i] for i in check.keep]
    captions = [
        f"face {k + 1} · {shown[i]}"
        + (f" · 1 of {found[i][1].num_faces} faces" if found[i][1].num_faces > 1 else "")
        + (" · another person?" if i in flagged else "")
        for k, i in enumerate(check.keep)
    ]
    n = len(crops)
    keys = [f"upload/{name}/{i:03d}" for i in range(n)]
    train_rows, holdout_rows, test_rows = _split_groups([[position[i] for i in g] for g in check.groups])
    train_keys = [keys[i] for i in train_rows]
    holdout_keys = [keys[i] for i in holdout_rows]
    test_keys = [keys[i] for i in test_rows]
    n_holdout, n_test = len(holdout_keys), len(test_keys)
    size = base_aligned.size
    new_crops = np.stack([c if c.shape[0] == size else _resize(c, size) for c in crops])
    aligned = AlignedFaces(
        crops=np.concatenate([base_aligned.crops, new_crops]),
        keys=(*base_aligned.keys, *keys),
        identities=(*base_aligned.identities, *([name] * n)),
        num_faces=np.concatenate([base_aligned.num_faces, np.ones(n, dtype=np.int64)]),
        failures=base_aligned.failures,
        ambiguous=base_aligned.ambiguous,
    )
    split = Split(
        dataset=base_split.dataset,
        seed=base_split.seed,
        known=(*base_split.known, name),
        unseen=tuple(u for u in base_split.unseen if u not in set(exclude_unseen)),
        validation=tuple(u for u in base_split.validation if u not in set(exclude_unseen)),
        train={**base_split.train, name: tuple(train_keys)},
        test={**base_split.test, name: tuple(test_keys)},
        holdout={**base_split.holdout, name: tuple(holdout_keys)},
    )
    session.workspace.wait_ready(scaled(progress, 0.25, 0.3))
    progress(0.3, f"training the model to know {name}")
    trained = train_on_split(
        aligned,
        split,
        which="original",
        backbone=session.workspace.model.backbone_name,
        config=recipe_of(session.workspace.model),
        seed=seed,
        device=device,
        progress=scaled(progress, 0.3, 0.9),
        should_stop=should_stop,
        prefix=lambda model, keys: session.workspace.outputs.prefix_outputs(model, keys, aligned),
    )
    model = trained.model.eval()
    progress(0.9, "testing on the held-out photos")
    outputs = collect_all(model, aligned, split, device=device, reuse=session.workspace.outputs)
    model = model.cpu()  # kept between calls on the CPU (a ZeroGPU device exists only during a call)
    parts = outputs.parts(aligned, split)
    test = parts["retain_test"]
    own = np.asarray([identity == name for identity in test.identities])
    correct = test.predictions == test.labels
    rows = np.flatnonzero(own)
    names = split.known
    predictions = [
        Prediction(crop=new_crops[test_rows[j]], identity=name, role="held out", before=top)
        for j, top in enumerate(_top(test.logits[rows], names))
    ]
    enrolment = Enrolment(
        name=name,
        crops=list(new_crops),
        captions=captions,
        failures=failures,
        notes=notes,
        warnings=warnings,
        train=len(train_keys),
        holdout=n_holdout,
        test=n_test,
        predictions=predictions,
        recognised=float(correct[own].mean()),
        retain_test_acc=float(correct[~own].mean()),
        seconds=time.perf_counter() - start,
    )
    session.check_open()  # closed while training: keep nothing
    session.aligned, session.split, session.model, session.outputs = aligned, split, model, outputs
    session.enrolment = enrolment
    session.gold_cache.clear()
    progress(1.0, "enrolled")
    return enrolment


def example_photos(session: Session) -> list[Path]:
    """Copy the example face set (a person the model never saw) into the session's folder, as PNG files."""
    workspace = session.workspace
    return write_example_photos(
        workspace.dataset,
        session.folder / "example",
        identity=workspace.bundle.example_identity,
        aligned=workspace.aligned,
    )


def write_example_photos(
    dataset: FaceDataset,
    folder: Path,
    prefix: str = "example",
    *,
    identity: str = EXAMPLE_IDENTITY,
    aligned: AlignedFaces | None = None,
) -> list[Path]:
    """Write ``identity``'s photos from ``dataset`` into ``folder`` as RGB PNG files: the original files where the
    dataset has them (ORL), otherwise their aligned crops from ``aligned`` (a packed bundle such as LFW)."""
    from PIL import Image

    records = dataset.records_of(identity)
    if all(dataset.path(r).is_file() for r in records):
        images = [dataset.load_image(r) for r in records]
    elif aligned is not None:
        images = [np.asarray(c) for c in aligned.select([r.key for r in records if r.key in aligned])]
    else:
        raise DataError(f"The photos of {identity} are not on disk; pass the dataset's aligned crops.")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{prefix}_{i + 1:02d}.png"
        Image.fromarray(image).convert("RGB").save(path)
        paths.append(path)
    return paths


def _resize(crop: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))


# ------------------------------------------------------------------------------------------------- forgetting
def _pct(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.0%}"


def judge(outcome: ForgetOutcome, split: Split, seed: int = 0) -> Judgement | None:
    """The run against its gold model (:func:`~dlfd_core.evaluate.verdict.judge_against_gold`); ``None`` without one."""
    if "gold" not in outcome.outputs or "after" not in outcome.outputs:
        return None
    return judge_against_gold(outcome.outputs["after"], outcome.outputs["gold"], split, seed=seed)


def _auc_pct(value: float) -> str:
    return f"AUC {_pct(value)}"


def _detectable_text(comparison: GoldComparison, photos: str) -> str:
    """What a comparison that differs from the gold model shows, in plain words."""
    low, high = (f"{100 * v:+.0f}" for v in comparison.interval)
    interval = f"difference {low} to {high} points, 95% interval"
    if comparison.name == "forget accuracy":
        more = "more" if comparison.difference > 0 else "fewer"
        return (
            f"it recognises {more} of the {photos} than the gold model does ({_pct(comparison.value)} against "
            f"{_pct(comparison.gold)}; {interval})"
        )
    if comparison.difference > 0:
        return (
            f"a membership attack tells their photos from strangers' better than on the gold model "
            f"({_auc_pct(comparison.value)} against {_pct(comparison.gold)}; {interval})"
        )
    return (
        f"their photos now stand out by looking *less* familiar than on the gold model, which a membership attack "
        f"detects too ({_auc_pct(comparison.value)} against {_pct(comparison.gold)}; {interval})"
    )


def verdict(outcome: ForgetOutcome, identities: Sequence[str], judgement: Judgement | None) -> str:
    """A few plain sentences on whether ``identities`` are forgotten, judged against the gold model, and the cost.

    "Forgotten" only when ``judgement`` (:func:`judge`) finds the unlearned model equivalent to the gold model in
    forget accuracy and in the membership attack (95 % intervals of the paired differences within the margin);
    "not forgotten" when either differs, saying what is still detectable; "inconclusive" when the photos cannot
    tell, saying why; "not judged" without a gold model.
    """
    before = outcome.reports["before"].metrics
    after = outcome.reports["after"].metrics
    gold = outcome.reports["gold"].metrics if "gold" in outcome.reports else None
    recognised = after.get("forget_train_acc", math.nan)
    photos = len(outcome.outputs["after"].get("forget_train", ())) if outcome.outputs else 0
    kept_before, kept_after = before.get("retain_test_acc", math.nan), after.get("retain_test_acc", math.nan)
    who = ", ".join(display_name(i) for i in identities)
    several = len(identities) > 1
    photos_text = f"{photos} forgotten training {'photo' if photos == 1 else 'photos'}"
    gold_acc = f" (the gold model: {_pct(gold.get('forget_train_acc', math.nan))})" if gold is not None else ""
    too_few = photos < MIN_ATTACK_PHOTOS or (judgement is not None and not judgement.comparisons)
    if too_few and photos >= MIN_ATTACK_PHOTOS and judgement is not None:  # too few non-members, a rare split
        text = f"**{who}: inconclusive, not enough photos to judge.** {judgement.reason.capitalize()}"
    elif too_few:
        text = (
            f"**{who}: inconclusive, not enough photos to judge.** The comparison with the gold model needs at least "
            f"{MIN_ATTACK_PHOTOS} training photos of the forgotten {'people' if several else 'person'} and there "
            f"{'is' if photos == 1 else 'are'} {photos}, so it cannot tell whether the model still knows them. The "
            f"model now recognises {_pct(recognised)} of the {photos_text}{gold_acc}. More photos are needed for a "
            "verdict"
        )
    elif judgement is None:
        text = (
            f"**{who}: not judged.** Forgetting is judged against a gold model retrained without "
            f"{'them' if several else 'this person'}; tick 'Also train the gold model' for a verdict. The model now "
            f"recognises {_pct(recognised)} of the {photos_text}"
        )
    elif judgement.outcome == "forgotten":
        accuracy, attack = judgement.comparisons
        text = (
            f"**{who} {'look' if several else 'looks'} forgotten**: on these {photos} photos the model cannot be told "
            f"from the gold model, never trained on {'them' if several else 'this person'}. It recognises "
            f"{_pct(accuracy.value)} of them (gold {_pct(accuracy.gold)}); a membership attack scores "
            f"{_auc_pct(attack.value)} (gold {_auc_pct(attack.gold)}); both differences lie within "
            f"±{100 * judgement.margin:.0f} points (95% intervals)"
        )
    elif judgement.outcome == "detectable":
        shown = [_detectable_text(c, photos_text) for c in judgement.comparisons if c.differs]
        text = f"**{who} {'are' if several else 'is'} not forgotten**: " + "; and ".join(shown)
    else:
        wide = [
            f"the {c.name} could differ by {100 * c.interval[0]:+.0f} to {100 * c.interval[1]:+.0f} points"
            for c in judgement.comparisons
            if not c.within(judgement.margin)
        ]
        text = (
            f"**{who}: inconclusive.** No difference from the gold model shows, but {photos} photos cannot rule out "
            f"one of {100 * judgement.margin:.0f} points or more ({'; '.join(wide)}, 95% intervals). More photos are "
            "needed for a verdict"
        )
    text += f". Accuracy on everyone else went from {_pct(kept_before)} to {_pct(kept_after)}"
    if kept_before - kept_after > 0.1:
        text += " — **a large loss of utility**"
    text += f"; unlearning took {outcome.result.seconds:.1f} s on the {outcome.result.device.upper()}."
    leak = after.get("forget_verification_auc", math.nan)
    leak_gold = gold.get("forget_verification_auc", math.nan) if gold is not None else math.nan
    if not math.isnan(leak) and not math.isnan(leak_gold) and leak > 0.6:
        text += (
            f" Their faces can still be matched by the embedding (verification AUC {leak:.3f}, gold {leak_gold:.3f}): "
            "the pretrained backbone tells apart people it never trained on, so this is judged against the gold "
            "model, not against zero."
        )
    return text


def _predictions(outcome: ForgetOutcome, session: Session, split: Split, per_side: int = 6) -> list[Prediction]:
    before, after, gold = outcome.outputs["before"], outcome.outputs["after"], outcome.outputs.get("gold")
    keys = part_keys(session.aligned, split)
    chosen: list[tuple[str, str, int]] = []  # (part, role, row)
    forget_rows = [("forget_train", "forgotten", i) for i in range(len(keys.get("forget_train", ())))]
    forget_rows += [("forget_test", "forgotten, held out", i) for i in range(len(keys.get("forget_test", ())))]
    chosen += forget_rows[:per_side]
    retain = keys.get("retain_test", ())
    rng = np.random.default_rng(0)
    for i in sorted(rng.choice(len(retain), size=min(per_side, len(retain)), replace=False).tolist()):
        chosen.append(("retain_test", "kept", i))
    names = split.known
    out = []
    for part, role, row in chosen:
        key = keys[part][row]
        top = {
            name: _top(outputs[part].logits[row : row + 1], names)[0]
            for name, outputs in (
                ("before", before),
                ("after", after),
                *((("gold", gold),) if gold is not None else ()),
            )
        }
        out.append(
            Prediction(
                crop=session.aligned.crops[session.aligned.index_of(key)],
                identity=before[part].identities[row],
                role=role,
                before=top["before"],
                after=top["after"],
                gold=top.get("gold"),
            )
        )
    return out


@dataclass(frozen=True, eq=False)
class ForgetJob:
    """One run's inputs, independent of the session and the process: plain data, models and a configured method.

    It pickles, so a runner may execute it in another process (a ZeroGPU Space's ``spaces.GPU`` worker does: the
    GPU exists only there, and arguments and results cross by pickling). :func:`execute_job` runs it.

    Attributes:
        aligned, split: the faces and the split with its forget request.
        model: the model to unlearn from (not modified).
        outputs: ``model``'s outputs on every photo (with the frozen-prefix cache).
        method: the configured method.
        seed: the run's seed.
        device: where to run; ``None``: the best device where the job runs.
        gold_outputs: an already-trained gold model's outputs on this split (all a run needs of it), or ``None``.
        train_gold: train the gold model (when ``gold_outputs`` is ``None``).
    """

    aligned: AlignedFaces
    split: Split
    model: nn.Module
    outputs: KeyedOutputs
    method: Any
    seed: int = 0
    device: str | None = None
    gold_outputs: dict[str, SplitOutputs] | None = None
    train_gold: bool = False


def execute_job(
    job: ForgetJob, progress: ProgressFn = no_progress, should_stop: Callable[[], bool] | None = None
) -> ForgetOutcome:
    """Run a :class:`ForgetJob`: unlearn, evaluate before / after / gold. Models come back on the CPU, and
    ``outcome.environment`` says where the job ran (on ZeroGPU, the GPU worker, not the server process)."""
    device = torch.device(job.device) if job.device is not None else default_device()
    aligned, split, outputs = job.aligned, job.split, job.outputs
    outcome = forget(  # the model (shared, on the CPU) is not moved: the method unlearns a copy on the device
        aligned,
        split,
        job.model,
        job.method,
        seed=job.seed,
        device=device,
        gold_outputs=job.gold_outputs,
        train_gold=job.train_gold and job.gold_outputs is None,
        before=outputs.parts(aligned, split),
        collect=lambda model: outputs.collect(model, aligned, split, device=device),
        embed=outputs.embeddings,
        prefix=outputs.prefix_outputs,
        progress=progress,
        should_stop=should_stop,
    )
    # models rest on the CPU between calls (on ZeroGPU the device exists only during a call)
    outcome.result.model.cpu()
    if outcome.gold_model is not None:
        outcome.gold_model.cpu()
    outcome.environment = environment()
    return outcome


JobRunner = Callable[[ForgetJob], ForgetOutcome]
"""Runs a :class:`ForgetJob` somewhere else (e.g. ``spaces.GPU(execute_job)``); no progress or cancellation."""


@_one_job_at_a_time("a run")
def run_forget(
    session: Session,
    identities: Sequence[str],
    method: Any,
    *,
    seed: int = 0,
    with_gold: bool = True,
    device: str | torch.device | None = None,
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
    runner: JobRunner | None = None,
) -> RunRecord:
    """Forget ``identities`` from the session's model with a configured method; evaluate; write the downloads.

    The gold model (the original recipe retrained without them, same seed) is cached per session for the same
    people and seed, so comparing methods does not retrain it each time.

    ``runner``: execute the job through it (e.g. in a ZeroGPU worker process) instead of here; it gets no progress
    callback and cannot be cancelled midway.

    Raises:
        DataError: no identity chosen, or all of them (nothing would be left to keep).
        BusyError: another job of the session is booked or running.
        CancelledError: ``should_stop`` returned True; the session is unchanged.
    """
    start = time.perf_counter()
    session.check_open()
    identities = tuple(dict.fromkeys(identities or ()))
    if not identities:
        raise DataError("Choose at least one person to forget.")
    if len(identities) >= len(session.split.known):
        raise DataError("Forgetting everyone leaves nothing to keep: leave at least one person.")
    split = with_forget_identities(session.split, identities)
    key = (identities, seed, session.model.backbone_name)
    # bundled people's gold models are shared between sessions; after an enrolment the model (and so the gold model)
    # has seen the upload, so it stays in the session
    cache = session.workspace.gold_cache if session.uses_bundled_model else session.gold_cache
    cached = cache.get(key) if with_gold else None
    session.workspace.wait_ready(progress)
    job = ForgetJob(
        aligned=session.aligned,
        split=split,
        model=session.model,
        outputs=session.outputs,
        method=method,
        seed=seed,
        device=str(device) if device is not None else None,
        gold_outputs=cached[1] if cached is not None else None,
        train_gold=with_gold,
    )
    if runner is None:
        outcome = execute_job(job, progress=progress, should_stop=should_stop)
    else:  # in another process: no progress or Cancel inside, so check Cancel once before it starts
        if should_stop is not None and should_stop():
            raise CancelledError("the run was cancelled before it started")
        progress(0.0, "running")
        outcome = runner(job)
    session.check_open()  # closed while running: keep nothing
    if cached is not None:
        outcome.gold_model = cached[0]
    elif with_gold and outcome.gold_model is not None:
        cache.put(key, outcome.gold_model, outcome.outputs["gold"])
    if runner is not None and should_stop is not None and should_stop():  # Cancel pressed while it ran elsewhere
        raise CancelledError("the run was cancelled")
    number = len(session.runs) + 1
    judgement = judge(outcome, split, seed=seed)
    record = RunRecord(
        number=number,
        identities=identities,
        outcome=outcome,
        verdict=verdict(outcome, identities, judgement),
        judgement=judgement,
        predictions=_predictions(outcome, session, split),
        files={},
        seconds=time.perf_counter() - start,
    )
    record.files = write_downloads(record, session, split)
    session.runs.append(record)
    for older in session.runs[:-KEEP_FULL_RUNS]:  # memory stays bounded however many runs a session makes
        if not older.compacted:
            older.compact()
    return record


def _card_value(name: str, value: float | None) -> str:
    if value is None or math.isnan(value):
        return "<span class='dlfd-na' title='not enough photos to judge'>n/a</span>"
    return f"{value:.1%}" if name.endswith("_acc") else f"{value:.3f}"


_OUTCOME_LABELS = {"forgotten": "forgotten", "detectable": "not forgotten", "inconclusive": "inconclusive"}


def _judgement_card(judgement: Judgement) -> str:
    """The verdict's evidence: each statistic unlearned → gold, and the 95 % interval of their difference."""
    rows = "".join(
        f"<div data-comparison='{html.escape(c.name)}'>{html.escape(c.name)}: {_pct(c.value)} → {_pct(c.gold)} "
        f"<span title='95% interval of unlearned − gold, paired bootstrap over photos'>"
        f"[{100 * c.interval[0]:+.0f}, {100 * c.interval[1]:+.0f}] pts</span></div>"
        for c in judgement.comparisons
    )
    return (
        f"<div class='dlfd-card' data-metric='judgement' data-outcome='{judgement.outcome}'>"
        f"<div class='dlfd-card-label'>Against the gold model: {_OUTCOME_LABELS[judgement.outcome]}</div>"
        f"<div class='dlfd-card-value'>{rows or html.escape(judgement.reason)}</div>"
        "<div class='dlfd-card-help'>unlearned → gold, and the 95% interval of the difference; forgotten only when "
        f"both intervals lie within ±{100 * judgement.margin:.0f} points. Attack AUC: 50% = chance</div></div>"
    )


def cards_html(record: RunRecord) -> str:
    """The result cards: each headline metric before → after (→ gold), with how to read it, and the time."""
    reports = record.outcome.reports
    columns = [("before", "Original"), ("after", "Unlearned"), ("gold", "Gold")]
    cards = [_judgement_card(record.judgement)] if record.judgement is not None else []
    for name, label, reading in CARD_METRICS:
        values = " → ".join(
            f"<span title='{title}'>{_card_value(name, reports[key].metrics.get(name))}</span>"
            for key, title in columns
            if key in reports
        )
        cards.append(
            f"<div class='dlfd-card' data-metric='{name}'><div class='dlfd-card-label'>{label}</div>"
            f"<div class='dlfd-card-value'>{values}</div><div class='dlfd-card-help'>{reading}</div></div>"
        )
    timings = record.outcome.timings
    gold_time = f", gold model {timings['gold_train_seconds']:.1f} s" if "gold_train_seconds" in timings else ""
    cards.append(
        f"<div class='dlfd-card' data-metric='time'><div class='dlfd-card-label'>Time</div>"
        f"<div class='dlfd-card-value'>{record.outcome.result.seconds:.1f} s</div>"
        f"<div class='dlfd-card-help'>unlearning; whole run {record.seconds:.1f} s{gold_time}</div></div>"
    )
    order = " → ".join(title for key, title in columns if key in reports)
    style = (
        "<style>.dlfd-cards{display:flex;flex-wrap:wrap;gap:8px}.dlfd-card{flex:1 1 180px;border:1px solid #ddd;"
        "border-radius:8px;padding:8px 10px}.dlfd-card-label{font-weight:600}.dlfd-card-value{font-size:1.15em;"
        "margin:4px 0}.dlfd-card-help{font-size:.8em;opacity:.75}</style>"
    )
    return f"{style}<div class='dlfd-cards-caption'>{order}</div><div class='dlfd-cards'>{''.join(cards)}</div>"


def _data_uri(crop: np.ndarray, size: int = 112) -> str:
    """A face crop as an inline JPEG (the page shows it without the server keeping or serving a file)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(crop, dtype=np.uint8)).resize((size, size), Image.BILINEAR).save(
        buffer, format="JPEG", quality=88
    )
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_FACES_STYLE = (
    "<style>.dlfd-faces{display:grid;grid-template-columns:repeat(auto-fill,minmax(112px,1fr));gap:8px}"
    ".dlfd-face{margin:0;font-size:.8em;line-height:1.3}.dlfd-face img{width:100%;max-width:112px;aspect-ratio:1;"
    "display:block;border-radius:6px}.dlfd-ok{color:#15803d}.dlfd-bad{color:#b91c1c}"
    ".dlfd-warn{color:#b45309}</style>"
)


def faces_html(crops: Sequence[np.ndarray], captions: Sequence[str]) -> str:
    """A grid of face crops, each with its whole caption under it (nothing cut, nothing enlarged)."""
    figures = "".join(
        f"<figure class='dlfd-face'><img src='{_data_uri(crop)}' alt='{html.escape(caption, quote=True)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for crop, caption in zip(crops, captions, strict=True)
    )
    return f"{_FACES_STYLE}<div class='dlfd-faces'>{figures}</div>" if figures else ""


def _answer(label: str, answer: tuple[str, float] | None, truth: str, forgotten: bool) -> str:
    if answer is None:
        return ""
    name, confidence = answer
    right = name == truth
    # for a forgotten person, being recognised is what should stop; for everyone else it is what should stay
    good = not right if forgotten else right
    return (
        f"<div class='{'dlfd-ok' if good else 'dlfd-bad'}'>{html.escape(label)}: {html.escape(display_name(name))} "
        f"{confidence:.0%}</div>"
    )


def predictions_html(predictions: Sequence[Prediction]) -> str:
    """Each example photo with its person and role, and the model's answer before, after (and gold), in full."""
    figures = []
    for p in predictions:
        forgotten = p.role.startswith("forgotten")
        lines = "".join(
            _answer(label, answer, p.identity, forgotten)
            for label, answer in (("before", p.before), ("after", p.after), ("gold", p.gold))
        )
        figures.append(
            f"<figure class='dlfd-face' data-role='{html.escape(p.role, quote=True)}'>"
            f"<img src='{_data_uri(p.crop)}' alt='{html.escape(display_name(p.identity), quote=True)}'>"
            f"<figcaption><b>{html.escape(display_name(p.identity))}</b> ({html.escape(p.role)}){lines}"
            "</figcaption></figure>"
        )
    legend = (
        "<p style='font-size:.8em;margin:0 0 6px'>Answer of each model, with its confidence: "
        "<span class='dlfd-ok'>green</span> is what we want (the forgotten person no longer recognised, everyone "
        "else still recognised), <span class='dlfd-bad'>red</span> is not.</p>"
    )
    return f"{_FACES_STYLE}{legend}<div class='dlfd-faces'>{''.join(figures)}</div>" if figures else ""


# ------------------------------------------------------------------------------------------------- downloads
def report_json(record: RunRecord, session: Session, split: Split) -> dict[str, Any]:
    """The run's report: settings, seed, versions, hardware, the split, metrics before / after / gold, timings."""
    return {
        "tool": "DLFD Studio",
        "run": record.number,
        "forgotten": list(record.identities),
        "split": split.describe(),
        "original_model": {
            "file": session.workspace.model_path.name if session.uses_bundled_model else None,
            "sha256": sha256_file(session.workspace.model_path) if session.uses_bundled_model else None,
            "enrolled": session.enrolment.name if session.enrolment is not None else None,
        },
        "environment": record.outcome.environment or environment(),
        "total_seconds": record.seconds,
        "verdict": record.verdict,
        "judgement": _judgement_json(record.judgement),
        **record.outcome.to_json(),
    }


def _judgement_json(judgement: Judgement | None) -> dict[str, Any] | None:
    if judgement is None:
        return None
    return {
        "outcome": judgement.outcome,
        "reason": judgement.reason,
        "margin": judgement.margin,
        "forgotten_photos": judgement.members,
        "nonmember_photos": judgement.nonmembers,
        "comparisons": [
            {"name": c.name, "unlearned": c.value, "gold": c.gold, "difference_interval_95": list(c.interval)}
            for c in judgement.comparisons
        ],
    }


def report_markdown(data: Mapping[str, Any], record: RunRecord) -> str:
    """The report as Markdown (the same content as :func:`report_json`)."""
    env = data["environment"]
    settings = ", ".join(f"`{k}={v}`" for k, v in data["settings"].items())
    table = format_table(record.outcome.reports)
    return "\n".join(
        [
            f"# DLFD Studio run {data['run']}: forgetting {', '.join(data['forgotten'])}",
            "",
            record.verdict,
            "",
            f"- Method: **{data['method']}**; settings: {settings}; seed {data['seed']}; device {data['device']}",
            f"- {data['split']}",
            f"- Original model: {json.dumps(data['original_model'])}",
            f"- Environment: Python {env['python']}, torch {env['torch']}, numpy {env['numpy']}, "
            f"{env['cpus']} CPUs ({env['threads']} threads), GPU {env['cuda'] or 'none'}, {env['date']}",
            "- Timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in data["timings"].items()),
            "",
            "```",
            table,
            "```",
            "",
        ]
    )


def write_downloads(record: RunRecord, session: Session, split: Split) -> dict[str, Path]:
    """Write the report (JSON, Markdown) and the unlearned model (safetensors) into the session's folder."""
    session.check_open()
    folder = session.folder / f"run{record.number:02d}"
    folder.mkdir(exist_ok=True)  # never re-creates a deleted session folder
    stem = f"dlfd_studio_run{record.number:02d}_{record.outcome.result.method}"
    data = report_json(record, session, split)
    files = {
        "report_json": folder / f"{stem}.json",
        "report_md": folder / f"{stem}.md",
        "model": folder / f"{stem}.safetensors",
    }
    with atomic_write(files["report_json"], "w") as handle:
        json.dump(data, handle, indent=2)
    with atomic_write(files["report_md"], "w") as handle:
        handle.write(report_markdown(data, record))
    model = record.outcome.result.model
    metadata = {
        "method": data["method"],
        "settings": data["settings"],
        "seed": data["seed"],
        "forgotten": data["forgotten"],
    }
    save_model(
        model,
        files["model"],
        metadata=metadata,
        delta=bool(getattr(model, "pretrained", False)),
    )
    return files
