"""The TypeScript and Go example consumers agree with the JSON Schema and decode a recorded stream.

The static checks (every event, field, optionality and enum of the schema is in the example's
types, and nothing else) always run. Decoding runs where the toolchain is installed: the
TypeScript compiler (``npm install`` in examples/consumers/typescript) with node, and ``go``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas import (
    CallDetail,
    CallFinished,
    CallOutcome,
    DegradeReason,
    EntityKind,
    EventBase,
    JobStatusChanged,
    SourceDegraded,
    SourceRecovered,
    Status,
    TaskAppeared,
    TaskProgress,
    TaskState,
    TaskStatusChanged,
    TaskVanished,
    decoder,
    encoder,
)
from schemas.contract import JSON_SCHEMA_FILE

ROOT = Path(__file__).resolve().parents[2]
TS = ROOT / "examples" / "consumers" / "typescript"
GO = ROOT / "examples" / "consumers" / "go"
V1_FIXTURES = Path(__file__).parent / "fixtures" / "events-v1.jsonl"


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(JSON_SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


def _objects() -> dict[str, tuple[set[str], set[str]]]:
    """Each object definition: (all properties, required properties)."""
    return {
        name: (set(d["properties"]), set(d.get("required", [])))
        for name, d in _schema()["$defs"].items()
        if "properties" in d
    }


def _enums() -> dict[str, set[str]]:
    return {name: set(d["enum"]) for name, d in _schema()["$defs"].items() if "enum" in d}


# -- TypeScript ----------------------------------------------------------------------------------------
def _ts_interfaces() -> dict[str, dict[str, bool]]:
    """interface name -> {field: optional}, inherited fields included."""
    text = (TS / "events.ts").read_text(encoding="utf-8")
    own: dict[str, dict[str, bool]] = {}
    parents: dict[str, str | None] = {}
    for match in re.finditer(r"interface (\w+)(?: extends (\w+))? \{(.*?)\n\}", text, re.S):
        name, parent, body = match.groups()
        parents[name] = parent
        own[name] = {f: bool(q) for f, q in re.findall(r"^\s+(\w+)(\?)?:", body, re.M)}
    resolved: dict[str, dict[str, bool]] = {}
    for name in own:
        fields: dict[str, bool] = {}
        chain: str | None = name
        while chain is not None:
            fields = {**own[chain], **fields}
            chain = parents[chain]
        resolved[name] = fields
    return resolved


def test_typescript_types_are_the_schema() -> None:
    interfaces = _ts_interfaces()
    for name, (properties, required) in _objects().items():
        assert name in interfaces, f"events.ts has no interface {name}"
        fields = interfaces[name]
        assert set(fields) == properties, name
        assert {f for f, optional in fields.items() if not optional} == required, name
    text = (TS / "events.ts").read_text(encoding="utf-8")
    for name, values in _enums().items():
        match = re.search(rf"export type {name} =(.*?);", text, re.S)
        assert match, f"events.ts has no type {name}"
        assert set(re.findall(r'"([^"]+)"', match.group(1))) == values, name


def _current_events() -> list[EventBase]:
    """Schema-2 payloads with every optional field set."""
    now = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
    base = {"vendor": "byrobot", "account": "acme", "observed_at": now}
    entity = {**base, "kind": EntityKind.TASK, "entity_id": "7", "parent_id": "c1", "name": "n", "seq": 2}
    running, failed = Status(state=TaskState.RUNNING, raw="1"), Status(state=TaskState.FAILED, raw="4")
    return [
        TaskAppeared(event_id="1", **entity, current=running, completed=1, total=9, initial_inventory=False),
        TaskStatusChanged(event_id="2", **entity, previous=running, current=failed),
        JobStatusChanged(
            event_id="3", **{**entity, "kind": EntityKind.JOB}, previous=running, current=failed
        ),
        TaskProgress(
            event_id="4", **entity, previous_completed=None, completed=3, total=9, by_state={"running": 6}
        ),
        TaskVanished(event_id="5", **entity, previous=running),
        CallFinished(
            event_id="6",
            **base,
            call_id="c",
            task_id="7",
            outcome=CallOutcome.CALLER_IN_ARREARS,
            raw_outcome="8",
            failure_reason="欠费",
            callee_number="138******00",
            callee_name="张*",
            duration_seconds=0,
            started_at="2026-12-02T05:00:00+08:00",
            ended_at="2026-12-02T05:00:09+08:00",
            detail=CallDetail(turns=0, hung_up_by="ai", results={"级别": "C"}),
        ),
        SourceDegraded(
            event_id="7", **base, api="/task/list", reason=DegradeReason.THROTTLED, detail="429", episode=1
        ),
        SourceRecovered(event_id="8", **base, api="/task/list", episode=1, degraded_seconds=12.5),
    ]


def _recorded_stream(tmp_path: Path) -> tuple[Path, Counter[str]]:
    """The schema-1 recording followed by schema-2 payloads, and what Python decodes from it."""
    lines = [line for line in V1_FIXTURES.read_text(encoding="utf-8").splitlines() if line]
    lines += [encoder.encode(e).decode() for e in _current_events()]
    path = tmp_path / "stream.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = Counter(str(type(decoder.decode(line)).__struct_config__.tag) for line in lines)
    return path, expected


def _tsc() -> str | None:
    local = TS / "node_modules" / ".bin" / "tsc"
    return str(local) if local.exists() else shutil.which("tsc")


@pytest.mark.slow
def test_typescript_consumer_decodes_a_recorded_stream_and_refuses_an_unknown_field(tmp_path: Path) -> None:
    tsc, node = _tsc(), shutil.which("node")
    if tsc is None or node is None:
        pytest.skip(
            "TypeScript compiler or node not installed (npm install in examples/consumers/typescript)"
        )
    out = tmp_path / "dist"
    subprocess.run([tsc, "-p", str(TS), "--outDir", str(out)], check=True, timeout=120)
    stream, expected = _recorded_stream(tmp_path)
    run = subprocess.run(
        [node, str(out / "consume.js"), str(JSON_SCHEMA_FILE), str(stream)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = json.loads(run.stdout)
    assert result["decoded"] == sum(expected.values()) and Counter(result["byType"]) == expected
    bad = tmp_path / "bad.jsonl"
    payload = json.loads(encoder.encode(_current_events()[0]))
    bad.write_text(json.dumps({**payload, "surprise": 1}) + "\n")
    refused = subprocess.run(
        [node, str(out / "consume.js"), str(JSON_SCHEMA_FILE), str(bad)], capture_output=True, text=True
    )
    assert refused.returncode != 0 and "unknown field surprise" in refused.stderr


# -- Go ------------------------------------------------------------------------------------------------
def _go_structs() -> dict[str, dict[str, bool]]:
    """struct name -> {json field: optional}, embedded structs' fields included."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in GO.glob("*.go"))
    own: dict[str, dict[str, bool]] = {}
    embeds: dict[str, list[str]] = {}
    for match in re.finditer(r"type (\w+) struct \{(.*?)\n\}", text, re.S):
        name, body = match.groups()
        own[name], embeds[name] = {}, []
        for line in body.strip().splitlines():
            line = line.strip()
            tag = re.match(r'(\w+)\s+(\S+)\s+`json:"([^",]+)(,omitempty)?"`', line)
            if tag:
                go_type, field, omitempty = tag.group(2), tag.group(3), tag.group(4)
                own[name][field] = bool(omitempty) or go_type.startswith(("*", "map["))
            elif re.fullmatch(r"\w+", line):
                embeds[name].append(line)

    def fields(name: str) -> dict[str, bool]:
        merged: dict[str, bool] = {}
        for parent in embeds[name]:
            merged |= fields(parent)
        return merged | own[name]

    return {name: fields(name) for name in own}


_GO_NAMES = {"EventBase": "Base"}


def test_go_structs_are_the_schema() -> None:
    structs = _go_structs()
    for name, (properties, required) in _objects().items():
        go_name = _GO_NAMES.get(name, name)
        assert go_name in structs, f"no Go struct {go_name}"
        fields = structs[go_name]
        assert set(fields) == properties, name
        # a field the schema does not require is a pointer, a map or omitempty in Go
        assert {f for f in properties - required if not fields[f]} == set(), name


@pytest.mark.slow
def test_go_consumer_decodes_a_recorded_stream_and_refuses_an_unknown_field(tmp_path: Path) -> None:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed: the Go consumer's types are checked against the schema only")
    stream, expected = _recorded_stream(tmp_path)
    env = {**os.environ, "GOCACHE": str(tmp_path / "gocache"), "GOFLAGS": "-mod=mod", "GO111MODULE": "on"}
    run = subprocess.run(
        [go, "run", ".", str(stream)],
        cwd=GO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(run.stdout)
    assert result["decoded"] == sum(expected.values()) and Counter(result["byType"]) == expected
    bad = tmp_path / "bad.jsonl"
    payload = json.loads(encoder.encode(_current_events()[5]))
    bad.write_text(json.dumps({**payload, "surprise": 1}) + "\n")
    refused = subprocess.run([go, "run", ".", str(bad)], cwd=GO, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and 'unknown field "surprise"' in refused.stderr
