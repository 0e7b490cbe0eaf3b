"""Checks on an uploaded face set: repeats of one photo, near-identical photos, faces of another person."""

from __future__ import annotations

import numpy as np
import pytest

from dlfd_core.faces.faceset import (
    NEAR_COPY_DISTANCE,
    OTHER_PERSON_DISTANCE,
    SAME_PHOTO_DISTANCE,
    check_face_set,
    content_digest,
)
from dlfd_core.studio import enrolment


def _unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _around(centre: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly ``distance`` (Euclidean) from the unit vector ``centre``."""
    direction = rng.normal(size=centre.shape)
    direction -= direction @ centre * centre
    direction /= np.linalg.norm(direction)
    angle = 2 * np.arcsin(distance / 2)
    return np.cos(angle) * centre + np.sin(angle) * direction


def test_distinct_faces_of_one_person_are_all_kept():
    rng = np.random.default_rng(0)
    centre = _unit(rng, 1)[0]
    faces = np.stack([_around(centre, 0.2, rng) for _ in range(8)])  # pairwise about 0.28: same person, not copies
    check = check_face_set(faces)
    assert check.keep == tuple(range(8)) and check.repeats == () and check.other_person == ()
    assert check.groups == tuple((i,) for i in range(8)) and check.near_copies == ()


def test_identical_files_are_repeats_whatever_their_descriptors():
    rng = np.random.default_rng(1)
    faces = _unit(rng, 4)
    check = check_face_set(faces, digests=["a", "b", "a", None])
    assert check.keep == (0, 1, 3) and check.repeats == ((0, 2),)


def test_the_same_pixels_are_a_repeat_and_near_copies_are_grouped_transitively():
    rng = np.random.default_rng(2)
    base = _unit(rng, 3)
    faces = np.stack(
        [
            base[0],
            _around(base[0], SAME_PHOTO_DISTANCE / 2, rng),  # the same photo re-saved: a repeat
            _around(base[0], NEAR_COPY_DISTANCE * 0.7, rng),  # a near copy of face 0
            base[1],
            base[2],
        ]
    )
    faces = np.concatenate([faces, _around(faces[2], NEAR_COPY_DISTANCE * 0.7, rng)[None]])  # near copy of face 2
    check = check_face_set(faces)
    assert check.repeats == ((0, 1),)
    assert check.keep == (0, 2, 3, 4, 5)
    assert (0, 2, 5) in check.groups and check.near_copies == ((0, 2, 5),)
    assert len(check.groups) == 3


def test_a_face_of_someone_else_is_flagged():
    rng = np.random.default_rng(3)
    centre = _unit(rng, 1)[0]
    faces = [_around(centre, 0.2, rng) for _ in range(6)]
    stranger = _around(centre, 1.2, rng)
    check = check_face_set(np.stack([*faces[:3], stranger, *faces[3:]]))
    assert [index for index, _ in check.other_person] == [3]
    assert check.other_person[0][1] > OTHER_PERSON_DISTANCE


def test_two_people_in_equal_halves_are_all_flagged():
    rng = np.random.default_rng(4)
    a, b = _unit(rng, 2)
    faces = np.stack([*(_around(a, 0.2, rng) for _ in range(4)), *(_around(b, 0.2, rng) for _ in range(4))])
    check = check_face_set(faces)
    assert len(check.other_person) == 8  # no majority: every face's typical distance is to the other person


def test_content_digest_tells_arrays_and_bytes_apart():
    pixels = np.zeros((2, 2, 3), np.uint8)
    assert content_digest(pixels) == content_digest(pixels.copy())
    assert content_digest(pixels) != content_digest(pixels.reshape(4, 3))
    assert content_digest(b"abc") != content_digest(b"abd")
    with pytest.raises(ValueError, match="digests for"):
        check_face_set(np.eye(3), digests=["a"])


@pytest.mark.parametrize(
    ("groups", "train", "holdout", "test"),
    [
        ([[0], [1], [2], [3], [4]], [0, 1, 2], [3], [4]),
        ([[i] for i in range(10)], list(range(7)), [7], [8, 9]),
        ([[0, 5], [1], [2], [3, 4], [6]], [0, 3, 4, 5], [1], [2, 6]),  # a group never straddles train and test
        # a burst of six near-identical shots at the end is not tested on whole: training keeps it
        ([[0], [1], [2], [3], [4, 5, 6, 7, 8, 9]], [0, 4, 5, 6, 7, 8, 9], [1], [2, 3]),
        ([[0, 1, 2, 3, 4, 5], [6, 7], [8, 9], [10, 11], [12, 13]], [0, 1, 2, 3, 4, 5, 6, 7], [8, 9], [10, 11, 12, 13]),
        # ORL s35's ten photos: the group of three near-identical photos is not the one kept aside
        ([[0, 1, 3], [2], [4], [5, 6, 7], [8], [9]], [0, 1, 2, 3, 5, 6, 7], [4], [8, 9]),
    ],
)
def test_split_keeps_each_group_of_near_copies_on_one_side(groups, train, holdout, test):
    got = enrolment._split_groups(groups)
    assert got == (train, holdout, test)
    for group in groups:
        assert sum(any(i in side for i in group) for side in got) == 1


@pytest.mark.slow
def test_on_real_faces_a_second_person_is_flagged_and_one_persons_photos_are_not(orl_aligned):
    """ORL: seven photos of one unseen person and three of another; the dlib descriptors of the bundled backbone."""
    from types import SimpleNamespace

    def faces(identity: str, count: int) -> list[SimpleNamespace]:
        rows = [i for i, name in enumerate(orl_aligned.identities) if name == identity][:count]
        return [SimpleNamespace(crop=orl_aligned.crops[i]) for i in rows]

    own = faces("s35", 7)
    mixed = [*own[:4], *faces("s2", 3), *own[4:]]
    check = enrolment._check_faces([None] * len(mixed), list(enumerate(mixed)), [f.crop for f in mixed])
    assert [index for index, _ in check.other_person] == [4, 5, 6]
    alone = enrolment._check_faces([None] * 7, list(enumerate(own)), [f.crop for f in own])
    assert alone.other_person == () and alone.repeats == ()


@pytest.mark.slow
def test_in_a_photo_with_several_faces_the_one_like_the_rest_of_the_set_is_taken(orl_aligned):
    """A group photo whose most prominent face is someone else: the person's own face among its others is chosen."""
    from types import SimpleNamespace

    rows = {name: [i for i, n in enumerate(orl_aligned.identities) if n == name] for name in ("s35", "s2")}
    own = [SimpleNamespace(crop=orl_aligned.crops[i], others=()) for i in rows["s35"][:5]]
    group = SimpleNamespace(
        crop=orl_aligned.crops[rows["s2"][0]],
        others=(orl_aligned.crops[rows["s2"][1]], orl_aligned.crops[rows["s35"][7]]),
    )
    found = list(enumerate([*own, group]))
    assert enrolment._choose_faces(found) == [0, 0, 0, 0, 0, 2]
    assert enrolment._choose_faces(list(enumerate([own[0], group]))) == [0, 0]  # one reference photo: no choice made
