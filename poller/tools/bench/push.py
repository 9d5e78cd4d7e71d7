"""The push row: Tencent CCC Data Push → subscriber latency, and polling reconciling lost pushes.

A simulator places calls at a steady rate and pushes each record to the running poller's push port,
dropping a share of the pushes on purpose. A core NATS subscriber stamps each call's arrival. Pushed
calls are timed from the push being handed to the simulator's sender; the dropped ones must all
still arrive, by polling.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import msgspec
import nats
from nats.aio.msg import Msg

from poller.config import parse_config
from poller.runtime.service import Service
from poller.simulators.push import PushPlan
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.bench.results import PushResult
from poller.tools.natsserver import NatsServer
from schemas import CallFinished, Event

__all__ = ["bench_push"]

APP = 1400000777
SECRET_ID, SECRET_KEY = "AKIDbenchpush", "bench-push-key"
USER, PASSWORD = "bench-push", "bench-push-password"


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


async def bench_push(
    calls: int,
    per_second: float,
    progress: Callable[[str], None],
    drop: float = 0.5,
    poll_interval: float = 2.0,
) -> PushResult:
    arrived: dict[str, tuple[float, str]] = {}
    everything = anyio.Event()
    decoder = msgspec.json.Decoder(Event)
    with NatsServer() as server:
        sim = TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=5)
        async with sim:
            task = sim.add_task(APP, state=1, callees=calls + 1)
            source = {
                "vendor": "tencent-ccc",
                "account": "bench",
                "secret_id": SECRET_ID,
                "secret_key": SECRET_KEY,
                "sdk_app_ids": [APP],
                "endpoint": sim.url,
                "poll_interval": poll_interval,
                "cdr_settle": 30.0,
            }
            receiver = {"vendor": "tencent-ccc", "account": "bench", "username": USER, "password": PASSWORD}
            config = parse_config(
                {
                    "nats": {"url": server.url},
                    "http": {"enabled": False},
                    "logging": {"level": "WARNING"},
                    "push": {"enabled": True, "port": 0, "receivers": [receiver]},
                    "sources": [source],
                },
                path="<bench>",
                env={},
            )
            service = Service(config)
            nc = await nats.connect(server.url)

            async def on_message(msg: Msg) -> None:
                event = decoder.decode(msg.data)
                if isinstance(event, CallFinished):
                    arrived.setdefault(event.call_id, (time.monotonic(), event.learned_by))
                    if len(arrived) >= calls:
                        everything.set()

            await nc.subscribe("aicc.tencent-ccc.bench.call-finished", cb=on_message)
            sent: dict[str, float] = {}
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(service.run)
                    with anyio.fail_after(30):
                        await service.started.wait()
                        await service.push_ready.wait()
                    url = f"http://127.0.0.1:{service.push_port}/push/tencent-ccc/bench?action=cdr&version=1"
                    sim.push_to(PushPlan(url, USER, PASSWORD, drop=drop))
                    progress(f"push: {calls} calls at {per_second:g}/s, {drop:.0%} of pushes dropped")
                    for _ in range(calls):
                        record = sim.place_call(APP, task)
                        sent[record.SessionId] = time.monotonic()
                        await anyio.sleep(1 / per_second)
                    await sim.pushes_settled()
                    with anyio.move_on_after(3 * poll_interval + 10):
                        await everything.wait()
                    service.stop()
            finally:
                await nc.close()
    dropped = {p.session_id for p in sim.pushes if p.outcome == "dropped"}
    pushed = [s for s in sent if s not in dropped]
    push_latency = [arrived[s][0] - sent[s] for s in pushed if s in arrived and arrived[s][1] == "push"]
    reconciled = [arrived[s][0] - sent[s] for s in dropped if s in arrived]
    result = PushResult(
        calls=calls,
        drop_fraction=drop,
        pushed=len(pushed),
        dropped=len(dropped),
        push_p50=_quantile(push_latency, 0.5),
        push_p99=_quantile(push_latency, 0.99),
        reconciled=len(reconciled),
        reconciled_p99=_quantile(reconciled, 0.99),
        poll_interval=poll_interval,
    )
    progress(
        f"push: p50 {result.push_p50 or 0:.3f} s, p99 {result.push_p99 or 0:.3f} s; "
        f"{result.reconciled}/{result.dropped} dropped pushes reconciled by polling"
    )
    return result
