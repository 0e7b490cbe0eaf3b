"""Measure the distances that :mod:`dlfd_core.faces.faceset` decides copies and "another person" by.

On a folder-per-identity tree of real photos (LFW's layout; e.g. ``../shared/data/lfw``), with the pretrained dlib
ResNet and L2-normalised descriptors, this prints percentiles of:

* copy distances: each photo against copies of itself that a person might upload (JPEG re-saved at quality 40,
  downscaled to half size, cropped to 85 % and resized back, brighter by 30 %, mirrored);
* same-person distances: two different photos of one person;
* different-person distances: photos of two different people;
* the median distance of a photo to a face set of 9 photos of one person, when it is of that person or of another.

Usage:
    python scripts/measure_faceset_thresholds.py ../shared/data/lfw --people 40 --per-person 12 --json out.json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlfd_core.data.transforms import crops_to_tensor  # noqa: E402
from dlfd_core.errors import DLFDError  # noqa: E402
from dlfd_core.faces import FaceAligner  # noqa: E402
from dlfd_core.faces.faceset import NEAR_COPY_DISTANCE, OTHER_PERSON_DISTANCE  # noqa: E402
from dlfd_core.models import create_backbone  # noqa: E402


def _variants(image: Image.Image) -> dict[str, Image.Image]:
    w, h = image.size
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=40)
    inset = (round(0.075 * w), round(0.075 * h), round(0.925 * w), round(0.925 * h))
    return {
        "jpeg_q40": Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"),
        "half_size": image.resize((w // 2, h // 2), Image.BILINEAR),
        "crop_85": image.crop(inset).resize((w, h), Image.BICUBIC),
        "brighter": ImageEnhance.Brightness(image).enhance(1.3),
        "mirrored": ImageOps.mirror(image),
    }


def _embed(model: torch.nn.Module, crops: list[np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        out = torch.cat([model(crops_to_tensor(np.stack(crops[i : i + 64]))) for i in range(0, len(crops), 64)])
    out = out.numpy().astype(np.float64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    qs = (0.1, 1, 5, 50, 95, 99, 99.9)
    return {"n": int(values.size), **{f"p{q:g}": round(float(np.percentile(values, q)), 4) for q in qs}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--people", type=int, default=40)
    parser.add_argument("--per-person", type=int, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    people = sorted(p for p in args.folder.iterdir() if p.is_dir())
    rng = np.random.default_rng(0)
    people = [people[i] for i in sorted(rng.choice(len(people), size=min(args.people, len(people)), replace=False))]
    aligner = FaceAligner()
    model = create_backbone("dlib_resnet").eval()
    crops, owners, variant_crops, variant_of, variant_kind = [], [], [], [], []
    for person in people:
        files = sorted(person.glob("*.jpg"))[: args.per_person]
        images = [Image.open(f).convert("RGB") for f in files]
        for image, result in zip(images, aligner.align_batch(images), strict=True):
            if isinstance(result, DLFDError):
                continue
            index = len(crops)
            crops.append(result.crop)
            owners.append(person.name)
            if len(variant_of) < 200 and rng.random() < 0.5:
                variants = _variants(image)
                for kind, aligned in zip(variants, aligner.align_batch(list(variants.values())), strict=True):
                    if not isinstance(aligned, DLFDError):
                        variant_crops.append(aligned.crop)
                        variant_of.append(index)
                        variant_kind.append(kind)
    unit = _embed(model, crops)
    owners_arr = np.asarray(owners)
    distances = np.sqrt(np.maximum(2 - 2 * unit @ unit.T, 0))
    upper = np.triu_indices(len(crops), k=1)
    same = owners_arr[upper[0]] == owners_arr[upper[1]]
    pair = distances[upper]
    copies = _embed(model, variant_crops)
    copy_distance = np.linalg.norm(copies - unit[np.asarray(variant_of)], axis=1)
    # median distance of a face to a 9-photo face set of one person: member (left out of the set) vs another person
    member_medians, other_medians = [], []
    by_person = {name: np.flatnonzero(owners_arr == name) for name in set(owners)}
    for name, rows in by_person.items():
        if len(rows) < 10:
            continue
        for _ in range(20):
            chosen = rng.choice(rows, size=10, replace=False)
            probe, faces = chosen[0], chosen[1:]
            member_medians.append(float(np.median(distances[probe, faces])))
            stranger = rng.choice(np.flatnonzero(owners_arr != name))
            other_medians.append(float(np.median(distances[stranger, faces])))
    result = {
        "folder": str(args.folder),
        "people": len(by_person),
        "faces": len(crops),
        "copies": _percentiles(copy_distance),
        "copies_by_kind": {
            kind: _percentiles(copy_distance[np.asarray(variant_kind) == kind]) for kind in sorted(set(variant_kind))
        },
        "same_person": _percentiles(pair[same]),
        "different_person": _percentiles(pair[~same]),
        "median_to_own_set": _percentiles(np.asarray(member_medians)),
        "median_to_other_set": _percentiles(np.asarray(other_medians)),
        "at_the_thresholds": {
            "near_copy": NEAR_COPY_DISTANCE,
            "copies_caught": round(float(np.mean(copy_distance < NEAR_COPY_DISTANCE)), 4),
            "same_person_pairs_taken_for_copies": round(float(np.mean(pair[same] < NEAR_COPY_DISTANCE)), 4),
            "other_person": OTHER_PERSON_DISTANCE,
            "own_photos_flagged": round(float(np.mean(np.asarray(member_medians) > OTHER_PERSON_DISTANCE)), 4),
            "other_people_flagged": round(float(np.mean(np.asarray(other_medians) > OTHER_PERSON_DISTANCE)), 4),
        },
        "seconds": round(time.perf_counter() - start, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
