"""NATS for the runtime: connect (retrying until reachable), the stream and the state bucket."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import nats
import nats.errors
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

from poller.config import NatsConfig

__all__ = ["close_nats", "connect", "ensure_infrastructure", "retry_nats"]

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
        "servers": [cfg.url],
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
    options.update(extra_options or {})
    while True:
        try:
            return await nats.connect(**options)
        except Exception as exc:
            log.warning("cannot connect to NATS yet", extra={"error": f"{type(exc).__name__}"})
            await anyio.sleep(1.0)


async def close_nats(nc: Any) -> None:
    """Drain a live connection; close a lost one. Never raises: a stop must end with exit 0.

    A connection lost at stop has nothing left to deliver that matters: events not acked are
    re-derived after a restart, so what the client still buffers is dropped with one log line.
    """
    try:
        if nc.is_connected:
            await nc.drain()
        elif not nc.is_closed:
            await nc.close()
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        log.warning(
            "NATS connection lost at stop; what the client still buffered is dropped",
            extra={"error": type(exc).__name__},
        )


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


async def retry_nats(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """NATS is down: keep trying with backoff; the caller's state does not advance meanwhile."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            attempt += 1
            delay = min(5.0, 0.2 * 2**attempt) * (0.5 + random.random())
            log.warning(f"{what} failed, retrying", extra={"error": type(exc).__name__, "attempt": attempt})
            await anyio.sleep(delay)
