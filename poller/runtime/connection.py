"""NATS for the runtime: connect (retrying until reachable), the stream and the state bucket."""

from __future__ import annotations

import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import nats
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError

from poller.config import CoordinationConfig, NatsConfig, NatsTlsConfig
from poller.errors import ConfigError
from poller.pipeline.store import StateFenced

__all__ = ["connect", "ensure_coordination", "ensure_infrastructure", "retry_nats", "tls_context"]

log = logging.getLogger("poller.runtime")
T = TypeVar("T")


async def connect(
    cfg: NatsConfig,
    *,
    on_disconnected: Callable[[], Awaitable[None]],
    on_reconnected: Callable[[], Awaitable[None]],
    extra_options: dict[str, Any] | None = None,
) -> Any:
    """A connection that reconnects forever; the first connect is retried until NATS answers."""

    async def error(exc: Exception) -> None:
        log.warning("NATS client error", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})

    options: dict[str, Any] = {
        "servers": list(cfg.servers) or [cfg.url],
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "connect_timeout": 5,
        "allow_reconnect": True,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
        "error_cb": error,
        "name": "aicc-poller",
    }
    if cfg.user:
        options["user"] = cfg.user
    if cfg.password:
        options["password"] = cfg.password.reveal()
    if cfg.token:
        options["token"] = cfg.token.reveal()
    if cfg.creds_file:
        options["user_credentials"] = cfg.creds_file
    if cfg.nkey_seed:
        options["nkeys_seed_str"] = cfg.nkey_seed.reveal()
    if cfg.tls is not None:
        options["tls"] = tls_context(cfg.tls)
        if cfg.tls.server_name:
            options["tls_hostname"] = cfg.tls.server_name
    options.update(extra_options or {})
    while True:
        try:
            return await nats.connect(**options)
        except Exception as exc:
            log.warning("cannot connect to NATS yet", extra={"error": f"{type(exc).__name__}"})
            await anyio.sleep(1.0)


def tls_context(cfg: NatsTlsConfig) -> ssl.SSLContext:
    """Verify the servers against ``ca_file`` (the system store without one); present a client
    certificate when one is configured. A file that cannot be read is a configuration error."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cfg.ca_file)
        if cfg.cert_file and cfg.key_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"nats.tls: cannot use the configured files: {exc}") from exc
    return context


async def ensure_infrastructure(js: Any, cfg: NatsConfig) -> Any:
    """The event stream (created or updated to this config) and the state bucket; returns the bucket."""
    stream = StreamConfig(
        name=cfg.stream,
        subjects=[f"{cfg.subject_prefix}.>"],
        storage=StorageType.FILE,
        duplicate_window=cfg.duplicate_window,
        max_age=cfg.max_age_days * 86400,
        num_replicas=cfg.replicas,
    )
    try:
        await js.add_stream(stream)
    except BadRequestError as exc:
        if getattr(exc, "err_code", None) != 10058:
            raise
        await js.update_stream(stream)
    try:
        kv = await js.key_value(cfg.state_bucket)
    except Exception:
        kv = await js.create_key_value(
            bucket=cfg.state_bucket,
            history=1,
            replicas=cfg.replicas,
            description="aicc-poller committed snapshots and cursors",
        )
    return kv


async def ensure_coordination(js: Any, cfg: CoordinationConfig, replicas: int) -> tuple[Any, Any]:
    """The members and leases buckets: entries expire after the lease TTL unless refreshed."""
    buckets = []
    for name, what in ((cfg.members_bucket, "live replicas"), (cfg.leases_bucket, "account leases")):
        try:
            kv = await js.key_value(name)
        except BucketNotFoundError:
            kv = await js.create_key_value(
                bucket=name,
                history=1,
                ttl=cfg.lease_ttl,
                replicas=replicas,
                description=f"aicc-poller {what}",
            )
        buckets.append(kv)
    return buckets[0], buckets[1]


async def retry_nats(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """NATS is down: keep trying with backoff; the caller's state does not advance meanwhile."""
    attempt = 0
    while True:
        try:
            return await call()
        except StateFenced:
            raise  # another writer owns the state: retrying can only overwrite it
        except Exception as exc:
            attempt += 1
            delay = min(5.0, 0.2 * 2**attempt) * (0.5 + random.random())
            log.warning(f"{what} failed, retrying", extra={"error": type(exc).__name__, "attempt": attempt})
            await anyio.sleep(delay)
