// Example consumer: decodes a recorded stream (one JSON payload per line) into typed events.
//
//   node dist/consume.js SCHEMA_JSON EVENTS_JSONL
//
// Each payload is checked against the JSON Schema's definition for its `type` (required fields, no
// unknown fields, enum values, JSON types) before it is trusted as an `Event`; a payload that does
// not fit stops the run with the reason. A real consumer would read the same payloads from NATS.

import { readFileSync } from "node:fs";
import type { Event } from "./events";

type Schema = { [key: string]: unknown };

function fail(where: string, why: string): never {
  throw new Error(`${where}: ${why}`);
}

function resolve(root: Schema, node: Schema): Schema {
  const ref = node["$ref"];
  if (typeof ref !== "string") return node;
  let found: unknown = root;
  for (const part of ref.replace(/^#\//, "").split("/")) found = (found as Schema)[part];
  return found as Schema;
}

function check(root: Schema, node: Schema, value: unknown, where: string): void {
  const schema = resolve(root, node);
  const anyOf = schema["anyOf"] as Schema[] | undefined;
  if (anyOf) {
    const errors: string[] = [];
    for (const option of anyOf) {
      try {
        check(root, option, value, where);
        return;
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    fail(where, `fits none of: ${errors.join("; ")}`);
  }
  const allowed = schema["enum"] as unknown[] | undefined;
  if (allowed && !allowed.includes(value)) fail(where, `${JSON.stringify(value)} is not one of ${allowed.join(", ")}`);
  const type = schema["type"] as string | undefined;
  if (type === "null" && value !== null) fail(where, "expected null");
  if (type === "string" && typeof value !== "string") fail(where, "expected a string");
  if (type === "integer" && !Number.isInteger(value)) fail(where, "expected an integer");
  if (type === "number" && typeof value !== "number") fail(where, "expected a number");
  if (type === "boolean" && typeof value !== "boolean") fail(where, "expected a boolean");
  if (schema["format"] === "date-time" && typeof value === "string" && Number.isNaN(Date.parse(value)))
    fail(where, "expected an RFC 3339 date-time");
  if (type === "object") {
    if (typeof value !== "object" || value === null || Array.isArray(value)) fail(where, "expected an object");
    const object = value as Record<string, unknown>;
    const properties = schema["properties"] as Record<string, Schema> | undefined;
    const extra = schema["additionalProperties"] as Schema | undefined;
    for (const name of (schema["required"] as string[] | undefined) ?? [])
      if (!(name in object)) fail(where, `missing required field ${name}`);
    for (const [name, item] of Object.entries(object)) {
      const spec = properties?.[name] ?? extra;
      if (!spec) fail(where, `unknown field ${name}`);
      check(root, spec, item, `${where}.${name}`);
    }
  }
}

export function decode(root: Schema, line: string): Event {
  const payload: unknown = JSON.parse(line);
  const tag = (payload as { type?: unknown }).type;
  const definitions = root["$defs"] as Record<string, Schema>;
  const definition = Object.values(definitions).find(
    (d) => ((d["properties"] as Record<string, Schema> | undefined)?.["type"]?.["enum"] as unknown[] | undefined)?.[0] === tag,
  );
  if (!definition) fail("payload", `unknown event type ${JSON.stringify(tag)}`);
  check(root, definition, payload, String(tag));
  return payload as Event;
}

function describe(event: Event): string {
  switch (event.type) {
    case "call-finished":
      return `${event.vendor}/${event.account} call ${event.call_id}: ${event.outcome}`;
    case "source-degraded":
      return `${event.vendor}/${event.account} ${event.api} degraded: ${event.reason}`;
    case "source-recovered":
      return `${event.vendor}/${event.account} ${event.api} recovered after ${event.degraded_seconds}s`;
    case "task-progress":
      return `${event.entity_id}: ${event.completed}/${event.total ?? "?"}`;
    case "task-appeared":
      return `${event.entity_id} appeared ${event.current.state}`;
    default:
      return `${event.entity_id}: ${event.previous.state} -> ${"current" in event ? event.current.state : "gone"}`;
  }
}

function main(): void {
  const [schemaPath, eventsPath] = process.argv.slice(2);
  if (!schemaPath || !eventsPath) throw new Error("usage: consume SCHEMA_JSON EVENTS_JSONL");
  const root = JSON.parse(readFileSync(schemaPath, "utf-8")) as Schema;
  const byType: Record<string, number> = {};
  const lines: string[] = [];
  for (const line of readFileSync(eventsPath, "utf-8").split("\n")) {
    if (!line.trim()) continue;
    const event = decode(root, line);
    byType[event.type] = (byType[event.type] ?? 0) + 1;
    lines.push(describe(event));
  }
  process.stdout.write(JSON.stringify({ decoded: lines.length, byType, first: lines[0] }) + "\n");
}

main();
