"""Checks on a face set that a person uploads as "all me": copies, near-copies, and faces of someone else.

A face set is enrolled as one new identity, then split into photos to train on and photos held out. Two things
make the result meaningless without a word to the person:

* the same photo twice (the same file, or a re-saved, resized or slightly cropped copy): the model is "tested" on a
  photo it trained on, and a set of 10 copies looks like 10 photos;
* photos of two people under one name: the model learns a mixture, and a held-out photo of the other person is
  counted as a miss.

:func:`check_face_set` finds both from the faces' embeddings (and, for exact copies, the files' bytes), merges the
copies and flags the faces that look like another person. It decides nothing about training; the caller says what
it found and acts on it (:func:`dlfd_core.studio.enrol` keeps one face of each group of copies and warns about the
others).

The thresholds are distances between L2-normalised 128-d descriptors of the pretrained dlib ResNet (the bundled
``dlib_resnet`` backbone), measured on LFW's photos (``scripts/measure_faceset_thresholds.py``; figures in
``docs/app.md``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "NEAR_COPY_DISTANCE",
    "OTHER_PERSON_DISTANCE",
    "FaceSetCheck",
    "check_face_set",
    "content_digest",
]

#: Two faces closer than this are copies of one photo (re-saved, resized, lightly cropped or recoloured).
NEAR_COPY_DISTANCE = 0.15
#: A face whose median distance to the rest of the set is above this looks like another person.
OTHER_PERSON_DISTANCE = 0.5


def content_digest(data: bytes | np.ndarray) -> str:
    """The sha256 of a file's bytes or of an image array (its shape and pixels)."""
    digest = hashlib.sha256()
    if isinstance(data, np.ndarray):
        digest.update(repr((data.shape, str(data.dtype))).encode())
        digest.update(np.ascontiguousarray(data).tobytes())
    else:
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class FaceSetCheck:
    """What :func:`check_face_set` found.

    Attributes:
        keep: indices of the faces to use, one per group of copies (the first of each), in input order.
        copies: ``(kept, dropped, distance)`` for each face dropped as a copy of a kept one (distance 0.0 for
            identical files).
        other_person: indices (into the input) of kept faces that look like someone else than the rest of the set,
            with their median distance to the other kept faces.
        median_distance: the median pairwise distance among the kept faces (NaN with fewer than 2).
    """

    keep: tuple[int, ...]
    copies: tuple[tuple[int, int, float], ...] = ()
    other_person: tuple[tuple[int, float], ...] = ()
    median_distance: float = float("nan")
    _dropped: frozenset[int] = field(default=frozenset(), repr=False)

    def is_copy(self, index: int) -> bool:
        """Whether face ``index`` was dropped as a copy of another."""
        return index in self._dropped


def _normalised(embeddings: np.ndarray) -> np.ndarray:
    array = np.asarray(embeddings, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.maximum(norms, 1e-12)


def check_face_set(
    embeddings: np.ndarray,
    *,
    digests: Sequence[str | None] | None = None,
    near_copy: float = NEAR_COPY_DISTANCE,
    other_person: float = OTHER_PERSON_DISTANCE,
) -> FaceSetCheck:
    """Find copies and faces of another person in a set meant to show one person.

    Args:
        embeddings: ``[N, D]`` face descriptors, one per face (L2-normalised here).
        digests: one content digest per face's source (see :func:`content_digest`), ``None`` where unknown; equal
            digests are copies whatever their embeddings say.
        near_copy: faces closer than this (Euclidean, unit vectors) are copies.
        other_person: a kept face whose median distance to the other kept faces is above this is flagged, when at
            least 3 faces are kept (with 2, neither can be told to be the odd one).

    Returns:
        A :class:`FaceSetCheck`.
    """
    unit = _normalised(embeddings)
    n = unit.shape[0]
    if digests is not None and len(digests) != n:
        raise ValueError(f"{len(digests)} digests for {n} faces")
    distances = np.sqrt(np.maximum(2.0 - 2.0 * unit @ unit.T, 0.0))  # [N, N]
    keep: list[int] = []
    copies: list[tuple[int, int, float]] = []
    seen: dict[str, int] = {}
    for i in range(n):
        digest = digests[i] if digests is not None else None
        if digest is not None and digest in seen:
            copies.append((seen[digest], i, 0.0))
            continue
        close = [k for k in keep if distances[k, i] < near_copy]
        if close:
            first = min(close, key=lambda k: distances[k, i])
            copies.append((first, i, float(distances[first, i])))
            continue
        keep.append(i)
        if digest is not None:
            seen[digest] = i
    flagged: list[tuple[int, float]] = []
    median = float("nan")
    if len(keep) >= 2:
        sub = distances[np.ix_(keep, keep)]
        median = float(np.median(sub[np.triu_indices(len(keep), k=1)]))
        if len(keep) >= 3:
            for row, index in enumerate(keep):
                others = np.delete(sub[row], row)
                typical = float(np.median(others))
                if typical > other_person:
                    flagged.append((index, typical))
    return FaceSetCheck(
        keep=tuple(keep),
        copies=tuple(copies),
        other_person=tuple(flagged),
        median_distance=median,
        _dropped=frozenset(dropped for _, dropped, _ in copies),
    )
