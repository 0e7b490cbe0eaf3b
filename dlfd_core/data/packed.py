"""Aligned face crops packed for shipping: JPEG files in tar shards, with a JSON index.

A bundled dataset (``assets/lfw``) is a folder holding

* ``index.json``: the dataset's name and credit, where it came from, the aligner's settings, every source photo
  (identity, key, the source file's sha256, how many faces it showed), the photos without a usable face and why,
  the photos where the choice of face was not clear and why, and each shard's file name, size and sha256;
* ``crops-NN.tar``: the crops of the aligned photos as JPEG files named by their key (``Name/Name_0001.jpg``),
  people in natural order, each shard under :data:`SHARD_BYTES` (a Hugging Face Space stores files of 10 MB or more
  through Git LFS).

Writing is byte-reproducible: for the same crops and settings, the same bytes (JPEG encoding is deterministic for
a given Pillow build; the tar headers carry no time, owner or permission that varies). Reading checks every shard's
sha256 before use and every crop's presence and size, so a truncated or edited asset is refused with the command
that rebuilds it.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import logging
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dlfd_core.data.aligned import AlignedFaces
from dlfd_core.data.dataset import FaceDataset, FaceRecord, natural_key
from dlfd_core.errors import DataError
from dlfd_core.paths import atomic_write, sha256_file
from dlfd_core.progress import ProgressFn, no_progress

logger = logging.getLogger(__name__)

PACKED_FORMAT = 1
INDEX_NAME = "index.json"
#: The largest shard written, in bytes (below Hugging Face's 10 MB limit for files kept outside Git LFS).
SHARD_BYTES = 9_000_000
#: JPEG quality of the packed crops.
JPEG_QUALITY = 90


@dataclass(frozen=True, eq=False)
class PackedFaces:
    """A packed dataset as read back: the source photos' records, their aligned crops, and the index's metadata."""

    dataset: FaceDataset
    aligned: AlignedFaces
    meta: Mapping[str, Any]


def member_name(key: str) -> str:
    """The file name of a key's crop inside a shard: the key with a ``.jpg`` ending."""
    return key if key.lower().endswith((".jpg", ".jpeg")) else f"{key}.jpg"


def encode_jpeg(crop: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """One crop as baseline JPEG bytes (optimised Huffman tables, 4:2:0 chroma, no metadata)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(crop, dtype=np.uint8)).save(
        buffer, format="JPEG", quality=quality, optimize=True, subsampling="4:2:0"
    )
    return buffer.getvalue()


def _tar_size(content: int) -> int:
    """The size of a tar archive whose members take ``content`` bytes (headers and padding included): two zero
    blocks end it, and the whole is padded to tar's 10,240-byte records."""
    return -(-(content + 1024) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A tar archive of ``(name, data)`` files with fixed headers (no time, owner or mode that varies)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_packed(
    folder: str | Path,
    dataset: FaceDataset,
    aligned: AlignedFaces,
    *,
    source: Mapping[str, Any],
    aligner: Mapping[str, Any],
    quality: int = JPEG_QUALITY,
    shard_bytes: int = SHARD_BYTES,
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Pack ``aligned`` (crops of ``dataset``'s photos) into ``folder``; return the index written.

    Old shards in ``folder`` that the new index does not list are deleted; every file is written atomically.

    Args:
        folder: the asset folder (created if needed).
        dataset: the source photos (their records are kept in the index).
        aligned: the crops, from :func:`~dlfd_core.data.align_dataset` on ``dataset``.
        source: where the photos came from (free-form, kept in the index).
        aligner: the aligner's settings (kept in the index).
        quality: JPEG quality, 1..95.
        shard_bytes: the largest shard, in bytes.
    """
    if not 1 <= quality <= 95:
        raise ValueError(f"quality must lie in 1..95, got {quality}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[list[tuple[str, bytes]]] = [[]]
    size = 0
    where: dict[str, int] = {}
    keys = sorted(aligned.keys, key=lambda k: (natural_key(aligned.identities[aligned.index_of(k)]), natural_key(k)))
    for done, key in enumerate(keys, 1):
        data = encode_jpeg(aligned.crops[aligned.index_of(key)], quality)
        entry = 512 + -(-len(data) // 512) * 512  # a header block, then the data in 512-byte blocks
        if shards[-1] and _tar_size(size + entry) > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((member_name(key), data))
        where[key] = len(shards) - 1
        size += entry
        if done % 200 == 0 or done == len(keys):
            progress(0.9 * done / len(keys), f"encoded {done}/{len(keys)} crops")
    listed = []
    for number, members in enumerate(shards):
        name = f"crops-{number:02d}.tar"
        blob = _tar_bytes(members)
        with atomic_write(out / name) as handle:
            handle.write(blob)
        listed.append({"file": name, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()})
    wanted = {entry["file"] for entry in listed}
    for stale in out.glob("crops-*.tar"):
        if stale.name not in wanted:
            stale.unlink()
    index = {
        "format": PACKED_FORMAT,
        "name": dataset.name,
        "credit": dataset.credit,
        "source": dict(source),
        "aligner": dict(aligner),
        "crop_size": aligned.size,
        "jpeg_quality": quality,
        "counts": {
            "identities": len(dataset.identities),
            "photos": len(dataset),
            "aligned": len(aligned),
            "failed": len(aligned.failures),
            "ambiguous": len(aligned.ambiguous),
        },
        "shards": listed,
        "photos": [
            [r.identity, r.key, r.sha256, int(aligned.num_faces[aligned.index_of(r.key)]) if r.key in aligned else 0]
            + ([where[r.key]] if r.key in where else [None])
            for r in dataset.records
        ],
        "failures": dict(sorted(aligned.failures.items(), key=lambda kv: natural_key(kv[0]))),
        "ambiguous": dict(sorted(aligned.ambiguous.items(), key=lambda kv: natural_key(kv[0]))),
    }
    with atomic_write(out / INDEX_NAME) as handle:
        handle.write((json.dumps(index, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    progress(1.0, f"wrote {len(listed)} shards")
    return index


def read_index(folder: str | Path) -> dict[str, Any]:
    """The index of a packed dataset (checked for its format only)."""
    path = Path(folder) / INDEX_NAME
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"No packed dataset at {Path(folder)}: {INDEX_NAME} is missing.") from None
    except (OSError, ValueError) as error:
        raise DataError(f"Cannot read {path}: {error}") from error
    if not isinstance(index, dict) or index.get("format") != PACKED_FORMAT:
        raise DataError(f"{path} is not a packed dataset of format {PACKED_FORMAT}.")
    return index


def read_packed(folder: str | Path, *, rebuild_hint: str = "", progress: ProgressFn = no_progress) -> PackedFaces:
    """Read a packed dataset: every shard's sha256 is checked, every aligned photo's crop must be present.

    Args:
        folder: the asset folder.
        rebuild_hint: the command that rebuilds the asset, for the error messages.
        progress: receives the fraction of shards read.

    Raises:
        DataError: a file is missing, does not match its sha256, or the index and the shards disagree.
    """
    root = Path(folder)
    hint = f" Rebuild it: {rebuild_hint}" if rebuild_hint else ""
    index = read_index(root)
    size = int(index["crop_size"])
    photos = index["photos"]
    records = [FaceRecord(identity=p[0], key=p[1], sha256=p[2]) for p in photos]
    dataset = FaceDataset(name=index["name"], root=root, records=tuple(records), credit=index.get("credit", ""))
    failures = dict(index.get("failures", {}))
    wanted = {member_name(p[1]): p[1] for p in photos if p[1] not in failures}
    blobs: dict[str, bytes] = {}
    shards = index["shards"]
    for number, shard in enumerate(shards):
        path = root / shard["file"]
        if not path.is_file():
            raise DataError(f"The packed dataset at {root} is missing {shard['file']}.{hint}")
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != shard["sha256"]:
            raise DataError(f"{path} does not match its sha256 in {INDEX_NAME} (corrupted or replaced).{hint}")
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
            for member in tar:
                key = wanted.get(member.name)
                handle = tar.extractfile(member) if member.isfile() else None
                if key is None or handle is None:
                    raise DataError(f"{path} holds {member.name!r}, which {INDEX_NAME} does not list.{hint}")
                blobs[key] = handle.read()
        progress(0.5 * (number + 1) / len(shards), f"read {number + 1}/{len(shards)} shards")

    order = [r for r in dataset.records if r.key in blobs]
    array = np.empty((len(order), size, size, 3), dtype=np.uint8)

    def decode(row: int) -> None:
        key = order[row].key
        with Image.open(io.BytesIO(blobs[key])) as image:
            image.load()
            if image.mode != "RGB" or image.size != (size, size):
                raise DataError(
                    f"The crop of {key} in {root} is {image.mode} {image.size}, not {size}x{size} RGB.{hint}"
                )
            array[row] = np.asarray(image)

    # Pillow decodes without holding the GIL: threads share the work
    with concurrent.futures.ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        list(pool.map(decode, range(len(order))))
    progress(1.0, f"decoded {len(order)} crops")
    missing = [key for key in wanted.values() if key not in blobs]
    if missing:
        raise DataError(f"The packed dataset at {root} lacks the crops of {len(missing)} photos.{hint}")
    num_faces = {p[1]: int(p[3]) for p in photos}
    aligned = AlignedFaces(
        crops=array,
        keys=tuple(r.key for r in order),
        identities=tuple(r.identity for r in order),
        num_faces=np.asarray([num_faces[r.key] for r in order], dtype=np.int64),
        failures=failures,
        ambiguous=dict(index.get("ambiguous", {})),
    )
    meta = {k: v for k, v in index.items() if k not in ("photos", "failures", "ambiguous")}
    return PackedFaces(dataset=dataset, aligned=aligned, meta=meta)


def packed_sha256(folder: str | Path) -> dict[str, str]:
    """File name -> sha256 of every file of a packed dataset (the index and the shards), as on disk."""
    root = Path(folder)
    index = read_index(root)
    names = [INDEX_NAME, *(shard["file"] for shard in index["shards"])]
    return {name: sha256_file(root / name) for name in names}
