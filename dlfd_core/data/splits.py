"""Seeded, explicit train / test / holdout / unseen splits, with the forget request, saved as JSON.

How a :class:`Split` divides a dataset:

* ``known`` identities are the model's classes (class index = position in ``known``); ``unseen`` identities are
  never trained on and serve as the evaluation's non-member population (verification impostors, membership
  attacks). ``validation`` identities are never trained on *and never evaluated*: methods that stop or select on a
  score (DLFD's dynamic forgetting, the released DLFD's checkpoint choice) measure their non-members on them, so no
  stopping rule sees the photos the evaluation then scores. :meth:`Split.validation_keys` and
  :meth:`Split.evaluation_nonmember_keys` state which photos play each role.
* Each known identity's images are divided into ``train`` (the original model trains on them), ``test`` (held
  out for accuracy) and ``holdout`` (neither trained nor tested; TMU's twin problem fine-tunes on it and uses the
  original model as that problem's gold model). ``holdout`` may be empty.
* The forget request is one of: ``none``; ``identity`` (forget people: every training image of
  ``forget_identities``; their test images measure forgetting); ``instance`` (forget some training photos of people
  who stay known; ``forget_identities`` is empty and every known identity keeps at least one training image).
  The retain set is the training set minus the forget set; the gold model retrains on it.

Splits are plain data: :func:`make_split` is deterministic for a seed, :func:`save_split` / :func:`load_split`
round-trip exactly, and :func:`validate_split` checks one against its dataset (unknown names, overlaps,
byte-identical files on two sides, impossible forget requests).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dlfd_core.checks import MAX_SEED  # noqa: F401  (re-exported: the split seed limit)
from dlfd_core.checks import check_seed as _check_seed
from dlfd_core.data.aligned import AlignedFaces
from dlfd_core.data.dataset import FaceDataset, natural_key, preview
from dlfd_core.errors import DataError, SplitError
from dlfd_core.paths import atomic_write

SPLIT_FORMAT = "dlfd-split"
SPLIT_FORMAT_VERSION = 1
FORGET_MODES: tuple[str, ...] = ("none", "identity", "instance")
UNSEEN_LABEL = -1


def _keys_map(mapping: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    return {str(identity): tuple(str(k) for k in keys) for identity, keys in mapping.items()}


#: The evaluation's parts of a split, by the role their photos play (see :meth:`Split.part_keys`).
PARTS: tuple[str, ...] = ("retain_train", "retain_test", "forget_train", "forget_test", "unseen")


def nonmember_parts(forget_mode: str) -> tuple[str, ...]:
    """Which parts play the forgotten photos' never-trained counterpart in a membership attack: the unseen people
    when whole people are forgotten (to the gold model a forgotten person is a stranger), else the held-out photos
    of the known people (``retain_test`` and ``forget_test``: to the gold model a forgotten photo is an unseen photo
    of someone it knows). The one rule the evaluation, the verdict and the figures use."""
    return ("unseen",) if forget_mode == "identity" else ("retain_test", "forget_test")


@dataclass(frozen=True)
class Split:
    """Which images of a dataset play which role; see the module docstring.

    Attributes:
        dataset: the dataset's name.
        seed: the seed the split was drawn with.
        known: the model's classes, in class-index order.
        unseen: identities never trained on (the evaluation's non-member population).
        train: known identity -> keys the original model trains on.
        test: known identity -> held-out test keys.
        holdout: known identity -> keys neither trained nor tested (for TMU's twin problem); may be empty.
        forget_mode: ``"none"``, ``"identity"`` or ``"instance"``.
        forget_identities: the identities to forget (identity mode only).
        forget_keys: the training keys to forget.
        forget_seed: the seed instance forgetting was drawn with (``None`` otherwise).
        validation: identities never trained on and never evaluated, for methods' monitoring; may be empty.
    """

    dataset: str
    seed: int
    known: tuple[str, ...]
    unseen: tuple[str, ...]
    train: dict[str, tuple[str, ...]]
    test: dict[str, tuple[str, ...]]
    holdout: dict[str, tuple[str, ...]] = field(default_factory=dict)
    forget_mode: str = "none"
    forget_identities: tuple[str, ...] = ()
    forget_keys: tuple[str, ...] = ()
    forget_seed: int | None = None
    validation: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "known", tuple(self.known))
        object.__setattr__(self, "unseen", tuple(self.unseen))
        object.__setattr__(self, "validation", tuple(self.validation))
        object.__setattr__(self, "train", _keys_map(self.train))
        object.__setattr__(self, "test", _keys_map(self.test))
        object.__setattr__(self, "holdout", _keys_map(self.holdout))
        object.__setattr__(self, "forget_identities", tuple(self.forget_identities))
        object.__setattr__(self, "forget_keys", tuple(self.forget_keys))

    # ----------------------------------------------------------------------------------------------- labels
    @property
    def num_classes(self) -> int:
        """How many classes the model has (``len(known)``)."""
        return len(self.known)

    def label_of(self, identity: str) -> int:
        """The class index of a known identity.

        Raises:
            SplitError: if the identity is not known to this split.
        """
        try:
            return self.known.index(identity)
        except ValueError:
            raise SplitError(_not_known_message(self, identity)) from None

    # ----------------------------------------------------------------------------------------------- key sets
    def _collect(self, mapping: Mapping[str, tuple[str, ...]], identities: Iterable[str]) -> tuple[str, ...]:
        return tuple(key for identity in identities for key in mapping.get(identity, ()))

    @property
    def train_keys(self) -> tuple[str, ...]:
        """Every training key of the original model, in class order."""
        return self._collect(self.train, self.known)

    @property
    def test_keys(self) -> tuple[str, ...]:
        """Every test key, in class order."""
        return self._collect(self.test, self.known)

    @property
    def holdout_keys(self) -> tuple[str, ...]:
        """Every holdout key, in class order."""
        return self._collect(self.holdout, self.known)

    @property
    def retained_identities(self) -> tuple[str, ...]:
        """Known identities that are not being forgotten."""
        forgotten = set(self.forget_identities)
        return tuple(identity for identity in self.known if identity not in forgotten)

    @property
    def forget_train_keys(self) -> tuple[str, ...]:
        """The training keys to forget (the forget set)."""
        return self.forget_keys

    @property
    def retain_train_keys(self) -> tuple[str, ...]:
        """The training keys to keep (the retain set the gold model retrains on)."""
        forget = set(self.forget_keys)
        return tuple(key for key in self.train_keys if key not in forget)

    @property
    def forget_test_keys(self) -> tuple[str, ...]:
        """Test keys of forgotten identities (empty unless in identity mode)."""
        return self._collect(self.test, self.forget_identities)

    @property
    def retain_test_keys(self) -> tuple[str, ...]:
        """Test keys of identities that stay known (all test keys in instance mode)."""
        return self._collect(self.test, self.retained_identities)

    @property
    def retain_holdout_keys(self) -> tuple[str, ...]:
        """Holdout keys of identities that stay known (the forgotten people's photos are not reused)."""
        return self._collect(self.holdout, self.retained_identities)

    def unseen_keys(self, dataset: FaceDataset) -> tuple[str, ...]:
        """Every image key of the unseen identities in ``dataset``."""
        return tuple(record.key for identity in self.unseen for record in dataset.records_of(identity))

    @property
    def never_trained(self) -> tuple[str, ...]:
        """Every identity the model never trains on: the unseen people, then the validation people."""
        return (*self.unseen, *self.validation)

    def validation_keys(self, aligned: AlignedFaces) -> dict[str, tuple[str, ...]]:
        """The photos a method may monitor or select on, never scored by the evaluation.

        Returns:
            ``{"holdout": ..., "nonmembers": ...}``: ``holdout`` are the holdout photos of the people who stay
            known (labelled, never trained on: a validation accuracy, the released DLFD's loss attack);
            ``nonmembers`` are the photos that play the forgotten photos' "never trained" counterpart: in identity
            mode every aligned photo of a :attr:`validation` person (a forgotten person should look like a
            stranger), in instance mode the same holdout photos (a forgotten photo should look like an unseen photo
            of a known person).
        """
        holdout = self.retain_holdout_keys
        if self.forget_mode == "instance":
            return {"holdout": holdout, "nonmembers": holdout}
        people = set(self.validation)
        nonmembers = tuple(k for k, i in zip(aligned.keys, aligned.identities, strict=True) if i in people)
        return {"holdout": holdout, "nonmembers": nonmembers}

    def part_keys(self, aligned: AlignedFaces) -> dict[str, tuple[str, ...]]:
        """The image keys of each non-empty evaluation part (:data:`PARTS`): the retained and forgotten people's
        training and test photos, and ``unseen``, every aligned photo of an unseen person."""
        unseen = set(self.unseen)
        unseen_keys = tuple(k for k, who in zip(aligned.keys, aligned.identities, strict=True) if who in unseen)
        keys = {
            "retain_train": self.retain_train_keys,
            "retain_test": self.retain_test_keys,
            "forget_train": self.forget_train_keys,
            "forget_test": self.forget_test_keys,
            "unseen": unseen_keys,
        }
        return {name: part for name, part in keys.items() if part}

    @property
    def nonmember_parts(self) -> tuple[str, ...]:
        """The parts whose photos the evaluation's attacks score as non-members (:func:`nonmember_parts`)."""
        return nonmember_parts(self.forget_mode)

    def evaluation_nonmember_keys(self, aligned: AlignedFaces) -> tuple[str, ...]:
        """The photos the evaluation's attacks score as non-members: those of :attr:`nonmember_parts`."""
        parts = self.part_keys(aligned)
        return tuple(key for name in self.nonmember_parts for key in parts.get(name, ()))

    def identity_of(self, key: str) -> str | None:
        """The known identity a train/test/holdout key belongs to (``None`` if it is not one of them)."""
        return self._key_identity.get(key)

    @property
    def _key_identity(self) -> dict[str, str]:
        cached = self.__dict__.get("_key_identity_cache")
        if cached is None:
            cached = {
                key: identity
                for mapping in (self.train, self.test, self.holdout)
                for identity, keys in mapping.items()
                for key in keys
            }
            self.__dict__["_key_identity_cache"] = cached
        return cached

    def describe(self) -> str:
        """A one-paragraph plain description for logs and reports."""
        text = (
            f"Split of '{self.dataset}' (seed {self.seed}): {len(self.known)} known identities "
            f"({len(self.train_keys)} train, {len(self.test_keys)} test, {len(self.holdout_keys)} holdout images), "
            f"{len(self.unseen)} unseen identities"
            + (f", {len(self.validation)} validation identities." if self.validation else ".")
        )
        if self.forget_mode == "identity":
            text += (
                f" Forgetting identities {preview(self.forget_identities)} ({len(self.forget_keys)} training images)."
            )
        elif self.forget_mode == "instance":
            text += f" Forgetting {len(self.forget_keys)} training images of identities that stay known."
        return text


def _not_known_message(split: Split, identity: str) -> str:
    where = (
        "an unseen identity (never trained on)"
        if identity in split.unseen
        else "a validation identity (never trained on)"
        if identity in split.validation
        else "not in this split"
    )
    return (
        f"'{identity}' is not a known identity of the split of '{split.dataset}': it is {where}. "
        f"Known ({len(split.known)}): {preview(split.known)}; unseen ({len(split.unseen)}): {preview(split.unseen)}."
    )


# --------------------------------------------------------------------------------------------------- making
def make_split(
    dataset: FaceDataset,
    *,
    seed: int = 0,
    num_unseen: int = 10,
    test_per_identity: int = 3,
    holdout_per_identity: int = 0,
    known_min_images: int | None = None,
    test_fraction: float | None = None,
    holdout_fraction: float | None = None,
    validation_fraction: float = 0.3,
) -> Split:
    """Draw a split with no forget request.

    ``num_unseen`` identities are drawn at random as the unseen population; the rest are known, in natural order.
    Or, with ``known_min_images``, the identities with at least that many images are known and the others unseen
    (LFW's convention: the 62 people with 20 photos or more). For each known identity, ``test_per_identity`` and
    ``holdout_per_identity`` images are drawn at random (or, with ``test_fraction`` / ``holdout_fraction``, that
    fraction of its images, rounded, and at least the per-identity count) and the rest are for training. The same
    dataset and arguments always give the same split. ORL with the defaults: 30 known identities with 7 train /
    3 test images each, 10 unseen.

    Args:
        dataset: the images.
        seed: the random seed.
        num_unseen: how many identities to keep out of training entirely (ignored with ``known_min_images``).
        test_per_identity: test images per known identity (the least, with ``test_fraction``).
        holdout_per_identity: holdout images per known identity (for TMU; 0 for none).
        known_min_images: known identities are exactly those with at least this many images.
        test_fraction, holdout_fraction: the share of each known identity's images held out for test / holdout.
        validation_fraction: the share of the never-trained identities set aside as :attr:`Split.validation`
            (rounded; at least one is always left unseen for the evaluation), drawn from a generator of its own so
            that the other roles do not depend on it.

    Returns:
        The split (``forget_mode="none"``).

    Raises:
        SplitError: if the numbers do not fit the dataset (too few identities or images).
    """
    identities = list(dataset.identities)
    if num_unseen < 0 or test_per_identity < 0 or holdout_per_identity < 0:
        raise SplitError("num_unseen, test_per_identity and holdout_per_identity must not be negative.")
    for name, fraction in (("test_fraction", test_fraction), ("holdout_fraction", holdout_fraction)):
        if fraction is not None and not 0.0 <= fraction < 1.0:
            raise SplitError(f"{name} must lie in [0, 1), got {fraction}.")
    if not 0.0 <= validation_fraction < 1.0:
        raise SplitError(f"validation_fraction must lie in [0, 1), got {validation_fraction}.")
    if (test_fraction or 0.0) + (holdout_fraction or 0.0) >= 1.0:
        raise SplitError("test_fraction + holdout_fraction must leave some images for training.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(identities))
    if known_min_images is not None:
        if known_min_images < 1:
            raise SplitError(f"known_min_images must be at least 1, got {known_min_images}.")
        unseen_set = {i for i in identities if len(dataset.records_of(i)) < known_min_images}
        if len(identities) - len(unseen_set) < 2:
            raise SplitError(
                f"Dataset '{dataset.name}' has {len(identities) - len(unseen_set)} identities with at least "
                f"{known_min_images} images; at least 2 known classes are needed. Lower known_min_images."
            )
    else:
        if len(identities) - num_unseen < 2:
            raise SplitError(
                f"Dataset '{dataset.name}' has {len(identities)} identities; keeping {num_unseen} unseen leaves fewer "
                f"than 2 known classes. Lower num_unseen to at most {max(len(identities) - 2, 0)}."
            )
        unseen_set = {identities[i] for i in order[:num_unseen]}
    known = [identity for identity in identities if identity not in unseen_set]
    unseen = [identity for identity in identities if identity in unseen_set]

    def counts(identity: str) -> tuple[int, int]:
        n = len(dataset.records_of(identity))
        n_test = max(test_per_identity, round(test_fraction * n)) if test_fraction is not None else test_per_identity
        n_hold = (
            max(holdout_per_identity, round(holdout_fraction * n))
            if holdout_fraction is not None
            else holdout_per_identity
        )
        return n_test, n_hold

    short = [f"{i} ({len(dataset.records_of(i))})" for i in known if len(dataset.records_of(i)) < sum(counts(i)) + 1]
    needed = test_per_identity + holdout_per_identity + 1
    if short:
        raise SplitError(
            f"Each known identity needs at least {needed} images ({test_per_identity} test + {holdout_per_identity} "
            f"holdout + 1 train), but these have fewer: {preview(short)}. Lower test_per_identity or "
            f"holdout_per_identity, or remove those identities from the dataset."
        )
    train: dict[str, tuple[str, ...]] = {}
    test: dict[str, tuple[str, ...]] = {}
    holdout: dict[str, tuple[str, ...]] = {}
    for identity in known:
        keys = [record.key for record in dataset.records_of(identity)]
        shuffled = [keys[i] for i in rng.permutation(len(keys))]
        n_test, n_hold = counts(identity)
        test[identity] = _natural(shuffled[:n_test])
        holdout[identity] = _natural(shuffled[n_test : n_test + n_hold])
        train[identity] = _natural(shuffled[n_test + n_hold :])
    if not any(holdout.values()):
        holdout = {}
    n_validation = min(round(validation_fraction * len(unseen)), max(len(unseen) - 1, 0))
    chosen = np.random.default_rng([int(seed), 1]).permutation(len(unseen))[:n_validation]
    validation = {unseen[i] for i in chosen}
    return Split(
        dataset=dataset.name,
        seed=int(seed),
        known=tuple(known),
        unseen=tuple(i for i in unseen if i not in validation),
        train=train,
        test=test,
        holdout=holdout,
        validation=tuple(i for i in unseen if i in validation),
    )


def _natural(keys: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(keys, key=natural_key))


def with_forget_identities(split: Split, identities: Sequence[str]) -> Split:
    """Ask to forget whole identities: all their training images.

    Replaces any earlier forget request of ``split``.

    Args:
        split: the base split.
        identities: known identities to forget (at least one, not all).

    Returns:
        A new split with ``forget_mode="identity"``.

    Raises:
        SplitError: if an identity is not known, repeated, none are given, or all known identities are given.
    """
    requested = [str(i) for i in identities]
    if not requested:
        raise SplitError("Name at least one identity to forget.")
    repeated = sorted({i for i in requested if requested.count(i) > 1}, key=natural_key)
    if repeated:
        raise SplitError(f"These identities are listed twice in the forget request: {', '.join(repeated)}.")
    for identity in requested:
        if identity not in split.known:
            raise SplitError(_not_known_message(split, identity))
    if len(set(requested)) >= len(split.known):
        raise SplitError(
            f"Cannot forget all {len(split.known)} known identities: nothing would be left to retain. "
            "Forget fewer identities."
        )
    forget = tuple(i for i in split.known if i in set(requested))
    keys = tuple(key for identity in forget for key in split.train[identity])
    return replace(split, forget_mode="identity", forget_identities=forget, forget_keys=keys, forget_seed=None)


def with_forget_instances(split: Split, n: int, *, seed: int) -> Split:
    """Ask to forget ``n`` random training images across the known identities (the DLFD paper's protocol).

    Images are drawn uniformly from all training keys, except that every identity keeps at least one training
    image (so each stays a learnable class and this remains instance forgetting). Replaces any earlier request.

    Args:
        split: the base split.
        n: how many training images to forget.
        seed: the random seed of the draw.

    Returns:
        A new split with ``forget_mode="instance"``.

    Raises:
        SplitError: if ``n`` is not positive or exceeds the training images that can be forgotten.
    """
    train_keys = split.train_keys
    limit = len(train_keys) - sum(1 for identity in split.known if split.train.get(identity))
    if n < 1 or n > limit:
        raise SplitError(
            f"Can forget between 1 and {limit} training images (each of the {len(split.known)} known identities "
            f"keeps at least one of its {len(train_keys)} training images); got {n}."
        )
    identity_of = {key: identity for identity in split.known for key in split.train[identity]}
    remaining = {identity: len(split.train[identity]) for identity in split.known}
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for index in rng.permutation(len(train_keys)):
        key = train_keys[int(index)]
        identity = identity_of[key]
        if remaining[identity] > 1:
            chosen.add(key)
            remaining[identity] -= 1
            if len(chosen) == n:
                break
    keys = tuple(key for key in train_keys if key in chosen)
    return replace(split, forget_mode="instance", forget_identities=(), forget_keys=keys, forget_seed=int(seed))


# --------------------------------------------------------------------------------------------------- JSON
def split_to_dict(split: Split) -> dict[str, Any]:
    """A JSON-able dict of ``split``, with the format name and version."""
    return {
        "format": SPLIT_FORMAT,
        "version": SPLIT_FORMAT_VERSION,
        "dataset": split.dataset,
        "seed": split.seed,
        "known": list(split.known),
        "unseen": list(split.unseen),
        "train": {identity: list(keys) for identity, keys in split.train.items()},
        "test": {identity: list(keys) for identity, keys in split.test.items()},
        "holdout": {identity: list(keys) for identity, keys in split.holdout.items()},
        "forget_mode": split.forget_mode,
        "forget_identities": list(split.forget_identities),
        "forget_keys": list(split.forget_keys),
        "forget_seed": split.forget_seed,
        "validation": list(split.validation),
    }


MAX_SPLIT_FILE_BYTES = 64 * 1024 * 1024


def check_seed(value: Any, what: str = "seed") -> int:
    """``value`` as a seed: an integer from 0 to :data:`MAX_SEED` (2**32 - 1, what every seeded generator takes).

    Raises:
        SplitError: naming ``what`` and the bad value (not an integer, a float such as 1e999, negative, too big).
    """
    return _check_seed(value, what, SplitError)


def _text(value: Any, field_name: str, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise SplitError(f"{source}: {field_name} must be non-empty text, got {value!r:.60}.")
    return value


def _text_list(value: Any, field_name: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SplitError(f"{source}: {field_name} must be a list of names, got {value!r:.60}.")
    return tuple(_text(item, f"each entry of {field_name}", source) for item in value)


def _keys_field(value: Any, field_name: str, source: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise SplitError(f"{source}: {field_name} must map identities to lists of image keys, got {value!r:.60}.")
    return {
        _text(identity, f"an identity of {field_name}", source): _text_list(keys, f"{field_name}[{identity!r}]", source)
        for identity, keys in value.items()
    }


def _check_structure(split: Split, source: str) -> None:
    """Consistency that needs no dataset: identities and images listed once, under known identities only."""
    for group_name, group in (("known", split.known), ("unseen", split.unseen), ("validation", split.validation)):
        repeated = sorted({i for i in group if group.count(i) > 1}, key=natural_key)
        if repeated:
            raise SplitError(f"{source} lists {preview(repeated)} more than once among {group_name} identities.")
    _check_roles_disjoint(split, source)
    known = set(split.known)
    roles: dict[str, str] = {}
    for role, mapping in (("train", split.train), ("test", split.test), ("holdout", split.holdout)):
        stray = [i for i in mapping if i not in known]
        if stray:
            raise SplitError(
                f"{source}: its {role} images list identities that are not known: {preview(stray)}. "
                f"Known: {preview(split.known)}."
            )
        for keys in mapping.values():
            for key in keys:
                if key in roles:
                    where = roles[key] if roles[key] == role else f"{roles[key]} and {role}"
                    raise SplitError(
                        f"{source}: image '{key}' appears more than once ({where}); each image must have one role."
                    )
                roles[key] = role
    if split.forget_mode not in FORGET_MODES:
        raise SplitError(f"{source}: unknown forget mode {split.forget_mode!r}; use one of {', '.join(FORGET_MODES)}.")


def _check_roles_disjoint(split: Split, source: str) -> None:
    groups = (("known", split.known), ("unseen", split.unseen), ("validation", split.validation))
    for index, (name_a, a) in enumerate(groups):
        for name_b, b in groups[index + 1 :]:
            both = sorted(set(a) & set(b), key=natural_key)
            if both:
                raise SplitError(
                    f"{source}: {preview(both)} are both {name_a} and {name_b}; an identity can only be one of them."
                )


def split_from_dict(data: Mapping[str, Any], *, source: str = "split") -> Split:
    """Rebuild a split from :func:`split_to_dict` output.

    Every field is checked for its type (names are text, key lists are lists, seeds are integers from 0 to
    :data:`MAX_SEED`) and the split for consistency that needs no dataset (no identity or image listed twice, images
    only under known identities, a known forget mode); :func:`validate_split` checks it against its dataset.

    Raises:
        SplitError: if the format, version or a field is wrong, naming the field and value.
    """
    if not isinstance(data, Mapping) or data.get("format") != SPLIT_FORMAT:
        raise SplitError(f'{source} is not a dlfd split file (no "format": "{SPLIT_FORMAT}").')
    version = data.get("version")
    if version != SPLIT_FORMAT_VERSION:
        raise SplitError(
            f"{source} has split format version {version!r:.40}; this version of dlfd_core reads version "
            f"{SPLIT_FORMAT_VERSION}. Re-create the split with make_split."
        )
    required = ("dataset", "seed", "known", "unseen", "train", "test")
    missing = [name for name in required if name not in data]
    if missing:
        raise SplitError(f"{source} lacks the fields {', '.join(missing)}.")
    forget_seed = data.get("forget_seed")
    forget_mode = data.get("forget_mode", "none")
    split = Split(
        dataset=_text(data["dataset"], "dataset", source),
        seed=check_seed(data["seed"], f"{source}: seed"),
        known=_text_list(data["known"], "known", source),
        unseen=_text_list(data["unseen"], "unseen", source),
        train=_keys_field(data["train"], "train", source),
        test=_keys_field(data["test"], "test", source),
        holdout=_keys_field(data.get("holdout") or {}, "holdout", source),
        forget_mode=_text(forget_mode, "forget_mode", source),
        forget_identities=_text_list(data.get("forget_identities") or [], "forget_identities", source),
        forget_keys=_text_list(data.get("forget_keys") or [], "forget_keys", source),
        forget_seed=None if forget_seed is None else check_seed(forget_seed, f"{source}: forget_seed"),
        validation=_text_list(data.get("validation") or [], "validation", source),
    )
    _check_structure(split, source)
    return split


def save_split(split: Split, path: str | os.PathLike[str]) -> Path:
    """Write ``split`` as JSON (atomically: a temporary file renamed into place).

    Returns:
        The path written.
    """
    target = Path(path)
    text = json.dumps(split_to_dict(split), indent=1, ensure_ascii=False) + "\n"
    with atomic_write(target, "w") as stream:
        stream.write(text)
    return target


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r:.60} appears twice in one object")
        out[key] = value
    return out


def load_split(path: str | os.PathLike[str]) -> Split:
    """Read a split written by :func:`save_split`.

    The file must be strict JSON (no NaN / Infinity, no key twice in an object, at most
    :data:`MAX_SPLIT_FILE_BYTES`) and pass :func:`split_from_dict`'s checks.

    Raises:
        SplitError: if the file is missing, not JSON, nested too deeply, or not a valid split of a supported version.
    """
    source = Path(path)
    try:
        if source.is_file() and source.stat().st_size > MAX_SPLIT_FILE_BYTES:
            raise SplitError(
                f"Split file {source} has {source.stat().st_size} bytes; a split file has at most "
                f"{MAX_SPLIT_FILE_BYTES}."
            )
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SplitError(f"Split file {source} does not exist.") from None
    except IsADirectoryError:
        raise SplitError(f"Split file {source} is a folder, not a JSON file.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SplitError(f"Cannot read split file {source}: {error}.") from error
    try:
        data = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise SplitError(f"Cannot read split file {source}: its JSON is nested too deeply to be a split.") from None
    except ValueError as error:  # json.JSONDecodeError, NaN / Infinity, a key twice
        raise SplitError(f"Cannot read split file {source}: {error}.") from None
    return split_from_dict(data, source=f"Split file {source}")


# --------------------------------------------------------------------------------------------------- checks
def validate_split(split: Split, dataset: FaceDataset) -> None:
    """Check that ``split`` fits ``dataset`` and is self-consistent.

    Raises:
        SplitError: naming the first problem found: a different dataset name; too few known identities; an
            identity or key not in the dataset, or under the wrong identity; an identity both known and unseen;
            an image on two sides; byte-identical files on two sides; a known identity with no training image; a
            bad forget request (unknown mode, identities not known, all identities, keys not in training, an
            identity left without training images in instance mode).
    """
    if split.dataset != dataset.name:
        raise SplitError(
            f"This split was made for dataset '{split.dataset}', not '{dataset.name}'. Make a new split with "
            "make_split for this dataset."
        )
    _check_identities(split, dataset)
    roles = _check_keys(split, dataset)
    _check_duplicate_files(roles, dataset)
    _check_forget(split)


def _check_identities(split: Split, dataset: FaceDataset) -> None:
    available = set(dataset.identities)
    for group_name, group in (("known", split.known), ("unseen", split.unseen), ("validation", split.validation)):
        repeated = sorted({i for i in group if group.count(i) > 1}, key=natural_key)
        if repeated:
            raise SplitError(f"The split lists {preview(repeated)} more than once among {group_name} identities.")
        absent = [i for i in group if i not in available]
        if absent:
            raise SplitError(
                f"The split's {group_name} identities {preview(absent)} are not in dataset '{dataset.name}' "
                f"(it has {preview(dataset.identities)}). Make a new split for this dataset."
            )
    _check_roles_disjoint(split, "The split")
    if len(split.known) < 2:
        raise SplitError(f"A split needs at least 2 known identities (classes); this one has {len(split.known)}.")
    known = set(split.known)
    for mapping_name, mapping in (("train", split.train), ("test", split.test), ("holdout", split.holdout)):
        stray = [i for i in mapping if i not in known]
        if stray:
            raise SplitError(
                f"The split's {mapping_name} images list identities that are not known: {preview(stray)}. "
                f"Known: {preview(split.known)}."
            )
    no_train = [i for i in split.known if not split.train.get(i)]
    if no_train:
        raise SplitError(
            f"Known identities {preview(no_train)} have no training images; a model cannot learn them. Give each "
            "known identity training images, or make it unseen."
        )


def _check_keys(split: Split, dataset: FaceDataset) -> dict[str, str]:
    """Return key -> role for every key of the split (unseen images included)."""
    roles: dict[str, str] = {}
    sides: list[tuple[str, str, str]] = [
        (role, identity, key)
        for role, mapping in (("train", split.train), ("test", split.test), ("holdout", split.holdout))
        for identity, keys in mapping.items()
        for key in keys
    ]
    sides += [
        (role, record.identity, record.key)
        for role, people in (("unseen", split.unseen), ("validation", split.validation))
        for i in people
        for record in dataset.records_of(i)
    ]
    for role, identity, key in sides:
        if key not in dataset:
            raise SplitError(
                f"Image '{key}' ({role}, {identity}) is not in dataset '{dataset.name}'. The dataset changed since "
                "the split was made: make a new split."
            )
        actual = dataset.record(key).identity
        if actual != identity:
            raise SplitError(f"Image '{key}' is listed under {identity} but belongs to {actual} in '{dataset.name}'.")
        if key in roles:
            where = roles[key] if roles[key] == role else f"{roles[key]} and {role}"
            raise SplitError(f"Image '{key}' appears more than once ({where}); each image must have one role.")
        roles[key] = role
    return roles


def _check_duplicate_files(roles: Mapping[str, str], dataset: FaceDataset) -> None:
    by_hash: dict[str, list[str]] = defaultdict(list)
    for key in roles:
        by_hash[dataset.record(key).sha256].append(key)
    for keys in by_hash.values():
        sides = {roles[key] for key in keys}
        if len(sides) > 1:
            listed = ", ".join(f"{key} ({roles[key]})" for key in sorted(keys, key=natural_key))
            raise SplitError(
                f"Identical image files are on different sides of the split: {listed}. The copy leaks "
                "between them; remove the duplicate files from the dataset and make a new split."
            )


def _check_forget(split: Split) -> None:
    mode = split.forget_mode
    if mode not in FORGET_MODES:
        raise SplitError(f"Unknown forget mode '{mode}'; use one of {', '.join(FORGET_MODES)}.")
    train_set = set(split.train_keys)
    if len(set(split.forget_keys)) != len(split.forget_keys):
        raise SplitError("The forget request lists an image more than once.")
    outside = [key for key in split.forget_keys if key not in train_set]
    if outside:
        raise SplitError(
            f"Images {preview(outside)} are in the forget request but are not training images; only images the "
            "model was trained on can be forgotten."
        )
    if mode == "none":
        if split.forget_identities or split.forget_keys:
            raise SplitError("forget_mode is 'none' but the split names images or identities to forget.")
        return
    if mode == "identity":
        if not split.forget_identities:
            raise SplitError("forget_mode is 'identity' but no identities are named; use with_forget_identities.")
        for identity in split.forget_identities:
            if identity not in split.known:
                raise SplitError(_not_known_message(split, identity))
        if len(set(split.forget_identities)) >= len(split.known):
            raise SplitError("The split forgets every known identity; nothing would be left to retain.")
        expected = {key for identity in split.forget_identities for key in split.train[identity]}
        if set(split.forget_keys) != expected:
            raise SplitError(
                "In identity mode the forget images must be exactly the training images of the forgotten "
                "identities; re-create the request with with_forget_identities."
            )
        return
    if split.forget_identities:
        raise SplitError("forget_mode is 'instance' but identities are named; use with_forget_identities for those.")
    if not split.forget_keys:
        raise SplitError("forget_mode is 'instance' but no images are named; use with_forget_instances.")
    forget = set(split.forget_keys)
    emptied = [i for i in split.known if all(key in forget for key in split.train[i])]
    if emptied:
        raise SplitError(
            f"The forget request removes every training image of {preview(emptied)}; that is forgetting the "
            "identity: use with_forget_identities, or forget fewer images."
        )


# --------------------------------------------------------------------------------------------------- crops
def aligned_for(
    aligned: AlignedFaces,
    split: Split,
    keys: Sequence[str],
    *,
    allow_unseen: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The crops and class labels of ``keys`` under ``split``.

    Args:
        aligned: the dataset's aligned faces.
        split: gives each key's class (the index of its identity in ``split.known``).
        keys: image keys, e.g. ``split.retain_train_keys``.
        allow_unseen: accept keys of identities never trained on (unseen or validation), labelled
            ``UNSEEN_LABEL`` (-1).

    Returns:
        ``uint8 [N, S, S, 3]`` crops and ``int64 [N]`` labels, in the order of ``keys``.

    Raises:
        SplitError: if a key has no aligned face (make the split on ``aligned.usable_dataset(dataset)``), or is not
            a train/test/holdout key of a known identity (and not an allowed unseen one).
    """
    unseen = set(split.never_trained)
    key_identity = dict(zip(aligned.keys, aligned.identities, strict=True))
    labels = np.empty(len(keys), dtype=np.int64)
    for position, key in enumerate(keys):
        identity = split.identity_of(key)
        if identity is None:
            owner = key_identity.get(key)
            if allow_unseen and owner is not None and owner in unseen:
                labels[position] = UNSEEN_LABEL
                continue
            if key in aligned.failures:
                raise SplitError(
                    f"Image '{key}' has no aligned face ({aligned.failures[key]}); make the split on "
                    "aligned.usable_dataset(dataset)."
                )
            if owner is not None and owner in unseen:
                raise SplitError(f"Image '{key}' belongs to unseen identity {owner}; pass allow_unseen=True.")
            raise SplitError(f"Image '{key}' is not a train, test or holdout image of split '{split.dataset}'.")
        labels[position] = split.label_of(identity)
    try:
        crops = aligned.select(keys)
    except DataError as error:
        raise SplitError(f"{error} Make the split on aligned.usable_dataset(dataset).") from error
    return crops, labels
