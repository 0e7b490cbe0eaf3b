"""Backbones created by name from an explicit registry.

A backbone maps a float image batch ``[B, 3, S, S]`` with RGB values in ``[0, 1]`` to an embedding
``[B, D]``. Each backbone normalises its input itself, declares ``embedding_dim`` and ``input_size``,
and is registered under a short lowercase name with :func:`register_backbone`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from torch import nn

from ..registry import Registry

BackboneFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=BackboneFactory)

BACKBONES: Registry[BackboneFactory] = Registry("backbone")
"""Every backbone factory by name (:class:`~dlfd_core.registry.Registry`)."""


@overload
def register_backbone(name: str, factory: None = None, *, force: bool = False) -> Callable[[F], F]: ...
@overload
def register_backbone(name: str, factory: F, *, force: bool = False) -> F: ...
def register_backbone(name: str, factory: Any = None, *, force: bool = False) -> Any:
    """Register ``factory(*, pretrained: bool, **kwargs) -> nn.Module`` under ``name``: as a decorator
    (``@register_backbone("name")``) or a call (``register_backbone("name", factory, force=True)`` replaces one).

    Raises:
        ValueError: ``name`` is taken by another factory and ``force`` is False.
    """
    if factory is not None:
        return BACKBONES.register(name, factory, force=force)

    def decorator(entry: F) -> F:
        return BACKBONES.register(name, entry, force=force)

    return decorator


def backbone_names() -> list[str]:
    """Names of all registered backbones, sorted."""
    return sorted(BACKBONES.names())


def backbone_factory(name: str) -> BackboneFactory:
    """The factory registered as ``name``.

    Raises:
        UnknownNameError: ``name`` is not registered; the message lists the valid names.
    """
    return BACKBONES.get(name)


def create_backbone(name: str, *, pretrained: bool = True, **kwargs: Any) -> nn.Module:
    """Create a registered backbone.

    Raises:
        UnknownNameError: ``name`` is not registered; the message lists the valid names.
    """
    return backbone_factory(name)(pretrained=pretrained, **kwargs)
