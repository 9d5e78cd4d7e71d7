"""Tencent Cloud CCC: ``DescribeAutoCalloutTasks`` per SdkAppId, TC3-HMAC-SHA256 signed, pages from 0."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import msgspec
from yarl import URL

from poller.errors import AuthFailed, BadResponse, ClientError, ServerError, Throttled
from poller.pipeline.snapshot import EntitySnapshot, Observation, PageSink
from poller.pipeline.state import SourceState
from poller.secrets import Secret
from poller.transport import Response
from poller.vendors.base import AccountConfig, AdapterContext, Source, Vendor, decode_or_bad, server_status
from poller.vendors.listing import Listing, SeenItems, sweep_pages
from poller.vendors.normalize import state_map
from schemas import EntityKind, TaskState
from schemas.vendors.tencent_ccc import (
    ApiError,
    AutoCalloutTaskInfo,
    DescribeAutoCalloutTasksRawResponse,
    DescribeAutoCalloutTasksRequest,
    DescribeAutoCalloutTasksResponse,
)

log = logging.getLogger("poller.vendors.tencent_ccc")

VENDOR = "tencent-ccc"
SERVICE = "ccc"
VERSION = "2020-02-10"
LIST_API = "DescribeAutoCalloutTasks"
CONTENT_TYPE = "application/json"

STATES = state_map(
    VENDOR,
    {
        "0": TaskState.PENDING,  # 初始
        "1": TaskState.RUNNING,  # 运行中
        "2": TaskState.COMPLETED,  # 已完成
        "3": TaskState.STOPPING,  # 结束中: expired, some calls still open
        "4": TaskState.CANCELLED_BY_SYSTEM,  # 已结束/已终止 at expiry
        "5": TaskState.PAUSED,  # 已暂停 (newest doc)
    },
    field="State",
)


class TencentCccAccount(AccountConfig, frozen=True, kw_only=True):
    secret_id: str
    secret_key: Secret
    sdk_app_ids: list[int]
    endpoint: str = "https://ccc.tencentcloudapi.com"
    region: str | None = None
    page_size: int = 100


# -- TC3-HMAC-SHA256 ---------------------------------------------------------------------------
def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def tc3_string_to_sign(*, host: str, content_type: str, payload: bytes, timestamp: int, service: str) -> str:
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:{content_type}\nhost:{host}\n",
            "content-type;host",
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    scope = f"{date}/{service}/tc3_request"
    return f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    k_date = _hmac(("TC3" + secret_key).encode(), date)
    k_signing = _hmac(_hmac(k_date, service), "tc3_request")
    return hmac.new(k_signing, string_to_sign.encode(), hashlib.sha256).hexdigest()


def tc3_headers(
    *,
    secret_id: str,
    secret_key: str,
    host: str,
    action: str,
    payload: bytes,
    timestamp: int,
    region: str | None = None,
    service: str = SERVICE,
    version: str = VERSION,
    content_type: str = CONTENT_TYPE,
) -> dict[str, str]:
    """The headers of one signed API 3.0 POST request."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    to_sign = tc3_string_to_sign(
        host=host, content_type=content_type, payload=payload, timestamp=timestamp, service=service
    )
    signature = tc3_signature(secret_key, date, service, to_sign)
    headers = {
        "Authorization": (
            f"TC3-HMAC-SHA256 Credential={secret_id}/{date}/{service}/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}"
        ),
        "Content-Type": content_type,
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Version": version,
        "X-TC-Timestamp": str(timestamp),
    }
    if region:
        headers["X-TC-Region"] = region
    return headers


def host_of(endpoint: str) -> str:
    """The Host header (and signed host) for an endpoint: the port is included when not default."""
    url = URL(endpoint)
    return url.raw_authority


# -- error classification ------------------------------------------------------------------------
_decode_list = msgspec.json.Decoder(DescribeAutoCalloutTasksResponse)
_decode_raw_list = msgspec.json.Decoder(DescribeAutoCalloutTasksRawResponse)
_decode_task = msgspec.json.Decoder(AutoCalloutTaskInfo)


def classify(resp: Response) -> DescribeAutoCalloutTasksResponse:
    """Raise the classified error of an answer, or return it decoded (errors come with HTTP 200)."""
    server_status(resp, LIST_API)
    if resp.status != 200:
        raise BadResponse(f"HTTP {resp.status}", api=LIST_API)
    envelope: DescribeAutoCalloutTasksResponse = decode_or_bad(_decode_list, resp.body, LIST_API)
    _raise_error(envelope.Response.Error)
    return envelope


def classify_raw(resp: Response) -> DescribeAutoCalloutTasksRawResponse:
    """``classify``, leaving each task as raw JSON (see :class:`SeenItems`)."""
    server_status(resp, LIST_API)
    if resp.status != 200:
        raise BadResponse(f"HTTP {resp.status}", api=LIST_API)
    envelope: DescribeAutoCalloutTasksRawResponse = decode_or_bad(_decode_raw_list, resp.body, LIST_API)
    _raise_error(envelope.Response.Error)
    return envelope


def decode_task(raw: msgspec.Raw) -> AutoCalloutTaskInfo:
    task: AutoCalloutTaskInfo = decode_or_bad(_decode_task, raw, LIST_API)
    return task


def _raise_error(error: ApiError | None) -> None:
    if error is None:
        return
    code = error.Code
    detail = f"{code}: {error.Message}"
    if code.startswith("RequestLimitExceeded"):
        raise Throttled(detail, api=LIST_API)
    if code.startswith("AuthFailure") or code in ("UnauthorizedOperation",):
        raise AuthFailed(detail, api=LIST_API)
    if code.startswith(("InternalError", "ResourceUnavailable", "FailedOperation")):
        raise ServerError(detail, api=LIST_API)
    raise ClientError(detail, api=LIST_API)


def normalize(task: AutoCalloutTaskInfo, sdk_app_id: int | str) -> EntitySnapshot:
    raw = str(task.State)
    return EntitySnapshot(
        kind=EntityKind.TASK,
        id=str(task.TaskId),
        parent_id=str(sdk_app_id),
        name=task.Name,
        state=STATES.normalize(raw),
        raw_state=raw,
        total=task.CalleeCount,
    )


class TencentCccSource(Source):
    """One SdkAppId of one Tencent Cloud account."""

    vendor = VENDOR

    def __init__(self, config: TencentCccAccount, ctx: AdapterContext, sdk_app_id: int) -> None:
        super().__init__(config, ctx, scope=str(sdk_app_id))
        self.cfg = config
        self.sdk_app_id = sdk_app_id
        self.url = config.endpoint.rstrip("/") + "/"
        self.host = host_of(config.endpoint)
        self._limiter = self.limiter(LIST_API, config.secret_id, APIS[LIST_API])
        #: the last sweep's total: the next sweep requests every page at once
        self._last_total: int | None = None
        self._seen = SeenItems()

    @property
    def apis(self) -> tuple[str, ...]:
        return (LIST_API,)

    async def _page(self, number: int) -> tuple[int, list[msgspec.Raw]]:
        payload = msgspec.json.encode(
            DescribeAutoCalloutTasksRequest(
                SdkAppId=self.sdk_app_id, PageSize=self.cfg.page_size, PageNumber=number
            )
        )

        async def prepare() -> tuple[Mapping[str, str], bytes]:
            headers = tc3_headers(
                secret_id=self.cfg.secret_id,
                secret_key=self.cfg.secret_key.reveal(),
                host=self.host,
                action=LIST_API,
                payload=payload,
                timestamp=int(time.time()),
                region=self.cfg.region,
            )
            return headers, payload

        answer = await self.send(
            LIST_API, self._limiter, "POST", self.url, parse=classify_raw, prepare=prepare
        )
        result = answer.Response
        if result.TotalCount is None or result.Tasks is None:
            raise BadResponse("answer without TotalCount or Tasks", api=LIST_API)
        return result.TotalCount, result.Tasks

    async def observe(self, committed: SourceState, early: PageSink | None = None) -> Observation:
        listing = Listing(early)
        parent = str(self.sdk_app_id)

        def build(raw: msgspec.Raw) -> EntitySnapshot:
            return normalize(decode_task(raw), parent)

        async def page(number: int) -> int:
            total, tasks = await self._page(number)
            await listing.add(self._seen.snapshots(tasks, build))
            return total

        try:
            sweep = await sweep_pages(
                0, self.cfg.page_size, page, lambda total: total, self._limiter.limit, self._last_total
            )
        except BaseException:
            self._seen.end_sweep(complete=False)
            raise
        self._last_total = sweep.total
        complete = sweep.totals_agree and len(listing) == sweep.total
        self._seen.end_sweep(complete)
        return Observation(entities=listing.snapshots(), complete=complete)


def build_sources(config: TencentCccAccount, ctx: AdapterContext) -> list[Source]:
    return [TencentCccSource(config, ctx, app) for app in config.sdk_app_ids]


APIS: Mapping[str, int] = {LIST_API: 20}

VENDOR_SPEC = Vendor(
    name=VENDOR,
    account_config=TencentCccAccount,
    sources=build_sources,
    apis=APIS,
    doc="Tencent Cloud CCC DescribeAutoCalloutTasks (TC3-HMAC-SHA256, 20 req/s, pages from 0)",
)
