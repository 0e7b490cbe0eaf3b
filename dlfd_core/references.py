"""Reference models for the per-photo attacks (:mod:`dlfd_core.evaluate.attacks`), and the attacks run on a split.

A reference model is trained exactly like the gold model (the original's recipe and starting point) on a random half
of the retain set's training photos, so for every retain photo about half the reference models are OUT, and for
every photo outside the retain set (the forgotten photos, test photos, people never trained on) all of them are:
they are models that never saw those photos, the gold model's situation. With the dlib ResNet's frozen layers'
outputs cached (the ``prefix`` shortcut of :func:`~dlfd_core.train.train_on_split`) a reference model costs one
training of the trainable part.

:func:`per_photo_attacks` scores a model's forgotten photos against non-members with offline LiRA and RMIA:

* identity mode (whole people forgotten): members are the forgotten people's training photos, non-members a random
  half of the unseen people's photos, the statistic label-free (the top class: a stranger has no class), RMIA's
  population the other half;
* instance mode: members are the forgotten photos, non-members a random half of the test photos, the statistic of
  the photo's own class, RMIA's population the other half.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data.splits import Split
from .errors import DataError
from .evaluate.attacks import attack_summary, label_probability, lira_offline, logit_confidence, rmia
from .progress import ProgressFn, no_progress, scaled

__all__ = [
    "AttackRoles",
    "PersonReferences",
    "train_person_references",
    "References",
    "attack_models",
    "attack_roles",
    "logits_by_key",
    "per_photo_attacks",
    "train_references",
]


@dataclass(frozen=True)
class AttackRoles:
    """Which photos a per-photo attack scores, by key: ``members``, ``nonmembers``, ``population``; and ``labelled``
    (whether the statistic is the photo's own class, else the top class)."""

    members: tuple[str, ...]
    nonmembers: tuple[str, ...]
    population: tuple[str, ...]
    labelled: bool


def attack_roles(aligned: Any, split: Split, seed: int = 0) -> AttackRoles:
    """The photos of :func:`per_photo_attacks` for ``split``'s forget request (see the module docstring).

    The evaluation's non-member photos (:meth:`~dlfd_core.data.Split.evaluation_nonmember_keys`) are divided at
    random (``seed``) into two halves: the attacks score one as non-members and RMIA compares with the other (its
    population). Validation data, which methods may stop or select on, plays no part.

    Raises:
        DataError: no forget request, or too few photos for an attack (checked before any model is trained).
    """
    if split.forget_mode == "none":
        raise DataError("choose identities or photos to forget first")
    pool = split.evaluation_nonmember_keys(aligned)
    if len(split.forget_train_keys) < 2 or len(pool) < 4:
        raise DataError(
            f"the per-photo attacks need at least 2 forgotten photos and 4 photos never trained on; this request has "
            f"{len(split.forget_train_keys)} and {len(pool)}"
        )
    order = np.random.default_rng([int(seed), 3]).permutation(len(pool))
    half = len(pool) // 2
    scored = tuple(pool[i] for i in sorted(order[half:]))
    population = tuple(pool[i] for i in sorted(order[:half]))
    return AttackRoles(split.forget_train_keys, scored, population, split.forget_mode == "instance")


@dataclass(frozen=True)
class References:
    """Reference models' outputs on the photos of a split's attack roles.

    Every photo of the attack roles is outside the retain set, so every reference model is OUT for it.

    Attributes:
        logits: ``{key: float32 [R, C]}``: each reference model's logits on the photo.
        seconds: the time the reference models took to train and run.
    """

    logits: Mapping[str, np.ndarray]
    seconds: float

    @property
    def count(self) -> int:
        return len(next(iter(self.logits.values()))) if self.logits else 0


def train_references(
    aligned: Any,
    split: Split,
    *,
    count: int,
    backbone: str,
    recipe: Any,
    collect: Callable[[nn.Module, Sequence[str]], Mapping[str, np.ndarray]],
    seed: int = 0,
    device: str | torch.device = "cpu",
    prefix: Any = None,
    embed: Any = None,
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
) -> References:
    """Train ``count`` reference models on random halves of ``split``'s retain training photos.

    Args:
        aligned, split: the faces and the split with its forget request.
        count: how many reference models (at least 2: offline LiRA needs two OUT values per photo).
        backbone, recipe: what the gold model is trained with (:func:`~dlfd_core.train.recipe_of` of the original).
        collect: ``collect(model, keys)`` -> ``{key: logits}``, each reference model's outputs on the attack's photos.
        seed: reference model ``r`` draws its half with ``seed`` and ``r`` and trains with seed ``seed + 1 + r``.
        prefix, embed: the frozen-prefix shortcuts of :func:`~dlfd_core.train.train_on_split`.

    Returns:
        The reference models' logits on every photo of :func:`attack_roles`.
    """

    if count < 2:
        raise DataError(f"offline LiRA needs at least 2 reference models, got {count}")
    start = time.perf_counter()
    roles = attack_roles(aligned, split, seed)
    keys = list(dict.fromkeys((*roles.members, *roles.nonmembers, *roles.population)))
    retain = split.retain_train_keys
    forget = split.forget_keys
    logits: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for r in range(count):
        chosen = np.random.default_rng([int(seed), 2, r]).random(len(retain)) < 0.5
        out = tuple(k for k, c in zip(retain, chosen, strict=True) if not c)
        half = dataclasses.replace(split, forget_mode="instance", forget_identities=(), forget_keys=(*forget, *out))
        model = _reference_model(
            aligned, half, r, count, backbone, recipe, seed, device, progress, should_stop, prefix, embed
        )
        for key, value in collect(model, keys).items():
            logits[key].append(np.asarray(value, dtype=np.float32))
    progress(1.0, "reference models trained")
    return References({k: np.stack(v) for k, v in logits.items()}, seconds=time.perf_counter() - start)


def _reference_model(
    aligned: Any,
    half: Split,
    r: int,
    count: int,
    backbone: str,
    recipe: Any,
    seed: int,
    device: str | torch.device,
    progress: ProgressFn,
    should_stop: Callable[[], bool] | None,
    prefix: Any,
    embed: Any = None,
) -> nn.Module:
    """Reference model ``r`` of ``count``: a gold model of ``half`` (trained without its forget set) with the
    original's recipe and seed ``seed + 1 + r``."""
    from .train import train_on_split

    return train_on_split(
        aligned,
        half,
        which="gold",
        backbone=backbone,
        config=recipe,
        seed=int(seed) + 1 + r,
        device=device,
        progress=scaled(progress, r / count, (r + 1) / count),
        should_stop=should_stop,
        embed=embed,
        prefix=prefix,
    ).model


def _statistic(logits: np.ndarray, labels: np.ndarray | None, kind: str) -> np.ndarray:
    return logit_confidence(logits, labels) if kind == "lira" else label_probability(logits, labels)


def per_photo_attacks(
    target: Mapping[str, np.ndarray],
    references: References,
    roles: AttackRoles,
    labels: Mapping[str, int],
    *,
    global_variance: bool | None = None,
) -> dict[str, Any]:
    """Offline LiRA and RMIA scores of one model (``target``: ``{key: logits}``) and their summaries.

    Args:
        labels: each photo's class (for ``roles.labelled``).
        global_variance: LiRA's pooled variance; by default on with fewer than 16 reference models (LiRA's advice).

    Returns:
        ``{"lira": {"auc", "tpr_1pct", "tpr_01pct", "member_scores", "nonmember_scores"}, "rmia": {...}}``; the
        scores are per photo in ``roles`` order (z-values for LiRA, fractions in [0, 1] for RMIA).
    """
    n = references.count
    pooled = n < 16 if global_variance is None else global_variance

    def side(keys: Sequence[str], kind: str) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray([labels.get(k, -1) for k in keys]) if roles.labelled else None
        ref = np.stack([_statistic(np.stack([references.logits[k][r] for k in keys]), y, kind) for r in range(n)])
        return _statistic(np.stack([target[k] for k in keys]), y, kind), ref

    out: dict[str, Any] = {}
    m_phi, m_ref = side(roles.members, "lira")
    n_phi, n_ref = side(roles.nonmembers, "lira")
    scores = lira_offline(np.r_[m_phi, n_phi], np.concatenate([m_ref, n_ref], axis=1), global_variance=pooled)
    out["lira"] = _summary(scores[: len(m_phi)], scores[len(m_phi) :])
    m_p, m_rp = side(roles.members, "rmia")
    n_p, n_rp = side(roles.nonmembers, "rmia")
    z_p, z_rp = side(roles.population, "rmia")
    scores = rmia(np.r_[m_p, n_p], np.concatenate([m_rp, n_rp], axis=1), z_p, z_rp)
    out["rmia"] = _summary(scores[: len(m_p)], scores[len(m_p) :])
    return out


def _summary(members: np.ndarray, nonmembers: np.ndarray) -> dict[str, Any]:
    s = attack_summary(members, nonmembers)
    return {
        "auc": s.auc,
        "auc_interval": list(s.auc_interval),
        "tpr_1pct": s.tpr[0.01],
        "tpr_01pct": s.tpr[0.001],
        "member_scores": members.tolist(),
        "nonmember_scores": nonmembers.tolist(),
    }


def logits_by_key(
    model: nn.Module, aligned: Any, split: Split, keys: Sequence[str], *, device: str | torch.device = "cpu"
) -> dict[str, np.ndarray]:
    """``model``'s logits on the photos ``keys`` (any role, people never trained on included), by key."""
    from .data.splits import aligned_for
    from .data.transforms import crops_to_tensor
    from .evaluate.outputs import collect_outputs

    crops, labels = aligned_for(aligned, split, keys, allow_unseen=True)
    outputs = collect_outputs(model, crops_to_tensor(crops, model.input_size), labels, list(keys), device=device)
    return dict(zip(keys, outputs.logits, strict=True))


def attack_models(
    aligned: Any,
    split: Split,
    models: Mapping[str, nn.Module],
    *,
    count: int,
    recipe: Any,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: ProgressFn = no_progress,
) -> tuple[dict[str, dict[str, Any]], References]:
    """Train ``count`` reference models for ``split`` and run both per-photo attacks on each of ``models``.

    Returns:
        ``({model name: per_photo_attacks(...)}, the references)``.
    """
    roles = attack_roles(aligned, split, seed)
    backbone = next(iter(models.values())).backbone_name
    references = train_references(
        aligned,
        split,
        count=count,
        backbone=backbone,
        recipe=recipe,
        collect=lambda model, keys: logits_by_key(model, aligned, split, keys, device=device),
        seed=seed,
        device=device,
        progress=progress,
    )
    keys = list(references.logits)
    labels = {k: split.label_of(i) for k in keys if (i := split.identity_of(k)) is not None}
    results = {
        name: per_photo_attacks(logits_by_key(model, aligned, split, keys, device=device), references, roles, labels)
        for name, model in models.items()
    }
    return results, references


# ------------------------------------------------------------------------------------------------- shipped references
#: The file format of :class:`PersonReferences` (bump when its meaning changes).
PERSON_REFERENCES_FORMAT = 1


@dataclass(frozen=True)
class PersonReferences:
    """Reference statistics for forgetting whole people, computed once per bundled dataset and shipped.

    Each of ``count`` reference models is trained with the original's recipe on the training photos of a random half
    of the known people, exactly as a gold model is trained without the other half (:func:`train_person_references`).
    For every photo, ``statistic[r]`` is LiRA's label-free statistic (:func:`~dlfd_core.evaluate.attacks.
    logit_confidence` of the top class) under model ``r`` when ``r`` never saw that photo's *person*, NaN when it
    did. A photo of a person forgotten by a request therefore has about ``count / 2`` OUT values, a photo of a
    never-trained person ``count``: the distribution a gold model's statistic is drawn from. The app then judges a
    run by offline LiRA with forward passes only.

    They hold for any model trained with the same recipe on the same split and faces (the shipped original, a gold
    model, a benchmark seed's original), for identity forgetting; not for forgetting single photos (whose OUT models
    would have to know the person), nor after an enrolment changes the people.

    Attributes:
        keys: every photo covered (the known people's and the never-trained people's), in the dataset's order.
        statistic: ``float32 [count, len(keys)]``, NaN where the model trained on the photo's person.
        meta: how they were made: ``dataset``, ``split_seed``, ``backbone``, ``recipe``, ``count``, ``seed``,
            ``format``, ``seconds``.
    """

    keys: tuple[str, ...]
    statistic: np.ndarray
    meta: Mapping[str, Any]

    @property
    def count(self) -> int:
        return int(self.statistic.shape[0])

    def covers(self, keys: Sequence[str]) -> bool:
        """Whether every photo of ``keys`` has at least one OUT value (so LiRA can score it)."""
        index, counts = self._index, self._out_counts
        return all(k in index and counts[index[k]] > 0 for k in keys)

    def lira_scores(self, keys: Sequence[str], phi: np.ndarray) -> np.ndarray:
        """Offline LiRA's z-values of a model's statistic ``phi`` on the photos ``keys``, against their OUT
        reference values, with one standard deviation pooled over every covered photo (LiRA's advice for fewer than
        64 reference models: each photo's own OUT values are too few for its own variance)."""
        columns = np.asarray([self._index[k] for k in keys], dtype=np.int64)
        mean = np.nanmean(self.statistic[:, columns].astype(np.float64), axis=0)
        return (np.asarray(phi, dtype=np.float64) - mean) / max(self._pooled_std, 1e-3)

    def pooled_std(self) -> float:
        """The standard deviation of the OUT statistic around each photo's own OUT mean, pooled over photos."""
        return self._pooled_std

    # computed once per loaded file: the verdict scores four sets of photos per run, the bench every record
    @functools.cached_property
    def _pooled_std(self) -> float:
        values = self.statistic.astype(np.float64)
        counts = np.sum(~np.isnan(values), axis=0)
        usable = counts >= 2
        spread = values[:, usable] - np.nanmean(values[:, usable], axis=0)
        return float(np.sqrt(np.nansum(spread**2) / np.sum(counts[usable] - 1)))

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    @functools.cached_property
    def _out_counts(self) -> np.ndarray:
        return np.sum(~np.isnan(self.statistic), axis=0)

    def save(self, path: str | Path) -> None:
        """Write ``path`` (``.npz``: the keys, the statistic, the metadata as JSON), atomically."""
        from .paths import atomic_write

        with atomic_write(Path(path)) as handle:
            np.savez_compressed(
                handle,
                keys=np.asarray(self.keys, dtype=str),
                statistic=self.statistic.astype(np.float32),
                meta=np.asarray(json.dumps(dict(self.meta), sort_keys=True)),
            )

    @classmethod
    def load(cls, path: str | Path) -> PersonReferences:
        """Read a file written by :meth:`save` (no pickles).

        Raises:
            DataError: the file is missing, unreadable, of another format, or its arrays do not fit.
        """
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                keys = tuple(str(k) for k in data["keys"])
                statistic = np.asarray(data["statistic"], dtype=np.float32)
                meta = json.loads(str(data["meta"]))
        except (OSError, KeyError, ValueError) as error:
            raise DataError(f"cannot read the reference statistics {path}: {error}") from None
        if meta.get("format") != PERSON_REFERENCES_FORMAT or statistic.ndim != 2 or statistic.shape[1] != len(keys):
            raise DataError(
                f"{path} is not a reference-statistics file of format {PERSON_REFERENCES_FORMAT} (rebuild it with "
                "`python -m dlfd_core references`)"
            )
        return cls(keys, statistic, meta)


#: The ways :func:`out_design` chooses who each reference model leaves out.
DESIGNS = ("random", "balanced")


def out_design(people: int, count: int, out_fraction: float, *, design: str = "random", seed: int = 0) -> np.ndarray:
    """Who each of ``count`` reference models leaves out, as a ``[count, people]`` boolean array (True: OUT).

    ``"random"``: model ``r`` leaves out each person with probability ``out_fraction``, drawn with ``(seed, 5, r)``;
    a model that would leave out nobody or everybody flips person ``r mod people``.
    ``"balanced"``: every person is OUT in exactly ``k = round(count * out_fraction)`` models (at least 1), spread
    evenly: the people are shuffled with ``(seed, 6)``, and the person at rank ``p`` is OUT in the models
    ``(p + round(j * count / k)) mod count`` for ``j < k``, so each model leaves out ``people * k / count`` of them,
    give or take one.

    Raises:
        DataError: an unknown design, or a balanced design with a model that would leave out nobody or everybody.
    """
    if design not in DESIGNS:
        raise DataError(f"unknown reference design {design!r}; choose one of {', '.join(DESIGNS)}")
    if design == "random":
        outs = np.stack([np.random.default_rng([int(seed), 5, r]).random(people) < out_fraction for r in range(count)])
        for r, out in enumerate(outs):
            if out.all() or not out.any():  # every model knows someone and forgets someone
                out[r % people] = not out[r % people]
        return outs
    k = min(count, max(1, round(count * out_fraction)))
    outs = np.zeros((count, people), dtype=bool)
    for rank, person in enumerate(np.random.default_rng([int(seed), 6]).permutation(people)):
        for j in range(k):
            outs[(rank + round(j * count / k)) % count, person] = True
    left_out = outs.sum(axis=1)
    if left_out.min() == 0 or left_out.max() == people:
        raise DataError(
            f"a balanced design of {count} models over {people} people, each OUT in {k}, gives a model that leaves "
            f"out {'nobody' if left_out.min() == 0 else 'everybody'}; use fewer models or a larger --out-fraction"
        )
    return outs


def train_person_references(
    aligned: Any,
    split: Split,
    *,
    count: int,
    backbone: str,
    recipe: Any,
    seed: int = 0,
    out_fraction: float = 0.5,
    design: str = "random",
    device: str | torch.device = "cpu",
    prefix: Any = None,
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
) -> PersonReferences:
    """Train ``count`` reference models, each on the training photos of the known people it keeps (model ``r`` trains
    with seed ``seed + 1 + r``), and record the label-free statistic of every photo of a known or never-trained person
    under the models that never saw that person.

    Args:
        out_fraction: the share of the known people each model leaves out. Smaller is closer to a gold model, which
            leaves out one person and keeps the others, at the cost of fewer OUT values per person.
        design: who each model leaves out (:func:`out_design`): ``"random"``, each person independently with
            probability ``out_fraction`` per model (about ``count * out_fraction`` OUT values each, some people
            fewer); ``"balanced"``, every person in exactly ``round(count * out_fraction)`` models.
        prefix: the frozen-prefix shortcut of :func:`~dlfd_core.train.train_on_split` (cached prefix outputs).

    Raises:
        DataError: fewer than 2 reference models, fewer than 2 known people, an out_fraction outside (0, 1), an
            unknown design, or a balanced design with a model that would leave out nobody or everybody.
    """
    from .data import with_forget_identities

    if count < 2:
        raise DataError(f"reference statistics need at least 2 reference models, got {count}")
    if not 0.0 < out_fraction < 1.0:
        raise DataError(f"out_fraction must lie strictly between 0 and 1, got {out_fraction}")
    known = list(split.known)
    if len(known) < 2:
        raise DataError("reference statistics need at least 2 known people")
    start = time.perf_counter()
    people = set(known) | set(split.never_trained)
    keys = tuple(k for k, who in zip(aligned.keys, aligned.identities, strict=True) if who in people)
    owner = dict(zip(aligned.keys, aligned.identities, strict=True))
    statistic = np.full((count, len(keys)), np.nan, dtype=np.float32)
    outs = out_design(len(known), count, out_fraction, design=design, seed=seed)
    for r in range(count):
        forgotten = [p for p, o in zip(known, outs[r], strict=True) if o]
        half = with_forget_identities(split, forgotten)
        model = _reference_model(aligned, half, r, count, backbone, recipe, seed, device, progress, should_stop, prefix)
        outside = set(forgotten) | set(split.never_trained)
        columns = [i for i, k in enumerate(keys) if owner[k] in outside]
        logits = logits_by_key(model, aligned, split, [keys[i] for i in columns], device=device)
        phi = logit_confidence(np.stack([logits[keys[i]] for i in columns]))
        statistic[r, columns] = phi.astype(np.float32)
    progress(1.0, "reference statistics computed")
    meta = {
        "format": PERSON_REFERENCES_FORMAT,
        "dataset": split.dataset,
        "split_seed": split.seed,
        "backbone": backbone,
        "recipe": recipe.to_dict() if hasattr(recipe, "to_dict") else None,
        "count": count,
        "seed": int(seed),
        "out_fraction": out_fraction,
        "design": design,
        "statistic": "logit_confidence, top class",
        "seconds": time.perf_counter() - start,
    }
    return PersonReferences(keys, statistic, meta)
