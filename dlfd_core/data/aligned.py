"""Aligned face crops of a whole dataset, computed once and cached on disk.

:func:`align_dataset` runs a face aligner over every image of a :class:`~dlfd_core.data.dataset.FaceDataset` and
returns :class:`AlignedFaces`: one ``uint8 [S, S, 3]`` crop per image where a usable face was found, and the
reason for each image where none was.

The result is cached under ``cache_dir()/aligned`` as a compressed ``.npz`` whose name carries a hash of
everything that determines it: the format version, each record's (identity, key, sha256), and the aligner's
settings (see :func:`aligner_fingerprint`). A cache file is checked before use (shapes, dtypes, keys against the
dataset); one that does not load or does not match is logged and rebuilt. Writes go to a temporary file that is
then renamed, so a crash never leaves a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dlfd_core.data.dataset import FaceDataset, preview
from dlfd_core.errors import DataError, DLFDError
from dlfd_core.progress import ProgressFn, no_progress, scaled

from ..paths import atomic_write, cache_dir

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 2
DEFAULT_BATCH_SIZE = 32


class Aligner(Protocol):
    """What :func:`align_dataset` needs from an aligner (``dlfd_core.faces.FaceAligner`` fits)."""

    size: int

    def align_batch(self, images: Sequence[Any], *, progress: ProgressFn = no_progress) -> list[Any]: ...


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class AlignedFaces:
    """Aligned crops of a dataset's images, in the dataset's record order.

    Attributes:
        crops: ``uint8 [N, S, S, 3]`` RGB crops of the images where a usable face was found (read-only).
        keys: the image key of each crop.
        identities: the identity of each crop.
        num_faces: ``int [N]``, how many faces the detector found in each image (the largest was kept).
        failures: image key -> why no usable face was found, for the remaining images.
        ambiguous: image key -> why the choice among the photo's faces is not clear, for the aligned images where
            the aligner said so (``FaceAligner(choose="centre")``).
        size: the crop side S (taken from ``crops``).
    """

    crops: np.ndarray
    keys: tuple[str, ...]
    identities: tuple[str, ...]
    num_faces: np.ndarray
    failures: Mapping[str, str] = field(default_factory=dict)
    ambiguous: Mapping[str, str] = field(default_factory=dict)
    size: int = field(init=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        crops = np.asarray(self.crops)
        if crops.ndim != 4 or crops.shape[3] != 3 or crops.shape[1] != crops.shape[2] or crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 [N, S, S, 3], got {crops.dtype} {tuple(crops.shape)}")
        n = crops.shape[0]
        num_faces = np.asarray(self.num_faces, dtype=np.int64).reshape(-1)
        if not (len(self.keys) == len(self.identities) == num_faces.shape[0] == n):
            raise ValueError(
                f"crops ({n}), keys ({len(self.keys)}), identities ({len(self.identities)}) and num_faces "
                f"({num_faces.shape[0]}) must have the same length"
            )
        if len(set(self.keys)) != n:
            raise ValueError("keys must be unique")
        overlap = set(self.keys) & set(self.failures)
        if overlap:
            raise ValueError(f"keys both aligned and failed: {preview(sorted(overlap))}")
        object.__setattr__(self, "crops", _readonly(crops))
        object.__setattr__(self, "num_faces", _readonly(num_faces))
        object.__setattr__(self, "keys", tuple(self.keys))
        object.__setattr__(self, "identities", tuple(self.identities))
        object.__setattr__(self, "failures", dict(self.failures))
        object.__setattr__(self, "ambiguous", dict(self.ambiguous))
        stray = set(self.ambiguous) - set(self.keys)
        if stray:
            raise ValueError(f"ambiguous keys that were not aligned: {preview(sorted(stray))}")
        object.__setattr__(self, "size", int(crops.shape[1]))
        object.__setattr__(self, "_index", {key: i for i, key in enumerate(self.keys)})

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def index_of(self, key: str) -> int:
        """Row of ``key`` in :attr:`crops`.

        Raises:
            DataError: if the key has no crop (failed alignment, or not in the dataset).
        """
        if key in self._index:
            return self._index[key]
        if key in self.failures:
            raise DataError(f"Image '{key}' has no aligned face: {self.failures[key]}.")
        raise DataError(f"Image '{key}' is not among the aligned images.")

    def select(self, keys: Sequence[str]) -> np.ndarray:
        """The crops of ``keys``, in that order, as a new ``uint8 [len(keys), S, S, 3]`` array."""
        rows = [self.index_of(key) for key in keys]
        return self.crops[np.asarray(rows, dtype=np.int64)] if rows else self.crops[:0].copy()

    def usable_dataset(self, dataset: FaceDataset) -> FaceDataset:
        """``dataset`` without the images whose alignment failed; make splits on this one.

        Raises:
            DataError: if ``dataset`` holds images that were not aligned here.
        """
        missing = [r.key for r in dataset.records if r.key not in self._index and r.key not in self.failures]
        if missing:
            raise DataError(
                f"{len(missing)} images of '{dataset.name}' were not aligned here ({preview(missing)}); "
                "run align_dataset on this dataset."
            )
        kept = tuple(r for r in dataset.records if r.key in self._index)
        if len(kept) < len(dataset):
            logger.info("Dropping %d of %d images without a usable face", len(dataset) - len(kept), len(dataset))
        return FaceDataset(name=dataset.name, root=dataset.root, records=kept, credit=dataset.credit)


def _simple_settings(obj: Any) -> dict[str, Any]:
    """Public attributes of ``obj`` whose values are plain JSON scalars (or tuples/lists of them)."""
    settings: dict[str, Any] = {}
    try:
        attributes = vars(obj)
    except TypeError:
        attributes = {}
    for name in sorted(attributes):
        value = attributes[name]
        if name.startswith("_"):
            continue
        if value is None or isinstance(value, (bool, int, float, str)):
            settings[name] = value
        elif isinstance(value, (tuple, list)) and all(
            v is None or isinstance(v, (bool, int, float, str)) for v in value
        ):
            settings[name] = list(value)
    return settings


def aligner_fingerprint(aligner: Any) -> dict[str, Any]:
    """The settings of an aligner that decide its output, as a JSON-able dict.

    If the aligner has a ``cache_key()`` method (or ``cache_key`` attribute) its value is used; otherwise the
    aligner's class, ``size``, ``scale`` and other plain public attributes, and the same for its ``detector``.
    """
    custom = getattr(aligner, "cache_key", None)
    if custom is not None:
        value = custom() if callable(custom) else custom
        return {"class": type(aligner).__qualname__, "cache_key": value}
    fingerprint: dict[str, Any] = {"class": f"{type(aligner).__module__}.{type(aligner).__qualname__}"}
    fingerprint.update(_simple_settings(aligner))
    for name in ("size", "scale"):
        value = getattr(aligner, name, None)
        if isinstance(value, (bool, int, float, str)):
            fingerprint[name] = value
    detector = getattr(aligner, "detector", None) or getattr(aligner, "_detector", None)
    if detector is not None:
        fingerprint["detector"] = {
            "class": f"{type(detector).__module__}.{type(detector).__qualname__}",
            **_simple_settings(detector),
        }
    return fingerprint


def cache_key(dataset: FaceDataset, aligner: Any) -> str:
    """Hex sha256 naming the cache file of ``dataset`` aligned by ``aligner``."""
    payload = {
        "format": CACHE_FORMAT_VERSION,
        "records": [[r.identity, r.key, r.sha256] for r in dataset.records],
        "aligner": aligner_fingerprint(aligner),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def cache_path(dataset: FaceDataset, aligner: Any) -> Path:
    """Where :func:`align_dataset` caches ``dataset`` aligned by ``aligner``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset.name).strip("_.")[:40] or "dataset"
    return cache_dir() / "aligned" / f"{slug}-{cache_key(dataset, aligner)[:24]}.npz"


def _save(path: Path, faces: AlignedFaces, key: str) -> None:
    failure_keys = list(faces.failures)
    meta = json.dumps({"format": CACHE_FORMAT_VERSION, "key": key, "size": faces.size})
    arrays = {
        "meta": np.array(meta),
        "crops": faces.crops,
        "keys": np.array(faces.keys, dtype=np.str_).reshape(-1),
        "identities": np.array(faces.identities, dtype=np.str_).reshape(-1),
        "num_faces": faces.num_faces,
        "failure_keys": np.array(failure_keys, dtype=np.str_).reshape(-1),
        "failure_reasons": np.array([faces.failures[k] for k in failure_keys], dtype=np.str_).reshape(-1),
        "ambiguous_keys": np.array(list(faces.ambiguous), dtype=np.str_).reshape(-1),
        "ambiguous_reasons": np.array(list(faces.ambiguous.values()), dtype=np.str_).reshape(-1),
    }
    # an .npz that np.load reads, deflated at level 1: on ORL 7x faster to write than np.savez_compressed's
    # default level (0.3 s instead of 2 s, at start-up on a fresh machine) for a file 20 % larger
    with atomic_write(path) as stream, zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def _load(path: Path, dataset: FaceDataset, key: str, size: int | None) -> AlignedFaces:
    """Read and check a cache file; raises ``ValueError``/``OSError``/``KeyError`` if it does not fit."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"][()]))
        if meta.get("format") != CACHE_FORMAT_VERSION or meta.get("key") != key:
            raise ValueError("cache metadata does not match")
        crops = np.array(data["crops"])
        keys = tuple(str(k) for k in data["keys"].tolist())
        identities = tuple(str(k) for k in data["identities"].tolist())
        num_faces = np.array(data["num_faces"])
        failures = dict(zip(data["failure_keys"].tolist(), data["failure_reasons"].tolist(), strict=True))
        ambiguous = dict(zip(data["ambiguous_keys"].tolist(), data["ambiguous_reasons"].tolist(), strict=True))
    if size is not None and crops.shape[1:] != (size, size, 3):
        raise ValueError(f"crops have shape {crops.shape[1:]}, expected ({size}, {size}, 3)")
    expected = [(r.key, r.identity) for r in dataset.records if r.key not in failures]
    if list(zip(keys, identities, strict=True)) != expected:
        raise ValueError("cached keys do not match the dataset")
    if len(keys) + len(failures) != len(dataset) or any(k not in dataset for k in failures):
        raise ValueError("cached failures do not match the dataset")
    return AlignedFaces(
        crops=crops,
        keys=keys,
        identities=identities,
        num_faces=num_faces,
        failures=failures,
        ambiguous=ambiguous,
    )


def _describe(error: BaseException) -> str:
    text = str(error).strip().rstrip(".")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _run(dataset: FaceDataset, aligner: Aligner, batch_size: int, progress: ProgressFn) -> AlignedFaces:
    records = dataset.records
    total = len(records)
    size = int(aligner.size)
    crops: list[np.ndarray] = []
    keys: list[str] = []
    identities: list[str] = []
    num_faces: list[int] = []
    failures: dict[str, str] = {}
    ambiguous: dict[str, str] = {}
    progress(0.0, f"Aligning {total} images")
    for start in range(0, total, batch_size):
        batch = records[start : start + batch_size]
        end = start + len(batch)
        results = aligner.align_batch(
            [str(dataset.path(r)) for r in batch],
            progress=scaled(progress, start / total, end / total),
        )
        if len(results) != len(batch):
            raise RuntimeError(f"align_batch returned {len(results)} results for {len(batch)} images")
        for record, result in zip(batch, results, strict=True):
            if isinstance(result, DLFDError):
                failures[record.key] = _describe(result)
                continue
            if isinstance(result, BaseException):
                raise result
            crop = np.asarray(result.crop)
            if crop.shape != (size, size, 3) or crop.dtype != np.uint8:
                raise RuntimeError(
                    f"aligner returned a {crop.dtype} {crop.shape} crop for {record.key}, expected uint8 "
                    f"({size}, {size}, 3)"
                )
            crops.append(crop)
            keys.append(record.key)
            identities.append(record.identity)
            num_faces.append(int(getattr(result, "num_faces", 1)))
            if getattr(result, "ambiguous", ""):
                ambiguous[record.key] = str(result.ambiguous)
        progress(end / total, f"Aligned {end}/{total} images")
    array = np.stack(crops) if crops else np.zeros((0, size, size, 3), dtype=np.uint8)
    return AlignedFaces(
        crops=array,
        keys=tuple(keys),
        identities=tuple(identities),
        num_faces=np.asarray(num_faces, dtype=np.int64),
        failures=failures,
        ambiguous=ambiguous,
    )


def align_dataset(
    dataset: FaceDataset,
    aligner: Aligner | None = None,
    *,
    cache: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressFn = no_progress,
) -> AlignedFaces:
    """Detect and align the face in every image of ``dataset``, reusing the on-disk cache when it fits.

    Args:
        dataset: the images.
        aligner: the aligner; a default ``dlfd_core.faces.FaceAligner()`` if ``None``.
        cache: read and write the cache in ``cache_dir()/aligned``; ``False`` always recomputes and writes nothing.
        batch_size: images per ``align_batch`` call.
        progress: receives 0..1 while aligning (jumps to 1.0 on a cache hit).

    Returns:
        The crops, in record order, and the failures (images with no usable face, with the reason).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if aligner is None:
        from dlfd_core.faces import FaceAligner

        aligner = FaceAligner()
    path: Path | None = None
    key = ""
    if cache:
        try:
            key = cache_key(dataset, aligner)
            path = cache_path(dataset, aligner)
        except OSError as error:
            logger.warning("Aligned-face cache unavailable (%s); aligning without it", error)
        if path is not None and path.exists():
            try:
                faces = _load(path, dataset, key, int(aligner.size))
            except Exception as error:  # noqa: BLE001 - any unreadable cache is rebuilt
                logger.warning("Aligned-face cache %s is unusable (%s); rebuilding it", path, _describe(error))
            else:
                logger.info("Aligned-face cache hit: %s (%s)", path, dataset.summary())
                progress(1.0, f"Loaded {len(faces)} aligned faces from the cache")
                return faces
        elif path is not None:
            logger.info("Aligned-face cache miss: %s (%s)", path, dataset.summary())
    faces = _run(dataset, aligner, batch_size, progress)
    if faces.failures:
        logger.info(
            "No usable face in %d of %d images of %s: %s",
            len(faces.failures),
            len(dataset),
            dataset.name,
            preview(list(faces.failures)),
        )
    if path is not None:
        try:
            _save(path, faces, key)
            logger.info("Wrote aligned-face cache %s", path)
        except OSError as error:
            logger.warning("Could not write the aligned-face cache %s: %s", path, error)
    return faces
