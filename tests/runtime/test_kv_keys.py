"""The keys of a KV bucket read in one request, against a real nats-server."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import nats
import pytest
from nats.js.errors import KeyNotFoundError, NoKeysError

from poller.runtime.kv_keys import kv_keys
from poller.tools.natsserver import NatsServer


async def test_every_stored_key_under_a_prefix_and_a_deleted_one_listed_for_get_to_refuse(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        kv = await nc.jetstream().create_key_value(bucket="keys_test", history=1)
        assert await kv_keys(kv) == []  # an empty bucket is no error
        for i in range(300):
            await kv.put(f"member.r{i}", b"x")
        await kv.put("lease.a", b"y")
        await kv.delete("member.r7")
        members = await kv_keys(kv, "member.")
        every = await kv_keys(kv)
        with pytest.raises(KeyNotFoundError):
            await kv.get("member.r7")
        watched = await kv.keys()
    finally:
        await nc.close()
    assert sorted(members) == sorted(f"member.r{i}" for i in range(300))
    assert sorted(every) == sorted([*members, "lease.a"])
    assert set(watched) == set(every) - {"member.r7"}  # nats-py's watcher leaves deletes out


async def test_a_client_without_the_stream_fields_falls_back_to_its_keys() -> None:
    async def keys() -> list[str]:
        return ["member.a", "lease.b"]

    async def none() -> list[str]:
        raise NoKeysError

    with_keys: Any = SimpleNamespace(keys=keys)
    empty: Any = SimpleNamespace(keys=none)
    assert await kv_keys(with_keys, "member.") == ["member.a"]
    assert await kv_keys(empty) == []
