"""The effective configuration as an operator sees it: every default filled in, no secret value.

A secret is shown as the reference it was loaded from (``{ env = "NAME" }`` / ``{ file = "path" }``),
so the printed TOML is itself a valid configuration that loads to the same thing; an inline secret
(allowed for throwaway demos) is shown as ``"<redacted>"``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

import msgspec

from poller.config import Config, CredsFile
from poller.pipeline.redact import mask_url_password
from poller.secrets import Secret

REDACTED = "<redacted>"


def secret_reference(secret: Secret) -> dict[str, str] | str:
    kind, _, ref = secret.source.partition(" ")
    if kind in ("env", "file") and ref:
        return {kind: ref}
    return REDACTED


def _enc_hook(value: Any) -> Any:
    if isinstance(value, Secret):
        return secret_reference(value)
    if isinstance(value, CredsFile):
        return value.reference
    raise NotImplementedError(f"cannot show a {type(value).__name__} in a config")


def _mask_urls(value: Any) -> Any:
    if isinstance(value, str):
        return mask_url_password(value)
    if isinstance(value, list):
        return [_mask_urls(v) for v in value]
    if isinstance(value, dict):
        return {k: _mask_urls(v) for k, v in value.items()}
    return value


def effective(config: Config) -> dict[str, Any]:
    """Plain data (str/int/float/bool/None/list/dict) with every secret replaced by its reference
    (and a password written into a URL, ``nats://user:pw@host``, masked)."""
    shown: dict[str, Any] = _mask_urls(msgspec.to_builtins(config, enc_hook=_enc_hook))
    return shown


def inline_secrets(config: Config) -> list[str]:
    """Where a secret was written into the file itself (a warning for ``check-config``)."""
    found: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, Secret):
            if value.source == "inline":
                found.append(where)
        elif isinstance(value, msgspec.Struct):
            for name in value.__struct_fields__:
                walk(getattr(value, name), f"{where}.{name}" if where else name)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")

    walk(config, "")
    return found


def secret_values(config: Config) -> list[str]:
    """Every secret's value, for the log redactor's last line of defense (never printed)."""
    values: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, Secret):
            values.append(value.reveal())
        elif isinstance(value, CredsFile):
            values.append(value.seed.reveal())
        elif isinstance(value, msgspec.Struct):
            for name in value.__struct_fields__:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)

    walk(config)
    return values


# -- a small TOML writer: enough for configuration data (no dates, no nulls) ----------------------
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name, ensure_ascii=False)


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON escapes are valid TOML basic-string escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(v) for v in value if v is not None) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(k)} = {_scalar(v)}" for k, v in value.items() if v is not None)
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write a {type(value).__name__} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def to_toml(document: Mapping[str, Any]) -> str:
    """Top-level keys, then ``[tables]``, then ``[[arrays of tables]]``; ``None`` means "not set"."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in document.items():
        if value is None:
            continue
        if _is_table_array(value):
            arrays.append((key, value))
        elif isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_scalar(value)}")
    for key, table in tables:
        lines += ["", f"[{_key(key)}]"]
        lines += [f"{_key(k)} = {_scalar(v)}" for k, v in table.items() if v is not None]
    for key, entries in arrays:
        for entry in entries:
            lines += ["", f"[[{_key(key)}]]"]
            lines += [f"{_key(k)} = {_scalar(v)}" for k, v in entry.items() if v is not None]
    return "\n".join(lines).lstrip("\n") + "\n"
