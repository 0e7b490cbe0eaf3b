"""Loading images from files, bytes, PIL images or arrays into RGB ``uint8 [H, W, 3]`` arrays.

Everything a user can hand over (a photo upload, a path in a dataset folder, an array from another library)
goes through :func:`load_image`. Problems a person can fix (a missing or truncated file, a text file named
``.jpg``, a decompression bomb) raise :class:`~dlfd_core.errors.ImageError` with a message naming the file.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dlfd_core.errors import ImageError

logger = logging.getLogger(__name__)

#: Default limit on the number of pixels (width × height) of an image: about 40 megapixels.
MAX_PIXELS = 40_000_000

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray

_WHITE = (255, 255, 255)


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Load an image as an RGB ``uint8`` array of shape ``[H, W, 3]``.

    The EXIF orientation is applied. Grey, palette, 16-bit, CMYK and other modes are converted to RGB; an alpha
    channel is composited on white. The pixel count is checked against ``max_pixels`` from the header, before
    any pixel is decoded, and the whole file is decoded at once so that a truncated file fails here.

    Args:
        source: a file path, the file's bytes, a PIL image, or a NumPy array ``[H, W]`` (grey), ``[H, W, 1]``,
            ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA). Arrays may be ``uint8``, ``uint16`` (scaled down),
            ``bool`` or float (``[0, 1]`` when the maximum is at most 1, else ``[0, 255]``).
        max_pixels: the largest accepted width × height.

    Returns:
        A new C-contiguous ``uint8`` array ``[H, W, 3]``.

    Raises:
        ImageError: the file is missing, not an image, truncated, in an unsupported format or mode, empty, or
            larger than ``max_pixels``.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels=max_pixels, name="array")
    if isinstance(source, Image.Image):
        _check_size(source.size, max_pixels, "image")
        return _from_pil(source, name="image")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError("The image data is empty (0 bytes). Upload the photo again.")
        return _open_and_convert(io.BytesIO(data), name="uploaded image", max_pixels=max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"Image file not found: {path}. Check the path.")
        if not path.is_file():
            raise ImageError(f"Not a file: {path}. Give the path of an image file.")
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ImageError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
        with handle:
            return _open_and_convert(handle, name=str(path), max_pixels=max_pixels)
    raise ImageError(
        f"Cannot load an image from a {type(source).__name__}; give a file path, bytes, a PIL image or a NumPy array."
    )


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name} is empty ({width}×{height} pixels).")
    if width * height > max_pixels:
        raise ImageError(
            f"{name} is too large: {width}×{height} = {width * height / 1e6:.1f} megapixels, more than the limit of "
            f"{max_pixels / 1e6:.1f} megapixels. Resize it before uploading."
        )


def _open_and_convert(handle: BinaryIO, *, name: str, max_pixels: int) -> np.ndarray:
    with warnings.catch_warnings():
        # Pillow's own bomb check warns between MAX_IMAGE_PIXELS and twice that; make it an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(handle)
        except UnidentifiedImageError as exc:
            raise ImageError(
                f"{name} is not an image or its format is not supported. Use a JPEG, PNG, BMP, GIF, TIFF or WebP file."
            ) from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"{name} is too large to decode safely (decompression bomb check): {exc}") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{name} could not be read: {exc}") from exc
        with image:
            _check_size(image.size, max_pixels, name)
            return _from_pil(image, name=name)


def _from_pil(image: Image.Image, *, name: str) -> np.ndarray:
    """Decode fully, apply EXIF orientation and convert to an RGB array."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"{name} is too large to decode safely (decompression bomb check): {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            message = f"{name} is damaged or truncated and cannot be decoded ({exc}). Use another copy."
            raise ImageError(message) from exc
    try:
        transposed = ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block must not lose the photo
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", name, exc)
        transposed = None
    if transposed is not None:
        image = transposed
    return _pil_to_rgb(image, name=name)


def _pil_to_rgb(image: Image.Image, *, name: str) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        return np.array(image, dtype=np.uint8)
    if mode in ("L", "1"):
        return _grey_to_rgb(np.array(image.convert("L"), dtype=np.uint8))
    if mode.startswith("I;16"):
        wide = np.array(image).astype(np.int64)
        return _grey_to_rgb(np.clip((wide * 255 + 32767) // 65535, 0, 255).astype(np.uint8))
    if mode in ("I", "F"):
        return _grey_to_rgb(_to_uint8(np.array(image)))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    try:
        if has_alpha:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
            return np.array(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
        return np.array(image.convert("RGB"), dtype=np.uint8)
    except (ValueError, OSError) as exc:
        raise ImageError(f"{name} uses the image mode {mode!r}, which cannot be converted to RGB.") from exc


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale an array of any numeric dtype to ``uint8``."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        finite = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(finite.max()) if finite.size else 0.0
        if peak <= 1.0:
            finite = finite * 255.0
        return np.clip(np.rint(finite), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        peak = int(array.max()) if array.size else 0
        values = array.astype(np.int64)
        if peak > 255:
            # 16-bit data (or larger): map the full range onto 0..255.
            top = 65535 if peak <= 65535 else peak
            return np.clip((values * 255 + top // 2) // top, 0, 255).astype(np.uint8)
        return np.clip(values, 0, 255).astype(np.uint8)
    raise ImageError(f"Unsupported array dtype {array.dtype}; use uint8, uint16, bool or float.")


def _from_array(array: Any, *, max_pixels: int, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(
            f"Unsupported {name} shape {tuple(array.shape)}; expected [H, W] grey, [H, W, 3] RGB or [H, W, 4] RGBA."
        )
    height, width = array.shape[:2]
    _check_size((width, height), max_pixels, name)
    pixels = _to_uint8(array)
    if pixels.ndim == 2:
        return _grey_to_rgb(pixels)
    if pixels.shape[2] == 4:
        alpha = pixels[:, :, 3:4].astype(np.float32) / 255.0
        rgb = pixels[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.ascontiguousarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    return np.array(pixels, dtype=np.uint8, order="C", copy=True)
