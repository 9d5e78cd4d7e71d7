"""The plain baseline the benchmark measures beside the poller: what a first attempt would look like.

aiohttp + the standard ``json`` module + comparing each decoded dict with the previous one + one
awaited ``js.publish`` per event, and a fixed pause of ``1/limit`` after each request as its rate
limiting. Pages are read one after the other and compared (and published) as they arrive. It is
deliberately plain, not deliberately bad: it exists so the poller's figures have a reference
measured on the same machine, in the same run, against the same simulator. Request signing reuses
the vendor module (the simulator checks it; signing is not what is being compared).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import anyio

from poller.vendors.alibaba_common import RpcSigner
from poller.vendors.tencent_ccc import LIST_API, host_of, tc3_headers

PlainEvent = dict[str, Any]


def plain_changes(
    known: dict[Any, dict[str, Any]],
    items: list[dict[str, Any]],
    vendor: str,
    account: str,
    id_key: str = "TaskId",
    state_key: str = "State",
) -> list[PlainEvent]:
    """Compare each item dict with the one seen before; every difference is one event dict."""
    events: list[PlainEvent] = []
    now = datetime.now(UTC).isoformat()
    for item in items:
        item_id = item[id_key]
        old = known.get(item_id)
        if old == item:
            continue
        known[item_id] = item
        events.append(
            {
                "type": "task-appeared" if old is None else "task-status-changed",
                "event_id": uuid.uuid4().hex,
                "vendor": vendor,
                "account": account,
                "observed_at": now,
                "entity_id": str(item_id),
                "previous": None if old is None else str(old[state_key]),
                "current": str(item[state_key]),
                "name": item.get("Name"),
            }
        )
    return events


def plain_decode_and_compare(
    known: dict[int, dict[str, Any]], body: bytes, vendor: str, account: str
) -> list[PlainEvent]:
    """One Tencent page: ``json.loads`` then dict comparison."""
    result = json.loads(body)["Response"]
    return plain_changes(known, result["Tasks"], vendor, account)


def plain_subject(prefix: str, event: PlainEvent) -> str:
    return f"{prefix}.{event['vendor']}.{event['account']}.{event['type']}"


async def plain_publish(js: Any, prefix: str, events: list[PlainEvent]) -> None:
    """One awaited publish per event, the way the nats-py examples show it."""
    for event in events:
        await js.publish(
            plain_subject(prefix, event),
            json.dumps(event).encode(),
            headers={"Nats-Msg-Id": event["event_id"]},
        )


@dataclass
class PlainStats:
    requests: int = 0
    errors: int = 0
    #: time.monotonic() at the end of each full sweep
    sweeps: list[float] = field(default_factory=list)


class PlainPoller(Protocol):
    stats: PlainStats

    async def run(self, stop: anyio.Event) -> None: ...


class PlainTencentPoller:
    """Sweeps every page of one SdkAppId, one request at a time, forever (until ``stop``)."""

    vendor = "tencent-ccc"

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        js: Any,
        endpoint: str,
        secret_id: str,
        secret_key: str,
        sdk_app_id: int,
        page_size: int,
        limit: int,
        account: str,
        subject_prefix: str,
    ) -> None:
        self.http = http
        self.js = js
        self.url = endpoint.rstrip("/") + "/"
        self.host = host_of(endpoint)
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.sdk_app_id = sdk_app_id
        self.page_size = page_size
        self.pause = 1.0 / limit
        self.account = account
        self.prefix = subject_prefix
        self.known: dict[Any, dict[str, Any]] = {}
        self.stats = PlainStats()

    async def _page(self, number: int) -> dict[str, Any]:
        payload = json.dumps(
            {"SdkAppId": self.sdk_app_id, "PageSize": self.page_size, "PageNumber": number}
        ).encode()
        headers = tc3_headers(
            secret_id=self.secret_id,
            secret_key=self.secret_key,
            host=self.host,
            action=LIST_API,
            payload=payload,
            timestamp=int(time.time()),
        )
        async with self.http.post(self.url, data=payload, headers=headers) as resp:
            body = await resp.read()
        self.stats.requests += 1
        result: dict[str, Any] = json.loads(body)["Response"]
        return result

    async def run(self, stop: anyio.Event) -> None:
        while not stop.is_set():
            number = 0
            while not stop.is_set():
                result = await self._page(number)
                await anyio.sleep(self.pause)
                if "Error" in result:
                    self.stats.errors += 1
                    continue
                events = plain_changes(self.known, result["Tasks"], self.vendor, self.account)
                await plain_publish(self.js, self.prefix, events)
                number += 1
                if number * self.page_size >= result["TotalCount"]:
                    self.stats.sweeps.append(time.monotonic())
                    break


class PlainOutboundBotPoller:
    """Sweeps every page (from 1) of one OutboundBot job group, one request at a time."""

    vendor = "alibaba-outboundbot"
    api = "ListJobsByGroup"

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        js: Any,
        signer: RpcSigner,
        instance_id: str,
        job_group_id: str,
        page_size: int,
        limit: int,
        account: str,
        subject_prefix: str,
    ) -> None:
        self.http = http
        self.js = js
        self.signer = signer
        self.params = {"InstanceId": instance_id, "JobGroupId": job_group_id, "PageSize": str(page_size)}
        self.page_size = page_size
        self.pause = 1.0 / limit
        self.account = account
        self.prefix = subject_prefix
        self.known: dict[Any, dict[str, Any]] = {}
        self.stats = PlainStats()

    async def _page(self, number: int) -> tuple[int, dict[str, Any]]:
        query, prepare = self.signer.request(self.api, {**self.params, "PageNumber": str(number)})
        headers, _ = await prepare()
        async with self.http.post(self.signer.url, params=dict(query), headers=headers) as resp:
            status, body = resp.status, await resp.read()
        self.stats.requests += 1
        answer: dict[str, Any] = json.loads(body)
        return status, answer

    async def run(self, stop: anyio.Event) -> None:
        while not stop.is_set():
            number = 1
            while not stop.is_set():
                status, answer = await self._page(number)
                await anyio.sleep(self.pause)
                if status != 200 or not answer.get("Success"):
                    self.stats.errors += 1
                    continue
                jobs = answer["Jobs"]
                events = plain_changes(
                    self.known, jobs["List"], self.vendor, self.account, id_key="JobId", state_key="Status"
                )
                await plain_publish(self.js, self.prefix, events)
                if number * self.page_size >= int(jobs["TotalCount"]):
                    self.stats.sweeps.append(time.monotonic())
                    break
                number += 1
