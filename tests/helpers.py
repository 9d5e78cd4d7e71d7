"""Shared test machinery: real nats-server, running the service, reading back what was published."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import msgspec
import nats

from poller.config import Config, parse_config
from poller.runtime.service import Service
from schemas import Event


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, step: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await anyio.sleep(step)


def make_config(nats_url: str, sources: list[dict[str, Any]], **top: Any) -> Config:
    data: dict[str, Any] = {"nats": {"url": nats_url, "ack_timeout": 2.0}, "http": {"enabled": False}}
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    data["sources"] = sources
    return parse_config(data, path="<test>")


@contextlib.asynccontextmanager
async def running(config: Config, **kwargs: Any) -> AsyncIterator[Service]:
    service = Service(config, **kwargs)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run)
        with anyio.fail_after(15):
            await service.started.wait()
        try:
            yield service
        finally:
            service.stop()


async def stream_events(nats_url: str, stream: str = "AICC") -> list[Event]:
    """Every event in the stream, in order, decoded with the public contract."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        events: list[Event] = []
        if not info.state.messages:
            return events  # an empty stream has no first sequence to read from
        decoder = msgspec.json.Decoder(Event)
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            if msg.data:
                events.append(decoder.decode(msg.data))
        return events
    finally:
        await nc.close()


async def polls_done(service: Service, n: int = 1) -> None:
    """Wait until every source finished ``n`` more successful cycles."""
    marks = {key: status.last_success for key, status in service.statuses.items()}
    counts = dict.fromkeys(marks, 0)

    def check() -> bool:
        for key, status in service.statuses.items():
            if status.last_success != marks[key]:
                marks[key] = status.last_success
                counts[key] += 1
        return all(c >= n for c in counts.values())

    await wait_until(check, timeout=20)
