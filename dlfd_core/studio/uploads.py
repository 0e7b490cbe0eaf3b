"""Who holds which uploaded file, so that a session reads and deletes only its own uploads."""

from __future__ import annotations

import threading
from pathlib import Path


class UploadOwners:
    """Which sessions received which uploaded file, so that a session reads or deletes only its own uploads.

    A web framework puts every upload in one shared folder, and Gradio names each upload by its content: two pages
    that upload the same photo get the same file. A file arriving through a page's own upload flow is shared by every
    page that uploads it (``shared=True``); a file that a request merely names is taken only when nobody holds it. A
    file is deleted when its last holder lets it go.
    """

    def __init__(self) -> None:
        self._owners: dict[Path, set[str]] = {}
        self._lock = threading.Lock()

    def claim(self, path: Path, owner: str, *, shared: bool = False) -> bool:
        """Hold ``path`` for ``owner``; False (nothing held) when others hold it and ``shared`` is False."""
        with self._lock:
            holders = self._owners.setdefault(path, set())
            if holders and owner not in holders and not shared:
                return False
            holders.add(owner)
            return True

    def release(self, path: Path, owner: str) -> bool:
        """Let go of ``owner``'s hold on ``path``; True when nobody holds it any more (it may then be deleted)."""
        with self._lock:
            holders = self._owners.get(path)
            if holders is None:
                return True
            holders.discard(owner)
            if holders:
                return False
            del self._owners[path]
            return True

    def __len__(self) -> int:
        return len(self._owners)


def delete_upload(path: Path) -> None:
    """Delete an uploaded file, and its folder when that is left empty (web frameworks keep one folder per upload)."""
    try:
        path.unlink(missing_ok=True)
        path.parent.rmdir()
    except OSError:
        pass
