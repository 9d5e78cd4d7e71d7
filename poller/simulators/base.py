"""The harness every vendor simulator shares.

A simulator is an aiohttp.web application that speaks one vendor's real protocol. This module gives
each of them the same machinery: an independent log of request arrival times (what tests and the
benchmark read to prove the poller's rate limiting), sliding-window limit enforcement with the
vendor's own throttling answer, switchable faults, and a seeded clock-free evolution of the data.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiohttp import web


class Fault(StrEnum):
    SERVER_ERROR = "server_error"  # the vendor's 5xx / internal-error answer
    HANG = "hang"  # accept the request, never answer
    DROP = "drop"  # close the connection without an answer
    MALFORMED = "malformed"  # 200 with a body that is not JSON
    TRUNCATED = "truncated"  # 200 with the real body cut in half
    THROTTLE = "throttle"  # the vendor's throttling answer
    AUTH = "auth"  # the vendor's auth-failure answer
    SCHEMA_DRIFT = "schema_drift"  # 200, valid JSON, fields of the wrong type
    RATE_LIMITED = "rate_limited"  # HTTP 429 (a gateway in front), the vendor's throttling body
    ABSURD_TOTAL = "absurd_total"  # the real answer with its listing total far beyond any account
    EMPTY_LISTING = "empty_listing"  # the real answer emptied: total 0 and no items, "complete"


@dataclass
class FaultPlan:
    fault: Fault
    #: how many requests it hits; None = until cleared
    remaining: int | None = None
    api: str | None = None
    #: requests let through untouched before the fault starts (e.g. fail only later pages)
    after: int = 0
    #: a ``Retry-After`` header put on the throttling answers of this plan (seconds or HTTP-date)
    retry_after: str | None = None


@dataclass
class RequestRecord:
    at: float
    api: str
    credential: str
    status: int
    outcome: str
    #: the simulator's port the request came in on (clients given one port each are told apart)
    via: int = 0


@dataclass(frozen=True)
class ListingRead:
    """One listing request as the simulator read it: what tells a filtered read from a full one."""

    at: float
    api: str
    #: the filters the request carried, as (parameter, value) in the order the simulator checks them
    filters: tuple[tuple[str, str], ...]
    page: int


@dataclass
class RequestLog:
    records: list[RequestRecord] = field(default_factory=list)

    def add(self, record: RequestRecord) -> None:
        self.records.append(record)

    def times(self, api: str | None = None, credential: str | None = None) -> list[float]:
        return [
            r.at
            for r in self.records
            if (api is None or r.api == api) and (credential is None or r.credential == credential)
        ]

    def count(self, outcome: str | None = None, api: str | None = None) -> int:
        return sum(
            1
            for r in self.records
            if (outcome is None or r.outcome == outcome) and (api is None or r.api == api)
        )


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most arrivals found in any sliding window of ``window`` seconds."""
    ordered = sorted(times)
    best = 0
    lo = 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class SlidingWindowGate:
    """Server-side enforcement: admits at most ``limit`` requests in any one-second window.

    Arrivals are stamped on entry, and concurrent requests reach the gate out of order (they
    interleave across the body read and authentication), so admitted times are kept sorted and a
    new one is admitted only if every window containing it stays within the limit.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], list[float]] = defaultdict(list)

    def admit(self, key: tuple[str, str], limit: int, at: float) -> bool:
        times = self._seen[key]
        del times[: bisect.bisect_right(times, at - 2.0)]  # nothing older can share a window now
        pos = bisect.bisect_left(times, at)
        merged = [*times[:pos], at, *times[pos:]]
        right = pos
        for left in range(pos + 1):
            if at - merged[left] >= 1.0:
                continue  # a window starting here ends before ``at``
            while right + 1 < len(merged) and merged[right + 1] - merged[left] < 1.0:
                right += 1
            if right - left + 1 > limit:
                return False
        times.insert(pos, at)
        return True


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Simulator:
    """Base of every vendor simulator. Subclasses add routes and the vendor's answers."""

    vendor: str = ""

    def __init__(self, *, seed: int = 0, rate_limits: dict[str, int] | None = None) -> None:
        self.rng = random.Random(seed)
        self.rate_limits: dict[str, int] = dict(rate_limits or {})
        self.log = RequestLog()
        #: every listing request a simulator answered, with its filters (the vendors that filter)
        self.listing_reads: list[ListingRead] = []
        self.faults: list[FaultPlan] = []
        self.gate = SlidingWindowGate()
        self.app = web.Application(middlewares=[self._middleware])
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.host = "127.0.0.1"
        self._hung: list[asyncio.Future[None]] = []

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server: Any = site._server
        sockets = server.sockets if server is not None else []
        self.port = int(sockets[0].getsockname()[1]) if sockets else port

    async def listen_also(self, port: int = 0) -> int:
        """One more port for the same simulator; the log's ``via`` says which port each request used."""
        if self._runner is None:
            raise RuntimeError("start the simulator first")
        site = web.TCPSite(self._runner, self.host, port, reuse_address=True)
        await site.start()
        server: Any = site._server
        sockets = server.sockets if server is not None else []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        for future in self._hung:
            if not future.done():
                future.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- faults ----------------------------------------------------------------------------
    def inject(
        self,
        fault: Fault,
        *,
        remaining: int | None = None,
        api: str | None = None,
        after: int = 0,
        retry_after: str | None = None,
    ) -> FaultPlan:
        plan = FaultPlan(fault, remaining, api, after, retry_after)
        self.faults.append(plan)
        return plan

    def remove_fault(self, plan: FaultPlan) -> None:
        """End one injected fault, leaving the others; requests it hung are released."""
        self.faults = [p for p in self.faults if p is not plan]
        if not any(p.fault is Fault.HANG for p in self.faults):
            for future in self._hung:
                if not future.done():
                    future.cancel()
            self._hung.clear()

    def clear_faults(self) -> None:
        self.faults.clear()
        for future in self._hung:
            if not future.done():
                future.cancel()
        self._hung.clear()

    def _take_fault(self, api: str) -> FaultPlan | None:
        for plan in self.faults:
            if plan.api is not None and plan.api != api:
                continue
            if plan.after > 0:
                plan.after -= 1
                continue
            if plan.remaining is not None:
                if plan.remaining <= 0:
                    continue
                plan.remaining -= 1
            return plan
        return None

    # -- what subclasses provide ----------------------------------------------------------------
    def api_of(self, request: web.Request) -> str:
        """The vendor API a request addresses (for logs, limits and fault targeting)."""
        return request.path

    async def authenticate(self, request: web.Request, body: bytes) -> str | web.StreamResponse:
        """Return the credential id, or the vendor's auth-failure answer."""
        return ""

    def limit_key(self, api: str, credential: str) -> tuple[str, str]:
        """Which requests share one limit; per credential by default (AICCS: API-wide)."""
        return (api, credential)

    def error_answer(self, kind: Fault, api: str) -> web.StreamResponse:
        raise NotImplementedError

    def drift(self, body: bytes) -> bytes:
        """A schema-drifted version of a good answer (fields of the wrong type)."""
        return _drift_numbers(body)

    #: the JSON keys holding a listing's total (what :attr:`Fault.ABSURD_TOTAL` inflates)
    total_fields: frozenset[str] = frozenset()

    #: the JSON keys holding a listing's items (what :attr:`Fault.EMPTY_LISTING` empties)
    list_fields: frozenset[str] = frozenset()

    def inflate(self, body: bytes) -> bytes:
        """A good answer whose listing total is absurd (every ``total_fields`` key, at any depth)."""
        return _rewritten(body, {key: ABSURD_TOTAL for key in self.total_fields})

    def emptied(self, body: bytes) -> bytes:
        """A good answer that lists nothing and says so: total 0, no items."""
        return _rewritten(body, {**dict.fromkeys(self.total_fields, 0), **{k: [] for k in self.list_fields}})

    # -- the pipeline every request goes through ---------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        now = time.monotonic()
        api = self.api_of(request)
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        via = int(sockname[1]) if sockname else 0
        body = await request.read()
        auth = await self.authenticate(request, body)
        if not isinstance(auth, str):
            self.log.add(RequestRecord(now, api, "?", auth.status, "auth_failed", via))
            return auth
        credential = auth
        plan = self._take_fault(api)
        fault = plan.fault if plan is not None else None
        limit = self.rate_limits.get(api)
        if fault in (Fault.THROTTLE, Fault.RATE_LIMITED) or (
            limit is not None and not self.gate.admit(self.limit_key(api, credential), limit, now)
        ):
            answer = self.error_answer(Fault.THROTTLE, api)
            if fault is Fault.RATE_LIMITED and isinstance(answer, web.Response):
                answer = web.Response(body=answer.body, status=429, headers=answer.headers)
            if plan is not None and plan.retry_after is not None:
                answer.headers["Retry-After"] = plan.retry_after
            self.log.add(RequestRecord(now, api, credential, answer.status, "throttled", via))
            return answer
        self.log.add(RequestRecord(now, api, credential, 0, fault.value if fault else "ok", via))
        if fault is Fault.HANG:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._hung.append(future)
            with contextlib.suppress(asyncio.CancelledError):
                await future
            raise web.HTTPServiceUnavailable()
        if fault is Fault.DROP:
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()
        if fault in (Fault.SERVER_ERROR, Fault.AUTH):
            return self.error_answer(fault, api)
        response = await handler(request)
        if fault in _REWRITES and isinstance(response, web.Response):
            original = response.body if isinstance(response.body, bytes) else b""
            if fault is Fault.MALFORMED:
                mangled = b"<html><body>502 Bad Gateway</body></html>"
            elif fault is Fault.TRUNCATED:
                mangled = original[: len(original) // 2]
            elif fault is Fault.ABSURD_TOTAL:
                mangled = self.inflate(original)
            elif fault is Fault.EMPTY_LISTING:
                mangled = self.emptied(original)
            else:
                mangled = self.drift(original)
            return web.Response(body=mangled, status=200, content_type="application/json")
        return response


#: a listing total no real account comes near (still a 64-bit integer, as a vendor would send it)
ABSURD_TOTAL = 10**15


#: faults that rewrite the real answer's body
_REWRITES = frozenset(
    {Fault.MALFORMED, Fault.TRUNCATED, Fault.SCHEMA_DRIFT, Fault.ABSURD_TOTAL, Fault.EMPTY_LISTING}
)


def _rewritten(body: bytes, values: dict[str, Any]) -> bytes:
    """The JSON body with every key in ``values``, at any depth, set to that value."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    return json.dumps(_replaced(document, values), ensure_ascii=False).encode()


def _replaced(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        return {k: values[k] if k in values else _replaced(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_replaced(item, values) for item in node]
    return node


def _drift_numbers(body: bytes) -> bytes:
    """Turn every JSON list into an object: valid JSON, wrong shape for every list-bearing model."""
    return body.replace(b"[", b'{"drift":[').replace(b"]", b"]}")


def json_response(payload: bytes, status: int = 200, content_type: str = "application/json") -> web.Response:
    """A JSON answer with exactly the Content-Type given (the Tencent SDK is strict about it)."""
    response = web.Response(body=payload, status=status)
    response.headers["Content-Type"] = content_type
    return response


@dataclass
class DemoSetup:
    simulator: Simulator
    #: [[sources]] entries for the poller, given the simulator's base URL
    sources: Callable[[str], list[dict[str, Any]]]
    #: one step of scripted, seeded evolution
    evolve: Callable[[], None]
    #: vendors that push: the ``[[push.receivers]]`` entries, and what starts the pushes given the
    #: poller's push base URL (``http://host:port``)
    push_receivers: list[dict[str, Any]] = field(default_factory=list)
    start_push: Callable[[str], None] | None = None
