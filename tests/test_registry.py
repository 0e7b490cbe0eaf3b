"""The one registry the backbones and the methods share: replacing needs force, the same entry twice is a no-op,
unknown names are listed, a method registered under another name than its own is refused (one without a docstring
of its own: tests/test_unlearn_contract.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from torch import nn

from dlfd_core.errors import UnknownNameError
from dlfd_core.models import create_backbone
from dlfd_core.models.registry import BACKBONES, register_backbone
from dlfd_core.registry import Registry
from dlfd_core.unlearn import create_method, method_class, register_method
from dlfd_core.unlearn.base import METHODS


def test_a_taken_name_needs_force_and_the_same_entry_again_is_a_no_op() -> None:
    registry: Registry[int] = Registry("number")
    one, two = object(), object()
    assert registry.register("a", one) is one
    assert registry.register("a", one) is one  # a module imported twice
    with pytest.raises(ValueError, match="already registered; pass force=True"):
        registry.register("a", two)
    assert registry.get("a") is one
    assert registry.register("a", two, force=True) is two
    assert registry.get("a") is two
    registry.register("b", one)
    assert registry.names() == ["a", "b"] and "b" in registry and len(registry) == 2
    with pytest.raises(UnknownNameError, match="unknown number 'c'; choose one of a, b"):
        registry.get("c")
    with pytest.raises(ValueError, match="needs a name"):
        registry.register("", one)


def test_a_check_runs_before_anything_is_added() -> None:
    def positive(name: str, value: int) -> None:
        if value <= 0:
            raise TypeError(f"{name} must be positive")

    registry: Registry[int] = Registry("count", check=positive)
    with pytest.raises(TypeError, match="x must be positive"):
        registry.register("x", -1)
    assert "x" not in registry


def test_backbones_register_by_decorator_or_call_and_force_replaces(monkeypatch) -> None:
    monkeypatch.setattr(BACKBONES, "_entries", dict(BACKBONES._entries))  # leave the real registry as it was

    @register_backbone("identity_test")
    def first(*, pretrained: bool = False) -> nn.Module:
        return nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_backbone("identity_test", lambda **_: nn.Flatten())
    register_backbone("identity_test", lambda **_: nn.Flatten(), force=True)
    assert isinstance(create_backbone("identity_test", pretrained=False), nn.Flatten)


def test_methods_register_with_force_and_a_name_and_docstring_of_their_own(monkeypatch) -> None:
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    original = method_class("finetune")

    @dataclass(frozen=True, kw_only=True)
    class Replacement(original):  # type: ignore[misc, valid-type]
        """Fine-tuning, replaced in a test."""

    with pytest.raises(ValueError, match="'finetune' is already registered"):
        register_method(Replacement)
    register_method(Replacement, force=True)
    assert type(create_method("finetune")) is Replacement

    with pytest.raises(TypeError, match="registered as 'other'"):
        METHODS.register("other", Replacement)
