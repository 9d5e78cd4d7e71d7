"""The keys of a JetStream KV bucket, read in one request.

nats-py's ``KeyValue.keys()`` runs a watcher and ends at a "no more" marker it sets when the
consumer reports nothing pending; under load the consumer can have delivered every key before the
client took one in, so the marker comes first and ``keys()`` returns some keys, or none
(``NoKeysError``). A membership read that misses a live replica would spend that replica's share
of a fleet-wide limit too. :func:`kv_keys` asks the bucket's stream for its subjects instead: one
answer, every stored key. A deleted key keeps its delete marker as the subject's last message, so
it is listed: the caller's ``get`` finds it gone.
"""

from __future__ import annotations

from typing import Any

from nats.js.errors import NoKeysError

__all__ = ["kv_keys"]


async def kv_keys(kv: Any, under: str = "") -> list[str]:
    """The keys of ``kv`` that start with ``under`` (a prefix ending at a ``.``, or all keys).

    Uses the bucket's stream and subject prefix as nats-py keeps them; a client without them falls
    back to ``kv.keys()``.
    """
    js, stream, prefix = getattr(kv, "_js", None), getattr(kv, "_stream", None), getattr(kv, "_pre", None)
    if js is None or not isinstance(stream, str) or not isinstance(prefix, str):
        try:
            keys: list[str] = await kv.keys()
        except NoKeysError:
            return []
        return [key for key in keys if key.startswith(under)]
    info = await js.stream_info(stream, subjects_filter=f"{prefix}{under}>")
    return [subject[len(prefix) :] for subject in info.state.subjects or {}]
