"""Datasets from a folder per identity, on disk or in a Hugging Face dataset repository.

Layout: ``root/<identity>/<image files>``. Each sub-folder of ``root`` is one person; images may sit in nested
folders below it (their key keeps the nested path). Hidden files and folders (``.git``, ``.DS_Store``, ...) and
files directly in ``root`` (``README.md``, ``.gitattributes``) are ignored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlfd_core.data.dataset import FaceDataset, FaceRecord, natural_sorted, preview
from dlfd_core.errors import DataError
from dlfd_core.paths import sha256_file
from dlfd_core.progress import ProgressFn, no_progress

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".webp")


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def _identity_files(folder: Path, extensions: frozenset[str]) -> list[Path]:
    """Image files under ``folder`` (recursively), skipping hidden entries; symlinks are followed."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
        for filename in filenames:
            if _is_hidden(filename):
                continue
            if os.path.splitext(filename)[1].lower() in extensions:
                found.append(Path(dirpath) / filename)
    return found


def load_folder(
    root: str | os.PathLike[str],
    *,
    name: str | None = None,
    min_images_per_identity: int = 2,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    credit: str = "",
    skip_smaller: bool = False,
    progress: ProgressFn = no_progress,
) -> FaceDataset:
    """Load a folder-per-identity image tree.

    Args:
        root: the folder whose sub-folders are identities.
        name: the dataset's name; defaults to the folder's name.
        min_images_per_identity: every identity needs at least this many images (at least 1); a model cannot be
            trained and tested on a person with a single photo, hence the default of 2.
        extensions: file extensions counted as images (case-insensitive, with the dot).
        credit: attribution text kept on the dataset.
        skip_smaller: leave out identities with fewer than ``min_images_per_identity`` images (before any file is
            read) instead of refusing the folder; e.g. LFW's 5,749 people of whom 1,680 have two photos or more.
        progress: receives the fraction of files hashed.

    Returns:
        The dataset, checked for duplicates (see :meth:`FaceDataset.build`).

    Raises:
        DataError: if ``root`` is missing or not a folder, holds no identity folders with images, or some identities
            have fewer than ``min_images_per_identity`` images.
    """
    if min_images_per_identity < 1:
        raise DataError(f"min_images_per_identity must be at least 1, got {min_images_per_identity}.")
    base = Path(root).expanduser()
    if not base.exists():
        raise DataError(f"Dataset folder {base} does not exist. Give the folder that holds one sub-folder per person.")
    if not base.is_dir():
        raise DataError(f"{base} is a file, not a folder. Give the folder that holds one sub-folder per person.")
    exts = frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    identity_dirs = natural_sorted(d.name for d in base.iterdir() if d.is_dir() and not _is_hidden(d.name))
    files_by_identity = {identity: _identity_files(base / identity, exts) for identity in identity_dirs}
    files_by_identity = {identity: files for identity, files in files_by_identity.items() if files}
    if not files_by_identity:
        raise DataError(
            f"No identities found in {base}: expected one sub-folder per person holding image files "
            f"({', '.join(sorted(exts))}), e.g. {base}/alice/1.jpg."
        )
    too_few = {
        identity: len(files) for identity, files in files_by_identity.items() if len(files) < min_images_per_identity
    }
    if too_few and skip_smaller:
        logger.info("Leaving out %d identities with fewer than %d images", len(too_few), min_images_per_identity)
        files_by_identity = {k: v for k, v in files_by_identity.items() if k not in too_few}
        if not files_by_identity:
            raise DataError(f"No identity in {base} has at least {min_images_per_identity} images.")
        too_few = {}
    if too_few:
        listed = preview([f"{identity} ({count})" for identity, count in too_few.items()])
        raise DataError(
            f"{len(too_few)} identities in {base} have fewer than {min_images_per_identity} images: {listed}. "
            f"Add images, remove those folders, or lower min_images_per_identity."
        )
    total = sum(len(files) for files in files_by_identity.values())
    records: list[FaceRecord] = []
    for identity, files in files_by_identity.items():
        for path in files:
            key = path.relative_to(base).as_posix()
            try:
                digest = sha256_file(path)
            except OSError as error:
                raise DataError(f"Cannot read {path}: {error}.") from error
            records.append(FaceRecord(identity=identity, key=key, sha256=digest))
            if len(records) % 50 == 0 or len(records) == total:
                progress(len(records) / total, f"Hashed {len(records)}/{total} images")
    dataset = FaceDataset.build(name or base.resolve().name, base, records, credit=credit)
    logger.info("Loaded %s from %s", dataset.summary(), base)
    return dataset


def load_hub_dataset(
    repo_id: str,
    *,
    revision: str | None = None,
    subfolder: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    token: str | bool | None = None,
    **kwargs: Any,
) -> FaceDataset:
    """Download (or reuse the cached copy of) a Hugging Face dataset repo laid out as a folder per identity.

    With ``HF_HUB_OFFLINE=1`` only the local cache is used.

    Args:
        repo_id: ``owner/name`` of the dataset repo.
        revision: branch, tag or commit; the default branch if ``None``.
        subfolder: the folder inside the repo that holds the identity folders; the repo root if ``None``.
        cache_dir: the Hugging Face cache folder; the library's default if ``None``.
        name: the dataset's name; defaults to ``repo_id`` (plus ``/subfolder``).
        token: passed to ``huggingface_hub`` for private or gated repos.
        **kwargs: passed on to :func:`load_folder` (``min_images_per_identity``, ``extensions``, ``credit``, ...).

    Returns:
        The dataset, rooted in the local snapshot folder.

    Raises:
        DataError: if the repo cannot be found or reached, is not cached while offline, or is not laid out as a
            folder per identity.
    """
    try:
        import huggingface_hub
        from huggingface_hub import errors as hub_errors
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise DataError("huggingface_hub is not installed: pip install huggingface-hub") from error

    sub = subfolder.strip("/") if subfolder else ""
    allow = [f"{sub}/**"] if sub else None
    where = f"'{repo_id}'" + (f" (revision {revision})" if revision else "")
    try:
        snapshot = huggingface_hub.snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            allow_patterns=allow,
            token=token,
        )
    except hub_errors.HFValidationError as error:
        raise DataError(f"'{repo_id}' is not a valid dataset repo id; use the form 'owner/name'. ({error})") from error
    except hub_errors.GatedRepoError as error:
        raise DataError(
            f"Dataset repo {where} is gated: accept its terms on huggingface.co and log in (hf auth login)."
        ) from error
    except hub_errors.RepositoryNotFoundError as error:
        raise DataError(
            f"Dataset repo {where} was not found on the Hugging Face Hub (or it is private: log in with "
            f"hf auth login). Check the name."
        ) from error
    except hub_errors.RevisionNotFoundError as error:
        raise DataError(f"Dataset repo '{repo_id}' has no revision '{revision}'.") from error
    except hub_errors.IncompleteSnapshotError as error:
        raise DataError(
            f"The cached copy of dataset repo {where} is incomplete and the Hub cannot be reached. "
            f"Connect to the network and load it again (with HF_HUB_OFFLINE unset)."
        ) from error
    except hub_errors.LocalEntryNotFoundError as error:
        raise DataError(
            f"Dataset repo {where} is not in the local cache"
            + (f" ({cache_dir})" if cache_dir is not None else "")
            + " and cannot be downloaded now (offline mode, HF_HUB_OFFLINE=1, or no network). Download it once "
            "with network access, or point to a folder with load_folder."
        ) from error
    except (hub_errors.HfHubHTTPError, OSError) as error:
        raise DataError(f"Could not download dataset repo {where}: {error}") from error

    root = Path(snapshot) / sub if sub else Path(snapshot)
    if not root.is_dir():
        raise DataError(f"Dataset repo {where} has no folder '{sub}'.")
    default_name = repo_id + (f"/{sub}" if sub else "")
    return load_folder(root, name=name or default_name, **kwargs)
