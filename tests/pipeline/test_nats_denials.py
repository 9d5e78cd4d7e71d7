"""Permission violations pinned on the write NATS refused, against a real nats-server."""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import nats
import nats.errors
import pytest

from poller.pipeline.nats_denials import Denials, SubjectDenied, kv_subject_prefix
from poller.pipeline.nats_faults import permanent_fault
from poller.tools.natsserver import NatsServer

DENIED_KEY = """
authorization {
  users = [{
    user: writer, password: writer-password-37,
    permissions: {publish: {allow: [">"], deny: ["$KV.b.Key"]}, subscribe: {allow: [">"]}}
  }]
}
"""


async def test_a_violation_fails_its_write_at_once_and_one_it_cannot_pin_is_left_unclaimed() -> None:
    with NatsServer(config=DENIED_KEY) as server:
        denials = Denials()

        async def error(exc: Exception) -> None:  # as the service's error callback does
            denials.report(exc)

        nc = await nats.connect(server.url, user="writer", password="writer-password-37", error_cb=error)
        try:
            kv = await nc.jetstream(timeout=10.0).create_key_value(bucket="b")
            prefix = kv_subject_prefix(kv)
            assert prefix == "$KV.b."
            started = time.monotonic()
            with pytest.raises(SubjectDenied) as refused:
                await denials.write(prefix + "Key", lambda: kv.put("Key", b"x"))
            assert time.monotonic() - started < 5.0  # not the 10 s timeout
            assert refused.value.subject == "$KV.b.Key"
            fault = permanent_fault(refused.value)
            assert fault is not None and fault.code == "permission"
            assert await denials.write(prefix + "other", lambda: kv.put("other", b"y")) > 0
            assert (denials.claimed, denials.unclaimed) == (1, 0)

            # nats-py lower-cases the violation: with a write to "key" in flight too, it cannot be
            # told which one NATS refused, so neither is failed and the refused one times out
            short = await nc.jetstream(timeout=0.5).key_value("b")
            done = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(denials.write, prefix + "key", done.wait)
                await anyio.lowlevel.checkpoint()  # the stand-in write is in flight
                with pytest.raises(nats.errors.TimeoutError):
                    await denials.write(prefix + "Key", lambda: short.put("Key", b"z"))
                done.set()
            assert (denials.claimed, denials.unclaimed) == (1, 1)
            assert not denials.report(nats.errors.Error("nats: 'Permissions Violation for Publish to \"x\"'"))
            assert not denials.report(nats.errors.Error("nats: something else"))
        finally:
            await nc.close()
