"""The committed JSON Schema and AsyncAPI document are what the Structs generate, and hang together."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from schemas import EVENT_TYPES, EntityKind, Status, TaskState, TaskStatusChanged, encoder
from schemas.contract import ASYNCAPI_FILE, JSON_SCHEMA_FILE, stale


def test_committed_contract_files_are_not_stale() -> None:
    assert stale() == [], "run `poller schema --write` and commit the result"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_every_ref_resolves_and_every_event_type_is_described() -> None:
    for path in (JSON_SCHEMA_FILE, ASYNCAPI_FILE):
        document = json.loads(path.read_text(encoding="utf-8"))
        refs = _refs(document)
        assert refs
        for ref in refs:
            _resolve(document, ref)
    asyncapi = json.loads(ASYNCAPI_FILE.read_text(encoding="utf-8"))
    assert asyncapi["asyncapi"].startswith("3.")
    assert set(asyncapi["components"]["messages"]) == {t.__name__ for t in EVENT_TYPES}
    tags = asyncapi["channels"]["events"]["parameters"]["eventType"]["enum"]
    assert "call-finished" in tags and len(tags) == len(EVENT_TYPES)


def test_an_encoded_event_fits_its_schema() -> None:
    event = TaskStatusChanged(
        event_id="e",
        vendor="v",
        account="a",
        observed_at=datetime.now(UTC),
        kind=EntityKind.TASK,
        entity_id="1",
        seq=2,
        previous=Status(state=TaskState.PENDING, raw="0"),
        current=Status(state=TaskState.RUNNING, raw="1"),
    )
    payload = json.loads(encoder.encode(event))
    schema = json.loads(JSON_SCHEMA_FILE.read_text(encoding="utf-8"))
    definition = schema["$defs"]["TaskStatusChanged"]
    assert set(definition["required"]) <= set(payload)
    assert set(payload) <= set(definition["properties"])
    assert payload["type"] in definition["properties"]["type"]["enum"]
    status = schema["$defs"]["Status"]["properties"]["state"]
    assert payload["current"]["state"] in _resolve(schema, status["$ref"])["enum"]
