"""Aligned face crops from MTCNN's five landmarks.

The crop is a square centred halfway between the eyes' midpoint and the mouth corners' midpoint, with a side
of ``scale`` times the distance between those two midpoints. The default scale, 2.66, reproduces the framing of
dlib's 150×150 face chips (dlib's mean face with 25 % padding: eye centres at y = 0.216, mouth corners at
y = 0.780 of a template that the chip shows from -0.25 to 1.25, so 1.5 / 0.564 ≈ 2.66 and the centre falls at
the eye–mouth midpoint). Parts of the square outside the photo are black.

:class:`FaceAligner` ties loading, detection and cropping together for one photo or many. When a photo shows
several faces it chooses one by its ``choose`` rule:

* ``"confident"`` (the default, for a person's own photos): the most confident of the *large* faces, those whose
  box side is at least :data:`LARGE_FACE_RATIO` of the largest face's side;
* ``"centre"`` (for datasets labelled by the face in the middle of the frame, as LFW is): the confident face whose
  box centre lies nearest the photo's centre. The choice is flagged as *ambiguous* (:attr:`AlignedFace.ambiguous`)
  when no face is near the centre, or when another large face is nearly as near (see :data:`CENTRE_MAX_OFFSET`
  and :data:`CENTRE_MIN_GAP`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from dlfd_core.errors import DLFDError, FaceNotFoundError, FaceTooSmallError, ImageError
from dlfd_core.faces.io import MAX_PIXELS, ImageSource, load_image
from dlfd_core.faces.mtcnn import MTCNN, FaceDetection
from dlfd_core.progress import ProgressFn, no_progress

logger = logging.getLogger(__name__)

#: Crop side as a multiple of the eye-to-mouth distance (dlib's face-chip framing, see the module docstring).
DEFAULT_SCALE = 2.66
#: Output side in pixels (the dlib face-recognition network's input).
DEFAULT_SIZE = 150
#: A face is "too small" when its box's shorter side is below this many pixels of the original photo, or its
#: eye-to-mouth distance is below a third of it.
MIN_FACE_PX = 32.0
#: Detections with a lower O-Net probability are ignored by :class:`FaceAligner`.
MIN_SCORE = 0.9
#: With several faces, only those at least this fraction of the largest face's side compete on score.
LARGE_FACE_RATIO = 0.5
#: ``choose="centre"``: a chosen face whose box centre is further than this fraction of the photo's shorter side
#: from the photo's centre is flagged as ambiguous (not clearly the centred face).
CENTRE_MAX_OFFSET = 0.15
#: ``choose="centre"``: flagged as ambiguous too when another face, at least :data:`LARGE_FACE_RATIO` of the chosen
#: face's size, lies less than this fraction of the shorter side further from the centre than the chosen one.
CENTRE_MIN_GAP = 0.1
#: The rules :class:`FaceAligner` can choose a photo's face by.
CHOOSE_RULES = ("confident", "centre")
#: Photos with a longer side than this are shrunk for detection (the crop still comes from the full photo).
MAX_DETECT_SIDE = 1024
#: When no face is found, detection is tried once more on the photo with its edges extended by this fraction
#: of its size on every side, for faces cut off by the frame.
BORDER_RETRY = 0.25

# align_batch works through the input in chunks of at most this many photos / pixels.
_CHUNK_IMAGES = 64
_CHUNK_PIXELS = 100_000_000


def align_crop(
    image: np.ndarray,
    landmarks: Sequence[Sequence[float]] | np.ndarray,
    *,
    size: int = DEFAULT_SIZE,
    scale: float = DEFAULT_SCALE,
    roll: bool = False,
) -> np.ndarray:
    """Cut a square face crop placed from five landmarks and resize it.

    Args:
        image: RGB ``uint8 [H, W, 3]`` (or grey ``[H, W]``).
        landmarks: five ``(x, y)`` points: left eye, right eye, nose, left and right mouth corners.
        size: output side in pixels.
        scale: crop side as a multiple of the eye-to-mouth distance.
        roll: rotate about the crop centre so that the eyes are level.

    Returns:
        ``uint8 [size, size, 3]``; areas outside the photo are black.

    Raises:
        FaceTooSmallError: the landmarks have no extent (eyes and mouth at the same point).
        ValueError: bad ``landmarks`` shape, ``size`` or ``scale``.
    """
    if size < 1:
        raise ValueError(f"size must be positive, not {size}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, not {scale}")
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {pixels.dtype} {tuple(pixels.shape)}")
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise ValueError(f"landmarks must be five finite (x, y) points, got shape {points.shape}")

    eyes = points[0:2].mean(axis=0)
    mouth = points[3:5].mean(axis=0)
    distance = float(np.linalg.norm(mouth - eyes))
    if distance < 1e-6:
        raise FaceTooSmallError("The face's landmarks have no extent (eyes and mouth coincide); cannot crop it.")
    cx, cy = (eyes + mouth) / 2
    half = scale * distance / 2
    angle = 0.0
    if roll:
        dx, dy = points[1] - points[0]
        angle = math.atan2(dy, dx)
    # Cut a padded, axis-aligned region large enough for the (rotated) square, plus a safety margin.
    reach = half * (abs(math.cos(angle)) + abs(math.sin(angle))) + 2
    x0, y0 = math.floor(cx - reach), math.floor(cy - reach)
    x1, y1 = math.ceil(cx + reach), math.ceil(cy + reach)
    region = _padded_region(pixels, x0, y0, x1, y1)
    picture = Image.fromarray(region)
    lcx, lcy = cx - x0, cy - y0
    if roll and angle != 0.0:
        # PIL rotates counter-clockwise as displayed; a positive angle (right eye lower) needs exactly that.
        picture = picture.rotate(
            math.degrees(angle), resample=Image.Resampling.BICUBIC, center=(lcx, lcy), fillcolor=(0, 0, 0)
        )
    box = (lcx - half, lcy - half, lcx + half, lcy + half)
    crop = picture.resize((size, size), resample=Image.Resampling.BICUBIC, box=box)
    return np.asarray(crop, dtype=np.uint8).copy()


def _padded_region(pixels: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """``pixels[y0:y1, x0:x1]`` with black wherever the rectangle leaves the image."""
    height, width = pixels.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = pixels[sy0:sy1, sx0:sx1]
    return out


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """The aligned crop of the chosen face in a photo.

    Attributes:
        crop: ``uint8 [size, size, 3]`` RGB.
        detection: the chosen detection, in the photo's pixel coordinates.
        num_faces: how many faces the photo shows (detections with at least the aligner's ``min_score``);
            more than one means the choice may be wrong.
        others: aligned crops of the photo's other faces that were large enough to be chosen, best first (empty
            for a photo with one face), for a caller that can tell by identity which face is meant.
        ambiguous: why the choice among several faces is not clear (``choose="centre"`` only), or ``""``.
    """

    crop: np.ndarray
    detection: FaceDetection
    num_faces: int
    others: tuple[np.ndarray, ...] = ()
    ambiguous: str = ""

    @property
    def several_faces(self) -> bool:
        """Whether more than one face was found."""
        return self.num_faces > 1


class FaceAligner:
    """Finds the main face of a photo and returns its aligned crop.

    Args:
        detector: the MTCNN to use; a default one is created when omitted.
        size: output side in pixels.
        scale: crop side as a multiple of the eye-to-mouth distance.
        min_face_px: a face whose box's shorter side is below this (in photo pixels), or whose eye-to-mouth
            distance is below a third of it, is too small.
        min_score: detections with a lower face probability are ignored.
        roll: rotate crops so that the eyes are level (on by default: dlib's own face chips are rotation-aligned,
            and on ORL it gave the best verification AUC at every scale tried; see docs/alignment.md).
        max_detect_side: photos larger than this are shrunk for detection only.
        border_retry: when no face is found, detect again with the borders extended by this fraction of the
            photo's size (0 disables the retry).
        max_pixels: the largest photo accepted, in pixels.
        choose: which face of a photo with several is aligned: ``"confident"`` or ``"centre"`` (see the module
            docstring).
        keep_others: also crop the photo's other large faces (:attr:`AlignedFace.others`); a dataset build that
            never reads them turns this off.
    """

    def __init__(
        self,
        detector: MTCNN | None = None,
        *,
        size: int = DEFAULT_SIZE,
        scale: float = DEFAULT_SCALE,
        min_face_px: float = MIN_FACE_PX,
        min_score: float = MIN_SCORE,
        roll: bool = True,
        max_detect_side: int = MAX_DETECT_SIDE,
        border_retry: float = BORDER_RETRY,
        max_pixels: int = MAX_PIXELS,
        choose: str = "confident",
        keep_others: bool = True,
    ) -> None:
        if size < 1 or not scale > 0 or max_detect_side < 12 or border_retry < 0:
            raise ValueError("size, scale and max_detect_side must be positive and border_retry non-negative")
        if choose not in CHOOSE_RULES:
            raise ValueError(f"choose must be one of {', '.join(CHOOSE_RULES)}, not {choose!r}")
        self.detector = detector if detector is not None else MTCNN()
        self.size = int(size)
        self.scale = float(scale)
        self.min_face_px = float(min_face_px)
        self.min_score = float(min_score)
        self.roll = bool(roll)
        self.max_detect_side = int(max_detect_side)
        self.border_retry = float(border_retry)
        self.max_pixels = int(max_pixels)
        self.choose = choose
        self._keep_others = bool(keep_others)  # private: not part of the crops' cache key

    def align(self, image: ImageSource) -> AlignedFace:
        """Align the main face of one photo.

        Args:
            image: anything :func:`~dlfd_core.faces.load_image` accepts.

        Raises:
            ImageError: the photo cannot be loaded.
            FaceNotFoundError: no face was found.
            FaceTooSmallError: the chosen face is too small for a usable crop.
        """
        result = self.align_batch([image])[0]
        if isinstance(result, DLFDError):
            raise result
        return result

    def align_batch(
        self, images: Sequence[ImageSource], *, progress: ProgressFn = no_progress
    ) -> list[AlignedFace | DLFDError]:
        """Align the main face of each photo; a photo that fails gives its error instead of a face.

        Photos are loaded and detected in chunks; photos of the same size go through the detector together.

        Args:
            images: photos, anything :func:`~dlfd_core.faces.load_image` accepts.
            progress: called with the fraction done, rising to 1.0.

        Returns:
            One entry per photo, in order: an :class:`AlignedFace`, or the :class:`~dlfd_core.errors.DLFDError`
            (``ImageError``, ``FaceNotFoundError``, ``FaceTooSmallError``) explaining why there is none.
        """
        total = len(images)
        results: list[AlignedFace | DLFDError | None] = [None] * total
        progress(0.0, f"Aligning {total} photos")
        start = 0
        while start < total:
            stop, pixels = start, 0
            loaded: dict[int, np.ndarray] = {}
            while stop < total and stop - start < _CHUNK_IMAGES and pixels < _CHUNK_PIXELS:
                try:
                    loaded[stop] = load_image(images[stop], max_pixels=self.max_pixels)
                    pixels += loaded[stop].shape[0] * loaded[stop].shape[1]
                except ImageError as exc:
                    results[stop] = exc
                stop += 1
            found = self._detect(loaded)
            for index, array in loaded.items():
                try:
                    results[index] = self._choose_and_crop(array, found[index], _describe(images[index], index))
                except DLFDError as exc:
                    results[index] = exc
            start = stop
            progress(stop / total, f"Aligned {stop} of {total} photos")
        if total == 0:
            progress(1.0, "No photos to align")
        return [r if r is not None else DLFDError("internal error: photo was not processed") for r in results]

    # ----------------------------------------------------------------------------------------------------------

    def _detect(self, arrays: dict[int, np.ndarray]) -> dict[int, list[FaceDetection]]:
        """Detections (score ≥ min_score) per photo, in photo coordinates."""
        indices = list(arrays)
        small, factors = [], []
        for index in indices:
            shrunk, fx, fy = _shrink(arrays[index], self.max_detect_side)
            small.append(shrunk)
            factors.append((fx, fy))
        detected = self.detector.detect_batch(small)
        found: dict[int, list[FaceDetection]] = {}
        for index, dets, (fx, fy) in zip(indices, detected, factors, strict=True):
            found[index] = [d.transformed(fx, scale_y=fy) for d in dets if d.score >= self.min_score]

        missing = [k for k, index in enumerate(indices) if not found[index]]
        if self.border_retry > 0 and missing:
            padded, offsets = [], []
            for k in missing:
                h, w = small[k].shape[:2]
                py, px = round(h * self.border_retry), round(w * self.border_retry)
                padded.append(np.pad(small[k], ((py, py), (px, px), (0, 0)), mode="edge"))
                offsets.append((px, py))
            for k, dets, (px, py) in zip(missing, self.detector.detect_batch(padded), offsets, strict=True):
                fx, fy = factors[k]
                found[indices[k]] = [
                    d.transformed(fx, -px * fx, -py * fy, scale_y=fy) for d in dets if d.score >= self.min_score
                ]
        return found

    def _choose_and_crop(self, image: np.ndarray, faces: list[FaceDetection], name: str) -> AlignedFace:
        if not faces:
            raise FaceNotFoundError(
                f"No face found in {name}. Use a photo in which one face is clearly visible, roughly frontal and "
                "well lit."
            )
        largest = max(face.size for face in faces)
        ambiguous = ""
        if self.choose == "centre":
            best, ambiguous = _centred(image, faces)
        else:
            best = max((f for f in faces if f.size >= LARGE_FACE_RATIO * largest), key=lambda f: f.score)
        if best.size < self.min_face_px or best.eye_mouth_distance < self.min_face_px / 3:
            raise FaceTooSmallError(
                f"The face in {name} is too small: {best.size:.0f} pixels across, at least {self.min_face_px:.0f} "
                "are needed. Use a photo taken closer or at a higher resolution."
            )
        if len(faces) > 1:
            logger.debug("%s: %d faces found, using the one with score %.3f", name, len(faces), best.score)
        crop = align_crop(image, best.landmarks, size=self.size, scale=self.scale, roll=self.roll)
        others = tuple(
            align_crop(image, face.landmarks, size=self.size, scale=self.scale, roll=self.roll)
            for face in sorted(faces, key=lambda f: -f.score)
            if self._keep_others
            and face is not best
            and face.size >= LARGE_FACE_RATIO * largest
            and face.size >= self.min_face_px
            and face.eye_mouth_distance >= self.min_face_px / 3
        )
        return AlignedFace(crop=crop, detection=best, num_faces=len(faces), others=others, ambiguous=ambiguous)


def _centre_offset(image: np.ndarray, face: FaceDetection) -> float:
    """Distance from the face box's centre to the photo's centre, as a fraction of the photo's shorter side."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = face.box
    return math.hypot((x1 + x2) / 2 - width / 2, (y1 + y2) / 2 - height / 2) / min(height, width)


def _centred(image: np.ndarray, faces: Sequence[FaceDetection]) -> tuple[FaceDetection, str]:
    """The face nearest the photo's centre (ties: the more confident), and why that choice is unclear, or ``""``."""
    ranked = sorted(faces, key=lambda f: (_centre_offset(image, f), -f.score))
    best = ranked[0]
    offset = _centre_offset(image, best)
    if offset > CENTRE_MAX_OFFSET:
        return best, f"no face near the centre (the nearest is {offset:.2f} of the photo's side away)"
    for other in ranked[1:]:
        gap = _centre_offset(image, other) - offset
        if other.size >= LARGE_FACE_RATIO * best.size and gap < CENTRE_MIN_GAP:
            return best, (
                f"{len(faces)} faces, two near the centre ({offset:.2f} and {offset + gap:.2f} of the photo's side "
                "away)"
            )
    return best, ""


def _shrink(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float, float]:
    """Shrink ``image`` so that its longer side is at most ``max_side``; return it and the x, y factors back."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image, 1.0, 1.0
    ratio = max_side / max(height, width)
    new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))
    shrunk = np.asarray(Image.fromarray(image).resize((new_w, new_h), resample=Image.Resampling.BILINEAR))
    return shrunk, width / new_w, height / new_h


def _describe(source: object, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"photo {index + 1}"
