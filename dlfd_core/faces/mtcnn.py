"""MTCNN face detection (Zhang et al., 2016) in plain PyTorch.

Three small networks run as a cascade:

1. **P-Net** (fully convolutional, 12×12 windows, stride 2) scans an image pyramid and proposes boxes;
2. **R-Net** (24×24 crops) rejects most proposals and refines the boxes;
3. **O-Net** (48×48 crops) gives the final score, box and five landmarks.

After each stage the boxes are corrected with the network's bounding-box regression and pruned with
non-maximum suppression (NMS); before cropping for the next stage they are squared and rounded to whole
pixels, and the parts of a crop outside the image are black.

The weights are the caffe-trained MTCNN weights as converted by facenet-pytorch (MIT), stored in
``assets/weights/mtcnn.safetensors`` by ``scripts/convert_mtcnn_weights.py``. They expect RGB input scaled
as ``(x - 127.5) / 128`` and, in R-Net and O-Net, the last feature map flattened width-major (transposed)
before the first dense layer.

Coordinates are continuous image coordinates: pixel ``(i, j)`` covers ``[j, j + 1) × [i, i + 1)``, and a
box ``(x1, y1, x2, y2)`` has width ``x2 - x1``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlfd_core.errors import ImageError, WeightsError
from dlfd_core.paths import WEIGHTS_DIR, sha256_file

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS = WEIGHTS_DIR / "mtcnn.safetensors"
#: sha256 of the file that ``scripts/convert_mtcnn_weights.py`` writes.
WEIGHTS_SHA256 = "cec3b9d5527aa56bfd849805ebeb8c774e797b4ebc0afd327b6c8954b1fec96a"
REBUILD_COMMAND = "python scripts/convert_mtcnn_weights.py"

DEFAULT_THRESHOLDS = (0.6, 0.7, 0.7)
DEFAULT_SCALE_FACTOR = 0.709
DEFAULT_MIN_FACE_SIZE = 20.0

_PNET_STRIDE = 2
_PNET_CELL = 12
# NMS overlap thresholds: P-Net within one scale, P-Net across scales, R-Net, O-Net (intersection over minimum).
_NMS_PNET_SCALE = 0.5
_NMS_PNET_ALL = 0.7
_NMS_RNET = 0.7
_NMS_ONET = 0.7
# The largest number of pixels (images × height × width) sent through P-Net in one batch.
_MAX_BATCH_PIXELS = 8_000_000


@dataclass(frozen=True)
class FaceDetection:
    """One detected face.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in image pixels.
        score: O-Net's face probability in ``[0, 1]``.
        landmarks: five ``(x, y)`` points: left eye, right eye, nose, left mouth corner, right mouth corner
            ("left" and "right" as seen in the image).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """The box's shorter side in pixels."""
        return min(self.width, self.height)

    @property
    def eye_mouth_distance(self) -> float:
        """Distance in pixels between the eyes' midpoint and the mouth corners' midpoint."""
        pts = np.asarray(self.landmarks, dtype=np.float64)
        return float(np.linalg.norm(pts[3:5].mean(axis=0) - pts[0:2].mean(axis=0)))

    def transformed(
        self, scale: float, dx: float = 0.0, dy: float = 0.0, *, scale_y: float | None = None
    ) -> FaceDetection:
        """Map every coordinate by ``x * scale + dx`` and ``y * scale_y + dy`` (``scale_y`` defaults to ``scale``)."""
        sy = scale if scale_y is None else scale_y
        x1, y1, x2, y2 = self.box
        return FaceDetection(
            box=(x1 * scale + dx, y1 * sy + dy, x2 * scale + dx, y2 * sy + dy),
            score=self.score,
            landmarks=tuple((x * scale + dx, y * sy + dy) for x, y in self.landmarks),
        )


# --------------------------------------------------------------------------------------------------------------
# Networks. Attribute names follow the state-dict keys of the converted weights.


class PNet(nn.Module):
    """Proposal network: fully convolutional, one output per 12×12 window at stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return face probabilities ``[N, h, w]`` and box regressions ``[N, 4, h, w]``."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        prob = torch.softmax(self.conv4_1(x), dim=1)[:, 1]
        return prob, self.conv4_2(x)


class RNet(nn.Module):
    """Refinement network on 24×24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return face probabilities ``[N]`` and box regressions ``[N, 4]``."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).flatten(1)  # width-major, as the caffe weights expect
        x = self.prelu4(self.dense4(x))
        prob = torch.softmax(self.dense5_1(x), dim=1)[:, 1]
        return prob, self.dense5_2(x)


class ONet(nn.Module):
    """Output network on 48×48 crops: score, box regression and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return probabilities ``[N]``, box regressions ``[N, 4]`` and landmarks ``[N, 10]`` (5 x, then 5 y)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).flatten(1)
        x = self.prelu5(self.dense5(x))
        prob = torch.softmax(self.dense6_1(x), dim=1)[:, 1]
        return prob, self.dense6_2(x), self.dense6_3(x)


# --------------------------------------------------------------------------------------------------------------
# Box utilities (NumPy, boxes as float arrays [N, 4] of x1, y1, x2, y2).


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, *, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression.

    Repeatedly keeps the highest-scoring remaining box and drops every remaining box whose overlap with it is
    above ``threshold``.

    Args:
        boxes: ``[N, 4]`` boxes ``(x1, y1, x2, y2)``.
        scores: ``[N]`` scores.
        threshold: boxes overlapping a kept box by more than this are suppressed.
        mode: ``"union"`` (intersection over union) or ``"min"`` (intersection over the smaller area).

    Returns:
        Indices of the kept boxes, best score first (ties keep the input order).
    """
    if mode not in ("union", "min"):
        raise ValueError(f"mode must be 'union' or 'min', not {mode!r}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    x1, y1, x2, y2 = boxes.T
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        inter_w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        inter_h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = inter_w * inter_h
        if mode == "union":
            denom = area[best] + area[rest] - inter
        else:
            denom = np.minimum(area[best], area[rest])
        overlap = inter / np.maximum(denom, 1e-12)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float, *, mode: str = "union"
) -> np.ndarray:
    """NMS applied separately within each group (e.g. each image), in one pass.

    Boxes of different groups are moved apart so they can never overlap, then one :func:`nms` runs.

    Returns:
        Indices of the kept boxes, best score first.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    groups = np.asarray(groups).reshape(-1)
    span = float(boxes.max() - boxes.min()) + 1.0
    shifted = boxes + (groups.astype(np.float64) * span)[:, None]
    return nms(shifted, scores, threshold, mode=mode)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply bounding-box regression offsets (fractions of the box's width and height)."""
    width = (boxes[:, 2] - boxes[:, 0])[:, None]
    height = (boxes[:, 3] - boxes[:, 1])[:, None]
    scale = np.concatenate([width, height, width, height], axis=1)
    return boxes + reg * scale


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre."""
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def _to_pixel_squares(boxes: np.ndarray) -> np.ndarray:
    """Square boxes rounded to whole pixels, at least one pixel wide: int64 ``[N, 4]``."""
    sq = _square(boxes)
    side = np.maximum(np.rint(sq[:, 2] - sq[:, 0]), 1).astype(np.int64)
    x1 = np.rint(sq[:, 0]).astype(np.int64)
    y1 = np.rint(sq[:, 1]).astype(np.int64)
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def _pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales at which P-Net's 12-pixel window covers faces from ``min_face_size`` up to the whole image."""
    first = _PNET_CELL / min_face_size
    side = min(height, width) * first
    scales = []
    scale = first
    while side >= _PNET_CELL:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


# --------------------------------------------------------------------------------------------------------------


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[N, C, H, W]``: area averaging when shrinking, bilinear when enlarging."""
    if size[0] <= x.shape[-2] and size[1] <= x.shape[-1]:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


class _CropSampler:
    """Cuts box crops out of a batch of same-size images with one sampling call per pyramid level.

    The images are kept at full size and successively halved (2×2 averaging). A box of side ``L`` is sampled
    bilinearly from the level whose reduction ``2**k`` leaves between ``size`` and ``2 * size`` pixels across
    it, so shrinking never skips pixels. All images of the batch form the depth axis of one 5-D tensor and
    each crop samples exactly its own slice, which lets a single ``grid_sample`` serve every crop of every
    image. Outside the image the crops are black.
    """

    def __init__(self, batch: torch.Tensor, fill: float) -> None:
        self.fill = fill
        self.height, self.width = batch.shape[-2:]
        level = batch - fill  # so that zero padding becomes ``fill``
        self.levels = [level.transpose(0, 1).unsqueeze(0).contiguous()]  # [1, C, B, H, W]
        while min(level.shape[-2:]) >= 4:
            level = F.avg_pool2d(level, 2)
            self.levels.append(level.transpose(0, 1).unsqueeze(0).contiguous())

    def __call__(self, boxes: np.ndarray, owners: np.ndarray, size: int) -> torch.Tensor:
        """Crops ``[N, C, size, size]`` of ``boxes[k]`` (pixels) from image ``owners[k]``, in input order."""
        first = self.levels[0]
        count = len(boxes)
        out = torch.empty((count, first.shape[1], size, size), dtype=first.dtype, device=first.device)
        if count == 0:
            return out
        boxes = boxes.astype(np.float64)
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        level_of = np.clip(np.floor(np.log2(np.maximum(side, 1e-6) / size)), 0, len(self.levels) - 1).astype(int)
        steps = (np.arange(size, dtype=np.float64) + 0.5) / size  # output pixel centres in box units
        for k in np.unique(level_of).tolist():
            rows = np.nonzero(level_of == k)[0]
            source = self.levels[k]
            depth, lev_h, lev_w = source.shape[-3:]
            factor = float(2**k)
            b = boxes[rows]
            # Continuous coordinates in the level, then pixel-centre indices, then align_corners=True units.
            xs = (b[:, 0:1] + steps[None, :] * (b[:, 2:3] - b[:, 0:1])) / factor - 0.5
            ys = (b[:, 1:2] + steps[None, :] * (b[:, 3:4] - b[:, 1:2])) / factor - 0.5
            gx = 2.0 * xs / max(lev_w - 1, 1) - 1.0
            gy = 2.0 * ys / max(lev_h - 1, 1) - 1.0
            gz = 2.0 * owners[rows].astype(np.float64) / max(depth - 1, 1) - 1.0
            grid = np.empty((len(rows), size, size, 3), dtype=np.float32)
            grid[..., 0] = gx[:, None, :]
            grid[..., 1] = gy[:, :, None]
            grid[..., 2] = gz[:, None, None]
            sampled = F.grid_sample(
                source,
                torch.from_numpy(grid).to(source.device)[None],
                mode="bilinear",
                padding_mode="zeros",
                align_corners=True,
            )  # [1, C, n, size, size]
            out[torch.from_numpy(rows).to(out.device)] = sampled[0].transpose(0, 1)
        return out.add_(self.fill)


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(
            f"MTCNN expects an RGB image of shape [H, W, 3] (or grey [H, W]); got shape {tuple(array.shape)}. "
            "Load it with dlfd_core.faces.load_image first."
        )
    if array.dtype != np.uint8:
        raise ImageError(f"MTCNN expects uint8 pixels; got {array.dtype}. Load it with dlfd_core.faces.load_image.")
    return array


class MTCNN:
    """The MTCNN face detector.

    Args:
        weights: a safetensors file with ``pnet.*``, ``rnet.*`` and ``onet.*`` tensors; by default
            ``assets/weights/mtcnn.safetensors``.
        device: where the networks run.
        min_face_size: the smallest face side, in pixels, that the image pyramid looks for. Smaller is slower.
        thresholds: face-probability thresholds of P-Net, R-Net and O-Net.
        scale_factor: ratio between successive pyramid levels (``0 < scale_factor < 1``).

    Raises:
        WeightsError: the weights file is missing, unreadable, or does not fit the networks.
    """

    def __init__(
        self,
        *,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        min_face_size: float = DEFAULT_MIN_FACE_SIZE,
        thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS,
        scale_factor: float = DEFAULT_SCALE_FACTOR,
    ) -> None:
        if not min_face_size > 0:
            raise ValueError(f"min_face_size must be positive, not {min_face_size}")
        if not 0 < scale_factor < 1:
            raise ValueError(f"scale_factor must be between 0 and 1, not {scale_factor}")
        if len(thresholds) != 3 or not all(0 <= t <= 1 for t in thresholds):
            raise ValueError(f"thresholds must be three probabilities, not {thresholds!r}")
        self.device = torch.device(device)
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.weights_path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self._load_weights(self.weights_path, check_hash=weights is None)
        for net in (self.pnet, self.rnet, self.onet):
            # channels-last runs these small convolutions and poolings about twice as fast on CPU.
            net.to(self.device, memory_format=torch.channels_last).eval().requires_grad_(False)

    def _load_weights(self, path: Path, *, check_hash: bool) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        hint = f"Rebuild it with `{REBUILD_COMMAND}`." if check_hash else "Check the file, or omit `weights`."
        if not path.is_file():
            raise WeightsError(f"MTCNN weights not found at {path}. {hint}")
        try:
            tensors = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"MTCNN weights at {path} are unreadable ({exc}). {hint}") from exc
        if check_hash:
            digest = sha256_file(path)
            if digest != WEIGHTS_SHA256:
                logger.warning("MTCNN weights %s have sha256 %s, expected %s", path, digest, WEIGHTS_SHA256)
        for prefix, net in (("pnet.", self.pnet), ("rnet.", self.rnet), ("onet.", self.onet)):
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise WeightsError(f"MTCNN weights at {path} do not fit {prefix[:-1]}: {exc}. {hint}") from exc

    # ----------------------------------------------------------------------------------------------------------

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Detect faces in one RGB ``uint8 [H, W, 3]`` image (grey ``[H, W]`` is accepted).

        Returns:
            The detections, highest score first.
        """
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        """Detect faces in several images; images of the same size go through P-Net together.

        Args:
            images: RGB ``uint8 [H, W, 3]`` arrays (grey ``[H, W]`` accepted), any sizes.

        Returns:
            One list of detections per image, in input order, each sorted by score, best first.
        """
        arrays = [_as_rgb_uint8(im) for im in images]
        results: list[list[FaceDetection]] = [[] for _ in arrays]
        groups: dict[tuple[int, int], list[int]] = {}
        for index, array in enumerate(arrays):
            groups.setdefault(array.shape[:2], []).append(index)
        with torch.inference_mode():
            for (height, width), indices in groups.items():
                if height < _PNET_CELL or width < _PNET_CELL:
                    continue
                chunk = max(1, _MAX_BATCH_PIXELS // (height * width))
                for start in range(0, len(indices), chunk):
                    part = indices[start : start + chunk]
                    for index, found in zip(part, self._detect_same_size([arrays[i] for i in part]), strict=True):
                        results[index] = found
        return results

    def _detect_same_size(self, arrays: list[np.ndarray]) -> list[list[FaceDetection]]:
        batch = torch.from_numpy(np.stack(arrays)).to(self.device).permute(0, 3, 1, 2).float()
        batch = (batch - 127.5) * (1.0 / 128.0)
        crop = _CropSampler(batch, fill=-127.5 / 128.0)  # black outside the image
        height, width = batch.shape[-2:]
        t1, t2, t3 = self.thresholds
        empty: list[list[FaceDetection]] = [[] for _ in arrays]

        # Stage 1: P-Net over the pyramid.
        all_boxes, all_scores, all_images = [], [], []
        for scale in _pyramid_scales(height, width, self.min_face_size, self.scale_factor):
            hs, ws = math.ceil(height * scale), math.ceil(width * scale)
            prob, reg = self.pnet(_resize(batch, (hs, ws)).contiguous(memory_format=torch.channels_last))
            prob_np = prob.cpu().numpy()
            img_idx, ys, xs = np.nonzero(prob_np >= t1)
            if img_idx.size == 0:
                continue
            scores = prob_np[img_idx, ys, xs]
            offsets = reg.cpu().numpy()[img_idx, :, ys, xs]
            sx, sy = ws / width, hs / height
            windows = np.stack(
                [
                    _PNET_STRIDE * xs / sx,
                    _PNET_STRIDE * ys / sy,
                    (_PNET_STRIDE * xs + _PNET_CELL) / sx,
                    (_PNET_STRIDE * ys + _PNET_CELL) / sy,
                ],
                axis=1,
            )
            keep = batched_nms(windows, scores, img_idx, _NMS_PNET_SCALE)
            all_boxes.append(_regress(windows[keep], offsets[keep]))
            all_scores.append(scores[keep])
            all_images.append(img_idx[keep])
        if not all_boxes:
            return empty
        boxes = np.concatenate(all_boxes)
        scores = np.concatenate(all_scores)
        owners = np.concatenate(all_images)
        keep = batched_nms(boxes, scores, owners, _NMS_PNET_ALL)
        boxes, owners = _to_pixel_squares(boxes[keep]), owners[keep]

        # Stage 2: R-Net on 24×24 crops.
        boxes, owners = _drop_huge(boxes, owners, height, width)
        if boxes.shape[0] == 0:
            return empty
        prob, reg = self.rnet(crop(boxes, owners, 24).contiguous(memory_format=torch.channels_last))
        prob_np, reg_np = prob.cpu().numpy(), reg.cpu().numpy()
        passed = prob_np >= t2
        boxes, owners = boxes[passed].astype(np.float64), owners[passed]
        scores, reg_np = prob_np[passed], reg_np[passed]
        keep = batched_nms(boxes, scores, owners, _NMS_RNET)
        boxes = _to_pixel_squares(_regress(boxes[keep], reg_np[keep]))
        owners = owners[keep]

        # Stage 3: O-Net on 48×48 crops.
        boxes, owners = _drop_huge(boxes, owners, height, width)
        if boxes.shape[0] == 0:
            return empty
        prob, reg, marks = self.onet(crop(boxes, owners, 48).contiguous(memory_format=torch.channels_last))
        prob_np, reg_np, marks_np = prob.cpu().numpy(), reg.cpu().numpy(), marks.cpu().numpy()
        passed = prob_np >= t3
        boxes, owners, scores = boxes[passed].astype(np.float64), owners[passed], prob_np[passed]
        reg_np, marks_np = reg_np[passed], marks_np[passed]
        box_w = (boxes[:, 2] - boxes[:, 0])[:, None]
        box_h = (boxes[:, 3] - boxes[:, 1])[:, None]
        marks_x = boxes[:, 0:1] + marks_np[:, 0:5] * box_w
        marks_y = boxes[:, 1:2] + marks_np[:, 5:10] * box_h
        boxes = _regress(boxes, reg_np)
        keep = batched_nms(boxes, scores, owners, _NMS_ONET, mode="min")

        results = empty
        for k in keep.tolist():
            results[int(owners[k])].append(
                FaceDetection(
                    box=tuple(float(v) for v in boxes[k]),  # type: ignore[arg-type]
                    score=float(scores[k]),
                    landmarks=tuple((float(x), float(y)) for x, y in zip(marks_x[k], marks_y[k], strict=True)),
                )
            )
        return results


def _drop_huge(boxes: np.ndarray, owners: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop boxes far larger than the image (runaway regressions), which cannot be useful faces."""
    keep = (boxes[:, 2] - boxes[:, 0]) <= 3 * max(height, width)
    return boxes[keep], owners[keep]
