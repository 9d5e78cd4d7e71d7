"""The HTTP step every adapter shares: one request under its limiter, with timeout and retries.

An adapter hands :meth:`Transport.send` a ``prepare`` (sign afresh per attempt) and a ``parse``
(classify the answer and decode it, raising a :class:`~poller.errors.SourceError` for an error
answer). Parsing inside the attempt means an answer that does not decode is retried like any
other bad answer, the same way for every vendor.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import anyio

from poller.errors import SourceError, Throttled, TimedOut, TokenExpired, Unreachable
from poller.transport.ratelimit import SlidingWindowLimiter, Slot

__all__ = ["Prepare", "RequestObserver", "Response", "Transport", "limiter_trace"]

T = TypeVar("T")


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
    ) -> None:
        self._session = session
        self._vendor = vendor
        self._timeout = timeout
        self._retries = retries
        self._backoff_base = backoff_base
        self._observe = observe

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

        Throttling slows the whole API down (every worker sharing ``limiter``); other retryable
        errors back off with jitter.
        """
        attempts = self._retries + 1
        for attempt in range(attempts):
            slot = await limiter.acquire()
            started = anyio.current_time()
            try:
                try:
                    answer = await self._attempt(api, method, url, prepare, params, slot)
                finally:
                    slot.sent()  # never sent or failed mid-way: count it from now, to be safe
                result = parse(answer)
            except SourceError as error:
                self._observed(api, _outcome(error), started)
                if isinstance(error, Throttled):
                    limiter.throttled(error.retry_after)
                error.api = error.api or api
                if not error.retryable or attempt == attempts - 1:
                    raise
                if not isinstance(error, Throttled):
                    delay = self._backoff_base * 2**attempt
                    await anyio.sleep(delay * (0.5 + random.random()))
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
                    return Response(resp.status, dict(resp.headers), await resp.read())
        except TimeoutError as exc:
            raise TimedOut(f"no answer within {self._timeout}s", api=api) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise Unreachable(f"connection dropped: {type(exc).__name__}", api=api) from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise Unreachable(f"cannot connect: {type(exc).__name__}", api=api) from exc

    def _observed(self, api: str, outcome: str, started: float) -> None:
        if self._observe is not None:
            self._observe(self._vendor, api, outcome, anyio.current_time() - started)


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
