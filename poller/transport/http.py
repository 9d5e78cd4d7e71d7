"""The HTTP step every adapter shares: one request under its limiter, with timeout and retries.

An adapter hands :meth:`Transport.send` a ``prepare`` (sign afresh per attempt) and a ``parse``
(classify the answer and decode it, raising a :class:`~poller.errors.SourceError` for an error
answer). Parsing inside the attempt means an answer that does not decode is retried like any
other bad answer, the same way for every vendor.

Throttling at the HTTP level is read here once for all vendors: an HTTP 429 is throttling whatever
its body says, and a ``Retry-After`` (delay-seconds or an HTTP-date, capped) on any error answer is
honoured; a throttling answer pauses every worker of that API and credential (the shared limiter).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import anyio
from multidict import CIMultiDict

from poller.errors import BadResponse, SourceError, Throttled, TimedOut, TokenExpired, Unreachable
from poller.transport.ratelimit import SlidingWindowLimiter, Slot

__all__ = [
    "DEFAULT_MAX_RETRY_AFTER",
    "Prepare",
    "RequestObserver",
    "Response",
    "Transport",
    "limiter_trace",
    "retry_after_seconds",
]

T = TypeVar("T")

#: the longest pause a vendor's ``Retry-After`` can impose (a hostile or broken value would stop
#: the API for good otherwise)
DEFAULT_MAX_RETRY_AFTER = 60.0
HTTP_TOO_MANY_REQUESTS = 429
#: the largest answer body read; a longer one is a bad response (memory is not sized by the vendor)
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


RequestObserver = Callable[[str, str, str, float], None]
"""(vendor, api, outcome, seconds) for each HTTP attempt: feeds metrics."""

Prepare = Callable[[], Awaitable[tuple[Mapping[str, str], bytes | None]]]
"""Headers and body of one attempt, signed afresh (a refreshed token, a new nonce)."""


class Transport:
    """Sends one vendor request: limiter slot, timeout, classification, retries with backoff."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        vendor: str,
        timeout: float,
        retries: int,
        backoff_base: float = 0.2,
        observe: RequestObserver | None = None,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._session = session
        self._vendor = vendor
        self._timeout = timeout
        self._retries = retries
        self._backoff_base = backoff_base
        self._observe = observe
        self._max_retry_after = max_retry_after
        self._max_body_bytes = max_body_bytes

    async def send(
        self,
        api: str,
        limiter: SlidingWindowLimiter,
        method: str,
        url: str,
        *,
        parse: Callable[[Response], T],
        prepare: Prepare,
        params: Mapping[str, str] | None = None,
    ) -> T:
        """The parsed answer; after the last failed attempt the classified error propagates.

        Throttling (HTTP 429 or the vendor's own code, classified by ``parse``) pauses the whole API
        (every worker sharing ``limiter``) for the answer's ``Retry-After`` or one window; other
        retryable errors back off with jitter, at least as long as a ``Retry-After`` asks. The
        error raised carries the wall-clock time of this request's first failed attempt.
        """
        attempts = self._retries + 1
        first_failed_at: float | None = None
        for attempt in range(attempts):
            slot = await limiter.acquire()
            started = anyio.current_time()
            started_wall = time.time()
            answer: Response | None = None
            try:
                try:
                    answer = await self._attempt(api, method, url, prepare, params, slot)
                finally:
                    slot.sent()  # never sent or failed mid-way: count it from now, to be safe
                if answer.status == HTTP_TOO_MANY_REQUESTS:
                    raise Throttled(f"HTTP {answer.status}", api=api)
                result = parse(answer)
            except SourceError as error:
                self._observed(api, _outcome(error), started)
                if first_failed_at is None:
                    first_failed_at = started_wall
                error.first_failed_at = first_failed_at
                if answer is not None and error.retry_after is None:
                    error.retry_after = retry_after_seconds(
                        answer.headers.get("Retry-After"), now=time.time(), cap=self._max_retry_after
                    )
                if isinstance(error, Throttled):
                    limiter.throttled(error.retry_after)
                error.api = error.api or api
                if not error.retryable or attempt == attempts - 1:
                    raise
                if not isinstance(error, Throttled):
                    delay = self._backoff_base * 2**attempt * (0.5 + random.random())
                    await anyio.sleep(max(delay, error.retry_after or 0.0))
                continue
            self._observed(api, "ok", started)
            return result
        raise AssertionError("unreachable")

    async def _attempt(
        self,
        api: str,
        method: str,
        url: str,
        prepare: Prepare,
        params: Mapping[str, str] | None,
        slot: Slot | None = None,
    ) -> Response:
        """One HTTP exchange; transport faults become classified :class:`SourceError`s."""
        try:
            headers, body = await prepare()
            with anyio.fail_after(self._timeout):
                async with self._session.request(
                    method,
                    url,
                    headers=headers,
                    data=body,
                    params=params,
                    allow_redirects=False,
                    trace_request_ctx=slot,
                ) as resp:
                    body = await _read_bounded(resp, self._max_body_bytes, api)
                    return Response(resp.status, CIMultiDict(resp.headers), body)
        except TimeoutError as exc:
            raise TimedOut(f"no answer within {self._timeout}s", api=api) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise Unreachable(f"connection dropped: {type(exc).__name__}", api=api) from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise Unreachable(f"cannot connect: {type(exc).__name__}", api=api) from exc

    def _observed(self, api: str, outcome: str, started: float) -> None:
        if self._observe is not None:
            self._observe(self._vendor, api, outcome, anyio.current_time() - started)


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int, api: str) -> bytes:
    """The body, or a BadResponse as soon as it grows past ``limit`` (before it is all in memory)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise BadResponse(f"answer of {resp.content_length} bytes, more than {limit}", api=api)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise BadResponse(f"answer larger than {limit} bytes", api=api)
        chunks.append(chunk)
    return b"".join(chunks)


def retry_after_seconds(value: str | None, *, now: float, cap: float) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (wall clock), at most ``cap``.

    Both forms of RFC 9110 are read: delay-seconds and an HTTP-date. Anything else (garbage, a
    negative number) is None: the caller then waits as if no header had come.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.replace(".", "", 1).isdigit():
        seconds = float(text)  # a long digit run is inf here: the cap bounds it
    else:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:  # "-0000": UTC, by RFC 5322
            moment = moment.replace(tzinfo=UTC)
        try:
            seconds = moment.timestamp() - now
        except (OverflowError, OSError, ValueError):
            return None
    if math.isnan(seconds):
        return None
    return min(cap, max(0.0, seconds))


def _outcome(error: SourceError) -> str:
    return "token_expired" if isinstance(error, TokenExpired) else error.reason.value


def limiter_trace() -> aiohttp.TraceConfig:
    """Marks a request's limiter slot as sent when its headers are written to the socket."""

    async def headers_sent(_session: object, context: Any, _params: object) -> None:
        slot = context.trace_request_ctx
        if isinstance(slot, Slot):
            slot.sent()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(headers_sent)
    return trace
