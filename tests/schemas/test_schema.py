"""The AsyncAPI document keeps AsyncAPI 3.0's rules, and stale committed files are detected.

(tests/test_contract.py checks that the committed files equal what the Structs generate and that
every ``$ref`` resolves; this file checks the document's shape and the staleness check itself.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from poller.cli import EXIT_FAILURE, EXIT_OK, main
from schemas import EVENT_TYPES, contract

_TOP_LEVEL = {
    "asyncapi",
    "id",
    "info",
    "servers",
    "defaultContentType",
    "channels",
    "operations",
    "components",
}
_PARAMETER = {"enum", "default", "description", "examples", "location"}
_MESSAGE = {
    "headers",
    "payload",
    "correlationId",
    "contentType",
    "name",
    "title",
    "summary",
    "description",
    "tags",
    "externalDocs",
    "bindings",
    "examples",
    "traits",
}
_COMPONENT_KEY = re.compile(r"^[\w\d.\-_]+$")


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(contract.ASYNCAPI_FILE.read_text(encoding="utf-8"))
    return document


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _walk(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node] + [d for value in node.values() for d in _walk(value)]
    if isinstance(node, list):
        return [d for value in node for d in _walk(value)]
    return []


def test_asyncapi_parses_as_yaml_too() -> None:
    text = contract.ASYNCAPI_FILE.read_text(encoding="utf-8")
    assert yaml.safe_load(text) == json.loads(text)


def test_asyncapi_document_follows_the_3_0_rules() -> None:
    document = _document()
    assert document["asyncapi"] == "3.0.0"
    assert set(document) <= _TOP_LEVEL
    assert document["info"]["title"] and document["info"]["version"]
    for name, channel in document["channels"].items():
        placeholders = set(re.findall(r"\{(\w+)\}", channel["address"]))
        assert placeholders == set(channel["parameters"]), name
        for parameter in channel["parameters"].values():
            assert set(parameter) <= _PARAMETER
            assert all(isinstance(v, str) for v in parameter.get("enum", []))
        for message in channel["messages"].values():
            assert message["$ref"].startswith("#/components/messages/")
            _resolve(document, message["$ref"])
    for name, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel_ref = operation["channel"]["$ref"]
        _resolve(document, channel_ref)
        for message in operation["messages"]:
            # an operation's messages must be ones its channel carries
            assert message["$ref"].startswith(channel_ref + "/messages/"), message
            _resolve(document, message["$ref"])
    components = document["components"]
    for section in ("schemas", "messages"):
        assert all(_COMPONENT_KEY.match(key) for key in components[section])
    for message in components["messages"].values():
        assert set(message) <= _MESSAGE
        assert message["headers"]["type"] == "object"
        assert "Nats-Msg-Id" in message["headers"]["required"]
    for schema in _walk(components["schemas"]):
        # AsyncAPI's discriminator is a property name; OpenAPI's object form would be invalid here
        assert isinstance(schema.get("discriminator", ""), str)
        assert "nullable" not in schema


def test_each_message_carries_its_event_type() -> None:
    document = _document()
    tags = document["channels"]["events"]["parameters"]["eventType"]["enum"]
    messages = document["components"]["messages"]
    assert len(messages) == len(EVENT_TYPES) == len(set(tags))
    for event_type in EVENT_TYPES:
        message = messages[event_type.__name__]
        payload = _resolve(document, message["payload"]["$ref"])
        assert payload["properties"]["type"]["enum"] == [message["name"]]
        assert message["name"] in tags
        assert set(payload["required"]) >= {"type", "event_id", "vendor", "account", "observed_at"}


def test_stale_files_are_detected_and_write_regenerates_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(contract, "JSON_SCHEMA_FILE", tmp_path / "events.schema.json")
    monkeypatch.setattr(contract, "ASYNCAPI_FILE", tmp_path / "asyncapi.json")
    assert main(["schema", "--check"]) == EXIT_FAILURE  # missing counts as stale
    assert main(["schema", "--write"]) == EXIT_OK
    assert contract.stale() == [] and main(["schema", "--check"]) == EXIT_OK
    # a Struct changed but the files were not regenerated: the same as an edited file
    edited = json.loads(contract.ASYNCAPI_FILE.read_text())
    edited["info"]["version"] = "0.0.0"
    contract.ASYNCAPI_FILE.write_text(contract.render(edited))
    assert contract.stale() == [contract.ASYNCAPI_FILE]
    assert main(["schema", "--check"]) == EXIT_FAILURE
    assert "asyncapi.json (run `poller schema --write`)" in capsys.readouterr().err
