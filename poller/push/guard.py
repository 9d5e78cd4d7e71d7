"""What every push must get past before its body is read: the client's rate and its credentials."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections import OrderedDict, deque

__all__ = ["ClientRate", "RecentIds", "basic_auth_matches"]


class ClientRate:
    """At most ``limit`` requests per client address in any one second; the least recently seen
    clients are forgotten beyond ``clients`` so a flood of addresses cannot grow it without end."""

    def __init__(self, limit: int, clients: int = 10000) -> None:
        self.limit = limit
        self.clients = clients
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def admit(self, client: str, now: float | None = None) -> bool:
        at = time.monotonic() if now is None else now
        times = self._seen.get(client)
        if times is None:
            times = self._seen[client] = deque()
            if len(self._seen) > self.clients:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(client)
        while times and at - times[0] >= 1.0:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(at)
        return True


class RecentIds:
    """The push ids acknowledged lately (a vendor re-push of one of them is acknowledged again)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, push_id: object) -> bool:
        return push_id in self._ids

    def add(self, push_id: str) -> None:
        self._ids[push_id] = None
        self._ids.move_to_end(push_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


def basic_auth_matches(header: str | None, username: str, password: str) -> bool:
    """An ``Authorization: Basic`` header carrying exactly these credentials (constant time)."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, secret = decoded.partition(":")
    expected = f"{username}:{password}".encode()
    return bool(sep) and hmac.compare_digest(f"{user}:{secret}".encode(), expected)
