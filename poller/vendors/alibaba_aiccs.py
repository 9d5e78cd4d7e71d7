"""Alibaba Cloud AICCS 2019-10-15: ``ListTask`` per account, pages from 1 (``PageNo``/``PageSize``).

The documented limit is 500 requests per second for the API as a whole ("单用户不限流", but the sum
over all users is flow-controlled), so every AICCS account this poller watches shares one limiter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated

import msgspec

from poller.errors import BadResponse
from poller.pipeline.snapshot import EntitySnapshot, Observation, PageSink
from poller.pipeline.state import SourceState
from poller.transport import FLEET_WIDE, Response
from poller.vendors.alibaba_common import AlibabaAccount, RpcSigner, call_rpc, check_envelope, classifier
from poller.vendors.base import AdapterContext, Source, Vendor, decode_or_bad
from poller.vendors.listing import Listing, sweep_pages
from poller.vendors.normalize import state_map
from schemas import EntityKind, TaskState
from schemas.vendors.alibaba import ListTaskRequest, ListTaskResponse, TaskPage, TaskRecord, decoder

log = logging.getLogger("poller.vendors.alibaba_aiccs")

VENDOR = "alibaba-aiccs"
VERSION = "2019-10-15"
LIST_API = "ListTask"
#: API-wide across all users (doc: "API 频率:500 次/秒")
DEFAULT_LIMIT = 500
#: the limiter key: the limit is not per credential
API_WIDE = FLEET_WIDE
#: the product's endpoint rule is "central" in the official SDK
DEFAULT_ENDPOINT = "https://aiccs.aliyuncs.com"

STATES = state_map(
    VENDOR,
    {
        "INIT": TaskState.PENDING,  # 未开始
        "RELEASE": TaskState.PENDING,  # 解析中
        "READY": TaskState.PENDING,  # 待执行
        "RUNNING": TaskState.RUNNING,  # 执行中
        "STOP": TaskState.PAUSED,  # 手动暂停
        "SYSTEM_STOP": TaskState.PAUSED_BY_SYSTEM,  # 系统暂停
        "CANCEL": TaskState.CANCELLED,  # 手动终止
        "SYSTEM_CANCEL": TaskState.CANCELLED_BY_SYSTEM,  # 系统终止
        "DONE": TaskState.COMPLETED,  # 已完成
    },
    field="Record.Status",
)


class AiccsAccount(AlibabaAccount, frozen=True, kw_only=True):
    """One Alibaba Cloud account's robot call tasks."""

    #: the doc's default page size; the maximum is not published
    page_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20

    def default_endpoint(self) -> str:
        return DEFAULT_ENDPOINT


_decode_list = decoder(ListTaskResponse)


def task_entity(record: TaskRecord) -> EntitySnapshot:
    return EntitySnapshot(
        kind=EntityKind.TASK,
        id=str(record.Id),
        name=record.TaskName,
        state=STATES.normalize(record.Status),
        raw_state=record.Status,
        completed=record.CompleteCount,
        total=record.TotalCount,
    )


def read_task_page(resp: Response) -> TaskPage:
    """A classified 200 answer → its page of tasks, or a SourceError (the cycle fails as a whole)."""
    answer: ListTaskResponse = decode_or_bad(_decode_list, resp.body, LIST_API)
    check_envelope(
        LIST_API, success=answer.Success, code=answer.Code, message=answer.Message, http_status=None
    )
    if answer.Data is None:
        raise BadResponse("answer without Data", api=LIST_API)
    return answer.Data


class AiccsSource(Source):
    vendor = VENDOR

    def __init__(self, config: AiccsAccount, ctx: AdapterContext) -> None:
        super().__init__(config, ctx)
        self.cfg = config
        self.signer = RpcSigner(
            endpoint=config.endpoint or config.default_endpoint(),
            version=VERSION,
            access_key_id=config.access_key_id,
            access_key_secret=config.access_key_secret,
            signature=config.signature,
        )
        self._limiter = self.limiter(LIST_API, API_WIDE, DEFAULT_LIMIT)
        #: the last sweep's total: the next sweep requests every page at once
        self._last_total: int | None = None
        self._classify = classifier(LIST_API)

    @property
    def apis(self) -> tuple[str, ...]:
        return (LIST_API,)

    async def _page(self, number: int) -> TaskPage:
        request = ListTaskRequest(PageNo=number, PageSize=self.cfg.page_size)
        classify = self._classify

        def parse(resp: Response) -> TaskPage:
            classify(resp)
            return read_task_page(resp)

        return await call_rpc(self, self.signer, self._limiter, parse, LIST_API, request)

    async def observe(self, committed: SourceState, early: PageSink | None = None) -> Observation:
        listing = Listing(early)

        async def page(number: int) -> int:
            tasks = await self._page(number)
            await listing.add(task_entity(record) for record in tasks.Record)
            return tasks.Total

        sweep = await sweep_pages(
            1,
            self.cfg.page_size,
            page,
            lambda total: total,
            self._limiter.limit,
            self._last_total,
            max_total=self.config.max_entities,
            api=LIST_API,
        )
        self._last_total = sweep.total
        complete = sweep.totals_agree and len(listing) == sweep.total
        return Observation(entities=listing.snapshots(), complete=complete)


def build_sources(config: AiccsAccount, ctx: AdapterContext) -> list[Source]:
    return [AiccsSource(config, ctx)]


APIS: Mapping[str, int] = {LIST_API: DEFAULT_LIMIT}

VENDOR_SPEC = Vendor(
    name=VENDOR,
    account_config=AiccsAccount,
    sources=build_sources,
    apis=APIS,
    fleet_apis=frozenset({LIST_API}),
    doc="Alibaba Cloud AICCS ListTask (V3 or V1 signature, 500 req/s API-wide, pages from 1)",
)
