"""How unlearning moved the forgotten photos in the embedding: their distance to the people the model keeps, and
how far each photo moved from where the original model put it (cosine geometry, :func:`~.metrics.unit_rows`)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..errors import DataError
from .metrics import unit_rows
from .outputs import SplitOutputs, check_parts

__all__ = ["distance_to_retained", "feature_shift", "forget_feature_moved"]

Parts = Mapping[str, SplitOutputs]


def _present(parts: Parts, name: str) -> bool:
    return name in parts and len(parts[name].identities) > 0


def forget_feature_moved(before: Parts, after: Parts) -> float:
    """How far the forgotten photos' embeddings moved from the original model's: the mean over ``forget_train`` of
    ``1 - cos(f_original, f_model)`` (0: not moved). NaN without forget photos, with embeddings of another size or
    with non-finite ones; the two parts must list the same photos in the same order."""
    a, b = before.get("forget_train"), after.get("forget_train")
    if a is None or b is None or not len(a.identities) or a.features.shape != b.features.shape:
        return math.nan
    if not (np.isfinite(a.features).all() and np.isfinite(b.features).all()):  # a diverged model
        return math.nan
    x = unit_rows(a.features, "before forget_train")
    y = unit_rows(b.features, "after forget_train")
    return float(np.mean(1.0 - np.sum(x * y, axis=1)))


def distance_to_retained(parts: Parts, what: str) -> float:
    """Mean cosine distance from each forget_train photo to the nearest retained person's centroid."""
    if not _present(parts, "forget_train"):
        return math.nan
    if not _present(parts, "retain_train"):
        raise DataError(f"{what} outputs need a non-empty 'retain_train' part to place the retained people")
    retain = parts["retain_train"]
    retain_unit = unit_rows(retain.features, f"{what} retain_train")
    forget_unit = unit_rows(parts["forget_train"].features, f"{what} forget_train")
    if forget_unit.shape[1] != retain_unit.shape[1]:
        raise DataError(
            f"{what}: forget_train features have {forget_unit.shape[1]} dimensions, retain_train {retain_unit.shape[1]}"
        )
    ids = np.asarray(retain.identities)
    people = np.unique(ids)
    centroids = np.stack([retain_unit[ids == person].mean(axis=0) for person in people])  # [P, D]
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    nearest = (forget_unit @ centroids.T).max(axis=1)  # [F] highest cosine similarity
    return float(np.mean(1.0 - nearest))


def feature_shift(before: Mapping[str, SplitOutputs], after: Mapping[str, SplitOutputs]) -> dict[str, float]:
    """How far the forgotten photos' embeddings moved, relative to the retained people.

    All features are L2-normalised first; a cosine distance is ``1 - cos`` (0: same direction, 1: orthogonal).
    For each model, the retained people are placed by their centroids: the mean of each identity's normalised
    ``retain_train`` features, normalised again. Then:

    * ``before`` / ``after``: mean over the ``forget_train`` photos of the cosine distance to the *nearest*
      retained-person centroid, under the original / unlearned model. Larger means the forgotten photos sit
      further from everyone the model still knows (in instance forgetting the nearest centroid is usually the
      photo's own person, whose other photos are retained).
    * ``change``: ``after - before``; positive when unlearning pushed the forgotten photos away.
    * ``moved``: mean over the ``forget_train`` photos of ``1 - cos(f_before_i, f_after_i)``, how far each photo
      moved from its own original position (the two parts must list the same photos in the same order). NaN when
      the two models' embeddings have different sizes.

    Args:
        before: the original model's outputs, part name -> SplitOutputs.
        after: the unlearned model's outputs on the same split.

    Returns:
        ``{"before", "after", "change", "moved"}``; all NaN when either model has no (or an empty)
        ``forget_train`` part.

    Raises:
        DataError: ``retain_train`` is missing while ``forget_train`` is present, the
            ``forget_train`` parts differ in size, or features are not finite.
    """
    before = check_parts(before, "before")
    after = check_parts(after, "after")
    nan = {"before": math.nan, "after": math.nan, "change": math.nan, "moved": math.nan}
    if not (_present(before, "forget_train") and _present(after, "forget_train")):
        return nan
    n_before, n_after = len(before["forget_train"].identities), len(after["forget_train"].identities)
    if n_before != n_after:
        raise DataError(
            f"forget_train has {n_before} photos before and {n_after} after; both must hold the same photos"
        )
    dist_before = distance_to_retained(before, "before")
    dist_after = distance_to_retained(after, "after")
    moved = forget_feature_moved(before, after)
    return {"before": dist_before, "after": dist_after, "change": dist_after - dist_before, "moved": moved}
