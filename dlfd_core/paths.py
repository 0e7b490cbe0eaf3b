"""Where bundled assets and caches live."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = REPO_ROOT / "assets"
WEIGHTS_DIR = ASSETS_DIR / "weights"


def cache_dir() -> Path:
    """The folder for derived data (aligned crops, ...): ``$DLFD_CACHE`` or ``~/.cache/dlfd``."""
    root = os.environ.get("DLFD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dlfd")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
