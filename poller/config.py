"""Typed configuration decoded strictly from TOML; secret references are resolved here and only here.

A secret field accepts ``{env = "NAME"}`` or ``{file = "/run/secrets/x"}`` (or, for throwaway
demos, a plain string). Unknown keys and wrong types are errors that name the file and the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from poller.errors import ConfigError
from poller.pipeline.privacy import PersonalDataPolicy
from poller.secrets import Secret
from poller.vendors import VENDORS
from poller.vendors.base import AccountConfig


class NatsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str = "nats://127.0.0.1:4222"
    stream: str = "AICC"
    subject_prefix: str = "aicc"
    state_bucket: str = "aicc_poller_state"
    #: JetStream de-duplication window; a poller restarted within it never doubles an event
    duplicate_window: float = 900.0
    replicas: int = 1
    max_age_days: float = 7.0
    user: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    creds_file: str | None = None
    ack_timeout: float = 5.0


class PrivacyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    personal_data: PersonalDataPolicy = PersonalDataPolicy.MASK
    hash_salt: Secret | None = None


class HttpConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 9464


#: vendors whose pushes a receiver can turn into the polled events' twins
PUSH_VENDORS = frozenset({"tencent-ccc", "byrobot"})
#: how each push vendor authenticates: the receiver fields it needs
_PUSH_AUTH = {"tencent-ccc": ("username", "password"), "byrobot": ("token",)}


class PushReceiverConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who may push for one configured source: HTTP basic auth (Tencent CCC Data Push), or a secret
    token in the push URL's query (BYRobot callbacks, which carry no credentials of their own)."""

    vendor: str
    account: str
    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    #: OAuth 2.0 client credentials (Tencent CCC's other option): the sender gets a token from
    #: ``/push/oauth/<vendor>/<account>`` and pushes with it
    oauth_client_id: str | None = None
    oauth_client_secret: Secret | None = None


class PushConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Vendor push receivers: off by default; ``POST /push/<vendor>/<account>`` on their own port.

    Put TLS in front (a reverse proxy): the vendors push over the internet with credentials.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9465
    #: larger bodies are refused with 413 before they are read
    max_body_bytes: int = 262144
    #: requests per second one client address may make; more get 429
    client_rate: int = 100
    #: seconds a push may wait for JetStream's ack before the vendor is told to push again
    ack_deadline: float = 5.0
    #: seconds a client may take to send its body (a slow sender gets 408)
    read_timeout: float = 10.0
    #: behind a reverse proxy: the header naming the client (e.g. X-Forwarded-For), so the rate
    #: limit applies per vendor client rather than to the proxy; unset, the peer address counts
    client_address_header: str | None = None
    #: push ids remembered for de-duplication of the vendor's own re-pushes
    dedup_capacity: int = 100000
    receivers: list[PushReceiverConfig] = []


class LoggingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    level: str = "INFO"
    format: str = "json"


class ShardConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    index: int = 0
    count: int = 1


class Config(msgspec.Struct, frozen=True, kw_only=True):
    nats: NatsConfig = NatsConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    http: HttpConfig = HttpConfig()
    logging: LoggingConfig = LoggingConfig()
    shard: ShardConfig = ShardConfig()
    push: PushConfig = PushConfig()
    #: SIGTERM drain: in-flight publishes and commits get this long before we give up
    shutdown_grace: float = 10.0
    sources: list[AccountConfig] = []


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _resolve_secret(obj: Any, env: Mapping[str, str], base: Path) -> Secret:
    if isinstance(obj, str):
        return Secret(obj, "inline")
    if isinstance(obj, dict) and len(obj) == 1:
        ((kind, ref),) = obj.items()
        if kind == "env" and isinstance(ref, str) and _ENV_NAME.match(ref):
            if ref not in env:
                raise ValueError(f"environment variable {ref} is not set")
            return Secret(env[ref], f"env {ref}")
        if kind == "file" and isinstance(ref, str):
            path = (base / ref) if not os.path.isabs(ref) else Path(ref)
            try:
                return Secret(path.read_text().strip(), f"file {ref}")
            except OSError as exc:
                raise ValueError(f"cannot read secret file {ref}: {exc.strerror}") from exc
    raise ValueError('expected {env = "NAME"} or {file = "path"}')


def _convert(obj: Any, type_: Any, file: str, prefix: str, env: Mapping[str, str], base: Path) -> Any:
    def dec_hook(t: type, value: Any) -> Any:
        if t is Secret:
            return _resolve_secret(value, env, base)
        raise NotImplementedError

    try:
        return msgspec.convert(obj, type_, dec_hook=dec_hook, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(_located(file, prefix, str(exc))) from None


def _located(file: str, prefix: str, message: str) -> str:
    """msgspec's 'Expected `int`, got `str` - at `$.x.y`' → '<file>: <prefix>.x.y: Expected ...'."""
    match = re.search(r" - at `\$(.*)`$", message)
    field = match.group(1) if match else ""
    message = message[: match.start()] if match else message
    if prefix and field and not field.startswith("["):
        field = "." + field.lstrip(".")
    field = (prefix + field).lstrip(".")
    return f"{file}: {field}: {message}" if field else f"{file}: {message}"


def parse_config(
    data: Mapping[str, Any], *, path: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    env = os.environ if env is None else env
    base = Path(path).parent if path and not path.startswith("<") else Path.cwd()
    data = dict(data)
    raw_sources = data.pop("sources", [])
    top = _convert(data, Config, path, "", env, base)
    if not isinstance(raw_sources, list):
        raise ConfigError(f"{path}: sources: expected an array of tables ([[sources]])")
    sources: list[AccountConfig] = []
    seen: set[tuple[str, str]] = set()
    for i, entry in enumerate(raw_sources):
        where = f"{path}: sources[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        vendor = entry.get("vendor")
        if vendor not in VENDORS:
            raise ConfigError(
                f"{where}.vendor: unknown vendor {vendor!r}; known: {', '.join(sorted(VENDORS))}"
            )
        account = _convert(entry, VENDORS[vendor].account_config, path, f"sources[{i}]", env, base)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", account.account):
            raise ConfigError(
                f"{where}.account: use 1-64 of A-Z a-z 0-9 _ - (it becomes a NATS subject token)"
            )
        if (vendor, account.account) in seen:
            raise ConfigError(f"{where}.account: {vendor}/{account.account} is configured twice")
        seen.add((vendor, account.account))
        for api, limit in account.rate_limits.items():
            if api not in VENDORS[vendor].apis:
                raise ConfigError(
                    f"{where}.rate_limits.{api}: unknown API; known: {', '.join(VENDORS[vendor].apis)}"
                )
            if limit < 1:
                raise ConfigError(f"{where}.rate_limits.{api}: must be at least 1")
        if not 0.0 <= account.rate_limit_margin <= 0.5:
            raise ConfigError(f"{where}.rate_limit_margin: must be between 0 and 0.5 seconds")
        sources.append(account)
    configured = {(s.vendor, s.account) for s in sources}
    for i, receiver in enumerate(top.push.receivers):
        if receiver.vendor not in PUSH_VENDORS:
            raise ConfigError(
                f"{path}: push.receivers[{i}].vendor: no push receiver for {receiver.vendor!r}; "
                f"supported: {', '.join(sorted(PUSH_VENDORS))}"
            )
        missing = [name for name in _PUSH_AUTH[receiver.vendor] if getattr(receiver, name) is None]
        oauth = (receiver.oauth_client_id, receiver.oauth_client_secret)
        if receiver.vendor == "tencent-ccc" and all(value is not None for value in oauth):
            missing = [name for name in missing if getattr(receiver, name) is not None]  # OAuth instead
        if any(value is not None for value in oauth) and None in oauth:
            missing.append("oauth_client_id and oauth_client_secret")
        if missing:
            raise ConfigError(f"{path}: push.receivers[{i}]: {receiver.vendor} needs {', '.join(missing)}")
        if receiver.token is not None and len(receiver.token.reveal()) < 16:
            raise ConfigError(f"{path}: push.receivers[{i}].token: use at least 16 random characters")
        if (receiver.vendor, receiver.account) not in configured:
            raise ConfigError(
                f"{path}: push.receivers[{i}]: no source {receiver.vendor}/{receiver.account} is configured"
            )
    push = top.push
    if push.max_body_bytes < 1024 or push.client_rate < 1 or push.ack_deadline <= 0 or push.read_timeout <= 0:
        raise ConfigError(
            f"{path}: push: max_body_bytes must be at least 1024, client_rate at least 1, "
            "ack_deadline and read_timeout above 0"
        )
    shard = shard_from_env(env) or top.shard
    if shard.count < 1 or not 0 <= shard.index < shard.count:
        got = f"{shard.index}/{shard.count}"
        raise ConfigError(f"{path}: shard.index: must be in 0..shard.count-1 (got {got})")
    config: Config = msgspec.structs.replace(top, sources=sources, shard=shard)
    return config


def shard_from_env(env: Mapping[str, str]) -> ShardConfig | None:
    """``POLLER_SHARD=i/N``, or ``POLLER_SHARD_INDEX`` + ``POLLER_SHARD_COUNT`` (a StatefulSet's
    pod index from the downward API): the replica's place overrides the file, so one ConfigMap
    serves every replica."""
    spec = env.get("POLLER_SHARD")
    if spec is None and "POLLER_SHARD_INDEX" in env:
        spec = f"{env['POLLER_SHARD_INDEX']}/{env.get('POLLER_SHARD_COUNT', '')}"
    if spec is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not match:
        raise ConfigError(f"environment POLLER_SHARD: expected INDEX/COUNT like 0/3, got {spec!r}")
    return ShardConfig(index=int(match.group(1)), count=int(match.group(2)))


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from None
    return parse_config(data, path=name, env=env)
