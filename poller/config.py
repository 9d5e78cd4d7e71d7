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
from typing import Any, Literal

import msgspec

from poller.errors import ConfigError
from poller.pipeline.privacy import PersonalDataPolicy
from poller.secrets import Secret
from poller.vendors import VENDORS
from poller.vendors.base import AccountConfig


class NatsTlsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """TLS to NATS: the CA that signed the servers' certificates, and a client certificate for mTLS."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: the name the servers' certificates carry when it differs from the host in the URL
    server_name: str | None = None


class NatsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str = "nats://127.0.0.1:4222"
    #: several servers of one cluster (tried in turn, reconnects go to any); ``url`` when empty
    servers: list[str] = []
    tls: NatsTlsConfig | None = None
    #: an NKey user seed (``SU…``), a secret reference like any other
    nkey_seed: Secret | None = None
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


class LoggingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    level: str = "INFO"
    format: str = "json"


class ShardConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    index: int = 0
    count: int = 1


class CoordinationConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How replicas share the accounts: leases in NATS KV, or the static ``[shard]`` split."""

    mode: Literal["leases", "static"] = "leases"
    #: a replica that stops renewing (killed, cut off) loses its accounts after this long
    lease_ttl: float = 15.0
    #: unique per replica; a stable one (a StatefulSet pod's name) lets a restarted replica take
    #: its accounts back at once instead of after the TTL; unset: host, process id and a random part
    replica_id: str | None = None
    members_bucket: str = "aicc_poller_members"
    leases_bucket: str = "aicc_poller_leases"


class Config(msgspec.Struct, frozen=True, kw_only=True):
    nats: NatsConfig = NatsConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    http: HttpConfig = HttpConfig()
    logging: LoggingConfig = LoggingConfig()
    shard: ShardConfig = ShardConfig()
    coordination: CoordinationConfig = CoordinationConfig()
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
    tls = top.nats.tls
    if tls is not None and (tls.cert_file is None) != (tls.key_file is None):
        raise ConfigError(f"{path}: nats.tls: cert_file and key_file go together (a client certificate)")
    shard = shard_from_env(env) or top.shard
    coordination = top.coordination
    if shard.count > 1 and coordination.mode == "leases":
        # a [shard] split (or POLLER_SHARD in the environment) is an explicit choice of static mode
        coordination = msgspec.structs.replace(coordination, mode="static")
    if not 3.0 <= coordination.lease_ttl <= 600.0:
        raise ConfigError(f"{path}: coordination.lease_ttl: must be between 3 and 600 seconds")
    replica_id = env.get("POLLER_REPLICA_ID") or coordination.replica_id
    if replica_id is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", replica_id):
        raise ConfigError(f"{path}: coordination.replica_id: use 1-64 of A-Z a-z 0-9 _ -")
    coordination = msgspec.structs.replace(coordination, replica_id=replica_id)
    if shard.count < 1 or not 0 <= shard.index < shard.count:
        got = f"{shard.index}/{shard.count}"
        raise ConfigError(f"{path}: shard.index: must be in 0..shard.count-1 (got {got})")
    config: Config = msgspec.structs.replace(top, sources=sources, shard=shard, coordination=coordination)
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
