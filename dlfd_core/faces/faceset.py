"""Checks on a face set that a person uploads as "all me": copies, near-copies, and faces of someone else.

A face set is enrolled as one new identity, then split into photos to train on and photos held out. Two things
make the result meaningless without a word to the person:

* the same photo twice (the same file, or a re-saved, resized or slightly cropped copy, or two shots of a burst):
  the model is "tested" on a photo it trained on, and a set of 10 copies looks like 10 photos;
* photos of two people under one name: the model learns a mixture, and a held-out photo of the other person is
  counted as a miss.

:func:`check_face_set` finds both from the faces' descriptors (and, for repeats, the files' bytes): it drops repeats of
one photo, groups near-identical faces (so that a split can keep each group on one side), and flags the faces that
look like another person. It decides nothing about training; :func:`dlfd_core.studio.enrol` uses each face once,
keeps near-identical faces out of the test photos of their twins, refuses a set with too few different photos, and
warns about faces of someone else.

The thresholds are distances between L2-normalised 128-d descriptors of the pretrained dlib ResNet (the bundled
``dlib_resnet`` backbone), measured on LFW's photos (``scripts/measure_faceset_thresholds.py``; figures in
``docs/app.md``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NEAR_COPY_DISTANCE",
    "OTHER_PERSON_DISTANCE",
    "SAME_PHOTO_DISTANCE",
    "FaceSetCheck",
    "check_face_set",
    "content_digest",
]

#: Two faces closer than this are one photo (the same pixels, or a lossless re-save): used once.
SAME_PHOTO_DISTANCE = 0.02
#: Two faces closer than this are near-identical (a re-saved, resized or lightly cropped copy, or a burst shot):
#: they are kept together on one side of the train / test split.
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
        keep: indices of the faces to use, in input order: every face but the repeats of one photo.
        repeats: ``(kept, dropped)`` for each face dropped as the same photo as a kept one (identical file or
            pixels, or a descriptor closer than :data:`SAME_PHOTO_DISTANCE`).
        groups: the kept faces in groups of near-identical ones (closer than :data:`NEAR_COPY_DISTANCE`, linked
            transitively), each group in input order, groups ordered by their first face; a face with no near copy is
            a group of one. A split that keeps each group on one side never tests on a copy of a training photo.
        other_person: ``(index, median distance to the other kept faces)`` of each kept face that looks like someone
            else than the rest of the set.
        median_distance: the median pairwise distance among the kept faces (NaN with fewer than 2).
    """

    keep: tuple[int, ...]
    repeats: tuple[tuple[int, int], ...] = ()
    groups: tuple[tuple[int, ...], ...] = ()
    other_person: tuple[tuple[int, float], ...] = ()
    median_distance: float = float("nan")

    @property
    def near_copies(self) -> tuple[tuple[int, ...], ...]:
        """The groups with more than one face."""
        return tuple(group for group in self.groups if len(group) > 1)


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
    same_photo: float = SAME_PHOTO_DISTANCE,
    near_copy: float = NEAR_COPY_DISTANCE,
    other_person: float = OTHER_PERSON_DISTANCE,
) -> FaceSetCheck:
    """Find repeats, near-identical faces and faces of another person in a set meant to show one person.

    Args:
        embeddings: ``[N, D]`` face descriptors, one per face (L2-normalised here).
        digests: one content digest per face's source (see :func:`content_digest`), ``None`` where unknown; equal
            digests are the same photo whatever their descriptors say.
        same_photo: faces closer than this (Euclidean, unit vectors) are the same photo.
        near_copy: faces closer than this are near-identical.
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
    repeats: list[tuple[int, int]] = []
    seen: dict[str, int] = {}
    for i in range(n):
        digest = digests[i] if digests is not None else None
        if digest is not None and digest in seen:
            repeats.append((seen[digest], i))
            continue
        same = [k for k in keep if distances[k, i] < same_photo]
        if same:
            repeats.append((min(same, key=lambda k: distances[k, i]), i))
            continue
        keep.append(i)
        if digest is not None:
            seen[digest] = i
    # near-identical groups: connected components of the "closer than near_copy" graph over the kept faces
    parent = {i: i for i in keep}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a_pos, a in enumerate(keep):
        for b in keep[a_pos + 1 :]:
            if distances[a, b] < near_copy:
                parent[max(root(a), root(b))] = min(root(a), root(b))
    members: dict[int, list[int]] = {}
    for i in keep:
        members.setdefault(root(i), []).append(i)
    groups = tuple(tuple(group) for group in sorted(members.values(), key=lambda g: g[0]))
    flagged: list[tuple[int, float]] = []
    median = float("nan")
    if len(keep) >= 2:
        sub = distances[np.ix_(keep, keep)]
        median = float(np.median(sub[np.triu_indices(len(keep), k=1)]))
        if len(keep) >= 3:
            for row, index in enumerate(keep):
                typical = float(np.median(np.delete(sub[row], row)))
                if typical > other_person:
                    flagged.append((index, typical))
    return FaceSetCheck(
        keep=tuple(keep),
        repeats=tuple(repeats),
        groups=groups,
        other_person=tuple(flagged),
        median_distance=median,
    )
