"""An immutable description of a labelled collection of face images.

A :class:`FaceDataset` is a name, a root folder and a tuple of :class:`FaceRecord` (identity, key, sha256). The
key is a stable path relative to the root (``s3/7.pgm``) and is what splits, caches and reports refer to; the
sha256 of the file's bytes is what duplicate checks compare.

Duplicates (byte-identical files) are handled by :meth:`FaceDataset.build`, the checked constructor every loader
uses:

* the same file under two *different* identities is a labelling error: a :class:`~dlfd_core.errors.DataError`
  naming the files, because no choice of label is right and either copy would leak between identities;
* the same file twice under *one* identity is harmless for labels but would leak between a split's train and
  test sides, so the copies are dropped with a warning, keeping the first key in natural order.

Only exact copies are found; re-encoded or resized copies of a photo are not.
The plain constructor takes records as given (it only checks that keys are unique), so :meth:`duplicates` can
report on any collection, and :func:`~dlfd_core.data.splits.validate_split` checks duplicates across splits again.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from dlfd_core.errors import DataError

logger = logging.getLogger(__name__)

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers by value: ``s2`` before ``s10``, ``2.pgm`` before ``10.pgm``.

    Args:
        text: the string to sort.

    Returns:
        A tuple that compares numbers numerically and other text case-insensitively (exact text breaks ties).
    """
    parts: list[tuple[int, int | str]] = []
    for index, chunk in enumerate(_DIGITS.split(text)):
        if not chunk:
            continue
        if index % 2 == 1:
            parts.append((0, int(chunk)))
        else:
            parts.append((1, chunk.casefold()))
    parts.append((2, text))
    return tuple(parts)


def natural_sorted(items: Iterable[str]) -> list[str]:
    """Return ``items`` sorted with :func:`natural_key`."""
    return sorted(items, key=natural_key)


def preview(names: Iterable[str], limit: int = 8) -> str:
    """Format a list of names for an error message, eliding the middle of long lists."""
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    head = ", ".join(names[: limit - 2])
    return f"{head}, ..., {', '.join(names[-2:])} ({len(names)} in all)"


@dataclass(frozen=True)
class FaceRecord:
    """One image of one person.

    Attributes:
        identity: the person's label (a folder name such as ``s3``).
        key: the image's path relative to the dataset root, with ``/`` separators (``s3/7.pgm``).
        sha256: hex sha256 of the file's bytes.
    """

    identity: str
    key: str
    sha256: str


def _sort_records(records: Iterable[FaceRecord]) -> tuple[FaceRecord, ...]:
    return tuple(sorted(records, key=lambda r: (natural_key(r.identity), natural_key(r.key))))


def find_duplicates(records: Iterable[FaceRecord]) -> list[tuple[FaceRecord, ...]]:
    """Group records whose files have identical bytes.

    Args:
        records: the records to check.

    Returns:
        One tuple per sha256 shared by two or more records, each in natural (identity, key) order; groups are
        ordered by their first record.
    """
    groups: dict[str, list[FaceRecord]] = defaultdict(list)
    for record in _sort_records(records):
        groups[record.sha256].append(record)
    return [tuple(group) for group in groups.values() if len(group) > 1]


@dataclass(frozen=True)
class FaceDataset:
    """A labelled face-image collection: ``root/<key>`` is the file of each record.

    Records are kept in natural (identity, key) order. Use :meth:`build` to construct one with duplicate
    checks; the plain constructor only requires unique keys.

    Attributes:
        name: a short name used in splits, caches and reports (``orl``).
        root: the folder the keys are relative to.
        records: the images, one record each.
        credit: attribution text to show wherever the data is used (may be empty).
    """

    name: str
    root: Path
    records: tuple[FaceRecord, ...]
    credit: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "records", _sort_records(self.records))
        if not self.name:
            raise DataError("A dataset needs a non-empty name.")
        seen: set[str] = set()
        repeated: list[str] = []
        for record in self.records:
            if not record.identity or not record.key:
                raise DataError(f"Dataset '{self.name}' has a record with an empty identity or key: {record}.")
            if record.key in seen:
                repeated.append(record.key)
            seen.add(record.key)
        if repeated:
            raise DataError(f"Dataset '{self.name}' lists these image keys more than once: {preview(repeated)}.")

    @classmethod
    def build(
        cls,
        name: str,
        root: str | Path,
        records: Iterable[FaceRecord],
        *,
        credit: str = "",
    ) -> FaceDataset:
        """Construct a dataset, rejecting cross-identity duplicates and dropping same-identity ones.

        Args:
            name: the dataset's name.
            root: the folder the keys are relative to.
            records: the images.
            credit: attribution text.

        Returns:
            The checked dataset.

        Raises:
            DataError: if one file (by sha256) appears under two or more identities, or keys repeat.
        """
        records = _sort_records(records)
        groups = find_duplicates(records)
        conflicts = [g for g in groups if len({r.identity for r in g}) > 1]
        if conflicts:
            lines = [" = ".join(r.key for r in group) for group in conflicts[:5]]
            more = f" (and {len(conflicts) - 5} more groups)" if len(conflicts) > 5 else ""
            raise DataError(
                f"Dataset '{name}' has identical image files under different identities: "
                f"{'; '.join(lines)}{more}. Each photo must belong to exactly one person: delete the wrong copies "
                f"under {root} and load it again."
            )
        dropped: set[str] = set()
        for group in groups:
            kept, *others = group
            dropped.update(r.key for r in others)
            logger.warning(
                "Dataset '%s': %s are identical copies of %s; keeping only %s.",
                name,
                ", ".join(r.key for r in others),
                kept.key,
                kept.key,
            )
        return cls(name=name, root=Path(root), records=tuple(r for r in records if r.key not in dropped), credit=credit)

    def __len__(self) -> int:
        return len(self.records)

    @cached_property
    def identities(self) -> tuple[str, ...]:
        """The identities in natural sort order (``s1, s2, ..., s10``)."""
        return tuple(natural_sorted({r.identity for r in self.records}))

    @cached_property
    def _by_identity(self) -> dict[str, tuple[FaceRecord, ...]]:
        grouped: dict[str, list[FaceRecord]] = defaultdict(list)
        for record in self.records:
            grouped[record.identity].append(record)
        return {identity: tuple(grouped[identity]) for identity in self.identities}

    @cached_property
    def _by_key(self) -> dict[str, FaceRecord]:
        return {record.key: record for record in self.records}

    def records_of(self, identity: str) -> tuple[FaceRecord, ...]:
        """The records of one identity, in natural key order.

        Raises:
            DataError: if the dataset has no such identity.
        """
        try:
            return self._by_identity[identity]
        except KeyError:
            raise DataError(
                f"Dataset '{self.name}' has no identity '{identity}'; it has {preview(self.identities)}."
            ) from None

    def record(self, key: str) -> FaceRecord:
        """The record with this key.

        Raises:
            DataError: if the dataset has no such key.
        """
        try:
            return self._by_key[key]
        except KeyError:
            raise DataError(f"Dataset '{self.name}' has no image '{key}'.") from None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._by_key

    def path(self, record: FaceRecord | str) -> Path:
        """The file of a record (or of a key)."""
        key = record.key if isinstance(record, FaceRecord) else record
        return self.root.joinpath(*key.split("/"))

    def load_image(self, record: FaceRecord | str) -> np.ndarray:
        """Read a record's image as ``uint8 [H, W, 3]`` RGB.

        Raises:
            ImageError: if the file cannot be read as an image.
        """
        from dlfd_core.faces import load_image

        return load_image(self.path(record))

    def duplicates(self) -> list[tuple[FaceRecord, ...]]:
        """Groups of records whose files are byte-identical (empty for a dataset made by :meth:`build`)."""
        return find_duplicates(self.records)

    def summary(self) -> str:
        """One line for logs and reports: name, identities, images."""
        return f"{self.name}: {len(self.identities)} identities, {len(self)} images"
