"""What every vendor module provides.

A vendor module defines an account config Struct, a :class:`Source` subclass per pollable unit and
one :class:`Vendor` record; ``poller/vendors/__init__.py`` lists the records. The adapter's own
job is sign → request → page → decode → normalize; rate limiting, timeouts, transport-fault
classification and retries live in :mod:`poller.transport` so that all five behave alike.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, TypeVar

import aiohttp
import msgspec

from poller.errors import BadResponse, ServerError
from poller.pipeline.snapshot import Observation, PageSink
from poller.pipeline.state import SourceState
from poller.transport import (
    DEFAULT_MARGIN,
    DEFAULT_MAX_RETRY_AFTER,
    LimiterRegistry,
    Prepare,
    RequestObserver,
    Response,
    SlidingWindowLimiter,
    Transport,
)
from poller.vendors.informer import ReadObserver
from poller.vendors.normalize import CountUnreadable, UnreadableValues

__all__ = [
    "ENDPOINT_PATTERN",
    "AccountConfig",
    "AdapterContext",
    "Endpoint",
    "NonEmpty",
    "Response",
    "Source",
    "Vendor",
    "decode_or_bad",
    "server_status",
]

T = TypeVar("T")
log = logging.getLogger("poller.vendors")

#: an http(s) URL with a host: a config field the adapter sends requests to
ENDPOINT_PATTERN = r"^https?://[^\s/?#@]+(/\S*)?$"
Endpoint = Annotated[str, msgspec.Meta(pattern=ENDPOINT_PATTERN)]
#: a config string that must not be empty (ids, keys, names)
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class AccountConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields every vendor account shares. Vendor modules subclass this with their own."""

    vendor: str
    account: str
    poll_interval: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    #: per-API request limits overriding the vendor's documented defaults (each checked by name)
    rate_limits: dict[str, int] = {}
    #: seconds added to each one-second window for network jitter between us and the vendor's clock
    rate_limit_margin: Annotated[float, msgspec.Meta(ge=0, le=0.5)] = DEFAULT_MARGIN
    request_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    #: attempts after the first for one request (5xx, timeouts, resets, throttling) before the cycle fails
    retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3
    #: first delay after a failed cycle; doubles per failure up to 60 s, with jitter
    failure_backoff: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0
    enabled: bool = True

    # -- how far one vendor answer may move the poller (broken or hostile answers) -------------------
    #: a listing (or a task's finished calls) reporting more entities than this fails the cycle with
    #: reason ``too_large``: nothing is sized by a count the vendor sent
    max_entities: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000
    #: the longest pause, in seconds, a ``Retry-After`` header can impose on an API
    max_retry_after: Annotated[float, msgspec.Meta(ge=0)] = DEFAULT_MAX_RETRY_AFTER
    #: a complete listing missing more than this fraction of the known entities, and more than
    #: ``mass_vanish_min`` of them, vanishes nothing until a second complete listing agrees
    mass_vanish_fraction: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    mass_vanish_min: Annotated[int, msgspec.Meta(ge=0)] = 2


@dataclass
class AdapterContext:
    http: aiohttp.ClientSession
    limiters: LimiterRegistry
    observe_request: RequestObserver | None = None
    observe_reads: ReadObserver | None = None
    backoff_base: float = 0.2
    #: counts vendor values an adapter could not read (see :class:`UnreadableValues`)
    observe_unreadable: CountUnreadable | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Source(ABC):
    """One unit of polling with its own committed state (an account, or a job group of one)."""

    vendor: ClassVar[str]
    #: its listing hands an unchanged item back as the very snapshot it built before (through
    #: :class:`poller.vendors.listing.SeenItems`): worth the differ's basis between cycles, which lets
    #: a cycle skip those snapshots in bulk (and keeps the last cycle's snapshots alive)
    reuses_snapshots: ClassVar[bool] = False

    def __init__(self, config: AccountConfig, ctx: AdapterContext, scope: str = "") -> None:
        self.config = config
        self.ctx = ctx
        self.account = config.account
        self.scope = scope
        #: api -> the limiter this source draws on, for the status views
        self.limiters_in_use: dict[str, SlidingWindowLimiter] = {}
        #: where the adapter reports a vendor value it could not read
        self.unreadable = UnreadableValues(self.vendor, self.account, ctx.observe_unreadable)
        self.transport = Transport(
            ctx.http,
            vendor=self.vendor,
            timeout=config.request_timeout,
            retries=config.retries,
            backoff_base=ctx.backoff_base,
            observe=ctx.observe_request,
            max_retry_after=config.max_retry_after,
        )

    @property
    def poll_interval(self) -> float:
        return self.config.poll_interval

    @abstractmethod
    async def observe(self, committed: SourceState, early: PageSink | None = None) -> Observation:
        """Poll the vendor once; raise :class:`SourceError` if the picture is not trustworthy.

        Adapters that read a listing page by page hand each page's snapshots to ``early`` as soon as
        it is read (through :class:`poller.vendors.listing.Listing`), so their changes are published without
        waiting for the rest of the sweep; the returned observation still holds every snapshot.
        """

    @property
    def apis(self) -> Sequence[str]:
        return ()

    def report_reads(
        self, requests: dict[str, int], staleness: float, mismatches: dict[str, int], distrusted: float
    ) -> None:
        """One cycle's reads per kind, the relist's staleness and how far the status filter is
        relied on, to the service's metrics."""
        observe = self.ctx.observe_reads
        if observe is not None:
            observe(
                self.vendor,
                self.account,
                self.scope,
                requests=requests,
                staleness=staleness,
                mismatches=mismatches,
                distrusted=distrusted,
            )

    def limiter(self, api: str, credential: str, default_limit: int) -> SlidingWindowLimiter:
        limit = self.config.rate_limits.get(api, default_limit)
        limiter = self.ctx.limiters.get(self.vendor, api, credential, limit, self.config.rate_limit_margin)
        self.limiters_in_use[api] = limiter
        return limiter

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
        """One request through this source's transport; ``parse`` classifies and decodes the answer."""
        return await self.transport.send(
            api, limiter, method, url, parse=parse, prepare=prepare, params=params
        )


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
    #: APIs whose limit covers every caller together: replicas split it (their limiter's credential
    #: is :data:`poller.transport.FLEET_WIDE`)
    fleet_apis: frozenset[str] = frozenset()
    doc: str = ""
