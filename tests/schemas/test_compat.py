"""Payloads published under schema 1 still decode, and the contract describes every field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from schemas import SCHEMA_VERSION, CallFinished, Event, TaskAppeared, decoder, encoder
from schemas.contract import ASYNCAPI_FILE, JSON_SCHEMA_FILE

#: recorded from a demo run before schema 2 (plus degraded/recovered/vanished from the Structs then)
V1_FIXTURES = Path(__file__).parent / "fixtures" / "events-v1.jsonl"


def _recorded() -> list[bytes]:
    return [line.encode() for line in V1_FIXTURES.read_text(encoding="utf-8").splitlines() if line]


def test_every_schema_1_payload_decodes_with_new_fields_at_their_defaults() -> None:
    payloads = _recorded()
    assert len({json.loads(p)["type"] for p in payloads}) == 8  # every event type is covered
    for payload in payloads:
        event: Event = decoder.decode(payload)
        raw = json.loads(payload)
        assert "schema_version" not in raw
        assert event.schema_version == SCHEMA_VERSION
        if isinstance(event, TaskAppeared):
            assert event.initial_inventory is None  # unknown for old payloads, never a guess
        # nothing the old payload said is lost or changed by decoding it with the new contract
        again = json.loads(encoder.encode(event))
        assert {k: again[k] for k in raw} == raw


def test_schema_1_payloads_fit_the_generated_json_schema() -> None:
    schema = json.loads(JSON_SCHEMA_FILE.read_text(encoding="utf-8"))
    by_tag = {
        d["properties"]["type"]["enum"][0]: d
        for d in schema["$defs"].values()
        if "type" in d.get("properties", {})
    }
    for payload in _recorded():
        raw = json.loads(payload)
        definition = by_tag[raw["type"]]
        assert set(definition["required"]) <= set(raw)
        assert set(raw) <= set(definition["properties"])


def _properties(document: dict[str, Any], section: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (name, field, spec)
        for name, definition in section.items()
        for field, spec in definition.get("properties", {}).items()
    ]


def test_every_field_has_a_description_every_quantity_a_unit_every_time_a_format() -> None:
    for path, key in ((JSON_SCHEMA_FILE, "$defs"), (ASYNCAPI_FILE, "components")):
        document = json.loads(path.read_text(encoding="utf-8"))
        section = document[key] if key == "$defs" else document[key]["schemas"]
        fields = _properties(document, section)
        assert len(fields) > 50
        for name, field, spec in fields:
            where = f"{path.name}: {name}.{field}"
            assert spec.get("description"), where
            branches = [spec, *spec.get("anyOf", [])]
            kinds = {b.get("type") for b in branches}
            kinds |= {b.get("additionalProperties", {}).get("type") for b in branches}
            numeric = bool(kinds & {"integer", "number"})
            assert ("x-unit" in spec) == numeric, where
            assert (spec.get("format") == "date-time") == field.endswith("_at"), where


def test_call_times_and_talk_time_say_what_they_are() -> None:
    schema = msgspec.json.schema(CallFinished)
    fields = schema["$defs"]["CallFinished"]["properties"]
    assert "talk time" in fields["duration_seconds"]["description"]
    assert fields["duration_seconds"]["x-unit"] == "seconds"
    assert fields["started_at"]["format"] == fields["ended_at"]["format"] == "date-time"
    assert fields["schema_version"]["default"] == SCHEMA_VERSION
