"""Labeled Faces in the Wild (LFW): the folder, the official archive, or a Hugging Face Hub mirror.

LFW (Huang, Ramesh, Berg and Learned-Miller, UMass Amherst TR 07-49, 2007) holds 13,233 news photos of 5,749
public figures, 250 x 250 colour JPEGs laid out as ``lfw/<Name>/<Name>_NNNN.jpg``; 158 people have at least 10
photos, 62 at least 20. Its convention: the labelled person is the face centred in the frame (other faces often
show too), so LFW is aligned with ``FaceAligner(choose="centre")`` (:func:`lfw_aligner`).

:func:`load_lfw` reads any of

* a folder: the one holding the person folders, or one above it that holds a single ``lfw*`` folder;
* the official archive (``lfw.tgz``, also ``.tar.gz`` / ``.tar``): unpacked once into the cache
  (``cache_dir()/lfw/<archive sha256>``), image files only, nothing outside the target folder;
* a Hugging Face Hub dataset mirror laid out the same way: ``hub:<owner>/<name>`` (through
  :func:`~dlfd_core.data.load_hub_dataset`, so ``HF_HUB_OFFLINE=1`` uses the local cache only).

The same folder-per-identity loader (:func:`~dlfd_core.data.load_folder`) does the work in every case; only people
with at least ``min_images_per_identity`` photos are kept. The app needs none of this: it reads the aligned crops
bundled in ``assets/lfw`` (see :mod:`dlfd_core.data.packed` and ``scripts/build_lfw_asset.py``).

Terms: LFW has no formal licence; its authors ask that it be cited and used for research. Credit it wherever it is
shown (:data:`LFW_CREDIT`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from dlfd_core.data.dataset import FaceDataset
from dlfd_core.data.folder import IMAGE_EXTENSIONS, load_folder, load_hub_dataset
from dlfd_core.errors import DataError
from dlfd_core.paths import cache_dir, sha256_file

if TYPE_CHECKING:
    from dlfd_core.faces import FaceAligner

logger = logging.getLogger(__name__)

LFW_CREDIT = (
    "Labeled Faces in the Wild (Huang, Ramesh, Berg, Learned-Miller, UMass Amherst TR 07-49, 2007), "
    "vis-www.cs.umass.edu/lfw"
)
#: The people kept by default: those with at least this many photos (158 of LFW's 5,749).
LFW_MIN_IMAGES = 10
HUB_PREFIX = "hub:"
_ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar")
# an archive member is unpacked only when it is an image at depth 2 or 3 (top/Name/file or Name/file)
_MAX_MEMBER_BYTES = 50 * 1024 * 1024


def lfw_aligner() -> FaceAligner:
    """The aligner LFW is cropped with: the face nearest the photo's centre, ambiguous choices reported."""
    from dlfd_core.faces import FaceAligner

    return FaceAligner(choose="centre", keep_others=False)


def _person_root(folder: Path) -> Path:
    """``folder`` itself, or its one sub-folder when that is all it holds and is named ``lfw*`` (the archive's
    ``lfw/``, ``lfw_funneled/``, ...) with the person folders inside."""
    subfolders = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if len(subfolders) == 1 and subfolders[0].name.lower().startswith("lfw"):
        inner = subfolders[0]
        if any(d.is_dir() for d in inner.iterdir()):
            return inner
    return folder


def unpack_archive(archive: str | os.PathLike[str]) -> Path:
    """Unpack an LFW archive's images into the cache once; return the folder (reused while the archive is the same).

    Only regular image files are written, each strictly inside the target folder (no links, devices, absolute
    paths or ``..``); the folder appears complete or not at all.

    Raises:
        DataError: the file cannot be read as a tar archive, or holds no images.
    """
    path = Path(archive).expanduser()
    if not path.is_file():
        raise DataError(f"LFW archive {path} does not exist.")
    digest = sha256_file(path)
    target = cache_dir() / "lfw" / digest[:24]
    if target.is_dir():
        return _person_root(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
    written = 0
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if (
                    not member.isfile()
                    or member.size > _MAX_MEMBER_BYTES
                    or not 2 <= len(parts) <= 3
                    or any(p in ("", ".", "..") or p.startswith(("/", ".")) for p in parts)
                    or Path(member.name).suffix.lower() not in IMAGE_EXTENSIONS
                ):
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                out = staging.joinpath(*parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with source, open(out, "wb") as handle:
                    shutil.copyfileobj(source, handle)
                written += 1
        if written == 0:
            raise DataError(f"{path} holds no image files in a folder per person; is it LFW's lfw.tgz?")
        os.replace(staging, target)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"Cannot unpack {path} as a tar archive: {error}") from error
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("Unpacked %d images of %s into %s", written, path, target)
    return _person_root(target)


def load_lfw(
    source: str | os.PathLike[str],
    *,
    min_images_per_identity: int = LFW_MIN_IMAGES,
    revision: str | None = None,
    subfolder: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> FaceDataset:
    """Load LFW from a folder, the official archive or a Hub mirror (see the module docstring).

    Args:
        source: a folder, an archive file (``.tgz``, ``.tar.gz``, ``.tar``), or ``hub:<owner>/<name>``.
        min_images_per_identity: people with fewer photos are left out (LFW's many one-photo people cannot be
            both trained and tested on).
        revision, subfolder, cache_dir: for a Hub mirror: its revision, the folder that holds the person folders,
            and the Hugging Face cache to use (the library's default if ``None``).

    Returns:
        The dataset, named ``lfw``, keys like ``Colin_Powell/Colin_Powell_0001.jpg``, credited to LFW.

    Raises:
        DataError: the source is missing or holds no person with enough photos.
    """
    kwargs = {
        "min_images_per_identity": min_images_per_identity,
        "credit": LFW_CREDIT,
        "skip_smaller": True,
    }
    text = os.fspath(source)
    if text.startswith(HUB_PREFIX):
        repo = text[len(HUB_PREFIX) :]
        return load_hub_dataset(repo, revision=revision, subfolder=subfolder, cache_dir=cache_dir, name="lfw", **kwargs)
    if revision or subfolder or cache_dir:
        raise DataError("revision, subfolder and cache_dir apply to a Hub mirror (hub:<owner>/<name>) only.")
    path = Path(text).expanduser()
    if path.is_file():
        if not path.name.lower().endswith(_ARCHIVE_SUFFIXES):
            raise DataError(f"{path} is not an LFW archive (.tgz, .tar.gz or .tar) or a folder.")
        root = unpack_archive(path)
    elif path.is_dir():
        root = _person_root(path)
    else:
        raise DataError(
            f"LFW not found at {path}: give the folder of person folders, the lfw.tgz archive, or hub:<owner>/<name>."
        )
    return load_folder(root, name="lfw", **kwargs)
