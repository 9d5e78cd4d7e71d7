"""Which replica owns which account: a stable hash, so each credential's rate limit lives in one place."""

from __future__ import annotations

import hashlib


def shard_of(vendor: str, account: str, count: int) -> int:
    digest = hashlib.sha256(f"{vendor}/{account}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def owns(vendor: str, account: str, index: int, count: int) -> bool:
    return count <= 1 or shard_of(vendor, account, count) == index
