"""Generate the published contract from the Structs: JSON Schema and an AsyncAPI 3 document.

poller schema --write     regenerates schemas/events.schema.json and schemas/asyncapi.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from .events import EVENT_TYPES, SCHEMA_VERSION, Event, EventBase

HERE = Path(__file__).resolve().parent
JSON_SCHEMA_FILE = HERE / "events.schema.json"
ASYNCAPI_FILE = HERE / "asyncapi.json"


def _tag(event_type: type[EventBase]) -> str:
    info = msgspec.inspect.type_info(event_type)
    assert isinstance(info, msgspec.inspect.StructType)
    return str(info.tag)


_TAG_DESCRIPTION = "the event type; also the last token of the subject"


def _describe_tags(definitions: dict[str, Any]) -> dict[str, Any]:
    """msgspec writes the ``type`` tag without a description; every other field has one."""
    for definition in definitions.values():
        tag = definition.get("properties", {}).get("type")
        if isinstance(tag, dict) and "enum" in tag:
            tag["description"] = _TAG_DESCRIPTION
    return definitions


def json_schema() -> dict[str, Any]:
    schema = msgspec.json.schema(Event, ref_template="#/$defs/{name}")
    _describe_tags(schema["$defs"])
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "aicc-poller event"
    schema["description"] = "Any event published on aicc.<vendor>.<account>.<event-type>; tagged by `type`."
    return schema


def asyncapi() -> dict[str, Any]:
    _, components = msgspec.json.schema_components([Event], ref_template="#/components/schemas/{name}")
    _describe_tags(components)
    messages: dict[str, Any] = {}
    for event_type in EVENT_TYPES:
        tag = _tag(event_type)
        messages[event_type.__name__] = {
            "name": tag,
            "title": tag,
            "summary": (event_type.__doc__ or tag).strip().splitlines()[0],
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "required": ["Nats-Msg-Id"],
                "properties": {
                    "Nats-Msg-Id": {
                        "type": "string",
                        "description": "equals event_id: JetStream drops a re-published copy",
                    },
                    "Aicc-Source": {
                        "type": "string",
                        "description": "the poller source whose state it belongs to",
                    },
                },
            },
            "payload": {"$ref": f"#/components/schemas/{event_type.__name__}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "aicc-poller events",
            "version": str(SCHEMA_VERSION),
            "description": (
                "Typed change events from AI outbound-calling platforms, published to NATS JetStream "
                "(stream AICC). Decode any payload with msgspec.json.Decoder(aicc_events.Event) "
                "(the aicc-events distribution)."
            ),
        },
        "defaultContentType": "application/json",
        "channels": {
            "events": {
                "address": "aicc.{vendor}.{account}.{eventType}",
                "parameters": {
                    "vendor": {
                        "description": "tencent-ccc, alibaba-outboundbot, alibaba-aiccs, byrobot, huawei-aicc"
                    },
                    "account": {"description": "the configured account name ([A-Za-z0-9_-])"},
                    "eventType": {"enum": [_tag(t) for t in EVENT_TYPES]},
                },
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
            }
        },
        "operations": {
            "receiveEvents": {
                "action": "receive",
                "channel": {"$ref": "#/channels/events"},
                "messages": [{"$ref": f"#/channels/events/messages/{name}"} for name in messages],
            }
        },
        "components": {"schemas": components, "messages": messages},
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write() -> list[Path]:
    JSON_SCHEMA_FILE.write_text(render(json_schema()), encoding="utf-8")
    ASYNCAPI_FILE.write_text(render(asyncapi()), encoding="utf-8")
    return [JSON_SCHEMA_FILE, ASYNCAPI_FILE]


def stale() -> list[Path]:
    """Committed files that differ from what the Structs generate now."""
    expected = {JSON_SCHEMA_FILE: render(json_schema()), ASYNCAPI_FILE: render(asyncapi())}
    return [p for p, text in expected.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
