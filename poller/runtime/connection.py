"""NATS for the runtime: connect (retrying until reachable), the stream and the state bucket.

Only transient failures are retried with backoff (:mod:`poller.pipeline.nats_faults`). Wrong
credentials at start-up end the start (:class:`~poller.errors.NatsRejected`): retrying them only
hides the mistake. Other permanent refusals (a stream whose subjects overlap another's, no
permission, no JetStream in the account) are reported once and retried slowly, in case an operator
fixes them while the poller waits.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import nats
import nats.errors
from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError

from poller.config import CoordinationConfig, NatsConfig, NatsTlsConfig
from poller.errors import ConfigError, NatsRejected
from poller.pipeline.nats_faults import PermanentFault, is_auth_failure, permanent_fault
from poller.pipeline.store import StateFenced

__all__ = [
    "AUTH_GIVE_UP",
    "PERMANENT_RETRY",
    "FaultReport",
    "close_nats",
    "connect",
    "ensure_coordination",
    "ensure_infrastructure",
    "retry_nats",
    "tls_context",
]

log = logging.getLogger("poller.runtime")
T = TypeVar("T")
#: seconds between tries of a call NATS refused for good (jittered): slow, never a hot loop
PERMANENT_RETRY = 60.0
#: told (what, fault) when a call is refused for good, and (what, None) once it is accepted again
FaultReport = Callable[[str, PermanentFault | None], None]
#: reconnects in a row whose credentials NATS refused before the running poller gives up
AUTH_GIVE_UP = 3


async def connect(
    cfg: NatsConfig,
    *,
    on_disconnected: Callable[[], Awaitable[None]],
    on_reconnected: Callable[[], Awaitable[None]],
    on_error: Callable[[Exception], None] | None = None,
    on_closed: Callable[[], Awaitable[None]] | None = None,
    on_rejected: Callable[[Exception], None] | None = None,
    extra_options: dict[str, Any] | None = None,
) -> Any:
    """A connection that reconnects forever; the first connect is retried until NATS answers.

    Raises :class:`NatsRejected` if NATS refuses the credentials before the first connect succeeds.
    Once connected, ``on_rejected`` is told when NATS refuses them on :data:`AUTH_GIVE_UP`
    reconnects in a row (rotated or revoked: only a restart with new ones helps).
    """
    nc = Client()
    rejected: list[str] = []
    refused_reconnects = 0
    first_connect = anyio.CancelScope()

    async def error(exc: Exception) -> None:
        nonlocal refused_reconnects
        if not nc.is_connected and is_auth_failure(exc):
            if not connected:
                if not rejected:
                    rejected.append(f"{exc}")
                    first_connect.cancel()
                return
            refused_reconnects += 1
            if refused_reconnects == AUTH_GIVE_UP and on_rejected is not None:
                on_rejected(exc)
        log.warning("NATS client error", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
        if on_error is not None:
            on_error(exc)

    async def reconnected() -> None:
        nonlocal refused_reconnects
        refused_reconnects = 0
        await on_reconnected()

    options: dict[str, Any] = {
        "servers": list(cfg.servers) or [cfg.url],
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "connect_timeout": 5,
        "allow_reconnect": True,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
        "name": "aicc-poller",
    }
    if on_closed is not None:
        options["closed_cb"] = on_closed
    if cfg.user:
        options["user"] = cfg.user
    if cfg.password:
        options["password"] = cfg.password.reveal()
    if cfg.token:
        options["token"] = cfg.token.reveal()
    if cfg.creds_file is not None:
        options["user_credentials"] = cfg.creds_file.path
    if cfg.nkey_seed:
        options["nkeys_seed_str"] = cfg.nkey_seed.reveal()
    if cfg.tls is not None:
        options["tls"] = tls_context(cfg.tls)
        if cfg.tls.server_name:
            options["tls_hostname"] = cfg.tls.server_name
    options.update(extra_options or {})
    connected = False
    with first_connect:
        while True:
            try:
                await nc.connect(**options)
                connected = True
                return nc
            except Exception as exc:
                if is_auth_failure(exc):
                    rejected.append(f"{exc}")
                    break
                log.warning("cannot connect to NATS yet", extra={"error": f"{type(exc).__name__}"})
                nc = Client()  # a client whose connect failed is not reused
                await anyio.sleep(1.0)
    with anyio.CancelScope(shield=True), anyio.move_on_after(2), contextlib.suppress(Exception):
        await nc.close()
    reason = rejected[0] if rejected else "authorization violation"
    raise NatsRejected(
        f"NATS at {cfg.url} refused the credentials ({reason}): check nats.user, nats.password, "
        "nats.token and nats.creds_file"
    )


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
    except BucketNotFoundError:
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


async def retry_nats(
    what: str, call: Callable[[], Awaitable[T]], *, on_fault: FaultReport | None = None
) -> T:
    """Keep trying: transient failures with backoff, permanent ones slowly and reported once.

    The caller's state does not advance meanwhile.
    """
    attempt = 0
    reported: PermanentFault | None = None
    while True:
        try:
            result = await call()
        except StateFenced:
            raise  # another writer owns the state: retrying can only overwrite it
        except Exception as exc:
            fault = permanent_fault(exc)
            if fault is None:
                attempt += 1
                delay = min(5.0, 0.2 * 2**attempt) * (0.5 + random.random())
                log.warning(
                    f"{what} failed, retrying", extra={"error": type(exc).__name__, "attempt": attempt}
                )
                await anyio.sleep(delay)
                continue
            if fault != reported:
                log.error(
                    f"{what} refused by NATS; retried slowly until an operator fixes it",
                    extra={"reason": fault.code, "detail": fault.detail},
                )
                reported = fault
            if on_fault is not None:
                on_fault(what, fault)
            await anyio.sleep(PERMANENT_RETRY * (0.5 + random.random()))
            continue
        if reported is not None:
            log.info(f"{what} accepted by NATS again")
            if on_fault is not None:
                on_fault(what, None)
        return result
