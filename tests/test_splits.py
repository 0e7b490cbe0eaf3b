"""Tests of seeded splits, forget requests, JSON round trips and split validation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from dlfd_core.data import (
    UNSEEN_LABEL,
    AlignedFaces,
    FaceDataset,
    FaceRecord,
    Split,
    aligned_for,
    load_orl,
    load_split,
    make_split,
    save_split,
    split_from_dict,
    split_to_dict,
    validate_split,
    with_forget_identities,
    with_forget_instances,
)
from dlfd_core.errors import SplitError


def synthetic(num_identities: int = 12, per_identity: int = 6, name: str = "synth") -> FaceDataset:
    """A dataset of records only (no files): identities p1..pN with keys pI/J.png and distinct hashes."""
    records = tuple(
        FaceRecord(f"p{i}", f"p{i}/{j}.png", f"hash-{i}-{j}")
        for i in range(1, num_identities + 1)
        for j in range(1, per_identity + 1)
    )
    return FaceDataset(name, Path("/nonexistent"), records)


@pytest.fixture
def dataset() -> FaceDataset:
    return synthetic()


@pytest.fixture
def split(dataset: FaceDataset) -> Split:
    return make_split(dataset, seed=3, num_unseen=4, test_per_identity=2, holdout_per_identity=1)


# ------------------------------------------------------------------------------------------------ making


def test_make_split_orl_defaults() -> None:
    orl = load_orl()
    split = make_split(orl, seed=0)
    validate_split(split, orl)
    # 10 people never trained on: 3 (round(0.3 * 10)) set aside for validation, 7 for the evaluation
    assert len(split.known) == 30 and (len(split.unseen), len(split.validation)) == (7, 3)
    assert all(len(split.train[i]) == 7 and len(split.test[i]) == 3 for i in split.known)
    assert split.holdout == {}
    assert list(split.known) == sorted(split.known, key=lambda s: int(s[1:]))
    assert len(split.unseen_keys(orl)) == 70
    assert split.forget_mode == "none" and split.forget_keys == ()


def test_validation_people_leave_the_other_roles_as_they_were(dataset: FaceDataset) -> None:
    with_validation = make_split(dataset, seed=5, num_unseen=3)
    without = make_split(dataset, seed=5, num_unseen=3, validation_fraction=0.0)
    assert without.validation == () and len(with_validation.validation) == 1  # round(0.3 * 3)
    assert set(with_validation.never_trained) == set(without.unseen)
    assert (with_validation.train, with_validation.test, with_validation.known) == (
        without.train,
        without.test,
        without.known,
    )
    # at least one never-trained person is always left for the evaluation
    assert len(make_split(dataset, seed=5, num_unseen=1, validation_fraction=0.9).unseen) == 1
    assert len(make_split(dataset, seed=5, num_unseen=3, validation_fraction=0.9).unseen) == 1
    with pytest.raises(SplitError, match="validation_fraction"):
        make_split(dataset, validation_fraction=1.0)


def test_validation_round_trips_and_old_files_read_without_it(dataset: FaceDataset, split: Split) -> None:
    data = split_to_dict(split)
    assert split_from_dict(data) == split and data["validation"] == list(split.validation)
    del data["validation"]
    assert split_from_dict(data).validation == ()
    data["validation"] = [split.unseen[0]]
    with pytest.raises(SplitError, match="both unseen and validation"):
        split_from_dict(data)
    data["validation"] = [split.known[0]]
    with pytest.raises(SplitError, match="both known and validation"):
        split_from_dict(data)


def test_make_split_is_deterministic(dataset: FaceDataset) -> None:
    a = make_split(dataset, seed=5, num_unseen=3)
    b = make_split(dataset, seed=5, num_unseen=3)
    c = make_split(dataset, seed=6, num_unseen=3)
    assert a == b
    assert a != c


def test_make_split_partitions_the_dataset(dataset: FaceDataset, split: Split) -> None:
    validate_split(split, dataset)
    validation = [r.key for i in split.validation for r in dataset.records_of(i)]
    groups = [split.train_keys, split.test_keys, split.holdout_keys, split.unseen_keys(dataset), validation]
    flat = [key for group in groups for key in group]
    assert len(flat) == len(set(flat)) == len(dataset)
    assert set(split.known).isdisjoint(split.unseen) and set(split.known).isdisjoint(split.validation)
    assert set(split.unseen).isdisjoint(split.validation)
    assert len(split.known) == 8 and (len(split.unseen), len(split.validation)) == (3, 1)
    for identity in split.known:
        assert (len(split.train[identity]), len(split.test[identity]), len(split.holdout[identity])) == (3, 2, 1)
        assert all(key.startswith(identity + "/") for key in split.train[identity])
    assert split.label_of(split.known[2]) == 2
    assert split.num_classes == 8


def test_make_split_rejects_impossible_sizes(dataset: FaceDataset) -> None:
    with pytest.raises(SplitError, match="num_unseen"):
        make_split(dataset, num_unseen=11)
    with pytest.raises(SplitError, match="at least 7 images"):
        make_split(dataset, num_unseen=2, test_per_identity=4, holdout_per_identity=2)
    with pytest.raises(SplitError):
        make_split(dataset, test_per_identity=-1)


# ------------------------------------------------------------------------------------------------ forgetting


def test_forget_identities(dataset: FaceDataset, split: Split) -> None:
    target = [split.known[4], split.known[1]]
    forget = with_forget_identities(split, target)
    validate_split(forget, dataset)
    assert forget.forget_mode == "identity"
    assert forget.forget_identities == (split.known[1], split.known[4])
    assert set(forget.forget_keys) == set(split.train[split.known[1]] + split.train[split.known[4]])
    assert forget.forget_train_keys == forget.forget_keys
    assert set(forget.retain_train_keys) == set(split.train_keys) - set(forget.forget_keys)
    assert set(forget.forget_test_keys) == set(split.test[split.known[1]] + split.test[split.known[4]])
    assert set(forget.retain_test_keys) == set(split.test_keys) - set(forget.forget_test_keys)
    assert split.known[4] not in forget.retained_identities
    assert len(forget.retain_holdout_keys) == len(split.known) - 2
    assert forget.label_of(split.known[4]) == 4  # classes keep their indices
    assert "Forgetting identities" in forget.describe()


def test_forget_identities_errors(split: Split) -> None:
    with pytest.raises(SplitError, match=r"'p99' is not a known identity.*Known \(8\)"):
        with_forget_identities(split, ["p99"])
    with pytest.raises(SplitError, match="unseen identity"):
        with_forget_identities(split, [split.unseen[0]])
    with pytest.raises(SplitError, match="all 8 known"):
        with_forget_identities(split, list(split.known))
    with pytest.raises(SplitError, match="twice"):
        with_forget_identities(split, [split.known[0], split.known[0]])
    with pytest.raises(SplitError, match="at least one"):
        with_forget_identities(split, [])


def test_forget_instances(dataset: FaceDataset, split: Split) -> None:
    forget = with_forget_instances(split, 10, seed=1)
    validate_split(forget, dataset)
    assert forget.forget_mode == "instance" and forget.forget_identities == ()
    assert len(forget.forget_keys) == 10 and set(forget.forget_keys) <= set(split.train_keys)
    assert forget.forget_test_keys == ()
    assert forget.retain_test_keys == split.test_keys
    assert len(forget.retain_train_keys) == len(split.train_keys) - 10
    assert forget == with_forget_instances(split, 10, seed=1)
    assert forget.forget_keys != with_forget_instances(split, 10, seed=2).forget_keys
    most = with_forget_instances(split, 16, seed=0)  # 24 train images, each of 8 identities keeps one
    validate_split(most, dataset)
    assert {forget_id for forget_id in split.known if set(split.train[forget_id]) <= set(most.forget_keys)} == set()
    with pytest.raises(SplitError, match="between 1 and 16"):
        with_forget_instances(split, 17, seed=0)
    with pytest.raises(SplitError):
        with_forget_instances(split, 0, seed=0)


def test_forget_request_replaces_the_previous_one(split: Split) -> None:
    by_instance = with_forget_instances(with_forget_identities(split, [split.known[0]]), 3, seed=0)
    assert by_instance.forget_identities == () and len(by_instance.forget_keys) == 3
    by_identity = with_forget_identities(by_instance, [split.known[0]])
    assert by_identity.forget_seed is None and by_identity.forget_mode == "identity"


# ------------------------------------------------------------------------------------------------ JSON


@pytest.mark.parametrize("mode", ["none", "identity", "instance"])
def test_json_round_trip(split: Split, tmp_path: Path, mode: str) -> None:
    if mode == "identity":
        split = with_forget_identities(split, [split.known[3]])
    elif mode == "instance":
        split = with_forget_instances(split, 5, seed=9)
    path = save_split(split, tmp_path / "sub" / "split.json")
    assert load_split(path) == split
    data = json.loads(path.read_text())
    assert data["format"] == "dlfd-split" and data["version"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # no temporary files left


def test_load_split_errors(tmp_path: Path, split: Split) -> None:
    with pytest.raises(SplitError, match="does not exist"):
        load_split(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SplitError, match="Cannot read"):
        load_split(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(SplitError, match="not a dlfd split"):
        load_split(bad)
    path = save_split(split, tmp_path / "split.json")
    data = json.loads(path.read_text())
    data["version"] = 99
    bad.write_text(json.dumps(data))
    with pytest.raises(SplitError, match="version 99"):
        load_split(bad)
    del data["train"]
    data["version"] = 1
    bad.write_text(json.dumps(data))
    with pytest.raises(SplitError, match="train"):
        load_split(bad)


# ------------------------------------------------------------------------------------------------ validation


def _moved(mapping: dict[str, tuple[str, ...]], identity: str, keys: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    out = dict(mapping)
    out[identity] = keys
    return out


def test_validate_catches_bad_splits(dataset: FaceDataset, split: Split) -> None:
    a, b = split.known[0], split.known[1]
    key_a = split.train[a][0]
    cases: list[tuple[Split, str]] = [
        (dataclasses.replace(split, dataset="other"), "made for dataset 'other'"),
        (dataclasses.replace(split, known=(*split.known, "p99")), "not in dataset"),
        (dataclasses.replace(split, known=(*split.known, split.unseen[0])), "both known and unseen"),
        (dataclasses.replace(split, known=(a, a, *split.known[1:])), "more than once"),
        (dataclasses.replace(split, train=_moved(split.train, a, (*split.train[a], "p1/99.png"))), "not in dataset"),
        (dataclasses.replace(split, train=_moved(split.train, b, (*split.train[b], key_a))), "belongs to"),
        (dataclasses.replace(split, test=_moved(split.test, a, (*split.test[a], key_a))), "more than once"),
        (
            dataclasses.replace(split, train=_moved(split.train, a, (*split.train[a], split.unseen_keys(dataset)[0]))),
            "belongs to",
        ),
        (dataclasses.replace(split, train=_moved(split.train, a, ())), "no training images"),
        (dataclasses.replace(split, known=(a,), train={a: split.train[a]}, test={}, holdout={}), "at least 2"),
        (dataclasses.replace(split, forget_mode="everything"), "Unknown forget mode"),
        (dataclasses.replace(split, forget_mode="identity", forget_identities=("p99",)), "not a known identity"),
        (
            dataclasses.replace(
                split, forget_mode="identity", forget_identities=split.known, forget_keys=split.train_keys
            ),
            "every known identity",
        ),
        (dataclasses.replace(split, forget_mode="identity", forget_identities=(a,)), "exactly the training images"),
        (dataclasses.replace(split, forget_keys=(key_a,)), "forget_mode is 'none'"),
        (dataclasses.replace(split, forget_mode="instance", forget_keys=split.test[a]), "not training images"),
        (dataclasses.replace(split, forget_mode="instance", forget_keys=split.train[a]), "with_forget_identities"),
        (dataclasses.replace(split, forget_mode="instance", forget_keys=(key_a, key_a)), "more than once"),
    ]
    for bad, message in cases:
        with pytest.raises(SplitError, match=message):
            validate_split(bad, dataset)


def test_validate_catches_identical_files_across_sides(split: Split) -> None:
    a = split.known[0]
    train_key, test_key = split.train[a][0], split.test[a][0]
    records = [
        dataclasses.replace(r, sha256="same") if r.key in (train_key, test_key) else r for r in synthetic().records
    ]
    leaky = FaceDataset("synth", Path("/nonexistent"), tuple(records))
    with pytest.raises(SplitError, match="Identical image files") as info:
        validate_split(split, leaky)
    assert train_key in str(info.value) and test_key in str(info.value)


# ------------------------------------------------------------------------------------------------ crops


def test_aligned_for(dataset: FaceDataset, split: Split) -> None:
    keys = tuple(r.key for r in dataset.records if r.key != "p1/1.png")
    crops = np.stack([np.full((4, 4, 3), i, np.uint8) for i in range(len(keys))])
    faces = AlignedFaces(
        crops=crops,
        keys=keys,
        identities=tuple(k.split("/")[0] for k in keys),
        num_faces=np.ones(len(keys)),
        failures={"p1/1.png": "FaceNotFoundError: no face"},
    )
    wanted = split.retain_train_keys[:5]
    got, labels = aligned_for(faces, split, wanted)
    assert got.shape == (5, 4, 4, 3)
    assert [int(c[0, 0, 0]) for c in got] == [keys.index(k) for k in wanted]
    assert list(labels) == [split.label_of(split.identity_of(k)) for k in wanted]
    unseen_key = next(k for k in split.unseen_keys(dataset) if k in faces)
    with pytest.raises(SplitError, match="allow_unseen"):
        aligned_for(faces, split, [unseen_key])
    _, unseen_labels = aligned_for(faces, split, [unseen_key], allow_unseen=True)
    assert list(unseen_labels) == [UNSEEN_LABEL]
    if "p1" in split.known:
        with pytest.raises(SplitError, match="no aligned face"):
            aligned_for(faces, split, ["p1/1.png"])
    with pytest.raises(SplitError, match="not a train, test or holdout"):
        aligned_for(faces, split, ["p1/404.png"])
    empty, empty_labels = aligned_for(faces, split, [])
    assert empty.shape == (0, 4, 4, 3) and empty_labels.shape == (0,)
