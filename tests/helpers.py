"""Shared test machinery: real nats-server, running the service, reading back what was published,
and checking it against the committed JSON Schema a consumer validates with."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import anyio
import msgspec
import nats
from nats.js.errors import KeyNotFoundError

from poller.config import Config, parse_config
from poller.runtime.kv_keys import kv_keys
from poller.runtime.service import Service
from schemas import Event
from schemas.contract import JSON_SCHEMA_FILE


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
    """The service, stopped as on SIGTERM when the block ends, also when it fails: cancelled instead,
    a commit NATS refuses for good would go on retrying in its shield and the test would hang."""
    service = Service(config, **kwargs)
    ended = anyio.Event()

    async def run() -> None:
        try:
            await service.run()
        finally:
            ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(15):
            await service.started.wait()
        try:
            yield service
        finally:
            service.stop()
            with anyio.CancelScope(shield=True), anyio.move_on_after(config.shutdown_grace + 30):
                await ended.wait()


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


async def stream_payloads(nats_url: str, stream: str = "AICC") -> list[bytes]:
    """Every event in the stream as it was published: the bytes a consumer validates."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        if not info.state.messages:
            return []
        found = [
            await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
        return [bytes(msg.data) for msg in found if msg.data]
    finally:
        await nc.close()


#: RFC 3339 ``date-time`` (JSON Schema's ``format: date-time``): a zone is required
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
}


def is_rfc3339(value: str) -> bool:
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return False  # the shape of a time, but no such day or hour
    return True


def _violations(node: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> list[str]:
    """What in ``node`` breaks ``schema``: the keywords the generated contract uses, formats included."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _violations(node, target, root, where)
    found: list[str] = []
    if "anyOf" in schema:  # the keywords beside it (a format, say) apply as well
        options = [_violations(node, option, root, where) for option in schema["anyOf"]]
        if all(options):
            found.append(f"{where}: fits none of its alternatives ({'; '.join(o[0] for o in options)})")
    if "enum" in schema and node not in schema["enum"]:
        found.append(f"{where}: {node!r} is not one of {schema['enum']}")
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        python = tuple(t for kind in kinds for t in _JSON_TYPES[kind])
        if not isinstance(node, python) or (isinstance(node, bool) and "boolean" not in kinds):
            return [*found, f"{where}: {type(node).__name__} is not {'/'.join(kinds)}"]
    if schema.get("format") == "date-time" and isinstance(node, str) and not is_rfc3339(node):
        found.append(f"{where}: {node!r} is not an RFC 3339 date-time")
    if isinstance(node, dict):
        properties = schema.get("properties", {})
        found += [f"{where}.{name}: required" for name in schema.get("required", []) if name not in node]
        extra = schema.get("additionalProperties", True)
        for name, value in node.items():
            if name in properties:
                found += _violations(value, properties[name], root, f"{where}.{name}")
            elif extra is False:
                found.append(f"{where}.{name}: not in the schema")
            elif isinstance(extra, dict):
                found += _violations(value, extra, root, f"{where}.{name}")
    if isinstance(node, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(node):
            found += _violations(value, schema["items"], root, f"{where}[{i}]")
    return found


def contract_violations(payload: bytes) -> list[str]:
    """How one published event breaks the committed JSON Schema (``schemas/events.schema.json``),
    picked by its ``type`` as the schema's discriminator says; empty when it fits."""
    root = json.loads(JSON_SCHEMA_FILE.read_text(encoding="utf-8"))
    event = json.loads(payload)
    ref = root["discriminator"]["mapping"].get(event.get("type"))
    if ref is None:
        return [f"$: unknown event type {event.get('type')!r}"]
    return _violations(event, {"$ref": ref}, root, "$")


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


async def bucket_bytes(kv: Any) -> bytes:
    """Every value a KV bucket holds now, end to end (what left the process into it)."""
    values: list[bytes] = []
    for key in await kv_keys(kv):
        try:
            values.append((await kv.get(key)).value or b"")
        except KeyNotFoundError:
            continue  # deleted: only its marker is left
    return b"".join(values)
