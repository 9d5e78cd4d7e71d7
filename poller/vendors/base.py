"""What every vendor module provides, and the HTTP step they share.

A vendor module defines an account config Struct, a :class:`Source` subclass per pollable unit and
one :class:`Vendor` record; ``poller/vendors/__init__.py`` lists the records. The adapter's own
job is sign → request → page → decode → normalize; rate limiting, timeouts, transport-fault
classification and retries live here so that all five behave alike.
"""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import aiohttp
import anyio
import msgspec

from poller.errors import (
    BadResponse,
    ServerError,
    SourceError,
    Throttled,
    TimedOut,
    TokenExpired,
    Unreachable,
)
from poller.model import Observation, PageSink
from poller.ratelimit import DEFAULT_MARGIN, LimiterRegistry, SlidingWindowLimiter, Slot
from poller.state import SourceState

log = logging.getLogger("poller.vendors")


class AccountConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields every vendor account shares. Vendor modules subclass this with their own."""

    vendor: str
    account: str
    poll_interval: float = 2.0
    #: per-API request limits overriding the vendor's documented defaults
    rate_limits: dict[str, int] = {}
    #: seconds added to each one-second window for network jitter between us and the vendor's clock
    rate_limit_margin: float = DEFAULT_MARGIN
    request_timeout: float = 10.0
    #: attempts after the first for one request (5xx, timeouts, resets, throttling) before the cycle fails
    retries: int = 3
    #: first delay after a failed cycle; doubles per failure up to 60 s, with jitter
    failure_backoff: float = 1.0
    enabled: bool = True


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


RequestObserver = Callable[[str, str, str, float], None]
"""(vendor, api, outcome, seconds) for each HTTP attempt: feeds metrics."""


@dataclass
class AdapterContext:
    http: aiohttp.ClientSession
    limiters: LimiterRegistry
    observe_request: RequestObserver | None = None
    backoff_base: float = 0.2
    extra: dict[str, Any] = field(default_factory=dict)


class Source(ABC):
    """One unit of polling with its own committed state (an account, or a job group of one)."""

    vendor: ClassVar[str]

    def __init__(self, config: AccountConfig, ctx: AdapterContext, scope: str = "") -> None:
        self.config = config
        self.ctx = ctx
        self.account = config.account
        self.scope = scope

    @property
    def poll_interval(self) -> float:
        return self.config.poll_interval

    @abstractmethod
    async def observe(self, committed: SourceState, early: PageSink | None = None) -> Observation:
        """Poll the vendor once; raise :class:`SourceError` if the picture is not trustworthy.

        Adapters that read a listing page by page hand each page's snapshots to ``early`` as soon as
        it is read (through :class:`poller.model.Listing`), so their changes are published without
        waiting for the rest of the sweep; the returned observation still holds every snapshot.
        """

    @property
    def apis(self) -> Sequence[str]:
        return ()

    def limiter(self, api: str, credential: str, default_limit: int) -> SlidingWindowLimiter:
        limit = self.config.rate_limits.get(api, default_limit)
        return self.ctx.limiters.get(self.vendor, api, credential, limit, self.config.rate_limit_margin)

    async def send(
        self,
        api: str,
        limiter: SlidingWindowLimiter,
        method: str,
        url: str,
        *,
        classify: Callable[[Response], None],
        prepare: Callable[[], Awaitable[tuple[Mapping[str, str], bytes | None]]],
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """Send with rate limit, timeout and retries; ``prepare`` signs afresh for every attempt.

        ``prepare`` is awaited per attempt, so a token can be refreshed after an expired-token answer.
        ``classify`` raises a :class:`SourceError` subclass for a vendor error answer. Throttling
        slows the whole API down (every worker sharing ``limiter``); retryable errors back off with
        jitter; after the last attempt the error propagates and the poll cycle fails as a whole.
        """
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            slot = await limiter.acquire()
            started = anyio.current_time()
            try:
                try:
                    answer = await self._attempt(api, method, url, prepare, params, slot)
                finally:
                    slot.sent()  # never sent or failed mid-way: count it from now, to be safe
                classify(answer)
            except SourceError as error:
                self._observed(api, _outcome(error), started)
                if isinstance(error, Throttled):
                    limiter.throttled(error.retry_after)
                error.api = error.api or api
                if not error.retryable or attempt == attempts - 1:
                    raise
                if not isinstance(error, Throttled):
                    delay = self.ctx.backoff_base * 2**attempt
                    await anyio.sleep(delay * (0.5 + random.random()))
                continue
            self._observed(api, "ok", started)
            return answer
        raise AssertionError("unreachable")

    async def _attempt(
        self,
        api: str,
        method: str,
        url: str,
        prepare: Callable[[], Awaitable[tuple[Mapping[str, str], bytes | None]]],
        params: Mapping[str, str] | None,
        slot: Slot | None = None,
    ) -> Response:
        """One HTTP exchange; transport faults become classified :class:`SourceError`s."""
        try:
            headers, body = await prepare()
            with anyio.fail_after(self.config.request_timeout):
                async with self.ctx.http.request(
                    method,
                    url,
                    headers=headers,
                    data=body,
                    params=params,
                    allow_redirects=False,
                    trace_request_ctx=slot,
                ) as resp:
                    return Response(resp.status, dict(resp.headers), await resp.read())
        except TimeoutError as exc:
            raise TimedOut(f"no answer within {self.config.request_timeout}s", api=api) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise Unreachable(f"connection dropped: {type(exc).__name__}", api=api) from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise Unreachable(f"cannot connect: {type(exc).__name__}", api=api) from exc

    def _observed(self, api: str, outcome: str, started: float) -> None:
        if self.ctx.observe_request is not None:
            self.ctx.observe_request(self.vendor, api, outcome, anyio.current_time() - started)


def _outcome(error: SourceError) -> str:
    return "token_expired" if isinstance(error, TokenExpired) else error.reason.value


P = TypeVar("P")


@dataclass(frozen=True)
class Sweep(Generic[P]):
    """Every page of one listing, in page order, and whether the pages agreed on the total."""

    pages: list[P]
    total: int
    totals_agree: bool


async def sweep_pages(
    first_number: int,
    page_size: int,
    fetch: Callable[[int], Awaitable[P]],
    total_of: Callable[[P], int],
    concurrency: int = 20,
    expected_total: int | None = None,
) -> Sweep[P]:
    """Every page of a listing, fetched by ``concurrency`` workers in page order.

    Without ``expected_total`` the first page is read alone to learn the total; with it (the last
    sweep's total) every expected page is requested at once, so back-to-back sweeps leave no idle
    round trip between them, and pages the listing grew by are fetched after.

    The limiter paces the requests; bounding the workers (to about one window's worth) keeps a big
    listing from queueing hundreds of requests at a limiter that other sources share: the limiter
    serves waiters first come first served, so a source with one page waits behind at most a window
    of another's, not behind its whole sweep.

    Entities added or moved while paging can be missed or seen twice, so a listing is complete only
    if every page reported the same total and the de-duplicated count equals it: adapters check
    that before trusting a missing entity to have vanished.
    """
    pages: dict[int, P] = {}

    async def fetch_all(numbers: range) -> None:
        remaining = iter(numbers)

        async def worker() -> None:
            for number in remaining:  # one shared iterator: each page is taken by exactly one worker
                pages[number] = await fetch(number)

        async with anyio.create_task_group() as tg:
            for _ in range(min(max(1, concurrency), len(numbers))):
                tg.start_soon(worker)

    def count(total: int) -> int:
        return max(1, -(-total // page_size))

    if expected_total is None:
        pages[first_number] = await fetch(first_number)
    else:
        await fetch_all(range(first_number, first_number + count(expected_total)))
    total = total_of(pages[first_number])
    missing = [n for n in range(first_number, first_number + count(total)) if n not in pages]
    if missing:
        await fetch_all(range(missing[0], missing[-1] + 1))
    ordered = [pages[n] for n in sorted(pages)]
    return Sweep(ordered, total, len({total_of(page) for page in ordered}) == 1)


def decode_or_bad(decoder: msgspec.json.Decoder[Any], body: bytes, api: str) -> Any:
    """Decode a vendor body; anything that does not fit the wire model is a BadResponse."""
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadResponse(f"undecodable answer: {exc}", api=api) from exc


def server_status(resp: Response, api: str) -> None:
    """The HTTP-level part of classification shared by every vendor."""
    if resp.status >= 500:
        raise ServerError(f"HTTP {resp.status}", api=api)


@dataclass(frozen=True)
class Vendor:
    """One registry line: how to read an account's config and which sources it yields."""

    name: str
    account_config: type[AccountConfig]
    sources: Callable[[Any, AdapterContext], list[Source]]
    apis: Mapping[str, int]
    doc: str = ""


def limiter_trace() -> aiohttp.TraceConfig:
    """Marks a request's limiter slot as sent when its headers are written to the socket."""

    async def headers_sent(_session: object, context: Any, _params: object) -> None:
        slot = context.trace_request_ctx
        if isinstance(slot, Slot):
            slot.sent()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(headers_sent)
    return trace
