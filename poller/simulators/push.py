"""Vendor push as the simulators do it: to a configured URL, imperfect on purpose, re-pushed on failure."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

__all__ = ["PushPlan", "PushRecord", "Pusher"]


@dataclass
class PushPlan:
    """Push every new record to ``url`` (HTTP basic auth when ``username`` is set).

    ``drop`` of them are never pushed, ``duplicate`` are pushed twice with one push id, ``reorder``
    are held back ``reorder_delay`` seconds. An answer the vendor does not take for success is
    pushed again after each of ``retry_delays`` (each vendor's policy, scaled down; the default is
    Tencent's: at most 3 re-pushes).
    """

    url: str
    username: str | None = None
    password: str | None = None
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.3
    retry_delays: tuple[float, ...] = (0.2, 0.4, 0.8)


@dataclass
class PushRecord:
    key: str
    push_id: str
    #: "dropped", "acked", "duplicate-acked", or "gave-up"
    outcome: str
    attempts: int = 0

    @property
    def session_id(self) -> str:
        return self.key


class Pusher:
    """The deliveries of one simulator; ``accepted`` says whether an answer (status, body) is a
    success in the vendor's terms. Every delivery is a task ended by :meth:`close`."""

    def __init__(self, rng: random.Random, accepted: Callable[[int, bytes], bool]) -> None:
        self.rng = rng
        self.accepted = accepted
        self.plan: PushPlan | None = None
        self.records: list[PushRecord] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    def push(self, key: str, body: bytes, push_id: str, headers: dict[str, str]) -> None:
        plan = self.plan
        if plan is None:
            return
        record = PushRecord(key, push_id, "dropped")
        self.records.append(record)
        if self.rng.random() < plan.drop:
            return
        delay = plan.reorder_delay if self.rng.random() < plan.reorder else 0.0
        twice = self.rng.random() < plan.duplicate
        sent = dict(headers)
        if plan.username is not None:
            pair = f"{plan.username}:{plan.password or ''}".encode()
            sent["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        task = asyncio.get_running_loop().create_task(self._deliver(plan, record, body, sent, delay, twice))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Wait until every push started so far has ended (acked, dropped or given up)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _deliver(
        self,
        plan: PushPlan,
        record: PushRecord,
        body: bytes,
        headers: dict[str, str],
        delay: float,
        twice: bool,
    ) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        await asyncio.sleep(delay)
        for copy in range(2 if twice else 1):
            if copy == 0:
                record.outcome = "gave-up"
            for wait in (0.0, *plan.retry_delays):
                await asyncio.sleep(wait)
                record.attempts += 1
                try:
                    async with self._http.post(plan.url, data=body, headers=headers) as resp:
                        answer = await resp.read()
                except aiohttp.ClientError:
                    continue
                if self.accepted(resp.status, answer):
                    record.outcome = "duplicate-acked" if copy else "acked"
                    break
