"""The shutdown grace: work that must not be cut by a stop runs shielded, until the grace runs out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

__all__ = ["Drains"]


class Drains:
    """Shielded scopes of publishes and commits under way; :meth:`cancel_all` ends the grace."""

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        self.expired = False

    @contextmanager
    def shielded(self) -> Iterator[anyio.CancelScope]:
        """A scope a stop does not cancel; the grace's end does (``cancelled_caught`` tells)."""
        with anyio.CancelScope(shield=True) as scope:
            if self.expired:
                scope.cancel()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)

    def cancel_all(self) -> None:
        self.expired = True
        for scope in list(self._scopes):
            scope.cancel()
