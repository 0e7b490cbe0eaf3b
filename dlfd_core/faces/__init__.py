"""Face detection (MTCNN), landmark-based alignment and robust image loading."""

from __future__ import annotations

from dlfd_core.faces.align import (
    DEFAULT_SCALE,
    DEFAULT_SIZE,
    MIN_FACE_PX,
    MIN_SCORE,
    AlignedFace,
    FaceAligner,
    align_crop,
)
from dlfd_core.faces.io import MAX_PIXELS, load_image
from dlfd_core.faces.mtcnn import MTCNN, FaceDetection, nms

__all__ = [
    "DEFAULT_SCALE",
    "DEFAULT_SIZE",
    "MAX_PIXELS",
    "MIN_FACE_PX",
    "MIN_SCORE",
    "MTCNN",
    "AlignedFace",
    "FaceAligner",
    "FaceDetection",
    "align_crop",
    "load_image",
    "nms",
]
