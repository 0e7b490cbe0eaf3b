"""The package's public API: every advertised name resolves to the object its module defines, lazily."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import dlfd_core


@pytest.mark.parametrize("name", dlfd_core.__all__)
def test_every_public_name_is_its_modules_object(name: str) -> None:
    module = importlib.import_module(dlfd_core._API[name])
    assert getattr(dlfd_core, name) is getattr(module, name)
    assert name in dir(dlfd_core)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'not_a_thing'"):
        dlfd_core.not_a_thing  # noqa: B018


def test_importing_the_package_loads_no_heavy_module() -> None:
    code = "import sys, dlfd_core; print(sorted(m for m in ('torch', 'sklearn', 'gradio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
