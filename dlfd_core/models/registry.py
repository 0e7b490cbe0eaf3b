"""Backbones created by name from an explicit registry.

A backbone maps a float image batch ``[B, 3, S, S]`` with RGB values in ``[0, 1]`` to an embedding
``[B, D]``. Each backbone normalises its input itself, declares ``embedding_dim`` and ``input_size``,
and is registered under a short lowercase name with :func:`register_backbone`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import UnknownNameError

BackboneFactory = Callable[..., nn.Module]

_BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator: register ``factory(*, pretrained: bool, **kwargs) -> nn.Module`` under ``name``."""

    def decorator(factory: BackboneFactory) -> BackboneFactory:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        _BACKBONES[name] = factory
        return factory

    return decorator


def backbone_names() -> list[str]:
    """Names of all registered backbones, sorted."""
    return sorted(_BACKBONES)


def backbone_factory(name: str) -> BackboneFactory:
    """The factory registered as ``name``.

    Raises:
        UnknownNameError: ``name`` is not registered; the message lists the valid names.
    """
    try:
        return _BACKBONES[name]
    except KeyError:
        raise UnknownNameError(f"unknown backbone {name!r}; choose one of {', '.join(backbone_names())}") from None


def create_backbone(name: str, *, pretrained: bool = True, **kwargs: Any) -> nn.Module:
    """Create a registered backbone.

    Raises:
        UnknownNameError: ``name`` is not registered; the message lists the valid names.
    """
    return backbone_factory(name)(pretrained=pretrained, **kwargs)
