"""A registry of named entries of one kind: the backbones (:mod:`dlfd_core.models`) and the unlearning methods
(:mod:`dlfd_core.unlearn`) are each one :class:`Registry`, with the same rules.

* :meth:`Registry.register` adds an entry; registering the same entry again is a no-op (a module imported twice), a
  different entry under a taken name is refused unless ``force=True`` replaces it (explicit, as in Opacus'
  ``register(name, cls, force=False)``).
* A registry may check each entry before it is added (the methods' registry refuses a class without its own
  docstring, since the app shows it to users as the method's help).
* :meth:`Registry.get` of an unknown name raises :class:`~dlfd_core.errors.UnknownNameError` listing the names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Args:
        kind: what an entry is, for messages ("backbone", "unlearning method").
        check: ``check(name, entry)`` raises when an entry may not be registered (called before it is added).
    """

    def __init__(self, kind: str, check: Callable[[str, T], None] | None = None) -> None:
        self.kind = kind
        self._check = check
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, force: bool = False) -> T:
        """Add ``entry`` under ``name`` and return it.

        Raises:
            ValueError: ``name`` is empty, or names another entry and ``force`` is False.
            TypeError: (or another error) the registry's check refuses the entry.
        """
        if not name:
            raise ValueError(f"a {self.kind} needs a name")
        if self._check is not None:
            self._check(name, entry)
        taken = self._entries.get(name)
        if taken is not None and taken is not entry and not force:
            raise ValueError(f"a {self.kind} named {name!r} is already registered; pass force=True to replace it")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            UnknownNameError: no such entry; the message lists the registered names.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}") from None

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
