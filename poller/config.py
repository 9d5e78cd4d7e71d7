"""Typed configuration decoded strictly from TOML; secret references are resolved here and only here.

A secret field accepts ``{env = "NAME"}`` or ``{file = "/run/secrets/x"}`` (or, for throwaway
demos, a plain string). Unknown keys and wrong types are errors that name the file and the field.
"""

from __future__ import annotations

import base64
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import nkeys
from msgspec import Meta

from poller.errors import ConfigError
from poller.pipeline.privacy import PersonalDataPolicy
from poller.secrets import Secret
from poller.vendors import VENDORS
from poller.vendors.base import AccountConfig

#: a server URL with a scheme the NATS client speaks (credentials may be part of it)
_NATS_URL = r"^(nats|tls|ws|wss)://[^\s,/]+/?$"
#: JetStream stream and KV bucket names: no spaces, dots or wildcards (they become subject tokens)
_JS_NAME = r"^[A-Za-z0-9_-]{1,64}$"
#: a subject prefix: dot-separated tokens without wildcards or spaces
_SUBJECT_PREFIX = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"


class NatsTlsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """TLS to NATS: the CA that signed the servers' certificates, and a client certificate for mTLS."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: the name the servers' certificates carry when it differs from the host in the URL
    server_name: str | None = None


class CredsFile:
    """``nats.creds_file``: a NATS user's JWT and NKey seed, read and checked when the configuration
    is loaded, since a file the client cannot use only fails at the first connect (or, without a
    JWT in it, never returns). The client reads the file again at every connect, so a rotated file
    is used from the next reconnect on; its seed is a secret like any other."""

    __slots__ = ("path", "reference", "seed")

    def __init__(self, path: str, reference: str, seed: Secret) -> None:
        #: what the client opens: relative references are resolved against the config's folder
        self.path = path
        #: as the configuration writes it (what ``check-config`` shows)
        self.reference = reference
        self.seed = seed

    def __repr__(self) -> str:
        return f"CredsFile({self.reference!r})"

    def __eq__(self, other: object) -> bool:
        # the file, not its content: a rotated file is picked up without a restart
        return isinstance(other, CredsFile) and other.path == self.path

    def __hash__(self) -> int:
        return hash(("creds", self.path))


class NatsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, Meta(pattern=_NATS_URL)] = "nats://127.0.0.1:4222"
    #: several servers of one cluster (tried in turn, reconnects go to any); ``url`` when empty
    servers: list[Annotated[str, Meta(pattern=_NATS_URL)]] = []
    tls: NatsTlsConfig | None = None
    #: an NKey user seed (``SU…``), a secret reference like any other
    nkey_seed: Secret | None = None
    stream: Annotated[str, Meta(pattern=_JS_NAME)] = "AICC"
    subject_prefix: Annotated[str, Meta(pattern=_SUBJECT_PREFIX, max_length=128)] = "aicc"
    state_bucket: Annotated[str, Meta(pattern=_JS_NAME)] = "aicc_poller_state"
    #: JetStream de-duplication window; a poller restarted within it never doubles an event
    duplicate_window: Annotated[float, Meta(gt=0)] = 900.0
    #: JetStream allows 1 to 5 copies of a stream
    replicas: Annotated[int, Meta(ge=1, le=5)] = 1
    max_age_days: Annotated[float, Meta(gt=0)] = 7.0
    user: Annotated[str, Meta(min_length=1)] | None = None
    password: Secret | None = None
    token: Secret | None = None
    #: a decentralized-auth user's ``.creds`` file (JWT and seed), as ``nsc`` writes it
    creds_file: CredsFile | None = None
    ack_timeout: Annotated[float, Meta(gt=0)] = 5.0


class PrivacyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    personal_data: PersonalDataPolicy = PersonalDataPolicy.MASK
    hash_salt: Secret | None = None


class HttpConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    host: Annotated[str, Meta(min_length=1)] = "0.0.0.0"
    #: 0 picks a free port
    port: Annotated[int, Meta(ge=0, le=65535)] = 9464


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
    index: Annotated[int, Meta(ge=0)] = 0
    count: Annotated[int, Meta(ge=1)] = 1


class CoordinationConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How replicas share the accounts: leases in NATS KV, or the static ``[shard]`` split."""

    mode: Literal["leases", "static"] = "leases"
    #: a replica that stops renewing (killed, cut off) loses its accounts after this long
    lease_ttl: Annotated[float, Meta(ge=3, le=600)] = 15.0
    #: unique per replica; a stable one (a StatefulSet pod's name) lets a restarted replica take
    #: its accounts back at once instead of after the TTL; unset: host, process id and a random part
    replica_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    members_bucket: Annotated[str, Meta(pattern=_JS_NAME)] = "aicc_poller_members"
    leases_bucket: Annotated[str, Meta(pattern=_JS_NAME)] = "aicc_poller_leases"


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    nats: NatsConfig = NatsConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    http: HttpConfig = HttpConfig()
    logging: LoggingConfig = LoggingConfig()
    shard: ShardConfig = ShardConfig()
    coordination: CoordinationConfig = CoordinationConfig()
    push: PushConfig = PushConfig()
    #: SIGTERM drain: in-flight publishes and commits get this long before we give up
    shutdown_grace: Annotated[float, Meta(ge=0)] = 10.0
    sources: list[AccountConfig] = []


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _resolve_secret(obj: Any, env: Mapping[str, str] | None, base: Path) -> Secret:
    """The secret a reference names; with ``env`` None only the reference's shape is checked
    (``check-config --no-secrets``: CI has no production secrets) and the value is empty."""
    if isinstance(obj, str):
        return Secret(obj, "inline")
    if isinstance(obj, dict) and len(obj) == 1:
        ((kind, ref),) = obj.items()
        if env is None and kind in ("env", "file") and isinstance(ref, str) and ref.strip():
            if kind == "env" and not _ENV_NAME.match(ref):
                raise ValueError(f"{ref!r} is not an environment variable name")
            return Secret("", f"{kind} {ref}")
        if kind == "env" and isinstance(ref, str) and _ENV_NAME.match(ref):
            assert env is not None
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


def _creds_block(name: str) -> re.Pattern[str]:
    """A ``-----BEGIN <name>-----`` ... ``------END <name>------`` block of a creds file: its one line."""
    return re.compile(rf"-{{3,}}\s*BEGIN {name}\s*-{{3,}}\s*\n\s*(\S+)\s*\n\s*-{{3,}}\s*END {name}\s*-{{3,}}")


_CREDS_JWT, _CREDS_SEED = _creds_block("NATS USER JWT"), _creds_block("USER NKEY SEED")


class _UserClaims(msgspec.Struct):
    sub: str


def _resolve_creds(obj: Any, env: Mapping[str, str] | None, base: Path) -> CredsFile:
    """The credentials file ``obj`` names, with its seed; with ``env`` None (no secrets at hand)
    only the path's shape is checked."""
    if not isinstance(obj, str) or not obj.strip():
        raise ValueError("expected the path of a NATS credentials (.creds) file")
    path = obj if os.path.isabs(obj) else str(base / obj)
    if env is None:
        return CredsFile(path, obj, Secret("", f"file {obj}"))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read credentials file {obj}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ValueError(f"{obj} is not a NATS credentials file (not text)") from None
    jwt_block, seed_block = _CREDS_JWT.search(text), _CREDS_SEED.search(text)
    if jwt_block is None or seed_block is None:
        raise ValueError(f"{obj} is not a NATS credentials file: it needs a user JWT and a user seed block")
    token, seed = jwt_block.group(1), seed_block.group(1)
    try:
        user = nkeys.from_seed(bytearray(seed.encode())).public_key.decode()
    except (nkeys.NkeysError, ValueError, TypeError):
        user = ""
    if not user.startswith("U"):
        raise ValueError(f"{obj}: the seed block does not hold a user NKey seed")
    try:
        payload = token.split(".")[1]
        claims = msgspec.json.decode(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)), type=_UserClaims
        )
    except (IndexError, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise ValueError(f"{obj}: the user JWT block is not a readable JWT") from None
    if claims.sub != user:
        raise ValueError(f"{obj}: the seed is not the key of the user the JWT names")
    return CredsFile(path, obj, Secret(seed, f"file {obj}"))


def convert_section(
    obj: Any, type_: Any, *, file: str, prefix: str, env: Mapping[str, str] | None, base: Path
) -> Any:
    """One table of a TOML file as ``type_``, decoded as strictly as the poller's own config.

    Other tools with a config file of their own (the notifier) share it, so their files read alike:
    an error names ``file`` and the field under ``prefix``, a :class:`Secret` field takes
    ``{env = "NAME"}`` or ``{file = "path"}`` and a :class:`CredsFile` field a credentials file's
    path (both relative to ``base``); with ``env`` None a reference is only checked for shape.
    """

    def dec_hook(t: type, value: Any) -> Any:
        if t is Secret:
            return _resolve_secret(value, env, base)
        if t is CredsFile:
            return _resolve_creds(value, env, base)
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
    data: Mapping[str, Any],
    *,
    path: str = "<config>",
    env: Mapping[str, str] | None = None,
    resolve_secrets: bool = True,
) -> Config:
    """The typed, range-checked configuration; errors name the file and the field.

    With ``resolve_secrets=False`` secret references are checked for shape only and every secret's
    value is empty: for linting a deployment's config where its secrets are not available.
    """
    env = os.environ if env is None else env
    secrets_env: Mapping[str, str] | None = env if resolve_secrets else None
    base = Path(path).parent if path and not path.startswith("<") else Path.cwd()
    data = dict(data)
    raw_sources = data.pop("sources", [])
    top = convert_section(data, Config, file=path, prefix="", env=secrets_env, base=base)
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
        account = convert_section(
            entry,
            VENDORS[vendor].account_config,
            file=path,
            prefix=f"sources[{i}]",
            env=secrets_env,
            base=base,
        )
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
        for name in account.__struct_fields__:
            # a scope or id listed twice would be two sources with one identity (one state, one owner)
            value = getattr(account, name)
            if isinstance(value, list):
                twice = sorted({str(v) for v in value if value.count(v) > 1})
                if twice:
                    raise ConfigError(f"{where}.{name}: listed more than once: {', '.join(twice)}")
        sources.append(account)
    tls = top.nats.tls
    if tls is not None and (tls.cert_file is None) != (tls.key_file is None):
        raise ConfigError(f"{path}: nats.tls: cert_file and key_file go together (a client certificate)")
    if top.nats.duplicate_window > top.nats.max_age_days * 86400:
        raise ConfigError(f"{path}: nats.duplicate_window: must not exceed nats.max_age_days (JetStream)")
    if top.privacy.personal_data is PersonalDataPolicy.HASH and top.privacy.hash_salt is None:
        # an unsalted hash of a phone number is reversed by trying every number
        raise ConfigError(f'{path}: privacy.hash_salt: required when personal_data = "hash"')
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
        polled = next(s for s in sources if (s.vendor, s.account) == (receiver.vendor, receiver.account))
        if receiver.vendor == "tencent-ccc" and not (polled.enabled and getattr(polled, "calls", True)):
            # a pushed record names no task: only polling the calls tells whether and whose it is
            raise ConfigError(
                f"{path}: push.receivers[{i}]: pushed Tencent calls are published once polling tells their "
                f"task: source {receiver.vendor}/{receiver.account} needs enabled = true and calls = true"
            )
    push = top.push
    if push.max_body_bytes < 1024 or push.client_rate < 1 or push.ack_deadline <= 0 or push.read_timeout <= 0:
        raise ConfigError(
            f"{path}: push: max_body_bytes must be at least 1024, client_rate at least 1, "
            "ack_deadline and read_timeout above 0"
        )
    shard = shard_from_env(env) or top.shard
    coordination = top.coordination
    if shard.count > 1 and coordination.mode == "leases":
        # a [shard] split (or POLLER_SHARD in the environment) is an explicit choice of static mode
        coordination = msgspec.structs.replace(coordination, mode="static")
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


def load_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None, *, resolve_secrets: bool = True
) -> Config:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from None
    return parse_config(data, path=name, env=env, resolve_secrets=resolve_secrets)
