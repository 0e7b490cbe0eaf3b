"""Shared test set-up: offline, an isolated cache, and the bundled real faces aligned once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Aligned-crop caches go to a fresh folder, so tests never depend on a developer's cache."""
    os.environ["DLFD_CACHE"] = str(tmp_path_factory.mktemp("dlfd_cache"))


@pytest.fixture(scope="session")
def orl_dataset():
    from dlfd_core.data import load_orl

    return load_orl()


@pytest.fixture(scope="session")
def orl_aligned(orl_dataset):
    """All 400 ORL faces detected and aligned by the project's own pipeline (about 10 s, once per session)."""
    from dlfd_core.data import align_dataset

    return align_dataset(orl_dataset)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def lfw_root():
    """LFW's people with at least 10 photos, from the development copy beside the repository (`../shared/data/lfw`).

    It is not on a user's machine: tests that need it skip there, and fail under CI, where it must be present.
    """
    from pathlib import Path

    root = Path(os.environ.get("DLFD_LFW", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw"))
    if not root.is_dir():
        reason = f"LFW photos not found at {root} (set DLFD_LFW); they come with the development data in ../shared"
        if _in_ci():
            pytest.fail(f"under CI=true the LFW development data must be present: {reason}", pytrace=False)
        pytest.skip(reason)
    return root
