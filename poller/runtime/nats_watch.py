"""What the service knows of its NATS connection: up or down, refusals no retry fixes, giving up.

The connection's callbacks land here. Refusals (:mod:`poller.pipeline.nats_faults`) are counted
and listed for ``/readyz`` while they last; when NATS can no longer be used at all (credentials
refused on reconnect, the client closed for good) the service is stopped and the reason is kept
for the command's exit code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from poller.errors import NatsClosed, NatsRejected
from poller.ops.metrics import Metrics
from poller.pipeline.nats_denials import Denials
from poller.pipeline.nats_faults import PermanentFault, is_auth_failure, permanent_fault

__all__ = ["ASYNC_FAULT_MEMORY", "NatsWatch"]

log = logging.getLogger("poller.service")
#: seconds a refusal NATS reported beside a request (a permission violation) stays on /readyz
ASYNC_FAULT_MEMORY = 60.0


class NatsWatch:
    def __init__(self, url: str, metrics: Metrics, *, stopping: Callable[[], bool], stop: Callable[[], None]):
        self._url = url
        #: the writers of this connection, which a permission violation is handed to first
        self.denials = Denials()
        self._metrics = metrics
        self._stopping = stopping
        self._stop = stop
        self.connected = False
        #: the client, once connected (its last error says why it closed)
        self.client: Any = None
        #: why NATS cannot be used any more; the service raises it once stopped
        self.gave_up: Exception | None = None
        self._faults: dict[str, tuple[PermanentFault, float]] = {}

    def fault(self, what: str, fault: PermanentFault | None) -> None:
        """A refusal is counted each time it is seen and listed while it lasts; None: it ended."""
        if fault is None:
            self._faults.pop(what, None)
            return
        self._faults[what] = (fault, time.monotonic())
        self._metrics.nats_refusals.labels(what, fault.code).inc()

    def client_error(self, exc: Exception) -> None:
        """Errors the server sends beside any request (a permission violation): no call raises them.

        A violation the write it refused claims is that write's fault (its writer reports it); one
        no writer claims is the connection's."""
        if self.denials.report(exc):
            return
        fault = permanent_fault(exc)
        if fault is not None:
            self.fault("connection", fault)

    def faults(self) -> list[str]:
        """The refusals under way, as "operation: code: detail"."""
        now = time.monotonic()
        for what, (_, seen) in list(self._faults.items()):
            # a refusal the server reports asynchronously clears itself once it stops recurring
            if what == "connection" and now - seen > ASYNC_FAULT_MEMORY:
                del self._faults[what]
        return [f"{what}: {fault.code}: {fault.detail}" for what, (fault, _) in self._faults.items()]

    def up(self) -> None:
        self.connected = True
        self._metrics.nats_connected.set(1)

    async def disconnected(self) -> None:
        self.connected = False
        self._metrics.nats_connected.set(0)
        if not self._stopping():
            log.warning("NATS disconnected")

    async def reconnected(self) -> None:
        self.up()
        log.info("NATS reconnected")

    async def closed(self) -> None:
        """The client gave up on NATS for good (it does after some server errors): stop, say why."""
        if self._stopping():
            return
        error = getattr(self.client, "last_error", None)
        if error is not None and is_auth_failure(error):
            self.credentials_refused(error)
        else:
            self._give_up(NatsClosed(f"NATS closed the connection for good ({error or 'no reason given'})"))

    def credentials_refused(self, error: Exception) -> None:
        self._give_up(
            NatsRejected(
                f"NATS at {self._url} refused the credentials on reconnect ({error}): "
                "check nats.user, nats.password, nats.token and nats.creds_file"
            )
        )

    def _give_up(self, why: Exception) -> None:
        if self.gave_up is None:
            self.gave_up = why
            log.error("stopping: NATS cannot be used any more", extra={"error": f"{why}"[:300]})
        self._stop()
