"""One strict registry type, used for optimizers, tasks and datasets.

A registry maps names to entries. Entries may be given directly or lazily as an import
target ``"package.module:attribute"`` that is imported on first :meth:`Registry.get`,
so that listing names never imports heavy modules. Looking up an unknown name raises
:class:`~optbench.core.errors.UnknownNameError` listing every known name; registering a
name twice is an error unless ``replace=True``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from optbench.core.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class _Lazy:
    target: str  # "package.module:attribute"

    def load(self) -> object:
        module_name, _, attr = self.target.partition(":")
        obj: object = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


class Registry(Generic[T]):
    """A strict name -> entry mapping.

    Args:
        kind: what the entries are, used in error messages (``"optimizer"``, ``"task"``).

    Raises:
        UnknownNameError: from :meth:`get` for a name that is neither registered nor an
            alias; the message lists the known names.
        ValueError: from :meth:`register` / :meth:`alias` for a name already taken.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | _Lazy] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, entry: T | None = None, *, lazy: str | None = None,
                 replace: bool = False) -> Callable[[T], T] | T:
        """Register ``entry`` (or the lazy import target ``lazy``) under ``name``.

        Used as a decorator when neither ``entry`` nor ``lazy`` is given.
        """
        if entry is None and lazy is None:
            def decorator(obj: T) -> T:
                self.register(name, obj, replace=replace)
                return obj
            return decorator
        if not replace and (name in self._entries or name in self._aliases):
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._aliases.pop(name, None)
        self._entries[name] = _Lazy(lazy) if lazy is not None else entry  # type: ignore[assignment]
        return entry  # type: ignore[return-value]

    def alias(self, alias: str, name: str) -> None:
        """Make ``alias`` another name of the registered ``name``."""
        if name not in self._entries:
            raise self._unknown(name)
        if alias in self._entries or alias in self._aliases:
            raise ValueError(f"{self.kind} {alias!r} is already registered")
        self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        """The registered name that ``name`` (a name or an alias) refers to."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise self._unknown(name)

    def get(self, name: str) -> T:
        """The entry registered as ``name``, importing a lazy target on first use."""
        key = self.canonical(name)
        entry = self._entries[key]
        if isinstance(entry, _Lazy):
            entry = entry.load()  # type: ignore[assignment]
            self._entries[key] = entry
        return entry  # type: ignore[return-value]

    def names(self) -> list[str]:
        """Registered names (not aliases), sorted."""
        return sorted(self._entries)

    def aliases(self) -> dict[str, str]:
        """Alias -> registered name."""
        return dict(self._aliases)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def _unknown(self, name: str) -> UnknownNameError:
        return UnknownNameError(self.kind, name, self.names())
