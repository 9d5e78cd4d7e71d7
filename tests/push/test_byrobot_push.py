"""BYRobot callbacks into a running poller, beside polling, on a real nats-server."""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp

from poller.simulators.byrobot import CALLBACK_RETRY_DELAYS, ByRobotSimulator
from poller.simulators.push import PushPlan
from poller.tools.natsserver import NatsServer
from schemas import CallFinished
from tests.helpers import (
    contract_violations,
    make_config,
    polls_done,
    running,
    stream_events,
    stream_payloads,
    wait_until,
)
from tests.vendors.test_byrobot import APP_KEY, APP_SECRET, COMPANY, byrobot_source

TOKEN = "callback-token-0123456789abcdef"


def _config(nats_url: str, sim: ByRobotSimulator) -> Any:
    receiver = {"vendor": "byrobot", "account": "by-main", "token": TOKEN}
    return make_config(
        nats_url,
        [byrobot_source(sim, poll_interval=1.0)],
        push={"enabled": True, "port": 0, "receivers": [receiver]},
    )


def _calls(events: list[Any]) -> list[CallFinished]:
    return [e for e in events if isinstance(e, CallFinished)]


async def test_every_call_once_by_callback_or_poll_and_task_callbacks_change_nothing(
    nats_server: NatsServer,
) -> None:
    sim = ByRobotSimulator(credentials={APP_KEY: APP_SECRET}, seed=4, rate_limit=200)
    async with sim:
        sim.add_company(COMPANY, APP_KEY)
        task = sim.add_task(COMPANY, phones=30, status=1)
        async with running(_config(nats_server.url, sim)) as service, aiohttp.ClientSession() as http:
            await polls_done(service, 1)
            base = f"http://127.0.0.1:{service.push_port}/push/byrobot/by-main"
            async with http.post(base + "?token=wrong", json={"code": 200}) as resp:
                wrong_token = resp.status
            async with http.post(f"{base}?token={TOKEN}", json={"code": 200, "data": {"x": 1}}) as resp:
                malformed = resp.status
            job = {"code": 200, "data": {"dataType": "JOB_INFO_RESULT", "data": {"callJobId": task}}}
            async with http.post(f"{base}?token={TOKEN}", json=job) as resp:
                job_answer = (resp.status, await resp.text())
            retries = CALLBACK_RETRY_DELAYS
            sim.push_to(
                PushPlan(f"{base}?token={TOKEN}", drop=0.5, duplicate=0.3, reorder=0.3, retry_delays=retries)
            )
            finished = sim.finish_calls(task, [0, 1, 2, 6, 0, 5, 0, 8, 4, 0] * 2)
            sim.set_status(task, 4)  # a task callback: acknowledged, left to polling
            await sim.pusher.settled()

            async def all_there() -> bool:
                return len(_calls(await stream_events(nats_server.url))) >= len(finished)

            await wait_until(all_there, timeout=15)
            await polls_done(service, 2)
            stats = service.push.stats if service.push else None
        events = await stream_events(nats_server.url)

    calls = _calls(events)
    assert (wrong_token, malformed, job_answer) == (401, 400, (200, "success"))
    assert Counter(c.call_id for c in calls) == Counter(str(i) for i in finished)
    records = {r.key: r for r in sim.pusher.records}
    dropped = {k for k, r in records.items() if r.outcome == "dropped" and not k.startswith("job-")}
    learned = {c.call_id: c.learned_by for c in calls}
    assert dropped and all(learned[k] == "poll" for k in dropped)
    assert any(by == "push" for by in learned.values())
    assert all(r.outcome in ("acked", "duplicate-acked", "dropped") for r in records.values())
    job = records[f"job-{task}-4"]
    assert job.outcome in ("acked", "duplicate-acked", "dropped")
    assert stats is not None and stats.outcomes.get("duplicate", 0) == sum(
        1 for r in records.values() if r.outcome == "duplicate-acked" and not r.key.startswith("job-")
    )
    pushed = next(c for c in calls if c.learned_by == "push")
    assert pushed.task_id == str(task) and pushed.callee_number is not None and "*" in pushed.callee_number
    # a pushed call carries the transcript's turn count like an enriched polled one
    assert pushed.detail is not None


async def test_a_pushed_call_whose_end_time_cannot_be_read_is_accepted_with_a_null_end(
    nats_server: NatsServer,
) -> None:
    """An end the receiver cannot read still says the call ended: the push is taken, and the event
    fits the contract with ``ended_at`` null, counted like a polled one."""
    sim = ByRobotSimulator(credentials={APP_KEY: APP_SECRET}, seed=5, rate_limit=200)
    async with sim:
        sim.add_company(COMPANY, APP_KEY)
        task = sim.add_task(COMPANY, phones=2, status=1)
        receiver = {"vendor": "byrobot", "account": "by-main", "token": TOKEN}
        config = make_config(  # one poll at the start: the calls below arrive by push
            nats_server.url,
            [byrobot_source(sim, poll_interval=60.0)],
            push={"enabled": True, "port": 0, "receivers": [receiver]},
        )
        async with running(config) as service:
            await polls_done(service, 1)
            base = f"http://127.0.0.1:{service.push_port}/push/byrobot/by-main?token={TOKEN}"
            sim.push_to(PushPlan(base, drop=0.0, retry_delays=CALLBACK_RETRY_DELAYS))
            odd, fine = (c.instance_id for c in sim.tasks[task].calls)
            sim.write_times(odd, end="2024-05-06 10:00:00+09:00")
            sim.finish_calls(task, [0, 2])
            await sim.pusher.settled()

            async def both_there() -> bool:
                return len(_calls(await stream_events(nats_server.url))) == 2

            await wait_until(both_there, timeout=15)
            metrics = service.metrics_exposition().decode()
            stats = service.push.stats if service.push else None
        payloads = await stream_payloads(nats_server.url)
    calls = {c.call_id: c for c in _calls(await stream_events(nats_server.url))}
    assert [v for p in payloads for v in contract_violations(p)] == []
    assert {k: (c.learned_by, c.ended_at is None) for k, c in calls.items()} == {
        str(odd): ("push", True),
        str(fine): ("push", False),
    }
    assert stats is not None and stats.outcomes.get("accepted") == 2
    sample = 'aicc_vendor_values_unreadable_total{account="by-main",field="ended_at",vendor="byrobot"}'
    assert f"{sample} 1.0" in metrics
