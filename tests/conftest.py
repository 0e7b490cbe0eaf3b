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
