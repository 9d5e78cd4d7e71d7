"""A pushed Tencent record is published exactly when polling would publish it, with its task."""

from __future__ import annotations

import base64
import logging
from collections import Counter
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest

from poller.simulators.base import Fault
from poller.simulators.push import PushPlan
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from poller.vendors.tencent_ccc import TASK_API
from schemas import CallFinished
from tests.helpers import make_config, polls_done, running, stream_events
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000057
USER, PASSWORD = "tccc-push", "push-password-never-logged"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def _config(nats_url: str, sim: TencentCccSimulator) -> Any:
    source = tencent_source(sim, [APP], poll_interval=1.0, cdr_settle=30)
    receiver = {"vendor": "tencent-ccc", "account": "tc-main", "username": USER, "password": PASSWORD}
    return make_config(nats_url, [source], push={"enabled": True, "port": 0, "receivers": [receiver]})


def _url(port: int | None) -> str:
    return f"http://127.0.0.1:{port}/push/tencent-ccc/tc-main?action=cdr&version=1"


def _calls(events: list[Any]) -> list[CallFinished]:
    return [e for e in events if isinstance(e, CallFinished)]


def _body(cdr: Any) -> bytes:
    return msgspec.json.encode(msgspec.structs.replace(cdr, SdkAppId=APP))


async def test_a_push_names_its_task_before_polling_learned_the_session(nats_server: NatsServer) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=7) as sim:
        task = sim.add_task(APP, state=1, callees=5)
        async with running(_config(nats_server.url, sim)) as service:
            await polls_done(service, 1)
            assert sim.log.count(api=TASK_API) == 0  # no call yet: no session learned
            sim.push_to(PushPlan(_url(service.push_port), USER, PASSWORD))
            call = sim.place_call(APP, task, listed=False)  # only the push can tell of it
            await sim.pushes_settled()
            pushed = _calls(await stream_events(nats_server.url))
            sim.list_cdr(APP, call)  # now polling reads the record too: the same event, dropped
            await polls_done(service, 2)
            assert service.push is not None
            outcomes = dict(service.push.stats.outcomes)
        events = await stream_events(nats_server.url)
    assert [(c.call_id, c.task_id, c.learned_by) for c in pushed] == [(call.SessionId, str(task), "push")]
    assert Counter(c.call_id for c in _calls(events)) == {call.SessionId: 1}
    assert [p.outcome for p in sim.pushes] == ["acked"] and outcomes == {"accepted": 1}


async def test_a_seats_own_call_is_acknowledged_and_published_by_neither_path(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=8) as sim:
        task = sim.add_task(APP, state=1, callees=5)
        with caplog.at_level(logging.INFO, logger="poller"):
            async with running(_config(nats_server.url, sim)) as service:
                await polls_done(service, 1)
                sim.push_to(PushPlan(_url(service.push_port), USER, PASSWORD))
                seat = sim.manual_call(APP)  # listed and pushed, like every record
                placed = sim.place_call(APP, task)
                await sim.pushes_settled()
                await polls_done(service, 3)  # polling reads both records as well
                assert service.push is not None
                outcomes = dict(service.push.stats.outcomes)
                exposition = service.metrics_exposition().decode()
        events = await stream_events(nats_server.url)
    calls = _calls(events)
    assert [(c.call_id, c.task_id) for c in calls] == [(placed.SessionId, str(task))]
    assert {p.session_id: p.outcome for p in sim.pushes} == {
        seat.SessionId: "acked",
        placed.SessionId: "acked",
    }
    assert outcomes == {"accepted": 1, "not_task_call": 1}
    assert 'outcome="not_task_call"' in exposition
    told = [
        r for r in caplog.records if r.getMessage().startswith("pushed record acknowledged, not published")
    ]
    assert [getattr(r, "call_id", None) for r in told] == [seat.SessionId]
    # no number reaches a log record (before the last-defense redaction) or the metrics
    numbers = {n for cdr in (seat, placed) for n in (cdr.Callee, cdr.Caller) if n}
    for record in caplog.records:
        text = record.getMessage() + " ".join(str(v) for v in vars(record).values())
        assert not any(number in text for number in numbers), record.getMessage()
    assert not any(number in exposition for number in numbers)


async def test_vendor_down_during_the_lookup_gives_503_and_the_push_after_recovery_is_published_once(
    nats_server: NatsServer,
) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=9) as sim:
        task = sim.add_task(APP, state=1, callees=5)
        down = sim.inject(Fault.SERVER_ERROR)  # the vendor down from the start: no listing yet
        call = sim.place_call(APP, task, listed=False)
        headers = {**AUTH, "Content-Type": "application/json", "X-TCCC-PUSH-UUID": "push-1"}
        statuses = []
        async with running(_config(nats_server.url, sim)) as service, aiohttp.ClientSession() as http:
            await service.push_ready.wait()

            async def post() -> int:
                async with http.post(_url(service.push_port), data=_body(call), headers=headers) as resp:
                    return resp.status

            statuses.append(await post())  # not polled yet: nobody can tell the task
            sim.remove_fault(down)
            await polls_done(service, 1)
            lookups = sim.inject(Fault.SERVER_ERROR, api=TASK_API)
            statuses.append(await post())  # polled, but the task details cannot be read
            failed = sim.log.count("server_error", api=TASK_API)
            sim.remove_fault(lookups)
            statuses.append(await post())  # Tencent's re-push
            statuses.append(await post())  # and once more: acknowledged, not published again
            between = _calls(await stream_events(nats_server.url))
            sim.list_cdr(APP, call)
            await polls_done(service, 2)
            assert service.push is not None
            outcomes = dict(service.push.stats.outcomes)
        events = await stream_events(nats_server.url)
    assert statuses == [503, 503, 200, 200]
    assert failed > 0
    assert outcomes == {"503": 2, "accepted": 1, "duplicate": 1}
    assert [(c.call_id, c.task_id, c.learned_by) for c in between] == [(call.SessionId, str(task), "push")]
    assert Counter(c.call_id for c in _calls(events)) == {call.SessionId: 1}


async def test_a_burst_of_pushes_for_unknown_sessions_costs_one_learn_round(nats_server: NatsServer) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=10) as sim:
        tasks = [sim.add_task(APP, state=1, callees=10) for _ in range(3)]
        async with running(_config(nats_server.url, sim)) as service:
            await polls_done(service, 1)
            sim.push_to(PushPlan(_url(service.push_port), USER, PASSWORD))
            before = sim.log.count(api=TASK_API)
            placed = [sim.place_call(APP, tasks[i % 3], listed=False) for i in range(24)]
            await sim.pushes_settled()
            task_calls = sim.log.count(api=TASK_API) - before
            before = sim.log.count(api=TASK_API)
            seats = [sim.manual_call(APP, listed=False) for _ in range(12)]
            await sim.pushes_settled()
            seat_calls = sim.log.count(api=TASK_API) - before
            assert service.push is not None
            outcomes = dict(service.push.stats.outcomes)
        events = await stream_events(nats_server.url)
    # one round reads each followed task once; a session it found answers every push of it at once
    assert task_calls == len(tasks)
    # a seat's call needs a round begun after its push came: the one under way, then one for the rest
    assert len(tasks) <= seat_calls <= 2 * len(tasks)
    assert outcomes == {"accepted": len(placed), "not_task_call": len(seats)}
    by_id = {c.call_id: c.task_id for c in _calls(events)}
    assert by_id == {cdr.SessionId: str(tasks[i % 3]) for i, cdr in enumerate(placed)}
    assert all(p.outcome == "acked" for p in sim.pushes)


async def test_a_push_of_a_call_polling_published_already_is_acknowledged_not_looked_up(
    nats_server: NatsServer,
) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=11) as sim:
        task = sim.add_task(APP, state=1, callees=5)
        source = tencent_source(sim, [APP], poll_interval=0.2, cdr_settle=0, cdr_full_every=0.1)
        receiver = {"vendor": "tencent-ccc", "account": "tc-main", "username": USER, "password": PASSWORD}
        config = make_config(
            nats_server.url, [source], push={"enabled": True, "port": 0, "receivers": [receiver]}
        )
        call = sim.place_call(APP, task)
        headers = {**AUTH, "Content-Type": "application/json"}
        async with running(config) as service, aiohttp.ClientSession() as http:
            await polls_done(service, 1)
            await anyio.sleep(1.1)  # the cursor follows the clock: past the call's end second
            await polls_done(service, 2)
            details = sim.log.count(api=TASK_API)
            async with http.post(_url(service.push_port), data=_body(call), headers=headers) as resp:
                status = resp.status
            assert service.push is not None
            outcomes = dict(service.push.stats.outcomes)
            asked = sim.log.count(api=TASK_API) - details
        events = await stream_events(nats_server.url)
    assert (status, outcomes, asked) == (200, {"already_polled": 1}, 0)
    assert [(c.call_id, c.learned_by) for c in _calls(events)] == [(call.SessionId, "poll")]
