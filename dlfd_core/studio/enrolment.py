"""Enrol a person from their own photos: detect and align, check the set (copies, other people, several faces),
split it, retrain the original recipe with them, and show the model recognising their held-out photos."""

from __future__ import annotations

import functools
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import AlignedFaces, FaceDataset, Split
from ..data.transforms import crops_to_tensor
from ..errors import DataError, DLFDError, TooFewFacesError
from ..evaluate.cache import collect_all
from ..faces.faceset import FaceSetCheck, check_face_set, content_digest
from ..progress import ProgressFn, no_progress, scaled
from .records import Enrolment, Prediction, top_predictions
from .session import Session, one_job_at_a_time

MIN_ENROL_FACES = 5


MAX_UPLOAD_PHOTOS = 40


#: The ORL person the ORL model never trained on, whose photos serve as an example "upload" (each bundle names its
#: own: :attr:`dlfd_core.bundled.Bundle.example_identity`).
EXAMPLE_IDENTITY = "s35"


#: A person's name: 1-40 letters (any script), digits, spaces, dots, apostrophes, dashes or underscores.
NAME_PATTERN = re.compile(r"^[^\W_][\w .'-]{0,39}$")


def check_name(name: str, split: Split) -> str:
    """A new person's name, normalised (NFC, trimmed).

    Raises:
        DataError: not 1-40 letters (any script), digits, spaces, dots, apostrophes, dashes or underscores starting
            with a letter or digit, or already a person of ``split``.
    """
    name = unicodedata.normalize("NFC", name if isinstance(name, str) else "").strip()
    if not NAME_PATTERN.fullmatch(name):
        raise DataError(
            "Give the person a name of 1–40 letters, digits, spaces, dots, apostrophes, dashes or underscores, "
            "starting with a letter or digit."
        )
    if name in split.known or name in split.never_trained:
        raise DataError(f"'{name}' is already a person in the dataset; choose another name.")
    return name


def _photo_name(photo: Any, index: int) -> str:
    if isinstance(photo, (str, Path)):
        return Path(photo).name
    return f"photo {index + 1}"


@functools.lru_cache(maxsize=1)
def _reference_embedder() -> nn.Module:
    """The pretrained dlib ResNet, whose descriptor distances :mod:`~dlfd_core.faces.faceset` is calibrated on."""
    from ..models import create_backbone

    return create_backbone("dlib_resnet").eval()


def _digest(photo: Any) -> str | None:
    """The content digest of an uploaded photo (a file's bytes, an array's pixels), or None for anything else."""
    try:
        if isinstance(photo, (str, Path)):
            return content_digest(Path(photo).read_bytes())
        if isinstance(photo, np.ndarray):
            return content_digest(photo)
    except OSError:
        return None
    return None


def _descriptors(crops: Sequence[np.ndarray]) -> np.ndarray:
    """The pretrained dlib descriptors of aligned crops, L2-normalised: ``[N, 128]``."""
    model = _reference_embedder()
    stacked = np.stack(crops)
    with torch.inference_mode():
        out = torch.cat(
            [model(crops_to_tensor(stacked[i : i + 32], model.input_size)) for i in range(0, len(stacked), 32)]
        ).numpy()
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _choose_faces(found: Sequence[tuple[int, Any]]) -> list[int]:
    """For each aligned photo, which of its faces is the person's: 0 for the aligner's choice, ``k`` for its
    ``others[k - 1]``. In a photo with several large faces, the one whose descriptor is closest (median distance) to
    the set's one-face photos is taken; with fewer than two such photos the aligner's choice stands."""
    chosen = [0] * len(found)
    single = [face.crop for _, face in found if not getattr(face, "others", ())]
    if len(single) < 2 or len(single) == len(found):
        return chosen
    reference = _descriptors(single)
    for k, (_, face) in enumerate(found):
        if getattr(face, "others", ()):
            candidates = _descriptors([face.crop, *face.others])
            distances = np.linalg.norm(candidates[:, None, :] - reference[None, :, :], axis=2)  # [faces, single]
            chosen[k] = int(np.argmin(np.median(distances, axis=1)))
    return chosen


def _check_faces(photos: Sequence[Any], found: Sequence[tuple[int, Any]], crops: Sequence[np.ndarray]) -> FaceSetCheck:
    """Copies and faces of another person among the faces ``crops`` of the photos ``found`` ((photo index, aligned
    face) pairs)."""
    if not found:
        return FaceSetCheck(keep=())
    return check_face_set(_descriptors(crops), digests=[_digest(photos[i]) for i, _ in found])


def _too_few_message(check: FaceSetCheck, total: int, failures: Sequence[tuple[str, str]]) -> str:
    different = len(check.groups)
    text = (
        f"Only {different} usable, different {'face' if different == 1 else 'faces'} among {total} "
        f"{'photo' if total == 1 else 'photos'}; at least {MIN_ENROL_FACES} are needed."
    )
    repeats, near = len(check.repeats), sum(len(g) - 1 for g in check.near_copies)
    if repeats or near:
        parts = [
            *([f"{repeats} {'was a repeat' if repeats == 1 else 'were repeats'} of another photo"] if repeats else []),
            *([f"{near} {'was a near-identical copy' if near == 1 else 'were near-identical copies'}"] if near else []),
        ]
        text += f" Of the photos with a face, {' and '.join(parts)}: use photos taken at different times or angles."
    if failures:
        text += " Photos without a usable face: " + "; ".join(f"{n}: {why}" for n, why in failures)
    return text


def _split_groups(groups: Sequence[Sequence[int]]) -> tuple[list[int], list[int], list[int]]:
    """Train / holdout / test rows of an enrolled face set whose near-identical faces come in ``groups``.

    About a quarter of the faces (at least one) are tested on: whole groups, taken from the end of the upload order
    while they fit in that quarter (a large group of burst shots is not sent to testing whole when smaller groups can
    fill it); the smallest group left is kept aside. No tested face then has a near copy among the training faces, and
    training keeps as many photos as it can.
    """
    total = sum(len(g) for g in groups)
    wanted = max(1, round(0.25 * total))
    test_ids: list[int] = []
    count = 0
    for k in reversed(range(len(groups))):
        if count >= wanted or len(groups) - len(test_ids) <= 2:  # keep a group for holdout and one for training
            break
        if count + len(groups[k]) <= wanted:
            test_ids.append(k)
            count += len(groups[k])
    if not test_ids:  # every group is larger than a quarter: the smallest one (the latest of equals)
        test_ids = [min(range(len(groups)), key=lambda k: (len(groups[k]), -k))]
    rest = [k for k in range(len(groups)) if k not in test_ids]
    holdout_id = min(rest, key=lambda k: (len(groups[k]), -k)) if len(rest) > 1 else None
    test = sorted(i for k in test_ids for i in groups[k])
    holdout = sorted(groups[holdout_id]) if holdout_id is not None else []
    train = sorted(i for k in rest if k != holdout_id for i in groups[k])
    return train, holdout, test


@dataclass(frozen=True)
class UsableFaces:
    """The faces of an upload that an enrolment uses, and what the person is told about them.

    Attributes:
        crops: one aligned face per different photo, in upload order.
        groups: rows of ``crops`` that are near-identical copies of each other (kept on one side of the split).
        captions: one per crop: its number, its file, and what to check about it.
        failures: (file name, reason) for each photo without a usable face.
        notes: how repeats and near-identical photos were handled.
        warnings: what may be wrong (faces of another person, photos with several faces).
    """

    crops: list[np.ndarray]
    groups: list[list[int]]
    captions: list[str]
    failures: list[tuple[str, str]]
    notes: list[str]
    warnings: list[str]


def _usable_faces(photos: Sequence[Any], aligner: Any, progress: ProgressFn) -> UsableFaces:
    """Align the photos, drop repeats, keep near-identical ones together, flag faces of another person.

    Raises:
        TooFewFacesError: fewer than :data:`MIN_ENROL_FACES` different usable faces.
    """
    results = aligner.align_batch(list(photos), progress=scaled(progress, 0.0, 0.25))
    found, failures = [], []  # found: (photo index, aligned face)
    for index, (photo, result) in enumerate(zip(photos, results, strict=True)):
        if isinstance(result, DLFDError):
            # name the file as the person knows it, never by the server's path to it
            shown = _photo_name(photo, index)
            failures.append((shown, str(result).replace(str(photo), shown)))
        else:
            found.append((index, result))
    progress(0.25, "checking the faces for copies and other people")
    picks = _choose_faces(found)
    picked = [face.crop if pick == 0 else face.others[pick - 1] for pick, (_, face) in zip(picks, found, strict=True)]
    check = _check_faces(photos, found, picked)
    shown = {i: _photo_name(photos[found[i][0]], found[i][0]) for i in range(len(found))}  # face -> file name
    notes = [f"{shown[dropped]} is the same photo as {shown[kept]}: used once" for kept, dropped in check.repeats]
    if check.near_copies:
        listed = "; ".join(" ≈ ".join(shown[i] for i in group) for group in check.near_copies)
        notes.append(
            f"near-identical photos ({listed}) are kept on the same side of the train / test split, so that the "
            "model is never tested on a copy of a photo it trained on"
        )
    if len(check.groups) < MIN_ENROL_FACES:
        raise TooFewFacesError(_too_few_message(check, len(photos), failures))
    position = {index: k for k, index in enumerate(check.keep)}  # face -> row among the faces used
    warnings = [
        f"{shown[i]} shows {found[i][1].num_faces} faces: "
        + ("the one most like the rest of the set" if picks[i] else "the largest clear one")
        + " was used (check its crop below)"
        for i in check.keep
        if found[i][1].num_faces > 1
    ]
    others = [shown[i] for i, _ in check.other_person]
    flagged = {i for i, _ in check.other_person}
    if others:
        warnings.insert(
            0,
            f"{len(others)} of {len(check.keep)} faces look like a different person from the rest of the set "
            f"({', '.join(others)}): enrol photos of one person only, or the model learns a mixture",
        )
    captions = [
        f"face {k + 1} · {shown[i]}"
        + (f" · 1 of {found[i][1].num_faces} faces" if found[i][1].num_faces > 1 else "")
        + (" · another person?" if i in flagged else "")
        for k, i in enumerate(check.keep)
    ]
    return UsableFaces(
        crops=[picked[i] for i in check.keep],
        groups=[[position[i] for i in group] for group in check.groups],
        captions=captions,
        failures=failures,
        notes=notes,
        warnings=warnings,
    )


def _with_person(
    base_aligned: AlignedFaces, base_split: Split, name: str, faces: UsableFaces, exclude_unseen: Sequence[str]
) -> tuple[AlignedFaces, Split, tuple[list[int], list[int], list[int]]]:
    """The bundled faces and split with the person added as a new known identity (their faces split into train /
    holdout / test by :func:`_split_groups`); ``exclude_unseen``: never-trained people dropped because the photos are
    theirs. Also returns the train / holdout / test rows of the person's faces."""
    n = len(faces.crops)
    keys = [f"upload/{name}/{i:03d}" for i in range(n)]
    rows = _split_groups(faces.groups)
    train_keys, holdout_keys, test_keys = ([keys[i] for i in part] for part in rows)
    size = base_aligned.size
    new_crops = np.stack([c if c.shape[0] == size else _resize(c, size) for c in faces.crops])
    aligned = AlignedFaces(
        crops=np.concatenate([base_aligned.crops, new_crops]),
        keys=(*base_aligned.keys, *keys),
        identities=(*base_aligned.identities, *([name] * n)),
        num_faces=np.concatenate([base_aligned.num_faces, np.ones(n, dtype=np.int64)]),
        failures=base_aligned.failures,
        ambiguous=base_aligned.ambiguous,
    )
    excluded = set(exclude_unseen)
    split = Split(
        dataset=base_split.dataset,
        seed=base_split.seed,
        known=(*base_split.known, name),
        unseen=tuple(u for u in base_split.unseen if u not in excluded),
        validation=tuple(u for u in base_split.validation if u not in excluded),
        train={**base_split.train, name: tuple(train_keys)},
        test={**base_split.test, name: tuple(test_keys)},
        holdout={**base_split.holdout, name: tuple(holdout_keys)},
    )
    return aligned, split, rows


@one_job_at_a_time("an enrolment")
def enrol(
    session: Session,
    name: str,
    photos: Sequence[Any],
    *,
    seed: int = 0,
    aligner: Any = None,
    exclude_unseen: Sequence[str] = (),
    device: str | torch.device | None = None,
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
) -> Enrolment:
    """Add a person from their photos: align, split, retrain the original recipe with them, test on held-out photos.

    The new model is trained exactly like the shipped one (same recipe and seed) on the default training photos plus
    the person's, so "forgetting" them afterwards is compared with a gold model that is the same recipe without them.
    One enrolment per session: enrolling again replaces the earlier person.

    Args:
        session: the session to enrol into (its model, split and faces are replaced on success only).
        name: the person's name.
        photos: 5 to 40 photos (paths, arrays or PIL images).
        seed: the training seed.
        aligner: a :class:`~dlfd_core.faces.FaceAligner` (a default one when omitted).
        exclude_unseen: unseen people to drop from the non-member population because the photos are theirs
            (the example face set is an unseen ORL person; :func:`example_photos` photos are detected
            automatically).
        device: where to train (the session's device when omitted).

    Raises:
        DataError: bad name, too few or too many photos.
        TooFewFacesError: fewer than 5 usable, different faces (the message lists why each photo failed and how many
            were repeats or near-identical).
        BusyError: another job of the session is booked or running.
    """
    from ..faces import FaceAligner
    from ..train import recipe_of, train_on_split

    start = time.perf_counter()
    session.check_open()
    device = torch.device(device) if device is not None else session.device
    base_aligned, base_split = session.workspace.aligned, session.workspace.split
    name = check_name(name, base_split)
    example = session.folder / "example"
    if any(Path(str(p)).resolve().parent == example.resolve() for p in photos if isinstance(p, (str, Path))):
        exclude_unseen = (*exclude_unseen, session.workspace.bundle.example_identity)
    if not photos:
        raise DataError(f"Upload {MIN_ENROL_FACES} to {MAX_UPLOAD_PHOTOS} photos of one person.")
    if len(photos) > MAX_UPLOAD_PHOTOS:
        raise DataError(f"{len(photos)} photos uploaded; at most {MAX_UPLOAD_PHOTOS} are accepted.")
    faces = _usable_faces(photos, aligner or FaceAligner(), progress)
    aligned, split, (train_rows, holdout_rows, test_rows) = _with_person(
        base_aligned, base_split, name, faces, exclude_unseen
    )
    new_crops = aligned.crops[len(base_aligned) :]
    session.workspace.wait_ready(scaled(progress, 0.25, 0.3))
    progress(0.3, f"training the model to know {name}")
    trained = train_on_split(
        aligned,
        split,
        which="original",
        backbone=session.workspace.model.backbone_name,
        config=recipe_of(session.workspace.model),
        seed=seed,
        device=device,
        progress=scaled(progress, 0.3, 0.9),
        should_stop=should_stop,
        prefix=lambda model, keys: session.workspace.outputs.prefix_outputs(model, keys, aligned),
    )
    model = trained.model.eval()
    progress(0.9, "testing on the held-out photos")
    outputs = collect_all(model, aligned, split, device=device, reuse=session.workspace.outputs)
    model = model.cpu()  # kept between calls on the CPU (a ZeroGPU device exists only during a call)
    parts = outputs.parts(aligned, split)
    test = parts["retain_test"]
    own = np.asarray([identity == name for identity in test.identities])
    correct = test.predictions == test.labels
    predictions = [
        Prediction(crop=new_crops[test_rows[j]], identity=name, role="held out", before=top)
        for j, top in enumerate(top_predictions(test.logits[np.flatnonzero(own)], split.known))
    ]
    enrolment = Enrolment(
        name=name,
        crops=list(new_crops),
        captions=faces.captions,
        failures=faces.failures,
        notes=faces.notes,
        warnings=faces.warnings,
        train=len(train_rows),
        holdout=len(holdout_rows),
        test=len(test_rows),
        predictions=predictions,
        recognised=float(correct[own].mean()),
        retain_test_acc=float(correct[~own].mean()),
        seconds=time.perf_counter() - start,
    )
    session.check_open()  # closed while training: keep nothing
    session.aligned, session.split, session.model, session.outputs = aligned, split, model, outputs
    session.enrolment = enrolment
    session.gold_cache.clear()
    progress(1.0, "enrolled")
    return enrolment


def example_photos(session: Session) -> list[Path]:
    """Copy the example face set (a person the model never saw) into the session's folder, as PNG files."""
    workspace = session.workspace
    return write_example_photos(
        workspace.dataset,
        session.folder / "example",
        identity=workspace.bundle.example_identity,
        aligned=workspace.aligned,
    )


def write_example_photos(
    dataset: FaceDataset,
    folder: Path,
    prefix: str = "example",
    *,
    identity: str = EXAMPLE_IDENTITY,
    aligned: AlignedFaces | None = None,
) -> list[Path]:
    """Write ``identity``'s photos from ``dataset`` into ``folder`` as RGB PNG files: the original files where the
    dataset has them (ORL), otherwise their aligned crops from ``aligned`` (a packed bundle such as LFW)."""
    from PIL import Image

    records = dataset.records_of(identity)
    if all(dataset.path(r).is_file() for r in records):
        images = [dataset.load_image(r) for r in records]
    elif aligned is not None:
        images = [np.asarray(c) for c in aligned.select([r.key for r in records if r.key in aligned])]
    else:
        raise DataError(f"The photos of {identity} are not on disk; pass the dataset's aligned crops.")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{prefix}_{i + 1:02d}.png"
        Image.fromarray(image).convert("RGB").save(path)
        paths.append(path)
    return paths


def _resize(crop: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))
