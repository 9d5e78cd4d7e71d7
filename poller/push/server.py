"""The push port: ``POST /push/<vendor>/<account>``, each push answered only once its events are acked.

Every request passes, in order, the per-client rate (429), a known receiver (404), the vendor's
authentication (401), the body size (413) and the content type (415) before its body is decoded;
a body the receiver cannot use is 400. Each refusal is counted and logged with its reason, never
with the body, and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

import anyio
import msgspec
from aiohttp import web

from poller.config import PushConfig
from poller.errors import ConfigError
from poller.pipeline.differ import call_finished
from poller.pipeline.privacy import Privacy
from poller.push.byrobot import ByRobotCallbackReceiver
from poller.push.guard import ClientRate, RecentIds
from poller.push.oauth import ClientCredentials
from poller.push.receiver import Receiver, Rejected
from poller.push.tencent import SessionTasks, TencentCdrReceiver
from poller.vendors.base import AccountConfig
from poller.vendors.byrobot import ByRobotAccount
from poller.vendors.normalize import CountUnreadable
from poller.vendors.tencent_ccc import TencentCccAccount
from schemas.events import EventBase

__all__ = ["EventSink", "PushServer", "PushStats", "build_receivers", "serve_push"]

log = logging.getLogger("poller.push")


class EventSink(Protocol):
    async def publish(self, events: Sequence[EventBase], source_key: str = "") -> int: ...


class PushStats(msgspec.Struct, kw_only=True):
    """Pushes by how they ended (``accepted``, ``duplicate``, a receiver's reason to acknowledge
    without publishing such as ``not_task_call``, or the refusal's HTTP status)."""

    outcomes: dict[str, int] = {}
    calls: int = 0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def build_receivers(
    config: PushConfig,
    sources: Sequence[AccountConfig],
    tencent_sessions: Callable[[str, int], SessionTasks | None],
    count_unreadable: CountUnreadable | None = None,
) -> dict[tuple[str, str], Receiver]:
    """The receivers of ``config``; ``tencent_sessions`` finds the polling of a Tencent account's app,
    and ``count_unreadable`` counts the vendor values the receivers cannot read, as polling does."""
    by_key = {(s.vendor, s.account): s for s in sources}
    receivers: dict[tuple[str, str], Receiver] = {}
    for entry in config.receivers:
        account = by_key.get((entry.vendor, entry.account))
        key = (entry.vendor, entry.account)
        if isinstance(account, TencentCccAccount):
            basic = (entry.username, entry.password.reveal()) if entry.username and entry.password else None
            oauth = (
                ClientCredentials(
                    f"{entry.vendor}/{entry.account}",
                    entry.oauth_client_id,
                    entry.oauth_client_secret.reveal(),
                )
                if entry.oauth_client_id and entry.oauth_client_secret
                else None
            )
            receivers[key] = TencentCdrReceiver(
                entry.account,
                account.sdk_app_ids,
                basic,
                oauth,
                sessions=partial(tencent_sessions, entry.account),
                count_unreadable=count_unreadable,
            )
        elif isinstance(account, ByRobotAccount) and entry.token:
            receivers[key] = ByRobotCallbackReceiver(
                entry.account,
                account.company_id,
                account.utc_offset_minutes,
                entry.token.reveal(),
                count_unreadable,
            )
        else:
            raise ConfigError(
                f"push.receivers: no push receiver for vendor {entry.vendor!r} (supported: tencent-ccc)"
            )
    return receivers


class PushServer:
    def __init__(
        self,
        config: PushConfig,
        receivers: dict[tuple[str, str], Receiver],
        sink: EventSink,
        privacy: Privacy,
        on_outcome: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.receivers = receivers
        self.sink = sink
        self.privacy = privacy
        self.stats = PushStats()
        #: (vendor, account, outcome) of every request, for metrics ("?" where no receiver matched)
        self._on_outcome = on_outcome
        self._rate = ClientRate(config.client_rate)
        self._recent = RecentIds(config.dedup_capacity)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post("/push/{vendor}/{account}", self._handle)
        app.router.add_post("/push/oauth/{vendor}/{account}", self._token)
        return app

    def _count(self, outcome: str, receiver: Receiver | None) -> None:
        self.stats.count(outcome)
        if self._on_outcome is not None:
            vendor, account = (receiver.vendor, receiver.account) if receiver else ("?", "?")
            self._on_outcome(vendor, account, outcome)

    def _refuse(
        self, status: int, reason: str, request: web.Request, receiver: Receiver | None
    ) -> web.Response:
        self._count(str(status), receiver)
        log.warning(
            "push refused",
            extra={
                "status": status,
                "reason": reason,
                "client": self._client(request),
                "vendor": receiver.vendor if receiver else None,
                "account": receiver.account if receiver else None,
                "bytes": request.content_length,
            },
        )
        body = receiver.refusal(status, reason) if receiver else msgspec.json.encode({"error": reason})
        headers = {"WWW-Authenticate": 'Basic realm="aicc-poller push"'} if status == 401 else None
        if status == 429:
            headers = {"Retry-After": "1"}
        return web.Response(status=status, body=body, content_type="application/json", headers=headers)

    def _client(self, request: web.Request) -> str:
        """The client's address: the peer's, or behind a trusted proxy the first one it forwarded."""
        header = self.config.client_address_header
        if header:
            forwarded = request.headers.get(header, "").split(",", 1)[0].strip()
            if forwarded:
                return forwarded[:64]
        return request.remote or "?"

    async def _token(self, request: web.Request) -> web.StreamResponse:
        """OAuth 2.0 client credentials: a bearer token for a receiver that takes them."""
        if not self._rate.admit(self._client(request)):
            return self._refuse(429, "too many requests from this client", request, None)
        receiver = self.receivers.get((request.match_info["vendor"], request.match_info["account"]))
        oauth = getattr(receiver, "oauth", None)
        if not isinstance(oauth, ClientCredentials):
            return self._refuse(404, "no such token endpoint", request, None)
        if request.content_length is not None and request.content_length > 4096:
            return self._refuse(413, "body too large", request, None)
        try:
            with anyio.fail_after(self.config.read_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, "body too large", request, None)
        except TimeoutError:
            return self._refuse(408, "body not received in time", request, None)
        if len(body) > 4096:
            return self._refuse(413, "body too large", request, None)
        if not oauth.client_authenticated(request.headers, body):
            self._count("401", receiver)
            log.warning("push token refused", extra={"client": self._client(request)})
            return web.json_response({"error": "invalid_client"}, status=401)
        token, seconds = oauth.issue()
        self._count("token", receiver)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": seconds},
            headers={"Cache-Control": "no-store"},
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not self._rate.admit(self._client(request)):
            return self._refuse(429, "too many requests from this client", request, None)
        receiver = self.receivers.get((request.match_info["vendor"], request.match_info["account"]))
        if receiver is None:
            return self._refuse(404, "no such receiver", request, None)
        if not receiver.authorized(request.headers, request.query):
            return self._refuse(401, "not authenticated", request, receiver)
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._refuse(413, "body too large", request, receiver)
        if request.content_type != "application/json":
            return self._refuse(415, "content type must be application/json", request, receiver)
        try:
            with anyio.fail_after(self.config.read_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, "body too large", request, receiver)
        except TimeoutError:
            return self._refuse(408, "body not received in time", request, receiver)
        try:
            accepted = receiver.accept(request.query, request.headers, body)
        except Rejected as refusal:
            return self._refuse(refusal.status, refusal.reason, request, receiver)
        ok = web.Response(status=200, body=receiver.ok(), content_type=receiver.answer_type)
        if accepted.push_id is not None and accepted.push_id in self._recent:
            self._count("duplicate", receiver)
            return ok
        # one deadline for finding what the push lacks and for storing it: the vendor waits for both
        deadline = anyio.current_time() + self.config.ack_deadline
        try:
            with anyio.fail_after(self.config.ack_deadline):
                accepted = await receiver.resolve(accepted)
        except Rejected as refusal:
            return self._refuse(refusal.status, refusal.reason, request, receiver)
        except TimeoutError:
            return self._refuse(503, "not answered in time, push again", request, receiver)
        if accepted.source is not None and accepted.calls:
            if not all(call.task_id for call in accepted.calls):
                # a call without its task would be a wrong event for good: polling publishes it
                return self._refuse(503, "call without its task, push again", request, receiver)
            now = datetime.now(UTC)
            events = [call_finished(accepted.source, call, self.privacy, now) for call in accepted.calls]
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as waited:
                await self.sink.publish(events, accepted.source.key)
            if waited.cancelled_caught:
                # not stored yet: the vendor pushes again, and the retry has the same event ids
                return self._refuse(503, "not stored yet, push again", request, receiver)
            self.stats.calls += len(events)
        if accepted.push_id is not None:
            self._recent.add(accepted.push_id)
        self._count(accepted.outcome, receiver)
        return ok


async def serve_push(server: PushServer, on_bound: Callable[[int], None]) -> None:
    """Serve until cancelled; ``on_bound`` gets the bound port (port 0 works)."""
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, server.config.host, server.config.port, reuse_address=True)
    await site.start()
    addresses: list[Any] = runner.addresses
    on_bound(int(addresses[0][1]) if addresses else server.config.port)
    log.info("push receivers listening", extra={"receivers": len(server.receivers)})
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
